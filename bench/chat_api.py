"""Issue 2 figures: the chat contract's own overhead, with an instant scripted model behind the OpenAI API.

Prints: one client (turns/s, p50/p99), 16 concurrent clients (turns/s, p99, errors, every message stored), and turn
latency with 10 vs 10,000 prior messages. Backend and fake model run under uvicorn on loopback; SQLite by default,
`--database-url` for PostgreSQL.

    python bench/chat_api.py [--turns 300] [--database-url postgresql+psycopg://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._servers import backend_with_scripted_model


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def token(env: dict[str, str], user: str) -> str:
    os.environ.update(env)
    from backend.auth import mint_token
    from backend.settings import Settings

    return mint_token(Settings(_env_file=None), user)  # type: ignore[call-arg]


async def one_turn(
    client: httpx.AsyncClient, user: str, auth: dict[str, str], message: str, conversation_id: int | None
) -> tuple[float, int, int | None]:
    body: dict[str, object] = {"message": message}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    started = time.perf_counter()
    response = await client.post(f"/api/{user}/chat", json=body, headers=auth)
    elapsed = (time.perf_counter() - started) * 1000
    conv = response.json().get("conversation_id") if response.status_code == 200 else None
    return elapsed, response.status_code, conv


async def sequential(base: str, env: dict[str, str], turns: int, message: str) -> dict[str, float]:
    user = f"bench-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {token(env, user)}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        _, _, conversation = await one_turn(client, user, auth, message, None)
        for _ in range(10):  # warm-up
            await one_turn(client, user, auth, message, conversation)
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(turns):
            elapsed, status, _ = await one_turn(client, user, auth, message, conversation)
            assert status == 200, status
            latencies.append(elapsed)
        wall = time.perf_counter() - started
    return {
        "turns_per_s": turns / wall,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


async def concurrent(base: str, env: dict[str, str], clients: int, turns_each: int) -> dict[str, float]:
    users = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(clients)]
    latencies: list[float] = []
    errors = 0
    conversations: dict[str, int] = {}

    async def run(user: str, client: httpx.AsyncClient) -> None:
        nonlocal errors
        auth = {"Authorization": f"Bearer {token(env, user)}"}
        conversation: int | None = None
        for index in range(turns_each):
            message = "Add a task to bench item" if index % 4 == 0 else "hello there"
            elapsed, status, conv = await one_turn(client, user, auth, message, conversation)
            if status != 200:
                errors += 1
                continue
            conversation = conv
            latencies.append(elapsed)
        if conversation is not None:
            conversations[user] = conversation

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(run(user, client) for user in users))
        wall = time.perf_counter() - started
        stored_ok = True
        for user, conversation in conversations.items():
            auth = {"Authorization": f"Bearer {token(env, user)}"}
            detail = (await client.get(f"/api/{user}/conversations/{conversation}", headers=auth)).json()
            stored_ok &= len(detail["messages"]) == 2 * turns_each
    total = clients * turns_each
    return {
        "turns_per_s": total / wall,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "errors": errors,
        "all_stored": float(stored_ok),
    }


def seed_history(env: dict[str, str], user: str, conversation_id: int, count: int) -> None:
    """Insert `count` prior messages straight into the database (what 5,000 earlier turns would leave)."""
    from sqlalchemy import insert

    from backend import db
    from backend.models import Message, utcnow
    from backend.settings import Settings

    settings = Settings(_env_file=None, database_url=env["DATABASE_URL"])  # type: ignore[call-arg]
    engine = db.build_engine(settings)
    now = utcnow()
    rows = [
        {
            "user_id": user,
            "conversation_id": conversation_id,
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"message {i}",
            "tool_calls": None,
            "created_at": now,
        }
        for i in range(count)
    ]
    with engine.begin() as connection:
        for start in range(0, len(rows), 2000):
            connection.execute(insert(Message), rows[start : start + 2000])
    engine.dispose()


async def history_cost(base: str, env: dict[str, str], turns: int) -> dict[str, float]:
    results: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for prior in (10, 10_000):
            user = f"bench-{uuid.uuid4().hex[:8]}"
            auth = {"Authorization": f"Bearer {token(env, user)}"}
            _, _, conversation = await one_turn(client, user, auth, "hello", None)
            assert conversation is not None
            seed_history(env, user, conversation, prior)
            for _ in range(5):
                await one_turn(client, user, auth, "hello", conversation)
            latencies = [(await one_turn(client, user, auth, "hello", conversation))[0] for _ in range(turns)]
            results[f"p50_ms_{prior}_prior"] = percentile(latencies, 50)
    results["ratio"] = results["p50_ms_10000_prior"] / results["p50_ms_10_prior"]
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extra = {"DATABASE_URL": args.database_url} if args.database_url else {}
        with backend_with_scripted_model(Path(tmp), workers=args.workers, extra_env=extra) as (base, env):
            print(
                f"backend {base}, workers={args.workers}, db={env['DATABASE_URL'].split(':')[0]}, cpus={os.cpu_count()}"
            )
            text = await sequential(base, env, args.turns, "hello there")
            print(
                f"1 client, text reply     : {text['turns_per_s']:.0f} turns/s, p50 {text['p50_ms']:.1f} ms, "
                f"p99 {text['p99_ms']:.1f} ms  (target p50 <= 8 ms)"
            )
            tool = await sequential(base, env, args.turns // 2, "Show me all my tasks")
            print(
                f"1 client, tool call turn : {tool['turns_per_s']:.0f} turns/s, p50 {tool['p50_ms']:.1f} ms, "
                f"p99 {tool['p99_ms']:.1f} ms"
            )
            load = await concurrent(base, env, args.clients, max(8, args.turns // args.clients))
            print(
                f"{args.clients} clients            : {load['turns_per_s']:.0f} turns/s (target >= 150), "
                f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms, errors {load['errors']:.0f}, "
                f"every message stored: {bool(load['all_stored'])}"
            )
            history = await history_cost(base, env, 50)
            print(
                f"history: p50 {history['p50_ms_10_prior']:.1f} ms with 10 prior messages, "
                f"{history['p50_ms_10000_prior']:.1f} ms with 10,000 (ratio {history['ratio']:.2f}, target <= 1.20)"
            )


if __name__ == "__main__":
    asyncio.run(main())
