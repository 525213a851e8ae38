"""What one browser session holds (in `gr.State`): nothing here is shared between sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import gradio as gr

from evals.compare import Comparison
from evals.results import RunResult

ModelKind = Literal["default", "local", "openai"]
MODEL_KINDS: dict[str, ModelKind] = {
    "Server default": "default",
    "Local (llama.cpp)": "local",
    "OpenAI-compatible URL": "openai",
}


@dataclass(frozen=True)
class ModelChoice:
    """Which model a session's turns and eval runs use; `api_key` empty means the configured key."""

    kind: ModelKind = "default"
    base_url: str = ""
    name: str = ""
    api_key: str = ""
    temperature: float | None = None  # None: the configured temperature

    def describe(self) -> str:
        if self.kind == "openai":
            return f"{self.name or '?'} at {self.base_url or '?'}"
        return "local model" if self.kind == "local" else "server default"


@dataclass
class PlaygroundSession:
    user_id: str = ""
    conversation_id: int | None = None
    messages: list[gr.ChatMessage] = field(default_factory=list)  # what the chat shows
    last_turn: dict[str, Any] = field(default_factory=dict)  # the raw JSON of the last turn
    model: ModelChoice = field(default_factory=ModelChoice)
    prompt_name: str = ""  # the saved version the editor text came from ("" once edited into something new)
    prompt_text: str = ""  # what the chat and the evals run with
    candidate: RunResult | None = None  # the last eval run of this session
    comparison: Comparison | None = None  # ... compared with the baseline, when there is one
    prompt_file: str | None = None  # the prompt file the candidate run used
    run_token: str = ""  # names this session's eval run in progress (`PlaygroundContext.stops`), "" when none
