"""Where the runner sends its requests: the backend in-process (default) or a deployed URL.

Both speak the same HTTP contract. In-process, one app serves every case, and each case runs on a SQLite file of its
own (one per slot, emptied before every case): task and message ids then start from 1 on every run, so what the model
sees (and therefore what it answers, and the record/replay keys) does not depend on scheduling. A deployed backend is
reached over HTTP with tokens minted from its HS256 secret, or taken from a file of per-user tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from sqlalchemy import Engine, event, text
from sqlalchemy.pool import ConnectionPoolEntry, NullPool
from sqlmodel import SQLModel, create_engine

from backend import db
from backend import models as _models  # noqa: F401  (registers the tables on SQLModel.metadata)
from backend.auth import mint_token
from backend.llm.provider import build_model, model_name
from backend.main import create_app
from backend.prompts import load_prompt, prompt_version
from backend.settings import Settings
from evals.cache import RecordReplayTransport
from evals.dataset import PROJECT_ROOT


@dataclass
class CaseSession:
    """One case's view of the backend: a client, its user, another user when the case needs one."""

    client: httpx.AsyncClient
    user: str
    other_user: str | None
    tokens: dict[str, str]

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


class Target(Protocol):
    def describe(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def session(self, *, with_other_user: bool) -> Any: ...  # an async context manager of CaseSession


def _fresh_user(prefix: str = "eval") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------- in-process

# The database file of the case running in this context: the in-process app's connections open it.
CASE_DATABASE: ContextVar[Path] = ContextVar("eval_case_database")
_CASE_KEY = "eval_case_database"


def _connect_case_database() -> sqlite3.Connection:
    return sqlite3.connect(CASE_DATABASE.get(), **db.SQLITE_CONNECT_ARGS)


class _CaseDatabasePool(NullPool):
    """Idle connections kept per case database file; a checkout takes one to the running case's file.

    This lets one app serve every slot. FastAPI builds an app's routes on its first requests (CPU paid per app),
    so an app per slot cost about half a second of CPU per run at --concurrency 16, paid while the first cases ran.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle: dict[Path, list[ConnectionPoolEntry]] = defaultdict(list)
        self._lock = threading.Lock()  # checkouts and checkins come from the threadpool's threads

    def status(self) -> str:
        return "CaseDatabasePool"

    def _do_get(self) -> ConnectionPoolEntry:
        path = CASE_DATABASE.get()
        with self._lock:
            idle = self._idle[path]
            if idle:
                return idle.pop()
        record = self._create_connection()
        record.info[_CASE_KEY] = path
        return record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        path = record.info.get(_CASE_KEY)
        if path is None:  # invalidated: its file is unknown
            record.close()
            return
        with self._lock:
            self._idle[path].append(record)

    def dispose(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, defaultdict(list)
        for records in idle.values():
            for record in records:
                record.close()


def _case_engine(workdir: Path) -> Engine:
    engine = create_engine(
        f"sqlite:///{workdir / 'case.db'}", creator=_connect_case_database, poolclass=_CaseDatabasePool
    )
    event.listen(engine, "connect", db.sqlite_pragmas)
    return engine


@dataclass
class InProcessTarget:
    """The real app (`create_app`) behind `httpx.ASGITransport`, with the agent's model client on `model_transport`.

    One app serves up to `slots` cases at once; each case runs on a SQLite file of its own (`CASE_DATABASE`), emptied
    before the case, so task and message ids start from 1 in every case."""

    settings: Settings
    model_transport: RecordReplayTransport
    slots: int = 1
    _free: asyncio.Queue[Path] = field(default_factory=asyncio.Queue)
    _workdir: Path | None = None
    _engine: Engine | None = None
    _client: httpx.AsyncClient | None = None

    def describe(self) -> dict[str, Any]:
        prompt = load_prompt(self.settings.system_prompt_file)
        path = self.settings.system_prompt_file.resolve()
        return {
            "kind": "in-process",
            "url": None,
            "model": model_name(self.settings),
            "agent_model": self.settings.agent_model,
            "prompt_file": str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path),
            "prompt_version": prompt_version(prompt),
            "prompt_text": prompt,  # moved to the run's info by `run_evals` (a target dict stays short)
            "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
            "temperature": self.settings.temperature,
            "seed": self.settings.seed,
            "max_output_tokens": self.settings.max_output_tokens,
        }

    async def start(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="todo-agent-eval-"))
        template = self._workdir / "template.db"
        engine = db.build_engine(self.settings.model_copy(update={"database_url": f"sqlite:///{template}"}))
        db.upgrade(engine)
        engine.dispose()
        for index in range(self.slots):
            path = self._workdir / f"slot{index}.db"
            shutil.copyfile(template, path)
            self._free.put_nowait(path)
        http_client = httpx.AsyncClient(transport=self.model_transport, timeout=self.settings.model_timeout)
        model = build_model(self.settings, http_client=http_client)

        async def model_ok() -> bool:
            return True

        self._engine = _case_engine(self._workdir)
        app = create_app(self.settings, model=model, model_check=model_ok, migrate=False, engine=self._engine)
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://eval.local", timeout=None
        )

    @asynccontextmanager
    async def session(self, *, with_other_user: bool) -> AsyncIterator[CaseSession]:
        assert self._client is not None and self._engine is not None, "start() first"
        path = await self._free.get()
        token = CASE_DATABASE.set(path)
        try:
            _empty(self._engine)
            users = [_fresh_user()] + ([_fresh_user("eval-other")] if with_other_user else [])
            tokens = {u: mint_token(self.settings, u) for u in users}
            yield CaseSession(self._client, users[0], users[1] if with_other_user else None, tokens)
        finally:
            CASE_DATABASE.reset(token)
            self._free.put_nowait(path)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._engine is not None:
            self._engine.dispose()
        await self.model_transport.aclose()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def _empty(engine: Engine) -> None:
    """Delete every row and reset the id counters, so the next case sees ids from 1 again."""
    with engine.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.execute(table.delete())
        # The tables are AUTOINCREMENT (ids are never reused in the product); here each case starts from 1 again.
        # `inspect` does not list SQLite's own tables, so ask sqlite_master.
        if connection.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
            connection.execute(text("DELETE FROM sqlite_sequence"))


def in_process_settings(base: Settings, *, prompt: Path | None = None, model: str | None = None) -> Settings:
    """The settings an in-process run uses: the environment's, with the eval's overrides.

    A random HS256 secret (tokens never leave the process), no shared rate-limit store and no rate limit (a case
    must not wait on a limit meant for people), and the prompt and model chosen on the command line.
    """
    update: dict[str, Any] = {
        "better_auth_secret": secrets.token_urlsafe(48),
        "jwks_url": None,
        "jwt_issuer": None,
        "jwt_audience": None,
        "redis_url": None,
        "rate_limit_per_minute": 1_000_000,
        "playground_enabled": False,
    }
    if prompt is not None:
        if not prompt.is_file():
            raise FileNotFoundError(f"prompt file {prompt} does not exist")
        update["system_prompt_file"] = prompt
    if model is not None:
        update["agent_model"] = model
    return base.model_copy(update=update)


# ---------------------------------------------------------------- a deployed backend


class RemoteTarget:
    """A deployed backend. Users are fresh per case with `token_secret`; with a token file they come from a pool
    (their tasks are deleted before each case, so each case still starts from a clean list)."""

    def __init__(
        self,
        url: str,
        *,
        token_secret: str | None = None,
        token_file: Path | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        if (token_secret is None) == (token_file is None):
            raise ValueError("a deployed backend needs exactly one of --token-secret or --tokens")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._mint_settings = (
            Settings(  # type: ignore[call-arg]
                _env_file=None, better_auth_secret=token_secret, jwt_issuer=issuer, jwt_audience=audience
            )
            if token_secret
            else None
        )
        self._pool: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        if token_file is not None:
            raw = json.loads(token_file.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or not raw:
                raise ValueError(f"{token_file}: expected a JSON object of user id -> token")
            for user, token in raw.items():
                self._pool.put_nowait((str(user), str(token)))
        self._pool_size = self._pool.qsize()
        self._take_lock = asyncio.Lock()
        self.client = httpx.AsyncClient(base_url=self.url, timeout=timeout)
        self.info: dict[str, Any] = {}

    async def _user(self, prefix: str) -> tuple[str, str]:
        if self._mint_settings is not None:
            user = _fresh_user(prefix)
            return user, mint_token(self._mint_settings, user)
        return await self._pool.get()

    async def start(self) -> None:
        user, token = await self._user("eval-info")
        try:
            response = await self.client.get("/api/info", headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
            self.info = response.json()
        finally:
            if self._mint_settings is None:
                self._pool.put_nowait((user, token))

    def capacity(self) -> int | None:
        """The model capacity the backend reports in /api/info (its bundled model's slots), if it knows one."""
        reported = self.info.get("model_capacity")
        return reported if isinstance(reported, int) and reported > 0 else None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "url",
            "url": self.url,
            "model": self.info.get("model"),
            "agent_model": self.info.get("agent_model"),
            "prompt_file": self.info.get("prompt_file"),
            "prompt_version": self.info.get("prompt_version"),
            "backend_version": self.info.get("version"),
        }

    @asynccontextmanager
    async def session(self, *, with_other_user: bool) -> AsyncIterator[CaseSession]:
        if self._mint_settings is None and with_other_user and self._pool_size < 2:
            raise RuntimeError("a case with another user's tasks needs at least two users in --tokens")
        async with self._take_lock:  # all of a case's users at once: two cases never wait on each other's half
            taken = [await self._user("eval")]
            if with_other_user:
                taken.append(await self._user("eval-other"))
        tokens = dict(taken)
        try:
            if self._mint_settings is None:  # pooled users: start from an empty list
                for user in tokens:
                    await self._clear(user, tokens[user])
            yield CaseSession(self.client, taken[0][0], taken[1][0] if with_other_user else None, tokens)
        finally:
            if self._mint_settings is None:
                for pair in taken:
                    self._pool.put_nowait(pair)

    async def _clear(self, user: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        response = await self.client.get(f"/api/{user}/tasks", headers=headers)
        response.raise_for_status()
        for task in response.json():
            await self.client.delete(f"/api/{user}/tasks/{task['id']}", headers=headers)

    async def close(self) -> None:
        await self.client.aclose()
