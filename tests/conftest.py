"""Shared fixtures: real databases (SQLite file, and PostgreSQL: TEST_DATABASE_URL, or the machine's own when one
answers on 127.0.0.1:5432), the real ASGI app through httpx, and a scripted model at the model boundary."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from backend import db
from backend.auth import mint_token
from backend.llm.provider import build_model
from backend.main import create_app
from backend.settings import Settings
from evals.reference_agent import reference_responder
from evals.scripted_model import Responder, asgi_http_client, create_scripted_app

os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
os.environ.setdefault("DEEPEVAL_DISABLE_DOTENV", "1")

TEST_SECRET = "test-secret-" + "x" * 40
LOCAL_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url_for_tests(local: str = LOCAL_PG_URL) -> str | None:
    """TEST_DATABASE_URL; unset, the machine's own PostgreSQL if one answers at `local` (set it empty to run on
    SQLite only)."""
    if "TEST_DATABASE_URL" in os.environ:
        return os.environ["TEST_DATABASE_URL"] or None
    where = make_url(local)
    try:
        with socket.create_connection((where.host or "127.0.0.1", where.port or 5432), timeout=1):
            pass
        engine = create_engine(local, connect_args={"connect_timeout": 2}, poolclass=NullPool)
        with engine.connect():
            pass
    except Exception:  # nothing there, or not the trust-auth `test` database: SQLite only
        return None
    return local


PG_URL = postgres_url_for_tests()
PG_FOUND = PG_URL is not None and "TEST_DATABASE_URL" not in os.environ


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--llm", action="store_true", help="also run the tests that use the real local model")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--llm"):
        return
    skip = pytest.mark.skip(reason="uses the real local model: run with --llm (make test-llm; .ci/run does)")
    for item in items:
        if "llm" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    where = (
        f"PostgreSQL at {make_url(PG_URL).render_as_string(hide_password=True)}"
        + (" (found on 127.0.0.1:5432; TEST_DATABASE_URL= turns it off)" if PG_FOUND else "")
        if PG_URL
        else ("PostgreSQL: SKIPPED (set TEST_DATABASE_URL to run the database tests on it too)")
    )
    return f"todo-agent: SQLite always; {where}; local-model tests {'on' if config.getoption('--llm') else 'off'}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Skips, one line per reason with its count (not one per test)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"skipped {count}: {reason}")


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway database on the PostgreSQL server named by TEST_DATABASE_URL, dropped at the end."""
    if not PG_URL:
        pytest.skip("PostgreSQL tests skipped: TEST_DATABASE_URL is not set")
    with db.temporary_database(PG_URL, prefix="todo_agent_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'todo.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def make_settings(tmp_path: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "development",
        "data_dir": tmp_path,
        "database_url": database_url or f"sqlite:///{tmp_path / 'todo.db'}",
        "better_auth_secret": TEST_SECRET,
        "agent_model": "scripted",
        "openai_base_url": "http://scripted.test/v1",
        "openai_api_key": "test",
        "model_timeout": 10.0,
        "playground_enabled": False,  # mounted only by the tests that need it (building it is slow)
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# ---------------------------------------------------------------- the app


@dataclass
class Harness:
    """One app wired to one scripted model, and helpers to talk to it as some user."""

    app: FastAPI
    model_app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    def token(self, user_id: str) -> str:
        return mint_token(self.settings, user_id)

    def auth(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id)}"}

    @property
    def model_requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = self.model_app.state.requests
        return requests

    async def chat(self, user_id: str, message: str, conversation_id: int | None = None) -> httpx.Response:
        body: dict[str, Any] = {"message": message}
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        return await self.client.post(f"/api/{user_id}/chat", json=body, headers=self.auth(user_id))


HarnessFactory = Callable[..., "AsyncIterator[Harness]"]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Build harnesses: `await make_harness(responder, database_url=..., **settings)`."""
    opened: list[Harness] = []

    async def build(
        responder: Responder = reference_responder, *, database_url: str | None = None, **overrides: Any
    ) -> Harness:
        settings = make_settings(tmp_path, database_url, **overrides)
        model_app = create_scripted_app(responder)
        model = build_model(settings, http_client=asgi_http_client(model_app))

        async def model_ok() -> bool:
            return True

        app = create_app(settings, model=model, model_check=model_ok, migrate=False)
        db.upgrade(app.state.engine)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        harness = Harness(app, model_app, client, settings)
        opened.append(harness)
        return harness

    yield build
    for harness in opened:
        await harness.client.aclose()
        harness.app.state.engine.dispose()


@pytest.fixture
async def harness(make_harness: Callable[..., Any], database_url: str) -> Harness:
    """The default: rule-based scripted model, on each database."""
    built: Harness = await make_harness(database_url=database_url)
    return built


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def local_model_settings() -> Iterator[Settings]:
    """The real local model on port 8182 (not a dev server's 8181), started once for the session if not already up,
    and stopped at the end only if this session started it."""
    from backend.llm.local_server import ensure_local_model_server, local_model_healthy, stop_local_model_server

    settings = Settings(_env_file=None, data_dir=Path("data"), local_model_port=8182)  # type: ignore[call-arg]
    already_up = local_model_healthy(settings)
    ensure_local_model_server(settings, timeout=300)
    yield settings
    if not already_up:
        stop_local_model_server(settings)


def wait_for_a_fresh_window(margin: float = 8.0) -> None:
    """The rate limit is a fixed one-minute window: a burst started just before it rolls over would count in two
    windows, and let more through than the limit."""
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.2)


# ---------------------------------------------------------------- synchronising with a turn, without sleeps


async def reached(event: asyncio.Event) -> None:
    """Wait for the model to be asked. Bounded only so that a regression (a turn that never reaches the model)
    fails the test instead of hanging the suite; it is not a timing assertion."""
    try:
        await asyncio.wait_for(event.wait(), timeout=30)
    except TimeoutError:
        pytest.fail("the turn never reached the model")


class Hold:
    """A model call held open until the test releases it: a turn that is running, for as long as the test needs.
    For an app on the test's own event loop (httpx's ASGI transport)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> None:
        self.entered.set()
        await self.release.wait()


class ThreadHold:
    """The same for an app served by uvicorn in a thread (`tests.live_server`): its loop is not the test's."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    async def __call__(self) -> None:
        self.entered.set()
        await asyncio.to_thread(self.release.wait, 60)

    async def reached(self) -> None:
        if not await asyncio.to_thread(self.entered.wait, 30):
            pytest.fail("the turn never reached the model")


class TurnLog(logging.Handler):
    """Every turn's end, as `ChatService` logs it after storing the outcome and releasing the lease: a test waits
    for "the turn is over" on this, whichever thread ran it."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    async def ended(self, count: int) -> list[logging.LogRecord]:
        """The first `count` turn ends, once there are that many (bounded, so a regression fails rather than hangs)."""

        def wait() -> bool:
            with self.changed:
                return self.changed.wait_for(lambda: len(self.records) >= count, timeout=30)

        if not await asyncio.to_thread(wait):
            pytest.fail(f"only {len(self.records)} of {count} turns ended")
        return self.records[:count]


@pytest.fixture
def turn_log() -> Iterator[TurnLog]:
    handler = TurnLog()
    logger = logging.getLogger("todo_agent.turn")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)
