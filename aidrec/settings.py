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

    @field_validator("registered_model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not value or "/" in value or "@" in value:
            raise ValueError("registered_model must be a plain MLflow model name")
        return value

    @property
    def history_path(self) -> Path:
        """The default history the main job generates and trains on."""
        return self.data_dir / "history.parquet"


def get_settings() -> Settings:
    """Build settings from the environment (call at the edge: CLI, app factory)."""
    return Settings()
