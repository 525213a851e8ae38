"""Record/replay of model responses, at the model client's HTTP boundary.

`RecordReplayTransport` wraps the transport of the agent's OpenAI client. A Chat Completions request is keyed by a hash
of everything that can change the answer (the path and the whole request body: model, messages, tools, temperature,
seed, max_tokens, stream flag, ...); the response body is stored in a JSONL file. Modes:

- `off`: pass through (the transport still counts calls, latency and reported token usage);
- `record`: always ask the model and store the answer;
- `replay`: answer from the cache only; a miss is an error (the turn fails with a 404 that says so);
- `replay-or-record`: answer from the cache, ask the model on a miss and store it.

Misses are counted per turn and per run, so a run that was supposed to be a pure replay says how far it was not.
Tool-call ids (random on most servers) are renumbered in the key, so a replayed conversation keys the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from backend.agent import extend_turn_deadline

CacheMode = Literal["off", "record", "replay", "replay-or-record"]
CACHE_MODES: tuple[str, ...] = ("off", "record", "replay", "replay-or-record")
CACHED_PATH_SUFFIX = "/chat/completions"
MISS_STATUS = 404  # not retried by the OpenAI client, unlike 5xx


@dataclass
class ModelCallStats:
    """Counters for the model requests made while one turn runs (set per turn through `TURN_STATS`)."""

    calls: int = 0
    hits: int = 0
    misses: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_s: float = 0.0
    queued_s: float = 0.0  # waits for a free model slot (`max_in_flight`): not the turn's latency
    # What the local model server reports of its own work (`todo_agent` in its answers): tokens it re-read from
    # the prompt and decoded, and the aids that stepped in (re-asks, replies it could not use).
    prompt_n: int = 0
    predicted_n: int = 0
    prompt_ms: float = 0.0
    predicted_ms: float = 0.0
    reasked: list[str] = field(default_factory=list)
    unparsed_calls: int = 0
    deadline: asyncio.Timeout | None = None  # the runner's per-turn timeout, which those waits do not count against

    def waited(self, seconds: float) -> None:
        """Time spent waiting for a model slot counts against no timeout: neither the runner's per-turn one nor,
        in-process, the backend's own (the wait runs inside the backend's turn)."""
        self.queued_s += seconds
        if self.deadline is not None and (when := self.deadline.when()) is not None:
            self.deadline.reschedule(when + seconds)

    def add_report(self, report: dict[str, Any] | None) -> None:
        if not report:
            return
        self.prompt_n += int(report.get("prompt_n", 0))
        self.predicted_n += int(report.get("predicted_n", 0))
        self.prompt_ms += float(report.get("prompt_ms", 0.0))
        self.predicted_ms += float(report.get("predicted_ms", 0.0))
        self.reasked += [str(r) for r in report.get("reasked") or []]
        self.unparsed_calls += int(report.get("unparsed_call", 0))

    def add_usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if isinstance(prompt, int):
            self.input_tokens = (self.input_tokens or 0) + prompt
        if isinstance(completion, int):
            self.output_tokens = (self.output_tokens or 0) + completion


# The runner sets a fresh ModelCallStats before each turn; the transport runs in that turn's context (in-process
# ASGI keeps one task; the SDK's background tasks copy the context), so it updates the right counters.
TURN_STATS: contextvars.ContextVar[ModelCallStats | None] = contextvars.ContextVar("turn_stats", default=None)


def _renumber_call_ids(body: Any) -> Any:
    """Replace tool-call ids with their order of first appearance: they pair calls with results, nothing more."""
    seen: dict[str, str] = {}

    def alias(value: str) -> str:
        return seen.setdefault(value, f"call_{len(seen)}")

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if (key in ("tool_call_id", "call_id") and isinstance(value, str)) or (
                    key == "id" and isinstance(value, str) and node.get("type") == "function"
                ):
                    out[key] = alias(value)
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(body)


def request_key(method: str, path: str, body: bytes) -> str:
    try:
        parsed: Any = json.loads(body or b"null")
    except ValueError:
        parsed = body.decode("utf-8", "replace")
    canonical = json.dumps(_renumber_call_ids(parsed), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    suffix = path[path.find("/chat/") :] if "/chat/" in path else path
    return hashlib.sha256(f"{method} {suffix}\n{canonical}".encode()).hexdigest()


def _last_user_text(body: bytes) -> str:
    try:
        messages = json.loads(body).get("messages") or []
    except (ValueError, AttributeError):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return ""


def field_of(body: str, name: str) -> dict[str, Any] | None:
    """An object field (`usage`, `todo_agent`) of a JSON completion or of the last SSE chunk that carries one."""
    text = body.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text).get(name)
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, dict) else None
    found = None
    for line in text.splitlines():
        if line.startswith("data:") and f'"{name}"' in line:
            try:
                value = json.loads(line[5:].strip()).get(name)
            except (ValueError, AttributeError):
                continue
            if isinstance(value, dict):
                found = value
    return found


def usage_of(body: str) -> dict[str, Any] | None:
    return field_of(body, "usage")


@dataclass
class ResponseCache:
    """The cache file: one JSON object per line, `{key, model, user, status, content_type, body}`."""

    path: Path | None
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    new: set[str] = field(default_factory=set)  # recorded by this run
    hits: int = 0
    misses: int = 0
    recorded: int = 0

    @classmethod
    def load(cls, path: Path | None) -> ResponseCache:
        cache = cls(path)
        if path is not None and path.exists():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    cache.entries[entry["key"]] = entry
                except (ValueError, KeyError) as exc:
                    raise ValueError(f"{path}:{number}: not a cache entry ({exc})") from exc
        return cache

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self.entries.get(key)
        if entry is not None:
            self.used.add(key)
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.entries[key] = {"key": key, **entry}
        self.used.add(key)
        self.new.add(key)
        self.recorded += 1

    def save(self, *, prune: bool = False) -> None:
        """Write the file sorted by key (stable diffs); `prune` keeps only the entries this run used."""
        if self.path is None:
            return
        keys = sorted(self.used if prune else self.entries)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(self.entries[k], ensure_ascii=False, sort_keys=True) for k in keys if k in self.entries]
        self.path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")

    def stats(self) -> dict[str, Any]:
        return {
            "file": str(self.path) if self.path else None,
            "hits": self.hits,
            "misses": self.misses,
            "recorded": self.recorded,
            "entries": len(self.entries),
        }


class RecordReplayTransport(httpx.AsyncBaseTransport):
    """An httpx transport for the model client: replays, records or passes through, and counts."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None,
        cache: ResponseCache | None = None,
        mode: CacheMode = "off",
        *,
        before_live_call: Callable[[], Awaitable[None]] | None = None,
        max_in_flight: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if mode != "off" and cache is None:
            raise ValueError(f"cache mode {mode!r} needs a cache file")
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.cache = cache or ResponseCache(None)
        self.mode = mode
        self._before_live_call = before_live_call
        # At most this many live model requests at once (`--concurrency`); a replayed answer needs no slot.
        self._in_flight = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._started = False
        self._start_lock = asyncio.Lock()
        self.clock = clock
        self.live_calls = 0
        self.live_latency_s = 0.0

    async def _ensure_started(self) -> None:
        if self._started or self._before_live_call is None:
            return
        async with self._start_lock:
            if not self._started:
                await self._before_live_call()
                self._started = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        stats = TURN_STATS.get()
        body = await request.aread()
        cacheable = request.method == "POST" and request.url.path.endswith(CACHED_PATH_SUFFIX)
        if not cacheable:
            await self._ensure_started()
            return await self.inner.handle_async_request(request)
        if stats is not None:
            stats.calls += 1
        key = request_key(request.method, request.url.path, body) if self.mode != "off" else ""
        if self.mode in ("replay", "replay-or-record"):
            entry = self.cache.get(key)
            if entry is not None:
                self.cache.hits += 1
                if stats is not None:
                    stats.hits += 1
                    stats.add_usage(usage_of(entry["body"]))
                    stats.add_report(field_of(entry["body"], "todo_agent"))
                return httpx.Response(
                    entry.get("status", 200),
                    headers={"content-type": entry.get("content_type", "application/json")},
                    content=entry["body"].encode("utf-8"),
                    request=request,
                )
            self.cache.misses += 1
            if stats is not None:
                stats.misses += 1
            if self.mode == "replay":
                message = f"replay cache miss (key {key[:16]}; last user message {_last_user_text(body)[:80]!r})"
                return httpx.Response(
                    MISS_STATUS,
                    headers={"content-type": "application/json", "x-should-retry": "false"},
                    json={"error": {"message": message, "type": "replay_cache_miss", "code": MISS_STATUS}},
                    request=request,
                )
        await self._ensure_started()
        waiting = self.clock()
        async with self._in_flight or contextlib.nullcontext():
            started = self.clock()
            if stats is not None:
                stats.waited(started - waiting)
            extend_turn_deadline(started - waiting)
            response = await self.inner.handle_async_request(request)
            content = await response.aread()
            elapsed = self.clock() - started
        self.live_calls += 1
        self.live_latency_s += elapsed
        text = content.decode("utf-8", "replace")
        if stats is not None:
            stats.latency_s += elapsed
            stats.add_usage(usage_of(text))
            stats.add_report(field_of(text, "todo_agent"))
        if self.mode in ("record", "replay-or-record") and response.status_code == 200:
            try:
                model = json.loads(body).get("model")
            except (ValueError, AttributeError):
                model = None
            self.cache.put(
                key,
                {
                    "model": model,
                    "user": _last_user_text(body)[:200],
                    "status": response.status_code,
                    "content_type": response.headers.get("content-type", "application/json"),
                    "body": text,
                },
            )
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")
        }
        return httpx.Response(response.status_code, headers=headers, content=content, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()
