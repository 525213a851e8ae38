"""The playground's two doors: mounted in the backend at /playground, or launched alone (`todo-agent playground`).

Safe by default (DESIGN.md, Auth): on in development, off in production unless PLAYGROUND_ENABLED, and then behind
its own login (PLAYGROUND_USERNAME / PLAYGROUND_PASSWORD, checked in constant time). Standalone it binds to
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from backend.settings import Settings
from playground.guards import guard_middleware

PATH = "/playground"
DEFAULT_PORT = 7860


def playground_auth(settings: Settings) -> Callable[[str, str], bool] | None:
    """Gradio's login check; None (no login) only in development without configured credentials."""
    username, password = settings.playground_username, settings.playground_password
    if not (username and password):
        if settings.environment != "development":
            raise RuntimeError("the playground outside development needs PLAYGROUND_USERNAME and PLAYGROUND_PASSWORD")
        return None

    def check(user: str, given: str) -> bool:
        # Both compared every time, so the answer's timing says nothing about which one was wrong.
        ok_user = secrets.compare_digest(user.encode(), username.encode())
        ok_password = secrets.compare_digest(given.encode(), password.encode())
        return ok_user and ok_password

    return check


def _gradio_options() -> dict[str, Any]:
    from playground.app import CSS, THEME

    return {"theme": THEME, "css": CSS, "ssr_mode": False, "mcp_server": False, "footer_links": []}


def mount(app: FastAPI) -> None:
    """Serve the playground at /playground on the backend's own chat service; a no-op when it is off."""
    settings: Settings = app.state.settings
    if not settings.playground_on:
        return
    import gradio as gr

    from playground.app import build_blocks  # Gradio and the eval stack, only when the playground is served
    from playground.context import PlaygroundContext

    context = PlaygroundContext(settings, app.state.chat)
    app.state.playground = context
    gr.mount_gradio_app(
        app,
        build_blocks(context),
        path=PATH,
        auth=playground_auth(settings),
        app_kwargs={"middleware": guard_middleware(settings)},
        **_gradio_options(),
    )


def launch(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    block: bool = True,
    context: Any = None,
    **launch_options: Any,
) -> Any:
    """Run the playground alone on its own chat service (same database and model settings as the backend).

    `context` replaces the one built from `settings` (tests hand in a chat service on a scripted model).
    """
    if not settings.playground_on:
        raise RuntimeError("the playground is off in production unless PLAYGROUND_ENABLED=true")
    from playground.app import build_blocks
    from playground.context import PlaygroundContext

    blocks = build_blocks(context or PlaygroundContext.from_settings(settings))
    blocks.launch(
        server_name=host,
        server_port=port,
        auth=playground_auth(settings),
        prevent_thread_lock=not block,
        quiet=not block,
        app_kwargs={"middleware": guard_middleware(settings, bind_host=host)},
        **_gradio_options(),
        **launch_options,
    )
    return blocks
