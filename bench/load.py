"""Issue 7 figures: a bounded load test on loopback with the instant scripted model.

N concurrent users (16–64), each with several conversations and a fixed number of turns per conversation, all through
the real HTTP contract (backend and fake model under uvicorn). Afterwards it checks, through the database and the
API, that every user and assistant message is stored, in order, in its own user's conversation (no cross-user
leakage), and that no request got a 5xx. Prints throughput, p50/p99 latency and errors; exits 1 when a check fails.

    python bench/load.py [--users 64] [--conversations 3] [--turns 4] [--workers 1]
                         [--postgres postgresql://postgres@127.0.0.1:5432/test]   # a throwaway database on it
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.db import temporary_database
from bench._servers import BENCH_SECRET, backend_with_scripted_model


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def mint(user: str) -> str:
    from backend.auth import mint_token
    from backend.settings import Settings

    return mint_token(Settings(_env_file=None, better_auth_secret=BENCH_SECRET), user)  # type: ignore[call-arg]


@dataclass
class Sent:
    """What one user sent, per conversation: the messages, in order, and what the API answered."""

    user: str
    conversations: dict[int, list[str]] = field(default_factory=dict)
    replies: dict[int, list[str]] = field(default_factory=dict)


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)


def message_for(user: str, conversation: int, turn: int) -> str:
    # Every third turn calls a tool (add_task), the others are small talk; all carry the user's name, so a leaked
    # message or task is recognisable.
    if turn % 3 == 0:
        return f"Add a task to check {user} c{conversation} t{turn}"
    return f"hello from {user} c{conversation} t{turn}"


async def run_user(client: httpx.AsyncClient, user: str, conversations: int, turns: int, tally: Tally) -> Sent:
    sent = Sent(user)
    auth = {"Authorization": f"Bearer {mint(user)}"}
    ids: list[int | None] = [None] * conversations
    for turn in range(turns):
        for index in range(conversations):
            text = message_for(user, index, turn)
            body: dict[str, object] = {"message": text}
            if ids[index] is not None:
                body["conversation_id"] = ids[index]
            started = time.perf_counter()
            response = await client.post(f"/api/{user}/chat", json=body, headers=auth)
            tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            tally.statuses[response.status_code] += 1
            if response.status_code != 200:
                continue
            payload = response.json()
            conversation_id = int(payload["conversation_id"])
            ids[index] = conversation_id
            sent.conversations.setdefault(conversation_id, []).append(text)
            sent.replies.setdefault(conversation_id, []).append(payload["response"])
    return sent


def verify(database_url: str, base: str, everyone: list[Sent]) -> list[str]:
    """Every accepted turn stored as (user, assistant), in order, under its own user; nobody sees another's data."""
    from sqlmodel import Session, col, select

    from backend import db
    from backend.models import Conversation, Message, Task
    from backend.settings import Settings

    problems: list[str] = []
    engine = db.build_engine(Settings(_env_file=None, database_url=database_url))  # type: ignore[call-arg]
    users = {sent.user for sent in everyone}
    with Session(engine) as session:
        for sent in everyone:
            owned = {c.id for c in session.exec(select(Conversation).where(Conversation.user_id == sent.user)).all()}
            if owned != set(sent.conversations):
                problems.append(f"{sent.user}: conversations {owned} != {set(sent.conversations)}")
            for conversation_id, texts in sent.conversations.items():
                rows = session.exec(
                    select(Message).where(Message.conversation_id == conversation_id).order_by(col(Message.id))
                ).all()
                expected_roles = ["user", "assistant"] * len(texts)
                if [m.role for m in rows] != expected_roles:
                    problems.append(f"{sent.user}/{conversation_id}: roles {[m.role for m in rows]}")
                if [m.content for m in rows if m.role == "user"] != texts:
                    problems.append(f"{sent.user}/{conversation_id}: user messages out of order or missing")
                if [m.content for m in rows if m.role == "assistant"] != sent.replies[conversation_id]:
                    problems.append(f"{sent.user}/{conversation_id}: stored replies differ from the answers")
                if any(m.user_id != sent.user for m in rows):
                    problems.append(f"{sent.user}/{conversation_id}: a message of another user")
            for task in session.exec(select(Task).where(Task.user_id == sent.user)).all():
                if sent.user not in task.title:
                    problems.append(f"{sent.user}: holds task {task.title!r}")
        strangers = session.exec(select(Message.user_id).where(col(Message.user_id).not_in(users))).all()
        if strangers:
            problems.append(f"{len(strangers)} messages of unknown users")
    engine.dispose()

    # The API agrees: each user lists exactly their own conversations and cannot read a neighbour's.
    with httpx.Client(base_url=base, timeout=30) as client:
        for index, sent in enumerate(everyone):
            auth = {"Authorization": f"Bearer {mint(sent.user)}"}
            listed = client.get(f"/api/{sent.user}/conversations", params={"limit": 100}, headers=auth).json()
            if {c["id"] for c in listed} != set(sent.conversations):
                problems.append(f"{sent.user}: the API lists other conversations")
            neighbour = everyone[(index + 1) % len(everyone)]
            for conversation_id in list(neighbour.conversations)[:1]:
                if neighbour.user == sent.user:
                    continue
                peek = client.get(f"/api/{sent.user}/conversations/{conversation_id}", headers=auth)
                if peek.status_code != 404:
                    problems.append(f"{sent.user} read {neighbour.user}'s conversation: {peek.status_code}")
    return problems


async def load(base: str, users: int, conversations: int, turns: int) -> tuple[list[Sent], Tally, float]:
    tally = Tally()
    names = [f"load-{uuid.uuid4().hex[:8]}" for _ in range(users)]
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        # Warm-up (imports, first connections), not measured.
        await client.get("/health/ready")
        started = time.perf_counter()
        everyone = await asyncio.gather(*(run_user(client, name, conversations, turns, tally) for name in names))
        wall = time.perf_counter() - started
    return list(everyone), tally, wall


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--conversations", type=int, default=3, help="per user")
    parser.add_argument("--turns", type=int, default=4, help="per conversation")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL server URL: the run uses a throwaway database")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        extra: dict[str, str] = {}
        if args.postgres:
            extra["DATABASE_URL"] = stack.enter_context(temporary_database(args.postgres, prefix="todo_agent_load"))
        base, env = stack.enter_context(backend_with_scripted_model(tmp, workers=args.workers, extra_env=extra))
        everyone, tally, wall = asyncio.run(load(base, args.users, args.conversations, args.turns))
        problems = verify(env["DATABASE_URL"], base, everyone)

    total = sum(tally.statuses.values())
    errors = total - tally.statuses[200]
    server_errors = sum(n for status, n in tally.statuses.items() if status >= 500)
    database = env["DATABASE_URL"].split(":", 1)[0]
    print(
        f"load: {args.users} users x {args.conversations} conversations x {args.turns} turns = {total} turns, "
        f"workers={args.workers}, db={database}, cpus={os.cpu_count()}"
    )
    print(
        f"throughput {total / wall:.0f} turns/s, p50 {percentile(tally.latencies_ms, 50):.0f} ms, "
        f"p99 {percentile(tally.latencies_ms, 99):.0f} ms, errors {errors} ({server_errors} 5xx), "
        f"statuses {dict(sorted(tally.statuses.items()))}"
    )
    print(f"stored: every message in order, no cross-user leakage: {not problems}")
    for problem in problems[:20]:
        print("  " + problem)
    return 0 if not problems and server_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
