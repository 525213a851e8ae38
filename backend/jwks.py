"""Signing keys from a JWKS URL: cached with an expiry, refreshed one fetch at a time, never on a worker thread.

PyJWKClient keeps keys forever (a key removed from the JWKS stays trusted until restart) and fetches with a blocking
call under a process-wide lock, so a flood of tokens with made-up `kid`s could fill the threadpool. This cache:

- keys expire `cache_seconds` after they were fetched; the next request that needs them refreshes the set;
- one refresh at a time (single flight): concurrent requests await the same fetch, on the event loop (httpx async);
- at most one refresh per `cooldown_seconds`: an unknown `kid` seen meanwhile is answered from a negative cache;
- an outage: when a refresh fails, the last good set keeps serving until `max_stale_seconds` past its expiry; after
  that every JWKS token answers 503 `auth_unavailable` until a fetch succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

log = logging.getLogger("todo_agent.auth")


class UnknownKey(Exception):
    """No key with this id is published (a forged or a revoked token)."""


class KeysUnavailable(Exception):
    """The JWKS cannot be fetched and the last keys fetched are too old to trust."""


@dataclass(frozen=True)
class KeySet:
    keys: dict[str, Any]  # kid -> public key
    fetched_at: float


def parse_jwks(document: Any) -> dict[str, Any]:
    """The signing keys of a JWKS document by `kid` (keys without an id, or for encryption, are skipped)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, Any] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or not entry.get("kid") or entry.get("use") == "enc":
            continue
        try:
            keys[str(entry["kid"])] = jwt.PyJWK.from_dict(entry).key
        except (jwt.PyJWTError, ValueError, KeyError, TypeError):
            log.warning("jwks: skipping a key that cannot be read (kid %s)", entry.get("kid"))
    return keys


class JwksKeys:
    """The key cache of one process; `key_for(kid)` is what verification asks."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float,
        max_stale_seconds: float,
        cooldown_seconds: float,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.max_stale_seconds = max_stale_seconds
        self.cooldown_seconds = cooldown_seconds
        self.timeout = timeout
        self.clock = clock
        self.fetches = 0  # fetches started (for tests and metrics)
        self._set: KeySet | None = None
        self._last_attempt: float | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    async def key_for(self, kid: str) -> Any:
        """The public key with this id; raises UnknownKey (401) or KeysUnavailable (503)."""
        current = self._set
        now = self.clock()
        if current is not None and now < current.fetched_at + self.cache_seconds and kid in current.keys:
            return current.keys[kid]
        await self._refresh_if_allowed(now)
        current = self._set
        now = self.clock()
        if current is None or now >= current.fetched_at + self.cache_seconds + self.max_stale_seconds:
            raise KeysUnavailable("the signing keys could not be fetched")
        if kid not in current.keys:
            raise UnknownKey(kid)
        return current.keys[kid]

    async def _refresh_if_allowed(self, now: float) -> None:
        """Join the refresh in flight, or start one unless the last one began less than a cooldown ago."""
        if self._refresh is None:
            if self._last_attempt is not None and now - self._last_attempt < self.cooldown_seconds:
                return  # negative cache: what we have (or had) answers until the cooldown is over
            self._last_attempt = now
            self._refresh = asyncio.create_task(self._fetch())
            self._refresh.add_done_callback(self._finished)
        await asyncio.shield(self._refresh)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._refresh = None

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
            response = await self._client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = parse_jwks(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("jwks: fetch failed (%s); keeping the last keys while they are usable", type(exc).__name__)
            return
        self._set = KeySet(keys, self.clock())

    async def aclose(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
