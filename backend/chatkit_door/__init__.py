"""The ChatKit door: `POST /chatkit` speaks OpenAI's ChatKit protocol over the chat service; `/chatkit/demo` shows it."""

from __future__ import annotations

from fastapi import FastAPI

from backend.chatkit_door.routes import demo_router, router
from backend.chatkit_door.server import TodoChatKitServer
from backend.chatkit_door.store import ConversationStore


def mount(app: FastAPI) -> None:
    """Mount the door on an app built by `create_app` (it needs the app's engine and chat service)."""
    app.state.chatkit = TodoChatKitServer(ConversationStore(app.state.engine, app.state.chat), app.state.chat)
    app.include_router(router)
    if app.state.settings.chatkit_demo_on:  # a page for trying it out: off in production unless enabled
        app.include_router(demo_router)


__all__ = ["mount"]
