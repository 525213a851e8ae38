"""The chat contract's SSE mode, parsed with a real SSE client (`httpx-sse`), a scripted model at the boundary."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from sqlmodel import Session

from backend import conversation_changes
from evals.reference_agent import reference_responder
from evals.scripted_model import Reply, script
from tests.conftest import Harness, ThreadHold, TurnLog, new_user
from tests.live_server import serve

Event = tuple[str, Any]
TERMINAL = ("done", "error")
CALL_ID = re.compile(r'"call_[^"]*"')


async def stream_turn(
    client: httpx.AsyncClient,
    harness: Harness,
    user: str,
    message: str,
    conversation_id: int | None = None,
    *,
    path: str | None = None,
) -> tuple[httpx.Response, list[Event]]:
    """POST a turn with `Accept: text/event-stream`; the response and its events, data parsed as JSON."""
    body: dict[str, Any] = {"message": message}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    url = path or f"/api/{user}/chat"
    events: list[Event] = []
    async with aconnect_sse(client, "POST", url, json=body, headers=harness.auth(user)) as source:
        if source.response.status_code != 200:
            await source.response.aread()
            return source.response, events
        async for sse in source.aiter_sse():
            events.append((sse.event, json.loads(sse.data)))
    return source.response, events


def check_order(events: list[Event]) -> dict[str, Any]:
    """The contract's grammar: `start`, then `tool_call` / `delta`, then exactly one terminal event, last."""
    assert events, "no events"
    name, start = events[0]
    assert name == "start" and set(start) == {"conversation_id"} and isinstance(start["conversation_id"], int)
    names = [n for n, _ in events]
    assert names.count("start") == 1
    assert sum(names.count(t) for t in TERMINAL) == 1, names
    assert names[-1] in TERMINAL, names
    assert set(names[1:-1]) <= {"tool_call", "delta"}, names
    for name, data in events:
        if name == "tool_call":
            assert set(data) == {"name", "arguments", "result"} and isinstance(data["arguments"], dict)
        elif name == "delta":
            assert set(data) == {"text"} and isinstance(data["text"], str)
        elif name == "error":
            assert set(data) == {"code", "message"}
    return start


def deltas(events: list[Event]) -> str:
    return "".join(data["text"] for name, data in events if name == "delta")


