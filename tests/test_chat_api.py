"""The chat contract through the real ASGI stack, a scripted model at the model boundary, on each database."""

from __future__ import annotations

from typing import Any

from evals.scripted_model import Reply, script
from tests.conftest import Harness, new_user


async def test_add_task_turn_creates_task_and_reports_the_call(harness: Harness) -> None:
    user = new_user()
    response = await harness.chat(user, "Add a task to buy groceries")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"conversation_id", "response", "tool_calls"}
    assert isinstance(body["conversation_id"], int)
    assert body["tool_calls"] == [
        {
            "name": "add_task",
            "arguments": {"title": "Buy groceries"},
            "result": body["tool_calls"][0]["result"],
        }
    ]
    result = body["tool_calls"][0]["result"]
    assert result["status"] == "created" and result["title"] == "Buy groceries"
    assert isinstance(result["task_id"], int)
    assert "Buy groceries" in body["response"]

    tasks = (await harness.client.get(f"/api/{user}/tasks", headers=harness.auth(user))).json()
    assert [(t["id"], t["title"], t["completed"]) for t in tasks] == [(result["task_id"], "Buy groceries", False)]


async def test_conversation_resumes_with_history_and_stores_both_messages(harness: Harness) -> None:
    user = new_user()
    first = (await harness.chat(user, "Add a task to call mom")).json()
    second = await harness.chat(user, "Show me all my tasks", first["conversation_id"])
    assert second.status_code == 200
    body = second.json()
    assert body["conversation_id"] == first["conversation_id"]
    assert body["tool_calls"][0]["name"] == "list_tasks"
    assert body["tool_calls"][0]["result"][0]["title"] == "Call mom"
    # The second model request carried the first turn, its tool call and the tool's result.
    roles = [m["role"] for m in harness.model_requests[-2]["messages"]]
    assert roles[:1] == ["system"] and roles.count("user") == 2 and "tool" in roles

    detail = (
        await harness.client.get(f"/api/{user}/conversations/{first['conversation_id']}", headers=harness.auth(user))
    ).json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "user", "assistant"]
    assert detail["messages"][0]["content"] == "Add a task to call mom"
    assert detail["messages"][1]["tool_calls"][0]["name"] == "add_task"
    assert detail["title"] == "Add a task to call mom"


async def test_complete_is_not_a_toggle_and_missing_task_is_a_tool_error(harness: Harness) -> None:
    user = new_user()
    added = (await harness.chat(user, "Add a task to water plants")).json()
    task_id = added["tool_calls"][0]["result"]["task_id"]
    for _ in range(2):
        done = (await harness.chat(user, f"Mark task {task_id} as complete")).json()
        assert done["tool_calls"][0]["result"] == {
            "task_id": task_id,
            "status": "completed",
            "title": "Water plants",
        }
    task = (await harness.client.get(f"/api/{user}/tasks/{task_id}", headers=harness.auth(user))).json()
    assert task["completed"] is True

    missing = await harness.chat(user, "Delete task 999999")
    assert missing.status_code == 200
    assert missing.json()["tool_calls"][0]["result"]["error"]["code"] == "not_found"
    assert "no task" in missing.json()["response"].lower()


async def test_tools_cannot_reach_another_users_task(harness: Harness) -> None:
    owner, intruder = new_user(), new_user()
    added = (await harness.chat(owner, "Add a task to file taxes")).json()
    task_id = added["tool_calls"][0]["result"]["task_id"]
    for message in (
        f"Delete task {task_id}",
        f"Mark task {task_id} as done",
        f"Change task {task_id} to 'pwned'",
    ):
        body = (await harness.chat(intruder, message)).json()
        assert body["tool_calls"][0]["result"] == {
            "error": {"code": "not_found", "message": f"There is no task with id {task_id}."}
        }
    task = (await harness.client.get(f"/api/{owner}/tasks/{task_id}", headers=harness.auth(owner))).json()
    assert task["title"] == "File taxes" and task["completed"] is False


async def test_chat_without_user_in_path_uses_the_token(harness: Harness) -> None:
    user = new_user()
    response = await harness.client.post(
        "/api/chat",
        json={"message": "Add a task to pay bills", "user_id": "someone-else"},
        headers=harness.auth(user),
    )
    assert response.status_code == 200
    tasks = (await harness.client.get(f"/api/{user}/tasks", headers=harness.auth(user))).json()
    assert [t["title"] for t in tasks] == ["Pay bills"]


async def test_tool_arguments_the_model_gets_wrong_come_back_as_tool_errors(make_harness: Any) -> None:
    responder = script(
        [Reply(calls=[("add_task", {"title": ""})]), Reply(calls=[("complete_task", "{not json")]), "Sorry."],
    )
    harness: Harness = await make_harness(responder)
    body = (await harness.chat(new_user(), "Add it")).json()
    assert body["tool_calls"][0]["result"]["error"]["code"] == "invalid_arguments"
    assert body["tool_calls"][1]["result"]["error"]["code"] == "invalid_arguments"
    assert body["response"] == "Sorry."
