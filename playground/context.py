"""What every session of one playground shares: settings, the chat service, where prompts and baselines live.

When mounted in the backend this is the backend's own chat service (`app.state.chat`); standalone it is built by
the same app factory helpers. Either way a turn goes through `ChatService`, and an eval run through
`evals.suite.run_evals`, exactly as the API and CI do.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from agents.models.interface import Model
from sqlalchemy import Engine

from backend import db
from backend.agent import TodoAgent, tracing_off
from backend.chat import ChatService
from backend.llm.provider import build_model
from backend.prompts import load_prompt
from backend.settings import LOCAL_MODEL, PROMPTS_DIR, Settings
from evals.dataset import DEFAULT_DATASET, PROJECT_ROOT
from playground.session import ModelChoice

DEFAULT_BASELINE = PROJECT_ROOT / "evals" / "baselines" / "local.json"  # the one `todo-agent eval baseline` writes
DEV_USER = "playground"


@dataclass
class PlaygroundContext:
    settings: Settings
    chat: ChatService
    prompts_dir: Path = PROMPTS_DIR
    dataset: Path = DEFAULT_DATASET
    baseline: Path = DEFAULT_BASELINE
    # Models other than the default, built once per (kind, url, name, key) and reused by every turn.
    _models: dict[tuple[str, str, str, str], Model] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> PlaygroundContext:
        """Standalone: the engine, agent and chat service the app factory would build."""
        from backend.main import agent_config  # the factory's own helper: one definition of the agent's knobs

        tracing_off()
        engine = db.build_engine(settings)
        db.upgrade(engine)
        agent = TodoAgent(build_model(settings), agent_config(settings, load_prompt(settings.system_prompt_file)))
        chat = ChatService(
            engine, agent, history_window=settings.history_window, task_context_limit=settings.task_context_limit
        )
        return cls(settings, chat)

    @property
    def engine(self) -> Engine:
        return self.chat.engine

    @property
    def baseline_prompt_file(self) -> Path:
        return self.settings.system_prompt_file

    def model_settings(self, choice: ModelChoice) -> Settings:
        """The settings a choice means: the server's, with the model (and temperature) swapped."""
        update: dict[str, object] = {}
        if choice.kind == "local":
            update["agent_model"] = LOCAL_MODEL
        elif choice.kind == "openai":
            if not choice.base_url.strip() or not choice.name.strip():
                raise ValueError("an OpenAI-compatible model needs a base URL and a model name")
            update |= {
                "agent_model": choice.name.strip(),
                "openai_base_url": choice.base_url.strip(),
                "openai_api_key": choice.api_key.strip() or self.settings.openai_api_key or "none",
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
        from backend.main import agent_config

        settings = self.model_settings(choice)
        config = agent_config(settings, instructions or self.chat.agent.config.instructions)
        base = self.chat.agent.config
        if choice.kind == "default" and choice.temperature is None and config == base:
            return self.chat.agent
        return TodoAgent(await self.model_for(choice), config)
