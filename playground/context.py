"""What every session of one playground shares: settings, the chat service, where prompts and baselines live.

When mounted in the backend this is the backend's own chat service (`app.state.chat`); standalone it is built by
the same app factory helpers. Either way a turn goes through `ChatService`, and an eval run through
`evals.suite.run_evals`, exactly as the API and CI do.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from agents.models.interface import Model
from sqlalchemy import Engine

from backend import db
from backend.agent import TodoAgent
from backend.chat import ChatService
from backend.llm.provider import build_model
from backend.main import agent_config, build_chat_service
from backend.settings import LOCAL_MODEL, PROMPTS_DIR, Settings
from evals.dataset import DEFAULT_DATASET, PROJECT_ROOT
from evals.runs import RunStore
from evals.scripted_model import Responder
from playground.session import ModelChoice

DEFAULT_BASELINE = PROJECT_ROOT / "evals" / "baselines" / "local.json"  # the one `todo-agent eval baseline` writes
DEV_USER = "playground"


def _normalised_url(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url.strip())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port, parts.path.rstrip("/")


def same_endpoint(url: str, configured: str | None) -> bool:
    """Whether `url` is the configured OPENAI_BASE_URL (scheme, host, port and path alike)."""
    return configured is not None and _normalised_url(url) == _normalised_url(configured)


def allowed_model_url(url: str, hosts: list[str]) -> bool:
    """An http(s) URL whose host is on the allow-list: the playground must not become a way to reach any host."""
    scheme, host, _, _ = _normalised_url(url)
    return scheme in ("http", "https") and host in {h.strip().lower().strip("[]") for h in hosts}


@dataclass
class PlaygroundContext:
    settings: Settings
    chat: ChatService
    prompts_dir: Path = PROMPTS_DIR
    dataset: Path = DEFAULT_DATASET
    baseline: Path = DEFAULT_BASELINE
    # Models other than the default, built once per (kind, url, name, key) and reused by every turn.
    _models: dict[tuple[str, str, str, str], Model] = field(default_factory=dict)
    # The scripted model's policy for eval runs on `--model scripted` (tests hold a model call open with it).
    eval_responder: Responder | None = None
    # The stop switch of each eval run in progress, by the run token its session holds (Cancel sets it).
    stops: dict[str, asyncio.Event] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> PlaygroundContext:
        """Standalone: the chat service the app factory builds (`build_chat_service`), on its own engine."""
        engine = db.build_engine(settings)
        db.upgrade(engine)
        return cls(settings, build_chat_service(settings, engine))

    @property
    def engine(self) -> Engine:
        return self.chat.engine

    @property
    def runs(self) -> RunStore:
        """Saved runs: the RUNS_DIR the CLI and the notebooks use too."""
        return RunStore.default(self.settings)

    @property
    def baseline_prompt_file(self) -> Path:
        return self.settings.system_prompt_file

    def model_settings(self, choice: ModelChoice) -> Settings:
        """The settings a choice means: the server's, with the model (and temperature) swapped."""
        update: dict[str, object] = {}
        if choice.kind == "local":
            update["agent_model"] = LOCAL_MODEL
        elif choice.kind == "openai":
            base_url = choice.base_url.strip()
            if not base_url or not choice.name.strip():
                raise ValueError("an OpenAI-compatible model needs a base URL and a model name")
            configured = same_endpoint(base_url, self.settings.openai_base_url)
            if not configured and not allowed_model_url(base_url, self.settings.playground_model_hosts):
                raise ValueError(
                    f"{base_url} is not OPENAI_BASE_URL and its host is not in PLAYGROUND_MODEL_HOSTS "
                    f"({', '.join(self.settings.playground_model_hosts) or 'empty'})"
                )
            # The server's key goes to the server's endpoint only: any other URL gets the key typed in, or none.
            server_key = self.settings.openai_api_key if configured else None
            update |= {
                "agent_model": choice.name.strip(),
                "openai_base_url": base_url,
                "openai_api_key": choice.api_key.strip() or server_key or "none",
            }
        if choice.temperature is not None:
            update["temperature"] = float(choice.temperature)
        return self.settings.model_copy(update=update)

    async def model_for(self, choice: ModelChoice) -> Model:
        if choice.kind == "default":
            return self.chat.agent.model  # the server's own model object (tests put a scripted one there)
        key = (choice.kind, choice.base_url.strip(), choice.name.strip(), choice.api_key.strip())
        if key not in self._models:
            settings = self.model_settings(choice)
            if settings.is_local_model:
                from backend.llm.local_server import ensure_local_model_server

                await asyncio.to_thread(ensure_local_model_server, settings)  # started once per machine
            self._models[key] = build_model(settings)
        return self._models[key]

    async def agent_for(self, choice: ModelChoice, instructions: str) -> TodoAgent:
        """The agent one turn runs: the session's prompt text and model, the server's other knobs."""
        settings = self.model_settings(choice)
        config = agent_config(settings, instructions or self.chat.agent.config.instructions)
        base = self.chat.agent.config
        if choice.kind == "default" and choice.temperature is None and config == base:
            return self.chat.agent
        return TodoAgent(await self.model_for(choice), config)
