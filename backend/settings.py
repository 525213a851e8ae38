"""Typed configuration, read from the environment and `.env`.

Settings are built by `get_settings()` (cached) or passed explicitly to the app factory, never at import time, so
tests and tools can run several configurations in one process.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROMPTS_DIR = Path(__file__).parent / "prompts"
DEFAULT_PROMPT_FILE = PROMPTS_DIR / "system_v2.md"
LOCAL_MODEL = "local"
# Values that mean "somebody copied the example file and never set a secret".
_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "changethis", "your-secret-here"}


class Settings(BaseSettings):
    """Every knob of the service; README's Configuration section documents each one."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1

    data_dir: Path = Path("data")
    database_url: str = ""  # empty: a SQLite file under data_dir
    db_pool_size: int = 10
    db_max_overflow: int = 20

    better_auth_secret: str | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwks_cache_seconds: int = 300
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:3000", "http://127.0.0.1:3000"]
    )

    agent_model: str = LOCAL_MODEL
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    local_model_host: str = "127.0.0.1"
    local_model_port: int = 8181
    model_dir: Path | None = None  # empty: data_dir/models
    temperature: float = 0.0
    seed: int = 42
    max_output_tokens: int = 512

    system_prompt_file: Path = DEFAULT_PROMPT_FILE
    history_window: int = 20
    task_context_limit: int = 50  # tasks shown in the prompt's turn context (if it has one); 0 = none
    model_timeout: float = 90.0
    max_agent_turns: int = 6

    redis_url: str | None = None
    rate_limit_per_minute: int = 60

    playground_enabled: bool | None = None  # None: on in development, off in production
    playground_username: str | None = None
    playground_password: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_origins(cls, data: object) -> object:
        if isinstance(data, dict):
            raw = data.get("cors_origins") or data.get("CORS_ORIGINS")
            if isinstance(raw, str):
                key = "cors_origins" if "cors_origins" in data else "CORS_ORIGINS"
                data[key] = [o.strip() for o in raw.split(",") if o.strip()]
        return data

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        if self.environment != "production":
            return self
        secret = (self.better_auth_secret or "").strip()
        if not self.jwks_url and (secret.lower() in _PLACEHOLDER_SECRETS or len(secret) < 32):
            raise ValueError(
                "production needs JWKS_URL or a BETTER_AUTH_SECRET of at least 32 characters "
                "(placeholder secrets are refused)"
            )
        if self.playground_enabled and not (self.playground_username and self.playground_password):
            raise ValueError("PLAYGROUND_ENABLED in production needs PLAYGROUND_USERNAME and PLAYGROUND_PASSWORD")
        return self

    @property
    def is_local_model(self) -> bool:
        return self.agent_model == LOCAL_MODEL

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'todo.db').as_posix()}"

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def local_model_base_url(self) -> str:
        return f"http://{self.local_model_host}:{self.local_model_port}/v1"

    @property
    def playground_on(self) -> bool:
        if self.playground_enabled is None:
            return self.environment == "development"
        return self.playground_enabled

    def auth_secret(self) -> str | None:
        """The HS256 secret; in development a generated one is kept under data_dir so tokens survive restarts."""
        if self.better_auth_secret:
            return self.better_auth_secret
        if self.environment != "development" or self.jwks_url:
            return None
        path = self.data_dir / "dev_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        self.better_auth_secret = path.read_text().strip()
        return self.better_auth_secret


@lru_cache
def get_settings() -> Settings:
    return Settings()
