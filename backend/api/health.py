"""Liveness, readiness and what a deployed backend runs (so an eval run can record what it measured)."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from backend import __version__, db
from backend.deps import CurrentUser
from backend.errors import ApiError, ErrorBody, error_body, error_responses
from backend.llm.provider import model_capacity, model_name
from backend.metrics import exposition
from backend.prompts import prompt_version

router = APIRouter(tags=["health"])
MODEL_CHECK_SECONDS = 5.0


class CachedCheck:
    """A readiness check asked at most once per `ttl` seconds, one call at a time.

    `/health/ready` is unauthenticated: without this, every probe (or anyone on the network) would make an upstream
    request carrying the server's API key.
    """

    def __init__(
        self,
        check: Callable[[], Awaitable[bool]],
        *,
        ttl: float = MODEL_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.check = check
        self.ttl = ttl
        self.clock = clock
        self.calls = 0
        self._result: tuple[float, bool] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> bool:
        async with self._lock:
            if self._result is not None and self.clock() - self._result[0] < self.ttl:
                return self._result[1]
            self.calls += 1
            ok = await self.check()
            self._result = (self.clock(), ok)
            return ok


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers: on the event loop, never behind the threadpool (which a slow dependency can fill)."""
    return {"status": "ok"}


@router.get("/health/ready", responses={503: {"model": ErrorBody, "description": "A part a turn needs is down"}})
async def ready(request: Request) -> Any:
    """200 when a turn can run; 503 naming the failing part otherwise."""
    state = request.app.state
    checks: dict[str, str] = {}
    try:
        await anyio.to_thread.run_sync(db.ping, state.engine)
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    checks["model"] = "ok" if await state.model_check() else "unavailable"
    failing = [part for part, status in checks.items() if status != "ok"]
    if failing:
        body = error_body("not_ready", f"Not ready: {', '.join(failing)} unavailable.", {"checks": checks})
        return JSONResponse(status_code=503, content=body)
    return {"status": "ready", "checks": checks}


@router.get("/metrics", include_in_schema=False)
async def metrics_text(request: Request) -> Response:
    """Prometheus text of every worker's counts; off or behind METRICS_TOKEN as the settings say."""
    settings = request.app.state.settings
    if not settings.metrics_on:
        raise ApiError(404, "not_found", "Not found.")
    if settings.metrics_token:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {settings.metrics_token}".encode()):
            raise ApiError(401, "unauthorized", "Metrics need Authorization: Bearer <METRICS_TOKEN>.")
    body, content_type = exposition()
    return Response(body, media_type=content_type)


@router.get("/api/info", responses=error_responses(401, 503))
async def info(_: CurrentUser, request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    prompt = request.app.state.system_prompt
    return {
        "version": __version__,
        "model": model_name(settings),
        "agent_model": settings.agent_model,
        "model_capacity": model_capacity(settings),
        "prompt_file": settings.system_prompt_file.name,
        "prompt_version": prompt_version(prompt),
    }
