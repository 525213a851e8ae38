"""System prompts are versioned files under `backend/prompts/`; a prompt's identity is the hash of its bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from backend.settings import PROMPTS_DIR


def load_prompt(path: Path) -> str:
    """Read byte-exact: the model server's prefix cache only helps when the prompt never changes by a byte."""
    return path.read_text(encoding="utf-8")


def prompt_version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def available_prompts() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PROMPTS_DIR.glob("*.md"))}
