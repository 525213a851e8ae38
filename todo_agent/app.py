"""The ASGI app with every door: the backend's API, ChatKit and MCP, and the playground when it can be served.

`uvicorn --factory todo_agent.app:create_app` (what `todo-agent serve` runs) builds it. The playground is mounted in
development (or when enabled) if its extra is installed; without it the API serves alone, and says so in one line.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from fastapi import FastAPI

from backend.main import Door
from backend.main import create_app as create_api
from backend.settings import Settings, get_settings

log = logging.getLogger("todo_agent")


def playground_installed() -> bool:
    return importlib.util.find_spec("gradio") is not None


def doors(settings: Settings) -> list[Door]:
    """The doors beyond the backend's own that this installation and configuration serve."""
    if not settings.playground_on:
        return []
    if not playground_installed():
        log.info("playground off: its extra is not installed (pip install 'todo-agent[playground]')")
        return []
    from playground import mount

    return [mount]


def create_app(settings: Settings | None = None, **options: Any) -> FastAPI:
    """The whole product on one app; `options` are `backend.main.create_app`'s (a model, a readiness check...)."""
    settings = settings or get_settings()
    return create_api(settings, doors=doors(settings), **options)
