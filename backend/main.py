"""The API's factory: settings, engine, auth and the chat service are built here, never at import time.

The backend's own doors (the REST contract, ChatKit, MCP) are mounted here; doors that live outside the backend
(the playground) are handed in by the composition root (`todo_agent.app`) as `doors`, so the backend never imports
them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from agents.models.interface import Model
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine

from backend import __version__, chatkit_door, db, mcp_server, tracing
from backend.agent import AgentConfig, TodoAgent, tracing_off
from backend.api import chat as chat_api
from backend.api import conversations, health, tasks
from backend.api.health import CachedCheck
from backend.auth import TokenVerifier
from backend.chat import LEASE_MARGIN_SECONDS, ChatService
from backend.errors import install_error_handlers
from backend.gates import AuthGate, BodyLimit
from backend.llm.provider import build_client, build_model, model_reachable
from backend.observability import RequestIdMiddleware
from backend.prompts import load_prompt
from backend.ratelimit import build_rate_limiter, build_write_limiter
from backend.settings import Settings, get_settings

log = logging.getLogger("todo_agent")


def agent_config(settings: Settings, instructions: str) -> AgentConfig:
    return AgentConfig(
        instructions=instructions,
        temperature=settings.temperature,
        seed=settings.seed,
        max_output_tokens=settings.max_output_tokens,
        max_turns=settings.max_agent_turns,
        timeout=settings.model_timeout,
    )


def needs_auth(method: str, path: str) -> bool:
    """The doors that act for a user: the REST API, ChatKit's endpoint and MCP (the gate checks them first)."""
    return path.startswith("/api/") or path == "/mcp" or (path == "/chatkit" and method != "GET")


Door = Callable[[FastAPI], None]  # mounts itself on an app built here (it may read app.state)


def build_chat_service(settings: Settings, engine: Engine, model: Model | None = None) -> ChatService:
    """The one chat service of a process: the app's, and the standalone playground's."""
    tracing_off()  # offline by default; nothing leaves the machine unless configured
    tracing.setup()  # our own OpenTelemetry spans, when OTEL_EXPORTER_OTLP_ENDPOINT asks for them
    agent = TodoAgent(model or build_model(settings), agent_config(settings, load_prompt(settings.system_prompt_file)))
    return ChatService(
        engine, agent, history_window=settings.history_window, task_context_limit=settings.task_context_limit
    )


def create_app(
    settings: Settings | None = None,
    *,
    model: Model | None = None,
    model_check: Callable[[], Awaitable[bool]] | None = None,
    migrate: bool = True,
    engine: Engine | None = None,
    doors: Sequence[Door] = (),
) -> FastAPI:
    """Build the service. `model` replaces the configured one (tests put a scripted model here); `engine` replaces
    the one the settings describe (the eval runner's, whose connections open each case's own database); `doors`
    mount themselves after the backend's own."""
    settings = settings or get_settings()
    engine = engine or db.build_engine(settings)
    service = build_chat_service(settings, engine, model)
    instructions = service.agent.config.instructions
    agent = service.agent

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            db.upgrade(engine)
        async with AsyncExitStack() as stack:
            # Doors that own background machinery (the MCP session manager) register their context here.
            for start in app.state.lifespan_contexts:
                await stack.enter_async_context(start())
            yield
        if app.state.chat.recovering:  # replies being stored again after a database failure
            await asyncio.wait(set(app.state.chat.recovering), timeout=LEASE_MARGIN_SECONDS)
        await app.state.rate_limiter.close()
        await app.state.write_limiter.close()
        await app.state.verifier.aclose()
        engine.dispose()

    docs = settings.docs_on
    app = FastAPI(
        title="todo-agent",
        version=__version__,
        description="Chat backend for a tool-using todo assistant.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.lifespan_contexts = []  # list[Callable[[], AbstractAsyncContextManager[None]]]
    app.state.engine = engine
    app.state.verifier = TokenVerifier(settings)
    app.state.system_prompt = instructions
    app.state.agent = agent
    app.state.chat = service
    app.state.rate_limiter = build_rate_limiter(settings)
    app.state.write_limiter = build_write_limiter(settings)
    if model_check is None:
        client = build_client(settings)  # one client for every readiness probe (each new one sets up TLS again)
        model_check = lambda: model_reachable(settings, client)  # noqa: E731
    app.state.model_check = CachedCheck(model_check)

    # Innermost first: the body cap, then authentication (which reads no body), then CORS, then the request id.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthGate, verifier=app.state.verifier, needs_auth=needs_auth)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Accept", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After"],
    )
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    for module in (health, chat_api, conversations, tasks):
        app.include_router(module.router)
    # the backend's own doors mount themselves, then the ones handed in
    mcp_server.mount(app)  # /mcp: the tools for MCP clients
    chatkit_door.mount(app)  # /chatkit: the ChatKit protocol; /chatkit/demo: the web component on it
    for door in doors:
        door(app)
    return app
