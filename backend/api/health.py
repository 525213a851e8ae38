"""Liveness, readiness and what a deployed backend runs (so an eval run can record what it measured)."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from backend import __version__, db
from backend.deps import CurrentUser
from backend.errors import ErrorBody, error_body, error_responses
from backend.llm.provider import model_name
from backend.prompts import prompt_version

router = APIRouter(tags=["health"])


@router.get("/health/live")
def live() -> dict[str, str]:
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


@router.get("/api/info", responses=error_responses(401, 503))
def info(_: CurrentUser, request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    prompt = request.app.state.system_prompt
    return {
        "version": __version__,
        "model": model_name(settings),
        "agent_model": settings.agent_model,
        "prompt_file": settings.system_prompt_file.name,
        "prompt_version": prompt_version(prompt),
    }
