"""Issue 3 figures: what streaming costs, with an instant scripted model behind the OpenAI API.

Prints, for the chat contract in SSE mode (`Accept: text/event-stream`) against the same turns in JSON mode:
- one client: time to the first `tool_call` event, to the first `delta` and to `done` (p50 / p90 over the turns);
- 16 concurrent clients: turns/s, p50 / p99 turn latency and errors, JSON vs SSE (target: SSE within 10%).

Backend and fake model (the rule-based scripted responder) run under uvicorn on loopback, SQLite in a temp dir,
rate limit lifted; every loop is bounded.

    python bench/sse_vs_json.py [--latency-turns 50] [--clients 16] [--turns-per-client 20] [--rounds 2]
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
from httpx_sse import aconnect_sse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._servers import backend_with_scripted_model

CONVERSATION_LENGTH = 10  # turns before a client starts a new conversation


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def mint(env: dict[str, str], user: str) -> str:
    os.environ.update(env)
    from backend.auth import mint_token
    from backend.settings import Settings

    return mint_token(Settings(_env_file=None), user)  # type: ignore[call-arg]


def message_for(turn: int) -> str:
    """Alternate a tool call that writes and one that reads: both end in a reply after the tool result."""
    return f"Add a task to buy item {turn}" if turn % 2 == 0 else "What's pending?"


@dataclass
class Turn:
    ok: bool
    total_ms: float
    conversation_id: int | None = None
    first_tool_call_ms: float | None = None
    first_delta_ms: float | None = None
    events: list[str] = field(default_factory=list)


async def json_turn(client: httpx.AsyncClient, user: str, auth: dict[str, str], body: dict[str, Any]) -> Turn:
    started = time.perf_counter()
    response = await client.post(f"/api/{user}/chat", json=body, headers=auth)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        return Turn(False, elapsed)
    return Turn(True, elapsed, response.json()["conversation_id"])


async def sse_turn(client: httpx.AsyncClient, user: str, auth: dict[str, str], body: dict[str, Any]) -> Turn:
    started = time.perf_counter()
    turn = Turn(False, 0.0)
    async with aconnect_sse(client, "POST", f"/api/{user}/chat", json=body, headers=auth) as source:
        if source.response.status_code != 200:
            await source.response.aread()
        else:
            async for sse in source.aiter_sse():
                now = (time.perf_counter() - started) * 1000
                turn.events.append(sse.event)
                if sse.event == "start":
                    turn.conversation_id = json.loads(sse.data)["conversation_id"]
                elif sse.event == "tool_call" and turn.first_tool_call_ms is None:
                    turn.first_tool_call_ms = now
                elif sse.event == "delta" and turn.first_delta_ms is None:
                    turn.first_delta_ms = now
                elif sse.event == "done":
                    turn.ok = True
    turn.total_ms = (time.perf_counter() - started) * 1000
    return turn


async def client_session(base: str, env: dict[str, str], mode: str, turns: int) -> list[Turn]:
    """One user's turns, one after another, a new conversation every CONVERSATION_LENGTH turns."""
    user = f"bench-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {mint(env, user)}"}
    run = sse_turn if mode == "sse" else json_turn
    results: list[Turn] = []
    conversation: int | None = None
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for index in range(turns):
            body: dict[str, Any] = {"message": message_for(index)}
            if conversation is not None and index % CONVERSATION_LENGTH:
                body["conversation_id"] = conversation
            try:
                turn = await run(client, user, auth, body)
            except httpx.HTTPError:
                turn = Turn(False, 0.0)
            results.append(turn)
            conversation = turn.conversation_id
    return results


def fmt(values: list[float]) -> str:
    return f"p50 {percentile(values, 50):6.1f} ms  p90 {percentile(values, 90):6.1f} ms"


async def latency(base: str, env: dict[str, str], turns: int) -> dict[str, Any]:
    await client_session(base, env, "sse", 6)  # warm-up (imports, connection pools, SQLite pages)
    sse = await client_session(base, env, "sse", turns)
    plain = await client_session(base, env, "json", turns)
    tool_calls = [t.first_tool_call_ms for t in sse if t.first_tool_call_ms is not None]
    deltas = [t.first_delta_ms for t in sse if t.first_delta_ms is not None]
    sse_done = [t.total_ms for t in sse if t.ok]
    json_done = [t.total_ms for t in plain if t.ok]
    errors = sum(not t.ok for t in sse + plain)
    print(f"one client, {turns} turns each way (every turn: tool call, then the reply):")
    print(f"  SSE first tool_call   {fmt(tool_calls)}")
    print(f"  SSE first delta       {fmt(deltas)}")
    print(f"  SSE done              {fmt(sse_done)}")
    print(f"  JSON whole turn       {fmt(json_done)}")
    print(f"  errors                {errors}")
    return {
        "turns": turns,
        "first_tool_call_ms": tool_calls,
        "first_delta_ms": deltas,
        "sse_done_ms": sse_done,
        "json_turn_ms": json_done,
        "errors": errors,
    }


