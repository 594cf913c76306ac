"""One settings object, built by a factory and passed in; nothing reads the environment early."""

from __future__ import annotations

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
    api_keys_file: Path | None = Field(
        None, description="JSON list of {name, role, sha256}; default data_dir/api_keys.json"
    )
    max_body_bytes: int = Field(2_000_000, gt=0, description="larger request bodies get 413")
    max_batch: int = Field(1000, gt=0, le=10_000, description="records per batch request")
    similar_k: int = Field(5, ge=1, le=50, description="similar past cases in an answer")
    top_contributions: int = Field(8, ge=1, le=100, description="reasons listed per number")
    session_secret: SecretStr | None = Field(
        None,
        description="signs the pages' session cookies (32+ characters); default: a random "
        "secret created once in data_dir/session_secret (mode 600)",
    )
    session_hours: float = Field(8.0, gt=0, le=24 * 7, description="a page session lasts this")

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
    def api_keys_path(self) -> Path:
        """Where the hashed API keys live."""
        return self.api_keys_file or self.data_dir / "api_keys.json"

    @property
    def session_secret_path(self) -> Path:
        """Where the pages' signing secret is kept when none is configured."""
        return self.data_dir / "session_secret"

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
