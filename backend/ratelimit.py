"""Per-user rate limits (chat turns; task and conversation changes): a fixed one-minute window.

Counters live in Redis when `REDIS_URL` is set, so the limit holds across uvicorn workers and replicas; in memory
otherwise (one worker). A Redis outage fails open: a broken limiter must not take the chat down with it.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Protocol

from redis import asyncio as aioredis

from backend.settings import Settings

log = logging.getLogger("todo_agent.ratelimit")
WINDOW_SECONDS = 60


class RateLimiter(Protocol):
    async def hit(self, key: str) -> float | None:
        """Count one request; None when allowed, else the seconds until the window resets."""

    async def close(self) -> None: ...


class MemoryRateLimiter:
    def __init__(self, limit: int, window: int = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._counts: dict[tuple[str, int], int] = {}

    async def hit(self, key: str) -> float | None:
        now = time.time()
        bucket = int(now // self.window)
        if len(self._counts) > 10_000:  # drop past windows
            self._counts = {k: v for k, v in self._counts.items() if k[1] == bucket}
        count = self._counts.get((key, bucket), 0) + 1
        self._counts[(key, bucket)] = count
        return None if count <= self.limit else (bucket + 1) * self.window - now

    async def close(self) -> None:
        return None


class RedisRateLimiter:
    def __init__(self, url: str, limit: int, window: int = WINDOW_SECONDS, *, kind: str = "rate") -> None:
        self.redis = aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.limit = limit
        self.window = window
        self.kind = kind  # keeps the counters of different limits apart

    async def hit(self, key: str) -> float | None:
        now = time.time()
        bucket = int(now // self.window)
        name = f"todo-agent:{self.kind}:{key}:{bucket}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, self.window + 5)
                count, _ = await pipe.execute()
        except Exception as exc:
            log.warning("rate limiter unavailable, allowing request: %s", type(exc).__name__)
            return None
        return None if int(count) <= self.limit else (bucket + 1) * self.window - now

    async def close(self) -> None:
        await self.redis.aclose()


def build_rate_limiter(settings: Settings) -> RateLimiter:
    """Chat turns per user (`RATE_LIMIT_PER_MINUTE`): each costs model time."""
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url, settings.rate_limit_per_minute)
    return MemoryRateLimiter(settings.rate_limit_per_minute)


def build_write_limiter(settings: Settings) -> RateLimiter:
    """Task and conversation changes per user (`WRITE_RATE_LIMIT_PER_MINUTE`), on the REST and MCP doors."""
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url, settings.write_rate_limit_per_minute, kind="writes")
    return MemoryRateLimiter(settings.write_rate_limit_per_minute)


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
