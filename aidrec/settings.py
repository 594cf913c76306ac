"""One settings object, built by a factory and passed in; nothing reads the environment early."""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the project keeps its data, its registry and its audit trail.

    Every field can be set from the environment with the ``AIDREC_`` prefix (e.g.
    ``AIDREC_DATA_DIR``); the MLflow tracking store also honours ``MLFLOW_TRACKING_URI``, and
    ``MLFLOW_RUN_ID`` (set by ``mlflow run``) names the run a training logs into. Every
    command and the service read their configuration from here and nowhere else.
    """

    model_config = SettingsConfigDict(env_prefix="AIDREC_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(Path("data"), description="histories, the registry and the audit store")
    wage_table: Path | None = Field(None, description="a wage table CSV replacing the shipped one")
    tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("AIDREC_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking store; default sqlite:///<data_dir>/mlflow.db",
    )
    project_run_id: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_RUN_ID"),
        description="the run `mlflow run` opened for this process, which a training logs into",
    )
    experiment_name: str = Field("judicial-aid", min_length=1, description="MLflow experiment")
    registered_model: str = "judicial-aid"
    model_alias: str = Field("champion", description="the alias the service loads")
    audit_url: str | None = Field(
        None, description="SQLAlchemy URL of the audit store; default SQLite in data_dir"
    )
    audit_key: SecretStr | None = Field(
        None, description="the audit chain's HMAC key (≥ 32 characters); else audit_key_file"
    )
    audit_key_file: Path | None = Field(
        None, description="file holding the chain key; default data_dir/audit.key (made once)"
    )
    audit_signing_key_file: Path | None = Field(
        None, description="Ed25519 key signing checkpoints; default data_dir/audit-signing.key"
    )
    audit_checkpoint_file: Path | None = Field(
        None, description="signed checkpoints, outside the database; default beside the store"
    )
    audit_checkpoint_every: int = Field(100, ge=1, description="records between checkpoints")
    audit_checkpoint_seconds: float = Field(60.0, gt=0, description="seconds between them")
    audit_timeout_s: float = Field(
        2.0, gt=0, le=60, description="the longest an answer waits for the audit store (503 after)"
    )
    api_keys_file: Path | None = Field(
        None,
        description="a JSON list of {name, role, sha256, scope} imported into the key store "
        "(the audit database) on start; default data_dir/api_keys.json",
    )
    max_body_bytes: int = Field(1_000_000, gt=0, description="larger request bodies get 413")
    max_batch: int = Field(
        200, gt=0, le=10_000, description="records per batch request (a bound on one request)"
    )
    body_timeout_s: float = Field(10.0, gt=0, description="a slower body gets 408")
    header_timeout_s: float = Field(10.0, gt=0, description="a connection whose headers stall")
    rate_per_second: float = Field(100.0, gt=0, description="requests a second per key")
    rate_burst: int = Field(200, ge=1, description="requests a key may send at once above rate")
    max_concurrent_per_key: int = Field(8, ge=1, description="requests of one key at once")
    metrics_require_key: bool = Field(False, description="/metrics only with a valid API key")
    similar_k: int = Field(5, ge=1, le=50, description="similar past cases in an answer")
    top_contributions: int = Field(8, ge=1, le=100, description="reasons listed per number")
    session_secret: SecretStr | None = Field(
        None,
        description="signs the pages' session cookies (32+ characters); default: a random "
        "secret created once in data_dir/session_secret (mode 600)",
    )
    session_hours: float = Field(8.0, gt=0, le=24 * 7, description="a page session lasts this")
    person_key_secret: SecretStr | None = Field(
        None,
        description="the secret person keys are made under (HMAC-SHA256 of the 身份证号, "
        "≥ 32 bytes); else person_key_secret_file",
    )
    person_key_secret_file: Path | None = Field(
        None, description="file holding the person-key secret; default data_dir/person_key.secret"
    )
    registry_url: str | None = Field(
        None, description="SQLAlchemy URL of the department registries; default: the audit store's"
    )

    @field_validator("registered_model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not value or "/" in value or "@" in value:
            raise ValueError("registered_model must be a plain MLflow model name")
        return value

    @property
    def model_uri(self) -> str:
        """The registry URI of the model the service loads."""
        return f"models:/{self.registered_model}@{self.model_alias}"

    @property
    def tracking_store_uri(self) -> str:
        """The MLflow tracking (and registry) store: set, or SQLite in the data directory."""
        return self.tracking_uri or f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        """Where a new experiment keeps its artifacts (models, plots)."""
        return (self.data_dir / "mlartifacts").resolve()

    @property
    def audit_database_url(self) -> str:
        """The audit store's URL (SQLite in WAL mode by default)."""
        return self.audit_url or f"sqlite:///{(self.data_dir / 'audit.db').resolve()}"

    @property
    def audit_key_path(self) -> Path:
        """Where the chain key is kept when AIDREC_AUDIT_KEY is not set."""
        return self.audit_key_file or self.data_dir / "audit.key"

    @property
    def audit_signing_key_path(self) -> Path:
        """Where the checkpoint signing key is kept (its public half beside it, .pub)."""
        return self.audit_signing_key_file or self.data_dir / "audit-signing.key"

    @property
    def audit_checkpoint_path(self) -> Path:
        """The store's checkpoint file: beside a SQLite file, else in the data directory."""
        if self.audit_checkpoint_file is not None:
            return self.audit_checkpoint_file
        url = self.audit_database_url
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///") + ".checkpoints.jsonl")
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
        return self.data_dir / f"audit-checkpoints-{digest}.jsonl"

    @property
    def api_keys_path(self) -> Path:
        """A key file to import (the keys themselves live in the audit database)."""
        return self.api_keys_file or self.data_dir / "api_keys.json"

    @property
    def session_secret_path(self) -> Path:
        """Where the pages' signing secret is kept when none is configured."""
        return self.data_dir / "session_secret"

    @property
    def person_key_secret_path(self) -> Path:
        """Where the person-key secret is read from when AIDREC_PERSON_KEY_SECRET is not set."""
        return self.person_key_secret_file or self.data_dir / "person_key.secret"

    @property
    def registry_database_url(self) -> str:
        """The department registries' store: set, or the audit store's database."""
        return self.registry_url or self.audit_database_url

    @property
    def history_path(self) -> Path:
        """The default history the main job generates and trains on."""
        return self.data_dir / "history.parquet"


def get_settings() -> Settings:
    """Build settings from the environment (call at the edge: CLI, app factory)."""
    return Settings()


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the ``aidrec`` command built once for this invocation."""
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        settings = get_settings()
        ctx.find_root().obj = settings
    return settings
