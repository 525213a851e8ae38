"""The per-user rate limit holds across processes when its counters live in Redis (REDIS_URL).

Two backend processes under uvicorn on one database, each with its own port, and a client alternating between them:
with Redis the user gets exactly the limit in total; with in-memory counters (the control) each process counts
alone and lets the user through twice as often, which is what proves the test can tell them apart.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from backend import db
from backend.auth import mint_token
from backend.settings import Settings
from bench._servers import free_port, uvicorn_process, wait_until_up
from tests.conftest import TEST_SECRET, make_settings, wait_for_a_fresh_window

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LIMIT = 4


def redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def two_backends(tmp_path: Path, extra_env: dict[str, str]) -> Iterator[tuple[list[str], Settings]]:
    """Two backend processes (and one scripted model) on one SQLite file, migrated up front."""
    settings = make_settings(tmp_path, rate_limit_per_minute=LIMIT)
    engine = db.build_engine(settings)
    db.upgrade(engine)  # once, before the processes race to do it
    engine.dispose()
    model_port = free_port()
    env = {
        "ENVIRONMENT": "development",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": settings.resolved_database_url,
        "AGENT_MODEL": "scripted",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{model_port}/v1",
        "OPENAI_API_KEY": "test",
        "BETTER_AUTH_SECRET": TEST_SECRET,
        "RATE_LIMIT_PER_MINUTE": str(LIMIT),
        **extra_env,
    }
    ports = [free_port(), free_port()]
    with contextlib.ExitStack() as stack:
        stack.enter_context(uvicorn_process("evals.reference_agent:reference_app", model_port))
        wait_until_up(f"http://127.0.0.1:{model_port}/v1/models")
        for port in ports:
            stack.enter_context(uvicorn_process("todo_agent.app:create_app", port, env))
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for base in bases:
            wait_until_up(f"{base}/health/live")
        yield bases, settings


def burst(bases: list[str], settings: Settings, requests: int) -> list[httpx.Response]:
    user = f"limited-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {mint_token(settings, user)}"}
    wait_for_a_fresh_window()
    responses = []
    for index in range(requests):
        # A new connection each time, alternating between the processes.
        with httpx.Client(base_url=bases[index % len(bases)], timeout=30) as client:
            responses.append(client.post(f"/api/{user}/chat", json={"message": "hello"}, headers=headers))
    return responses


def test_the_limit_holds_across_two_processes_with_redis(tmp_path: Path) -> None:
    if not redis_up():
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    with two_backends(tmp_path, {"REDIS_URL": REDIS_URL}) as (bases, settings):
        responses = burst(bases, settings, 3 * LIMIT)
    statuses = [r.status_code for r in responses]
    assert statuses[:LIMIT] == [200] * LIMIT, statuses
    assert statuses[LIMIT:] == [429] * (2 * LIMIT), statuses
    for refused in responses[LIMIT:]:
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_without_redis_each_process_counts_alone(tmp_path: Path) -> None:
    """The control: in-memory counters are per process, so two processes let twice the limit through."""
    with two_backends(tmp_path, {"REDIS_URL": ""}) as (bases, settings):
        responses = burst(bases, settings, 3 * LIMIT)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 2 * LIMIT, statuses
    assert statuses.count(429) == LIMIT, statuses
