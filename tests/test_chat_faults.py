"""Bad input and model faults: clear 4xx/5xx bodies, the user's message never lost, the next turn works."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session

from backend import crud
from evals.reference_agent import reference_responder
from evals.scripted_model import Reply, script
from tests.conftest import Harness, Hold, new_user, reached


def stored(harness: Harness, conversation_id: int) -> list[tuple[str, str]]:
    with Session(harness.app.state.engine) as session:
        return [(m.role, m.content) for m in crud.list_messages(session, conversation_id=conversation_id)]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"message": ""}, "message"),
        ({"message": "x" * 4001}, "message"),
        ({}, "message"),
        ({"message": 42}, "message"),
        ({"message": "hi", "conversation_id": "abc"}, "conversation_id"),
        ({"message": "hi", "conversation_id": 1.5}, "conversation_id"),
    ],
)
async def test_bad_chat_bodies_are_422_with_the_error_shape(harness: Harness, body: Any, where: str) -> None:
    user = new_user()
    response = await harness.client.post(f"/api/{user}/chat", json=body, headers=harness.auth(user))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error" and where in error["message"]
    assert "x" * 100 not in response.text  # the offending input is not echoed back


async def test_non_json_body_is_422(harness: Harness) -> None:
    user = new_user()
    headers = {**harness.auth(user), "Content-Type": "application/json"}
    response = await harness.client.post(f"/api/{user}/chat", content=b"{not json", headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_exactly_4000_characters_is_accepted(harness: Harness) -> None:
    user = new_user()
    assert (await harness.chat(user, "y" * 4000)).status_code == 200


@pytest.mark.parametrize(
    ("fault", "repeats", "status", "code"),
    [
        # HTTP errors three in a row: the OpenAI client retries a failed request twice before giving up.
        (Reply(status=500), 3, 502, "model_error"),
        (Reply(status=429), 3, 502, "model_error"),
        (Reply(drop=True), 1, 502, "model_error"),
        (Reply(delay=6.0), 1, 504, "model_timeout"),
    ],
)
async def test_model_faults_keep_the_message_and_the_next_turn_works(
    make_harness: Any, fault: Reply, repeats: int, status: int, code: str
) -> None:
    harness: Harness = await make_harness(script([fault] * repeats, then=reference_responder), model_timeout=4.0)
    user = new_user()
    failed = await harness.chat(user, "Add a task to renew passport")
    assert failed.status_code == status, failed.text
    error = failed.json()["error"]
    assert error["code"] == code and "Traceback" not in failed.text
    conversation_id = error["details"]["conversation_id"]
    assert stored(harness, conversation_id) == [("user", "Add a task to renew passport")]

    retry = await harness.chat(user, "Add a task to renew passport", conversation_id)
    assert retry.status_code == 200
    assert retry.json()["tool_calls"][0]["name"] == "add_task"
    assert [role for role, _ in stored(harness, conversation_id)] == ["user", "user", "assistant"]


async def test_a_failure_after_a_tool_ran_keeps_the_call_in_the_conversation(make_harness: Any) -> None:
    responder = script([Reply(calls=[("add_task", {"title": "Book dentist"})]), *[Reply(status=500)] * 3])
    harness: Harness = await make_harness(responder)
    user = new_user()
    failed = await harness.chat(user, "Add a task to book the dentist")
    assert failed.status_code == 502
    conversation_id = failed.json()["error"]["details"]["conversation_id"]
    detail = (
        await harness.client.get(f"/api/{user}/conversations/{conversation_id}", headers=harness.auth(user))
    ).json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert detail["messages"][1]["tool_calls"][0]["result"]["status"] == "created"


async def test_malformed_tool_calls_forever_stop_at_the_turn_bound(make_harness: Any) -> None:
    def looping(_: dict[str, Any]) -> Reply:
        return Reply(calls=[("list_tasks", "{broken")])

    harness: Harness = await make_harness(looping, max_agent_turns=3)
    user = new_user()
    response = await harness.chat(user, "Show my tasks")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "model_error"
    assert "3 steps" in response.json()["error"]["message"]
    assert len(harness.model_requests) == 3


async def test_a_tool_call_loop_is_stopped_at_the_turn_bound(make_harness: Any) -> None:
    harness: Harness = await make_harness(lambda _: Reply(calls=[("list_tasks", {})]), max_agent_turns=4)
    response = await harness.chat(new_user(), "Show my tasks")
    assert response.status_code == 502 and "4 steps" in response.json()["error"]["message"]


async def test_a_running_turn_makes_a_concurrent_turn_409(make_harness: Any) -> None:
    import asyncio

    hold = Hold()
    harness: Harness = await make_harness(script(["first", Reply(text="slow", wait=hold)], then=reference_responder))
    user = new_user()
    conversation_id = (await harness.chat(user, "hello")).json()["conversation_id"]
    slow = asyncio.create_task(harness.chat(user, "slow one", conversation_id))
    await reached(hold.entered)
    busy = await harness.chat(user, "impatient", conversation_id)
    hold.release.set()
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "conflict"
    assert (await slow).status_code == 200
    assert (await harness.chat(user, "after", conversation_id)).status_code == 200


async def test_history_window_is_bounded(make_harness: Any) -> None:
    harness: Harness = await make_harness(history_window=4)
    user = new_user()
    conversation_id = (await harness.chat(user, "hello 0")).json()["conversation_id"]
    for index in range(1, 6):
        await harness.chat(user, f"hello {index}", conversation_id)
    last_request = harness.model_requests[-1]["messages"]
    users = [m["content"] for m in last_request if m["role"] == "user"]
    assert users == ["hello 3", "hello 4", "hello 5"]  # 4 stored messages of history + the new one


async def test_conversation_resumes_after_a_restart(make_harness: Any, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    first: Harness = await make_harness(database_url=url)
    user = new_user()
    conversation_id = (await first.chat(user, "Add a task to feed the cat")).json()["conversation_id"]
    await first.client.aclose()
    first.app.state.engine.dispose()

    second: Harness = await make_harness(database_url=url)  # a new process, as far as the app knows
    response = await second.chat(user, "Show me all my tasks", conversation_id)
    assert response.status_code == 200
    assert response.json()["tool_calls"][0]["result"][0]["title"] == "Feed the cat"
    assert any(m["role"] == "tool" for m in second.model_requests[-2]["messages"])