async def stored_messages(harness: Harness, user: str, conversation_id: int) -> list[dict[str, Any]]:
    response = await harness.client.get(f"/api/{user}/conversations/{conversation_id}", headers=harness.auth(user))
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def essence(messages: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """A stored message without its database id and timestamp."""
    return [(m["role"], m["content"], m["tool_calls"]) for m in messages]


async def test_event_order_and_payloads(harness: Harness) -> None:
    user = new_user()
    response, events = await stream_turn(harness.client, harness, user, "Add a task to buy groceries")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    start = check_order(events)
    names = [n for n, _ in events]
    # The tool runs before the reply is written, so its event comes before any text.
    assert names.index("tool_call") < names.index("delta")
    calls = [data for name, data in events if name == "tool_call"]
    assert [(c["name"], c["arguments"]) for c in calls] == [("add_task", {"title": "Buy groceries"})]
    assert calls[0]["result"]["status"] == "created"
    done = events[-1]
    assert done[0] == "done"
    assert done[1] == {
        "conversation_id": start["conversation_id"],
        "response": done[1]["response"],
        "tool_calls": calls,
    }
    assert deltas(events).strip() == done[1]["response"]
    assert "Buy groceries" in done[1]["response"]


async def test_small_talk_streams_without_tool_calls_and_token_route_streams(harness: Harness) -> None:
    user = new_user()
    _, events = await stream_turn(harness.client, harness, user, "Hello there", path="/api/chat")
    check_order(events)
    assert [n for n, _ in events if n == "tool_call"] == []
    assert events[-1][0] == "done" and events[-1][1]["tool_calls"] == []
    assert deltas(events) == events[-1][1]["response"]


async def run_turns(harness: Harness, user: str, *, streamed: bool) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """The reference turns for `user`, by JSON or SSE; the turn bodies and the user's task ids in creation order."""
    bodies: list[dict[str, Any]] = []
    ids: dict[int, int] = {}
    conversation: int | None = None
    turns = [
        "Add a task to buy groceries",
        "I need to remember to pay bills",
        "Mark task {0} as complete",
        "Change task {1} to 'Pay all bills'",
        "What's pending?",
        "Show me all my tasks",
        "Delete task {0}",
        "Hello",
    ]
    for template in turns:
        text = template.format(*ids)
        if streamed:
            _, events = await stream_turn(harness.client, harness, user, text, conversation)
            check_order(events)
            assert events[-1][0] == "done", events
            body = events[-1][1]
            assert [d for n, d in events if n == "tool_call"] == body["tool_calls"]
        else:
            response = await harness.chat(user, text, conversation)
            assert response.status_code == 200, response.text
            body = response.json()
        bodies.append(body)
        conversation = body["conversation_id"]
        for call in body["tool_calls"]:
            if call["name"] == "add_task":
                ids.setdefault(call["result"]["task_id"], len(ids) + 1)
    return bodies, ids


def normalised(value: Any, ids: dict[int, int]) -> Any:
    """`value` with the run's task ids replaced by their creation order (in numbers and in text)."""
    if isinstance(value, dict):
        return {key: normalised(item, ids) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [normalised(item, ids) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return ids.get(value, value)
    if isinstance(value, str):
        return re.sub(r"\b\d+\b", lambda m: str(ids.get(int(m.group()), m.group())), value)
    return value


async def test_done_equals_the_json_response_and_stores_the_same(harness: Harness) -> None:
    """The same turns, JSON for one user and SSE for another: same bodies, same stored messages, same model input."""
    json_user, sse_user = new_user(), new_user()
    json_bodies, json_ids = await run_turns(harness, json_user, streamed=False)
    json_requests = len(harness.model_requests)
    sse_bodies, sse_ids = await run_turns(harness, sse_user, streamed=True)
    sse_requests = harness.model_requests[json_requests:]
    assert len(json_ids) == len(sse_ids) == 2

    def comparable(bodies: list[dict[str, Any]], ids: dict[int, int]) -> Any:
        return normalised([{**body, "conversation_id": None} for body in bodies], ids)

    assert comparable(sse_bodies, sse_ids) == comparable(json_bodies, json_ids)
    json_stored = await stored_messages(harness, json_user, json_bodies[0]["conversation_id"])
    sse_stored = await stored_messages(harness, sse_user, sse_bodies[0]["conversation_id"])
    assert len(sse_stored) == 2 * len(sse_bodies)
    assert normalised(essence(sse_stored), sse_ids) == normalised(essence(json_stored), json_ids)

    # What the model saw (history window, tool results) is the same too.
    def seen(requests: list[dict[str, Any]], ids: dict[int, int]) -> list[Any]:
        # The instructions are compared as they are (their example "task 3" is not an id of this run); tool call
        # ids are opaque (fresh from the model in the turn, derived from message ids in the history).
        def message(index: int, m: dict[str, Any]) -> Any:
            if index == 0 and m["role"] == "system":
                return m
            return normalised(json.loads(CALL_ID.sub('"call"', json.dumps(m))), ids)

        return [[message(i, m) for i, m in enumerate(r["messages"])] for r in requests]

    assert seen(sse_requests, sse_ids) == seen(harness.model_requests[:json_requests], json_ids)
    # Only the stream asks the model for tokens as they come; the JSON door takes whole answers (less to parse).
    assert all(r.get("stream") is True for r in sse_requests)
    assert not any(r.get("stream") for r in harness.model_requests[:json_requests])

    async def tasks(user: str) -> Any:
        return (await harness.client.get(f"/api/{user}/tasks", headers=harness.auth(user))).json()

    assert (
        [(t["title"], t["completed"]) for t in await tasks(sse_user)]
        == [(t["title"], t["completed"]) for t in await tasks(json_user)]
        == [("Pay all bills", False)]
    )


async def test_model_failure_after_a_tool_call_is_an_error_event_and_the_conversation_stays_usable(
    make_harness: Any, database_url: str
) -> None:
    # The first model step calls a tool; every attempt at the next step (the client retries twice) answers 500.
    faults = [Reply(status=500)] * 3
    harness: Harness = await make_harness(
        script([Reply(calls=[("add_task", {"title": "Pay bills"})]), *faults], then=reference_responder),
        database_url=database_url,
    )
    user = new_user()
    response, events = await stream_turn(harness.client, harness, user, "I need to remember to pay bills")
    assert response.status_code == 200
    start = check_order(events)
    names = [n for n, _ in events]
    assert names == ["start", "tool_call", "error"], names
    assert events[-1][1]["code"] == "model_error" and "500" in events[-1][1]["message"]
    call = events[1][1]
    assert call["name"] == "add_task" and call["result"]["status"] == "created"
    assert len(harness.model_requests) == 1 + len(faults)

    conversation = start["conversation_id"]
    stored = await stored_messages(harness, user, conversation)
    # The user's message, and the tool call that really ran (so the next turn knows the task exists).
    assert essence(stored) == [("user", "I need to remember to pay bills", None), ("assistant", "", [call])]
    tasks = (await harness.client.get(f"/api/{user}/tasks", headers=harness.auth(user))).json()
    assert [t["title"] for t in tasks] == ["Pay bills"]

    # The lease is released: the next turn runs, streamed or not, and sees the history.
    _, events = await stream_turn(harness.client, harness, user, "Show me all my tasks", conversation)
    check_order(events)
    assert events[-1][0] == "done" and events[-1][1]["conversation_id"] == conversation
    assert [t["title"] for t in events[-1][1]["tool_calls"][0]["result"]] == ["Pay bills"]
    after = await harness.chat(user, "What's pending?", conversation)
    assert after.status_code == 200
    assert len(await stored_messages(harness, user, conversation)) == 6


async def test_a_model_that_fails_at_once_streams_start_then_error(make_harness: Any) -> None:
    harness: Harness = await make_harness(script([Reply(drop=True)] * 3, then=reference_responder))
    user = new_user()
    _, events = await stream_turn(harness.client, harness, user, "Add a task to buy milk")
    check_order(events)
    assert [n for n, _ in events] == ["start", "error"]
    assert events[-1][1]["code"] == "model_error"
    stored = await stored_messages(harness, user, events[0][1]["conversation_id"])
    assert essence(stored) == [("user", "Add a task to buy milk", None)]


async def test_rejections_are_json_before_any_stream(harness: Harness) -> None:
    owner, other = new_user(), new_user()
    first = (await harness.chat(owner, "Add a task to buy groceries")).json()
    conversation = first["conversation_id"]

    async def rejected(user: str, body: Any, *, path: str | None = None, headers: dict[str, str] | None = None) -> Any:
        response = await harness.client.post(
            path or f"/api/{user}/chat",
            json=body,
            headers={"Accept": "text/event-stream", **(harness.auth(user) if headers is None else headers)},
        )
        assert response.headers["content-type"].startswith("application/json"), response.headers
        return response.status_code, response.json()["error"]["code"]

    assert await rejected(owner, {"message": "hi", "conversation_id": 987_654_321}) == (404, "not_found")
    # Another user's conversation answers exactly like a missing one.
    assert await rejected(other, {"message": "hi", "conversation_id": conversation}) == (404, "not_found")
    assert await rejected(owner, {"message": "x" * 4001}) == (422, "validation_error")
    assert await rejected(owner, {"message": "   "}) == (422, "validation_error")
    assert await rejected(owner, {"conversation_id": conversation}) == (422, "validation_error")
    assert await rejected(owner, {"message": "hi"}, headers={}) == (401, "unauthorized")
    assert await rejected(owner, {"message": "hi"}, path=f"/api/{other}/chat") == (403, "forbidden")

    # A turn already running on the conversation (its lease held, as another worker would hold it): 409.
    with Session(harness.app.state.engine) as session:
        lease = conversation_changes.acquire_turn_lease(
            session, conversation_id=conversation, user_id=owner, seconds=60
        )
        assert lease is not None
    assert await rejected(owner, {"message": "hi", "conversation_id": conversation}) == (409, "conflict")
    with Session(harness.app.state.engine) as session:
        conversation_changes.release_turn_lease(session, lease=lease)
    # Nothing was stored by the rejected requests.
    assert len(await stored_messages(harness, owner, conversation)) == 2


async def test_client_that_disconnects_mid_stream_leaves_a_consistent_conversation(
    make_harness: Any, database_url: str, turn_log: TurnLog
) -> None:
    hold = ThreadHold()  # the reply after the tool call waits, so the client is gone before it exists
    harness: Harness = await make_harness(
        script(
            [Reply(calls=[("add_task", {"title": "Walk the dog"})]), Reply(text="Added 'Walk the dog'.", wait=hold)],
            then=reference_responder,
        ),
        database_url=database_url,
    )
    user = new_user()
    with serve(harness.app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=15) as client:
            seen: list[Event] = []
            async with aconnect_sse(
                client,
                "POST",
                f"/api/{user}/chat",
                json={"message": "Add a task to walk the dog"},
                headers=harness.auth(user),
            ) as source:
                async for sse in source.aiter_sse():
                    seen.append((sse.event, json.loads(sse.data)))
                    if sse.event == "tool_call":
                        break  # hang up: leaving the block closes the connection mid-stream
            assert [n for n, _ in seen] == ["start", "tool_call"]
            conversation = seen[0][1]["conversation_id"]
            await hold.reached()

            # The turn goes on without its client: the user message is stored, the lease still held.
            assert essence(await stored_messages(harness, user, conversation)) == [
                ("user", "Add a task to walk the dog", None)
            ]
            busy = await client.post(
                f"/api/{user}/chat", json={"message": "hi", "conversation_id": conversation}, headers=harness.auth(user)
            )
            assert busy.status_code == 409 and busy.json()["error"]["code"] == "conflict"

            hold.release.set()
            [ended] = await turn_log.ended(1)  # the turn stores its reply and gives the lease back, unobserved
            assert ended.fields["outcome"] == "ok"  # type: ignore[attr-defined]
            assert essence(await stored_messages(harness, user, conversation)) == [
                ("user", "Add a task to walk the dog", None),
                ("assistant", "Added 'Walk the dog'.", [seen[1][1]]),
            ]

            # The lease was released when the turn ended: the next turn runs (streamed, on the live server).
            _, events = await stream_turn(client, harness, user, "Show me all my tasks", conversation)
            check_order(events)
            assert events[-1][0] == "done"
            assert [t["title"] for t in events[-1][1]["tool_calls"][0]["result"]] == ["Walk the dog"]
            # The first reply was stored once: the conversation is exactly the two turns.
            assert len(await stored_messages(harness, user, conversation)) == 4
