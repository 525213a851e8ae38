"""System prompts are versioned files under `backend/prompts/`; a prompt's identity is the hash of its bytes.

A prompt file has up to two parts. Everything before a line that starts with `<!-- turn context` is the system prompt:
sent first and byte-stable, so the model server's prefix cache covers it. Everything after that line is the turn
context: a template sent as a system message after the conversation and before each new user message, where
`{tasks}` becomes the user's current tasks (ids and titles). What the model is told about those tasks, and whether it
sees them at all, is therefore part of the prompt a prompt engineer edits, versions and evaluates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

TURN_CONTEXT_MARKER = "<!-- turn context"
TASKS_PLACEHOLDER = "{tasks}"


@dataclass(frozen=True)
class PromptParts:
    system: str
    turn_context: str | None = None  # a template with {tasks}; None = the model sees no task list before a turn

    def render_turn_context(self, tasks: str) -> str | None:
        if self.turn_context is None:
            return None
        # A plain replace, not str.format: task titles may contain braces and are inserted as they are.
        return self.turn_context.replace(TASKS_PLACEHOLDER, tasks)


def load_prompt(path: Path) -> str:
    """Read byte-exact: the model server's prefix cache only helps when the prompt never changes by a byte."""
    return path.read_text(encoding="utf-8")


def split_prompt(text: str) -> PromptParts:
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.lstrip().startswith(TURN_CONTEXT_MARKER):
            system = "".join(lines[:index]).rstrip()
            template = "".join(lines[index + 1 :]).strip()
            return PromptParts(system, template or None)
    return PromptParts(text)


def prompt_version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