async def concurrent(base: str, env: dict[str, str], mode: str, clients: int, turns: int) -> dict[str, Any]:
    started = time.perf_counter()
    sessions = await asyncio.gather(*(client_session(base, env, mode, turns) for _ in range(clients)))
    wall = time.perf_counter() - started
    results = [turn for session in sessions for turn in session]
    ok = [t.total_ms for t in results if t.ok]
    return {"mode": mode, "wall_s": wall, "turns": len(ok), "errors": len(results) - len(ok), "latencies": ok}


async def throughput(base: str, env: dict[str, str], clients: int, turns: int, rounds: int) -> dict[str, Any]:
    await concurrent(base, env, "json", clients, 2)  # warm-up at full concurrency
    await concurrent(base, env, "sse", clients, 2)
    runs: dict[str, list[dict[str, Any]]] = {"json": [], "sse": []}
    for index in range(rounds):  # interleaved, alternating who goes first, so drift hits both modes alike
        order = ("json", "sse") if index % 2 == 0 else ("sse", "json")
        for mode in order:
            runs[mode].append(await concurrent(base, env, mode, clients, turns))
    summary: dict[str, Any] = {}
    print(f"\n{clients} concurrent clients x {turns} turns, {rounds} rounds per mode (interleaved):")
    for mode, mode_runs in runs.items():
        done = sum(r["turns"] for r in mode_runs)
        wall = sum(r["wall_s"] for r in mode_runs)
        latencies = [ms for r in mode_runs for ms in r["latencies"]]
        per_round = [r["turns"] / r["wall_s"] for r in mode_runs]
        summary[mode] = {
            "turns_per_s": done / wall,
            "per_round_turns_per_s": per_round,
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "errors": sum(r["errors"] for r in mode_runs),
            "turns": done,
        }
        rounds_text = ", ".join(f"{v:.1f}" for v in per_round)
        print(
            f"  {mode.upper():4}  {done / wall:6.1f} turns/s (rounds: {rounds_text})  "
            f"p50 {summary[mode]['p50_ms']:6.1f} ms  p99 {summary[mode]['p99_ms']:6.1f} ms  "
            f"errors {summary[mode]['errors']}/{done + summary[mode]['errors']}"
        )
    ratio = summary["sse"]["turns_per_s"] / summary["json"]["turns_per_s"]
    summary["sse_vs_json"] = ratio
    verdict = "within" if ratio >= 0.9 else "NOT within"
    print(f"  SSE throughput = {ratio:.1%} of JSON ({verdict} the 10% target)")
    return summary


async def main_async(args: argparse.Namespace, base: str, env: dict[str, str]) -> dict[str, Any]:
    return {
        "latency": await latency(base, env, args.latency_turns),
        "throughput": await throughput(base, env, args.clients, args.turns_per_client, args.rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-turns", type=int, default=50)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--turns-per-client", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        # The per-user rate limit would throttle the bench's users; it is not what is measured here.
        extra = {"RATE_LIMIT_PER_MINUTE": "1000000"}
        with backend_with_scripted_model(Path(tmp), extra_env=extra) as (base, env):
            print(f"backend {base}, scripted model, SQLite in {tmp}, 1 uvicorn worker, {os.cpu_count()} cores\n")
            figures = asyncio.run(main_async(args, base, env))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    tool_call = statistics.median(figures["latency"]["first_tool_call_ms"] or [float("nan")])
    delta = statistics.median(figures["latency"]["first_delta_ms"] or [float("nan")])
    print(
        f"\nsummary: first tool_call p50 {tool_call:.1f} ms, first delta p50 {delta:.1f} ms, "
        f"SSE/JSON throughput at {args.clients} clients {figures['throughput']['sse_vs_json']:.1%}"
    )


if __name__ == "__main__":
    main()
