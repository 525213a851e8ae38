"""Typed configuration, read from the environment and `.env`.

Settings are built by `get_settings()` (cached) or passed explicitly to the app factory, never at import time, so
tests and tools can run several configurations in one process.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backend.bundled_model import local_runtime_problem

PROMPTS_DIR = Path(__file__).parent / "prompts"
DEFAULT_PROMPT_FILE = PROMPTS_DIR / "system_v2.md"
LOCAL_MODEL = "local"
# Values that mean "somebody copied the example file and never set a secret".
_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "changethis", "your-secret-here"}
MIN_SECRET_LENGTH = 32
_LIST_SETTINGS = ("cors_origins", "playground_model_hosts", "playground_allowed_hosts")


def real_secret(secret: str) -> bool:
    """Long enough to resist guessing and not a value copied from an example."""
    value = secret.strip()
    lowered = value.lower()
    placeholder = lowered in _PLACEHOLDER_SECRETS or any(word in lowered for word in ("changeme", "change-me"))
    return len(value) >= MIN_SECRET_LENGTH and not placeholder


class Settings(BaseSettings):
    """Every knob of the service; README's Configuration section documents each one."""

    # `hide_input_in_errors`: a refused start names the setting, never its value (it may be a secret).
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True, hide_input_in_errors=True)

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
    jwt_accept_hs256: bool = False  # with JWKS_URL: also accept HS256 tokens signed with BETTER_AUTH_SECRET
    jwks_cache_seconds: int = 300
    jwks_max_stale_seconds: int = 3600  # JWKS unreachable: the last keys fetched serve this long past their expiry
    jwks_refresh_cooldown_seconds: float = 10.0  # at most one JWKS fetch per this many seconds
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:3000", "http://127.0.0.1:3000"]
    )

    agent_model: str = LOCAL_MODEL
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    local_model_host: str = "127.0.0.1"
    local_model_port: int = 8181
    # Requests the bundled model answers at once (llama.cpp slots, each with its own context): more only pays with
    # more cores than the 2 it is sized for. The eval runner's default concurrency follows it.
    local_model_slots: Annotated[int, Field(ge=1, le=8)] = 1
    model_dir: Path | None = None  # empty: data_dir/models
    runs_dir: Path | None = None  # saved eval runs; empty: data_dir/runs
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

    write_rate_limit_per_minute: int = 120  # task and conversation changes per user per minute, on every door
    max_body_bytes: int = 1024 * 1024  # request bodies larger than this answer 413

    playground_enabled: bool | None = None  # None: on in development, off in production
    playground_username: str | None = None
    playground_password: str | None = None
    # Where the playground may send model requests besides OPENAI_BASE_URL (loopback only by default).
    playground_model_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost", "::1"]
    )
    # Host headers the playground answers besides loopback names and HOST (a DNS-rebinding guard).
    playground_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Prometheus /metrics. None: on in development; in production on when METRICS_TOKEN is set (scrapers send it as
    # a Bearer token), or when METRICS_ENABLED=true says the network in front of it is trusted.
    metrics_enabled: bool | None = None
    metrics_token: str | None = None
    docs_enabled: bool | None = None  # /docs and /openapi.json; None: on in development, off in production
    chatkit_demo_enabled: bool | None = None  # /chatkit/demo; None: on in development, off in production

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        """Comma-separated lists in the environment (`CORS_ORIGINS=a,b`)."""
        if isinstance(data, dict):
            for name in _LIST_SETTINGS:
                key = next((k for k in (name, name.upper()) if k in data), None)
                if key is not None and isinstance(data[key], str):
                    data[key] = [item.strip() for item in data[key].split(",") if item.strip()]
        return data

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        if self.environment != "production":
            return self
        secret = self.better_auth_secret
        if secret is not None and not real_secret(secret):
            raise ValueError(
                "BETTER_AUTH_SECRET is a placeholder or shorter than 32 characters: production refuses it "
                "(set a real secret, or unset it and use JWKS_URL)"
            )
        if not self.jwks_url and secret is None:
            raise ValueError("production needs JWKS_URL or a BETTER_AUTH_SECRET of at least 32 characters")
        if self.jwks_url and self.jwt_accept_hs256 and secret is None:
            raise ValueError("JWT_ACCEPT_HS256 needs a BETTER_AUTH_SECRET of at least 32 characters")
        if self.playground_enabled and not (self.playground_username and self.playground_password):
            raise ValueError("PLAYGROUND_ENABLED in production needs PLAYGROUND_USERNAME and PLAYGROUND_PASSWORD")
        if self.is_local_model and (problem := local_runtime_problem(self.resolved_model_dir)):
            raise ValueError(
                f"AGENT_MODEL=local in production, but {problem}; set AGENT_MODEL (and OPENAI_BASE_URL / "
                "OPENAI_API_KEY) to an OpenAI-compatible model"
            )
        return self

    @property
    def accepts_hs256(self) -> bool:
        """HS256 is the mechanism without JWKS_URL; with it, only when asked for (JWT_ACCEPT_HS256)."""
        return not self.jwks_url or self.jwt_accept_hs256

    @property
    def metrics_on(self) -> bool:
        if self.metrics_enabled is not None:
            return self.metrics_enabled
        return self.environment == "development" or bool(self.metrics_token)

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
    def resolved_runs_dir(self) -> Path:
        return self.runs_dir or self.data_dir / "runs"

    @property
    def local_model_base_url(self) -> str:
        return f"http://{self.local_model_host}:{self.local_model_port}/v1"

    @property
    def playground_on(self) -> bool:
        if self.playground_enabled is None:
            return self.environment == "development"
        return self.playground_enabled

    @property
    def docs_on(self) -> bool:
        return self.environment == "development" if self.docs_enabled is None else self.docs_enabled

    @property
    def chatkit_demo_on(self) -> bool:
        return self.environment == "development" if self.chatkit_demo_enabled is None else self.chatkit_demo_enabled

    def auth_secret(self) -> str | None:
        """The HS256 secret; in development a generated one is kept under data_dir so tokens survive restarts."""
        if self.better_auth_secret:
            return self.better_auth_secret
        if self.environment != "development" or not self.accepts_hs256:
            return None
        path = self.data_dir / "dev_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        self.better_auth_secret = path.read_text().strip()
        return self.better_auth_secret


class SettingsError(ValueError):
    """The environment describes a configuration the service refuses; the message names settings, never values."""


def describe_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error.get("loc", ())).upper()
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


@lru_cache
def get_settings() -> Settings:
    """The environment's settings; a refused configuration raises SettingsError with a message fit to print."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(f"configuration refused: {describe_errors(exc)}") from None
