"""Concurrent turns on one conversation are serialised or rejected with 409, never interleaved or lost.

The scripted model echoes the user's message after a short delay, so the turns really overlap and every stored reply
can be matched to the message it answers. Two app instances on one database stand in for two workers: the lease
lives in the database, not in a process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from backend import crud
from evals.scripted_model import Reply, last_user_text
from tests.conftest import Harness, Hold, new_user, reached

TURNS = 12


def slow_echo(request: dict[str, Any]) -> Reply:
    return Reply(text=f"echo: {last_user_text(request)}", delay=0.05)


def stored(harness: Harness, conversation_id: int) -> list[tuple[str, str]]:
    with Session(harness.app.state.engine) as session:
        return [(m.role, m.content) for m in crud.list_messages(session, conversation_id=conversation_id)]


def assert_paired(messages: list[tuple[str, str]]) -> None:
    """user, assistant, user, assistant...: each reply answers the message right before it."""
    assert len(messages) % 2 == 0, messages
    for (role, text), (reply_role, reply) in zip(messages[::2], messages[1::2], strict=True):
        assert (role, reply_role) == ("user", "assistant"), messages
        assert reply == f"echo: {text}", messages


async def start(harness: Harness, user: str) -> int:
    response = await harness.chat(user, "first")
    assert response.status_code == 200, response.text
    conversation_id: int = response.json()["conversation_id"]
    return conversation_id


async def fire(harnesses: list[Harness], user: str, conversation_id: int, texts: list[str]) -> list[httpx.Response]:
    """Send every turn at once, spread over the app instances."""
    return await asyncio.gather(
        *(harnesses[i % len(harnesses)].chat(user, text, conversation_id) for i, text in enumerate(texts))
    )


@pytest.mark.parametrize("instances", [1, 2])
async def test_simultaneous_turns_are_accepted_or_409_and_stored_in_pairs(
    make_harness: Callable[..., Any], database_url: str, instances: int
) -> None:
    harnesses = [
        await make_harness(slow_echo, database_url=database_url, rate_limit_per_minute=100_000)
        for _ in range(instances)
    ]
    user = new_user()
    conversation_id = await start(harnesses[0], user)
    texts = [f"turn {i}" for i in range(TURNS)]

    responses = await fire(harnesses, user, conversation_id, texts)

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 409}, statuses
    accepted = [text for text, r in zip(texts, responses, strict=True) if r.status_code == 200]
    assert accepted, "no turn got through"
    assert statuses.count(409) >= 1, "the turns did not overlap: the test proves nothing"
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "conflict"
        else:
            assert response.json()["conversation_id"] == conversation_id
            assert response.json()["response"].startswith("echo: turn ")

    messages = stored(harnesses[0], conversation_id)
    assert_paired(messages)
    # Every accepted turn is stored, nothing refused is, nothing twice.
    assert sorted(text for role, text in messages[2:] if role == "user") == sorted(accepted)


@pytest.mark.parametrize("instances", [1, 2])
async def test_clients_that_retry_on_409_get_every_turn_stored_in_order(
    make_harness: Callable[..., Any], database_url: str, instances: int
) -> None:
    """Serialised: each client retries its turn until accepted; all of them end up stored, none interleaved."""
    harnesses = [
        await make_harness(slow_echo, database_url=database_url, rate_limit_per_minute=100_000)
        for _ in range(instances)
    ]
    user = new_user()
    conversation_id = await start(harnesses[0], user)
    conflicts = 0

    async def send_until_accepted(index: int) -> str:
        nonlocal conflicts
        text = f"queued {index}"
        harness = harnesses[index % len(harnesses)]
        for _ in range(400):
            response = await harness.chat(user, text, conversation_id)
            if response.status_code == 200:
                assert response.json()["response"] == f"echo: {text}"
                return text
            assert response.status_code == 409, response.text
            conflicts += 1
            await asyncio.sleep(0.01)  # a client's back-off before it tries again, as a real one would
        raise AssertionError(f"{text} never got a turn")

    accepted = await asyncio.gather(*(send_until_accepted(i) for i in range(8)))

    assert conflicts > 0
    messages = stored(harnesses[0], conversation_id)
    assert_paired(messages)
    assert sorted(text for role, text in messages[2:] if role == "user") == sorted(accepted)
    assert len(messages) == 2 + 2 * len(accepted)


async def test_a_streamed_turn_holds_the_conversation_too(make_harness: Callable[..., Any], database_url: str) -> None:
    """While an SSE turn runs, a JSON turn on the same conversation is a 409; afterwards it goes through."""
    hold = Hold()

    def respond(request: dict[str, Any]) -> Reply:
        held = last_user_text(request) == "streamed"
        return Reply(text=f"echo: {last_user_text(request)}", wait=hold if held else None)

    harness = await make_harness(respond, database_url=database_url)
    user = new_user()
    conversation_id = await start(harness, user)
    headers = {**harness.auth(user), "Accept": "text/event-stream"}

    async def streamed() -> str:
        body = {"message": "streamed", "conversation_id": conversation_id}
        response = await harness.client.post(f"/api/{user}/chat", json=body, headers=headers)
        return response.text

    stream_task = asyncio.create_task(streamed())
    await reached(hold.entered)
    blocked = await harness.chat(user, "meanwhile", conversation_id)
    hold.release.set()
    assert blocked.status_code == 409
    assert "event: done" in await stream_task
    after = await harness.chat(user, "after", conversation_id)
    assert after.status_code == 200
    messages = stored(harness, conversation_id)
    assert_paired(messages)
    assert [text for role, text in messages if role == "user"] == ["first", "streamed", "after"]
