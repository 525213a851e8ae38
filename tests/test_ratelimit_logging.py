"""Per-user rate limiting (memory and Redis) and request-id JSON logging."""

from __future__ import annotations

import json
import logging
import os
import uuid
from typing import Any

import pytest

from backend.observability import JsonFormatter
from backend.ratelimit import MemoryRateLimiter, RedisRateLimiter
from tests.conftest import Harness, new_user, wait_for_a_fresh_window

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def test_chat_turns_over_the_limit_are_429_with_retry_after(make_harness: Any) -> None:
    harness: Harness = await make_harness(rate_limit_per_minute=3)
    user, other = new_user(), new_user()
    wait_for_a_fresh_window()
    statuses = [(await harness.chat(user, "hello")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await harness.chat(user, "hello")
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert (await harness.chat(other, "hello")).status_code == 200  # per user
    # Reading is not rate limited: only turns cost model time.
    assert (await harness.client.get(f"/api/{user}/tasks", headers=harness.auth(user))).status_code == 200


async def test_memory_limiter_counts_per_key() -> None:
    limiter = MemoryRateLimiter(limit=2)
    assert [await limiter.hit("a") for _ in range(2)] == [None, None]
    wait = await limiter.hit("a")
    assert wait is not None and 0 < wait <= 60
    assert await limiter.hit("b") is None


async def test_redis_limiter_is_shared_between_instances() -> None:
    """Two limiters (as two workers would hold) share one count through Redis."""
    first, second = RedisRateLimiter(REDIS_URL, limit=3), RedisRateLimiter(REDIS_URL, limit=3)
    try:
        await first.redis.ping()
    except Exception:
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    key = f"test-{uuid.uuid4().hex}"
    results = [await limiter.hit(key) for limiter in (first, second, first, second)]
    assert results[:3] == [None, None, None] and results[3] is not None
    await first.close()
    await second.close()


async def test_redis_outage_fails_open() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:9/0", limit=1)
    assert [await limiter.hit("k") for _ in range(3)] == [None, None, None]
    await limiter.close()


async def test_request_id_is_echoed_and_logged_without_secrets(
    make_harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    harness: Harness = await make_harness()
    user = new_user()
    caplog.set_level(logging.INFO, logger="todo_agent.access")
    response = await harness.client.post(
        f"/api/{user}/chat",
        json={"message": "my secret plan"},
        headers={**harness.auth(user), "X-Request-ID": "req-123"},
    )
    assert response.headers["x-request-id"] == "req-123"
    generated = await harness.client.get("/health/live")
    assert len(generated.headers["x-request-id"]) == 32
    lines = [JsonFormatter().format(record) for record in caplog.records if record.name == "todo_agent.access"]
    entries = [json.loads(line) for line in lines]
    chat_entry = next(e for e in entries if e.get("request_id") == "req-123")
    assert chat_entry["status"] == 200 and chat_entry["method"] == "POST" and chat_entry["duration_ms"] >= 0
    everything = "\n".join(lines)
    assert "my secret plan" not in everything and harness.token(user) not in everything
