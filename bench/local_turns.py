"""A long conversation with the offline agent, measured per model call and per turn.

    python bench/local_turns.py [--turns 26] [--port 8184] [--prompt FILE]

For every model call: the prompt tokens llama.cpp had to read (not from its cache), the tokens it decoded, the
milliseconds of each, and the floor those counts cost at this machine's measured rates (prompt tokens per second on
a long uncached prompt, decoded tokens per second on a long answer). Per turn: calls, wall time, floor, ratio. The
conversation goes through the real app (ChatService, the Agents SDK) in-process, on the real local model started
on a port of its own; it refuses to run on a busy machine (1-minute load average above 0.3), whose figures would
mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from backend import db
from backend.auth import mint_token
from backend.llm.local_server import ensure_local_model_server, local_model_health, stop_local_model_server
from backend.llm.provider import build_model
from backend.main import create_app
from backend.settings import DEFAULT_PROMPT_FILE, Settings

# A conversation a user might have; none of it comes from the eval datasets.
CONVERSATION = [
    "Hi there!",
    "Add a task to renew my gym membership",
    "Also add call the electrician",
    "What do I have so far?",
    "Mark the gym one as done",
    "Add pick up the parcel from the post office",
    "Rename the electrician task to 'Call the electrician about the lights'",
    "What's still pending?",
    "Thanks! Add a task to water the balcony plants",
    "Mark it done",
    "Delete the parcel task",
    "Show me everything",
    "Add book a table for Friday dinner",
    "What have I finished so far?",
    "Add a task to send the rent reminder",
    "Mark task 1 as complete",
    "How many tasks are left?",
    "Add a task to order printer paper",
    "Complete the printer paper one",
    "Add a description to the dinner task: for four people",
    "Show my pending tasks",
    "Add a task to call grandma on Sunday",
    "Mark the rent reminder as done",
    "Thanks, that's all for now",
    "Add a task to back up my laptop",
    "What's left to do?",
]


@dataclass
class Call:
    turn: int
    wall_ms: float
    report: dict[str, Any]


@dataclass
class Capture(httpx.AsyncBaseTransport):
    """The model client's transport: passes requests on and keeps each answer's own report (`todo_agent`)."""

    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    calls: list[Call] = field(default_factory=list)
    turn: int = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        wall = (time.perf_counter() - started) * 1000
        if request.url.path.endswith("/chat/completions"):
            report = _report(content.decode("utf-8", "replace"))
            self.calls.append(Call(self.turn, wall, report))
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")}
        return httpx.Response(response.status_code, headers=headers, content=content, request=request)


def _report(body: str) -> dict[str, Any]:
    text = body.strip()
    candidates = (
        [text] if text.startswith("{") else [line[5:] for line in text.splitlines() if line.startswith("data:")]
    )
    for candidate in reversed(candidates):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("todo_agent"), dict):
            return dict(value["todo_agent"])
    return {}


def calibrate(base_url: str) -> tuple[float, float]:
    """Prompt and decode rates (tokens per second) on this machine, from two plain requests."""
    words = " ".join(uuid.uuid4().hex[:6] for _ in range(300))  # never cached
    with httpx.Client(base_url=base_url, timeout=600) as client:
        long_prompt = client.post(
            "/chat/completions",
            json={"messages": [{"role": "user", "content": f"Repeat nothing. {words}"}], "max_tokens": 1},
        ).json()["todo_agent"]
        long_answer = client.post(
            "/chat/completions",
            json={
                "messages": [{"role": "user", "content": "Count from 1 to 100, one number per line."}],
                "max_tokens": 160,
            },
        ).json()["todo_agent"]
    prompt_rate = long_prompt["prompt_n"] / (long_prompt["prompt_ms"] / 1000)
    decode_rate = long_answer["predicted_n"] / (long_answer["predicted_ms"] / 1000)
    return prompt_rate, decode_rate


def floor_ms(report: dict[str, Any], prompt_rate: float, decode_rate: float) -> float:
    return 1000 * (report.get("prompt_n", 0) / prompt_rate + report.get("predicted_n", 0) / decode_rate)


async def converse(settings: Settings, capture: Capture, turns: int) -> list[tuple[str, float, int, str, str]]:
    """Run the conversation through the app; per turn: text, wall ms, status, the tools called, the reply."""
    model = build_model(settings, http_client=httpx.AsyncClient(transport=capture, timeout=settings.model_timeout))

    async def model_ok() -> bool:
        return True

    app = create_app(settings, model=model, model_check=model_ok, migrate=False)
    db.upgrade(app.state.engine)
    user = "bench-user"
    headers = {"Authorization": f"Bearer {mint_token(settings, user)}"}
    rows = []
    conversation: int | None = None
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=None
    ) as client:
        for index, text in enumerate((CONVERSATION * 2)[:turns], 1):
            capture.turn = index
            body: dict[str, Any] = {"message": text}
            if conversation is not None:
                body["conversation_id"] = conversation
            started = time.perf_counter()
            response = await client.post(f"/api/{user}/chat", json=body, headers=headers)
            wall = (time.perf_counter() - started) * 1000
            payload = response.json() if response.status_code == 200 else {}
            conversation = payload.get("conversation_id", conversation)
            tools = ",".join(c["name"] for c in payload.get("tool_calls") or []) or "-"
            rows.append((text, wall, response.status_code, tools, str(payload.get("response") or "")))
    app.state.engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=len(CONVERSATION))
    parser.add_argument("--port", type=int, default=8184)
    parser.add_argument("--prompt", type=Path, default=DEFAULT_PROMPT_FILE)
    parser.add_argument("--keep", action="store_true", help="leave the model server running")
    options = parser.parse_args()
    load = os.getloadavg()[0]
    if load > 0.3:
        sys.exit(f"refusing to measure: the 1-minute load average is {load:.2f} (> 0.3); let the machine settle")

    workdir = Path(tempfile.mkdtemp(prefix="bench-turns-"))
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=Path("data"),
        database_url=f"sqlite:///{workdir / 'bench.db'}",
        local_model_port=options.port,
        system_prompt_file=options.prompt,
        rate_limit_per_minute=100_000,
        playground_enabled=False,
        model_timeout=300,
    )
    already_up = local_model_health(settings) is not None
    base_url = ensure_local_model_server(settings, timeout=300)
    try:
        prompt_rate, decode_rate = calibrate(base_url)
        capture = Capture()
        rows = asyncio.run(converse(settings, capture, options.turns))
    finally:
        if not already_up and not options.keep:
            stop_local_model_server(settings)

    print(f"machine: prompt {prompt_rate:.1f} tok/s, decode {decode_rate:.1f} tok/s ({os.cpu_count()} CPUs)")
    print(f"{'turn':>4} {'calls':>5} {'re-read':>7} {'decoded':>7} {'prompt ms':>9} {'decode ms':>9} "
          f"{'wall ms':>8} {'floor ms':>8} {'ratio':>5}  tools · message")  # fmt: skip
    per_turn: dict[int, list[Call]] = {}
    for call in capture.calls:
        per_turn.setdefault(call.turn, []).append(call)
    tool_turns = []
    for index, (text, wall, status, tools, _) in enumerate(rows, 1):
        calls = per_turn.get(index, [])
        reread = sum(c.report.get("prompt_n", 0) for c in calls)
        decoded = sum(c.report.get("predicted_n", 0) for c in calls)
        prompt_ms = sum(c.report.get("prompt_ms", 0.0) for c in calls)
        decode_ms = sum(c.report.get("predicted_ms", 0.0) for c in calls)
        floor = sum(floor_ms(c.report, prompt_rate, decode_rate) for c in calls)
        ratio = wall / floor if floor else float("nan")
        if tools != "-" and index > 1:
            tool_turns.append((wall, ratio))
        print(f"{index:>4} {len(calls):>5} {reread:>7} {decoded:>7} {prompt_ms:>9.0f} {decode_ms:>9.0f} {wall:>8.0f} "
              f"{floor:>8.0f} {ratio:>5.2f}  {tools} · {text[:50]}{'' if status == 200 else f' (HTTP {status})'}")  # fmt: skip
    print("replies:")
    for index, (text, _, _, tools, reply) in enumerate(rows, 1):
        print(f"  turn {index:>2}: {text[:40]!r} → {tools}: {' '.join(reply.split())[:90]!r}")
    print("per call:")
    for call in capture.calls:
        r = call.report
        print(f"  turn {call.turn:>2}: re-read {r.get('prompt_n', 0):>4}, cached {r.get('cache_n', 0):>5}, decoded "
              f"{r.get('predicted_n', 0):>3}, {call.wall_ms:>6.0f} ms (floor {floor_ms(r, prompt_rate, decode_rate):.0f})"
              f"{' re-asked: ' + ','.join(r['reasked']) if r.get('reasked') else ''}")  # fmt: skip
    first_calls = {turn: calls[0].report.get("prompt_n", 0) for turn, calls in per_turn.items() if calls}
    later = [c.report.get("prompt_n", 0) for c in capture.calls if c.turn > 1]
    print(f"re-read per call, turns 2+: mean {statistics.mean(later):.0f}, max {max(later)}" if later else "")
    for turn in (2, 25):
        if turn in per_turn:
            print(f"re-read per call at turn {turn}: {[c.report.get('prompt_n', 0) for c in per_turn[turn]]}")
    if tool_turns:
        walls = [w for w, _ in tool_turns]
        ratios = [r for _, r in tool_turns]
        print(f"warm tool turns: p50 {statistics.median(walls) / 1000:.2f} s, ratio to floor p50 "
              f"{statistics.median(ratios):.2f} (n={len(tool_turns)})")  # fmt: skip
    print(f"first call of turn 1 re-read {first_calls.get(1)} tokens (prefix cold at the start of the run)")


if __name__ == "__main__":
    main()
