"""Liveness, readiness (names the failing part) and /api/info (what a deployed backend runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import agents.tracing.setup
import httpx
import pytest
from agents.tracing import get_trace_provider
from agents.tracing.traces import NoOpTrace

from backend.main import create_app
from backend.prompts import load_prompt, prompt_version
from tests.conftest import Harness, make_settings, new_user


async def test_live_and_ready(make_harness: Any) -> None:
    harness: Harness = await make_harness()
    assert (await harness.client.get("/health/live")).json() == {"status": "ok"}
    ready = await harness.client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "model": "ok"}


async def test_ready_is_503_naming_the_model_when_it_is_unreachable(tmp_path: Path) -> None:
    # The real readiness check against a model URL where nothing listens.
    settings = make_settings(tmp_path, openai_base_url="http://127.0.0.1:9/v1")
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()["error"]
    assert body["code"] == "not_ready" and "model" in body["message"]
    assert body["details"]["checks"]["model"] == "unavailable"


async def test_ready_is_503_naming_the_database_when_it_is_down(tmp_path: Path) -> None:
    async def model_ok() -> bool:
        return True

    settings = make_settings(tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    app = create_app(settings, model_check=model_ok, migrate=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["error"]["details"]["checks"] == {"database": "unavailable", "model": "ok"}


async def test_a_database_outage_is_503_without_a_trace(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    app = create_app(settings, migrate=False)
    from backend.auth import mint_token

    user = new_user()
    headers = {"Authorization": f"Bearer {mint_token(settings, user)}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        tasks = await client.get(f"/api/{user}/tasks", headers=headers)
        chat = await client.post(f"/api/{user}/chat", json={"message": "hi"}, headers=headers)
    for response in (tasks, chat):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "database_unavailable"
        assert "Traceback" not in response.text and "psycopg" not in response.text


async def test_info_reports_model_and_prompt_version(make_harness: Any) -> None:
    harness: Harness = await make_harness()
    assert (await harness.client.get("/api/info")).status_code == 401
    info = (await harness.client.get("/api/info", headers=harness.auth(new_user()))).json()
    assert info["model"] == "scripted"
    assert info["prompt_version"] == prompt_version(load_prompt(harness.settings.system_prompt_file))
    assert info["prompt_file"] == "system_v2.md"


def test_the_app_keeps_tracing_off_without_building_the_sdks_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing leaves the machine. The SDK's default trace provider builds an exporter (an HTTP client, a TLS
    context, in every process) even with tracing disabled; the app installs one with no processor."""
    monkeypatch.setattr(agents.tracing.setup, "GLOBAL_TRACE_PROVIDER", None)  # a process that never traced
    create_app(make_settings(tmp_path), migrate=False)
    provider = get_trace_provider()
    assert isinstance(provider.create_trace("a turn"), NoOpTrace)
    assert provider._multi_processor._processors == ()  # type: ignore[attr-defined]
