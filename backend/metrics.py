"""Prometheus metrics for operators: HTTP requests by route template (never the raw path: user ids are in it), turn
outcomes, model-call latency, tool calls and rate-limit hits, served at `/metrics`.

With several uvicorn workers each is a process of its own: `todo-agent serve` then sets `PROMETHEUS_MULTIPROC_DIR`
before the workers start, every worker writes its counts there, and `/metrics` sums them over all of them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Scope

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "todo_agent_http_requests", "HTTP requests by route template, method and status.", ["route", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "todo_agent_http_request_duration_seconds", "HTTP request duration by route template.", ["route", "method"]
)
TURNS = Counter(
    "todo_agent_turns", "Chat turns by door and outcome (ok, model_timeout, conflict...).", ["door", "outcome"]
)
MODEL_CALL_SECONDS = Histogram(
    "todo_agent_model_call_duration_seconds",
    "Model calls (one request to the model endpoint) by outcome.",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
)
TOOL_CALLS = Counter(
    "todo_agent_tool_calls", "Tool calls by tool and outcome (ok or an error code).", ["tool", "outcome"]
)
RATE_LIMITED = Counter("todo_agent_rate_limited", "Requests refused by a rate limit, by what was limited.", ["what"])


def route_of(scope: Scope) -> str:
    """The template of the route `scope` goes to (`/api/{user_id}/chat`), a mount's prefix, or `unmatched`: matched
    again here, at the outermost middleware, which sees neither the router's choice nor the gates' scope copies."""
    return _find(getattr(scope.get("app"), "routes", ()), scope, str(scope.get("path") or "")) or "unmatched"


def _find(routes: Iterable[Any], scope: Scope, path: str) -> str | None:
    for candidate in routes:
        if isinstance(candidate, Mount):
            if path == candidate.path or path.startswith(candidate.path + "/"):
                return candidate.path + "/*"
        elif (included := getattr(candidate, "original_router", None)) is not None:  # FastAPI's include_router
            if (found := _find(included.routes, scope, path)) is not None:
                return found
        elif isinstance(candidate, BaseRoute) and candidate.matches(scope)[0] != Match.NONE:
            return str(getattr(candidate, "path", "unmatched"))
    return None


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    route, method = route_of(scope), str(scope.get("method") or "")
    REQUESTS.labels(route, method, str(status)).inc()
    REQUEST_SECONDS.labels(route, method).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The metrics text of this process, or of every worker's in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def prepare_multiprocess(folder: Path) -> None:
    """Before the workers start: an empty folder for their counts, named in the environment they inherit."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
