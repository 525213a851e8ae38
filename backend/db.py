"""Engine construction and schema migrations.

The engine is built by the app factory from settings (never at import time). SQLite gets WAL and a busy timeout so
the threadpool's concurrent sessions wait for each other instead of failing; PostgreSQL gets a bounded pool with
pre-ping so a restarted server is reconnected to transparently.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from alembic import command
from alembic.config import Config
from filelock import FileLock
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine

from backend.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Every SQLite connection: the threadpool shares connections across threads, and a writer waits for another.
SQLITE_CONNECT_ARGS: dict[str, Any] = {"check_same_thread": False, "timeout": 30}
T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Accept the `postgres://` / `postgresql://` spellings hosting providers hand out; we drive psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def build_engine(settings: Settings) -> Engine:
    url = normalise_url(settings.resolved_database_url)
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": dict(SQLITE_CONNECT_ARGS)}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
        else:
            Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Every SQLite connection the app opens (the eval runner's per-case engine too)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


# An arbitrary constant: the PostgreSQL advisory lock id our migrations hold.
_MIGRATION_LOCK_ID = 0x70D0A6E7


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations across processes: every uvicorn worker migrates at start, at the same moment."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})
        return
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        with FileLock(f"{database}.migrate.lock", timeout=120):
            yield
        return
    yield


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations; safe to call at every start, from any number of processes at once."""
    with _migration_lock(engine):
        command.upgrade(alembic_config(engine), revision)


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


async def run_in_session(engine: Engine, work: Callable[[Session], T]) -> T:
    """A request's database work in one worker-thread trip: the session is opened, used and closed there.

    A sync route with a session dependency costs four trips (session in, route, response check, session out); under
    load those hand-offs of the GIL between the event loop and the threadpool cost more than the queries.
    """

    def in_session() -> T:
        with session_scope(engine) as session:
            return work(session)

    return await anyio.to_thread.run_sync(in_session)


@contextmanager
def temporary_database(server_url: str, prefix: str = "todo_agent_tmp") -> Iterator[str]:
    """A fresh PostgreSQL database on the server `server_url` names, dropped afterwards.

    Tests and benchmarks run on their own database instead of wiping a shared one.
    """
    server = make_url(normalise_url(server_url))
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
