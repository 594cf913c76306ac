"""One settings object, built by a factory and passed in; nothing reads the environment early."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the project keeps its data, its registry and its audit trail.

    Every field can be set from the environment with the ``AIDREC_`` prefix (e.g.
    ``AIDREC_DATA_DIR``); the MLflow tracking store also honours ``MLFLOW_TRACKING_URI``.
    """

    model_config = SettingsConfigDict(env_prefix="AIDREC_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="histories, the registry and the audit store")
    wage_table: Path | None = Field(None, description="a wage table CSV replacing the shipped one")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking store; default sqlite:///<data_dir>/mlflow.db"
    )
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
    similar_k: int = Field(5, ge=1, le=50)
    top_contributions: int = Field(8, ge=1, le=100)

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
    def audit_database_url(self) -> str:
        """The audit store's URL (SQLite in WAL mode by default)."""
        return self.audit_url or f"sqlite:///{(self.data_dir / 'audit.db').resolve()}"

    @property
    def api_keys_path(self) -> Path:
        """Where the hashed API keys live."""
        return self.api_keys_file or self.data_dir / "api_keys.json"

    @property
    def history_path(self) -> Path:
        """The default history the main job generates and trains on."""
        return self.data_dir / "history.parquet"


def get_settings() -> Settings:
    """Build settings from the environment (call at the edge: CLI, app factory)."""
    return Settings()
