"""Prometheus `/metrics`: parses as Prometheus text, counts a turn, its model calls and its tool calls, labels requests
by route template (never a user id), is off or behind a token in production, and adds up across uvicorn workers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from evals.scripted_model import Reply, script
from tests.conftest import TEST_SECRET, Harness, new_user
from tests.test_first_run import free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and labels (it must parse)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(harness: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await harness.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_a_turn_is_counted_with_its_model_and_tool_calls(make_harness: Callable[..., Any]) -> None:
    harness: Harness = await make_harness(script([Reply(calls=[("add_task", {"title": "Buy milk"})]), "Added."]))
    user = new_user()
    before = await scrape(harness)
    assert (await harness.chat(user, "add buy milk")).status_code == 200
    after = await scrape(harness)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("todo_agent_turns_total", door="json", outcome="ok") == 1
    assert delta("todo_agent_tool_calls_total", tool="add_task", outcome="ok") == 1
    assert delta("todo_agent_model_call_duration_seconds_count", outcome="ok") == 2  # the call, then the reply
    route = {"route": "/api/{user_id}/chat", "method": "POST", "status": "200"}
    assert delta("todo_agent_http_requests_total", **route) == 1
    assert not [key for key in after if any(user in v for _, v in key[1])]  # no user id in any label


async def test_failures_and_limits_are_counted_by_kind(make_harness: Callable[..., Any]) -> None:
    harness: Harness = await make_harness(script([Reply(status=400)]), rate_limit_per_minute=1)
    user = new_user()
    before = await scrape(harness)
    assert (await harness.chat(user, "hello")).status_code == 502
    assert (await harness.chat(user, "hello again")).status_code == 429
    assert (await harness.client.get(f"/api/{user}/tasks/999999", headers=harness.auth(user))).status_code == 404
    after = await scrape(harness)
    assert (
        value(after, "todo_agent_turns_total", door="json", outcome="model_error")
        - value(before, "todo_agent_turns_total", door="json", outcome="model_error")
        == 1
    )
    assert value(after, "todo_agent_rate_limited_total", what="chat turns") > value(
        before, "todo_agent_rate_limited_total", what="chat turns"
    )
    missing = {"route": "/api/{user_id}/tasks/{task_id}", "method": "GET", "status": "404"}
    assert value(after, "todo_agent_http_requests_total", **missing) >= 1


async def test_production_keeps_metrics_off_or_behind_a_token(make_harness: Callable[..., Any]) -> None:
    closed: Harness = await make_harness(environment="production", better_auth_secret=TEST_SECRET)
    assert (await closed.client.get("/metrics")).status_code == 404
    guarded: Harness = await make_harness(
        environment="production", better_auth_secret=TEST_SECRET, metrics_token="scrape-" + "x" * 30
    )
    assert (await guarded.client.get("/metrics")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await guarded.client.get("/metrics", headers=wrong)).status_code == 401
    right = {"Authorization": "Bearer scrape-" + "x" * 30}
    response = await guarded.client.get("/metrics", headers=right)
    assert response.status_code == 200 and samples(response.text)


async def test_two_workers_counts_add_up(tmp_path: Path) -> None:
    """`todo-agent serve --workers 2`: each worker counts its own requests; /metrics, whichever worker answers it,
    reports the sum of both."""
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "BETTER_AUTH_SECRET": TEST_SECRET,
        "AGENT_MODEL": "hosted-model",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENAI_API_KEY": "unused",
        "PLAYGROUND_ENABLED": "false",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "todo_agent", "serve", "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert server.stdout is not None
        started = 0
        for line in server.stdout:  # both workers say when their app has started
            started += "Application startup complete" in line
            if started == 2:
                break
        assert started == 2
        requests = 60

        async def hit() -> int:
            async with httpx.AsyncClient() as client:  # a connection of its own: any worker may accept it
                return (await client.get(f"{base}/health/live")).status_code

        sent = 0
        counted: list[Path] = []
        for _ in range(10):  # until both workers have answered some (the kernel picks who accepts a connection)
            assert await asyncio.gather(*(hit() for _ in range(requests))) == [200] * requests
            sent += requests
            counted = sorted((tmp_path / "data" / "prometheus").glob("counter_*.db"))
            if len(counted) == 2:
                break
        assert len(counted) == 2, counted
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{base}/metrics")).text
        live = {"route": "/health/live", "method": "GET", "status": "200"}
        assert value(samples(text), "todo_agent_http_requests_total", **live) == sent
    finally:
        server.terminate()
        server.wait(timeout=30)
