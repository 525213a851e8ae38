"""Tasks and conversations REST, on each database: shapes, status codes, and not-yours == missing."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest

from tests.conftest import Harness, new_user


async def test_task_crud_round_trip(harness: Harness) -> None:
    user = new_user()
    auth = harness.auth(user)
    base = f"/api/{user}/tasks"
    created = await harness.client.post(base, json={"title": "  Buy milk ", "description": "2 litres"}, headers=auth)
    assert created.status_code == 201
    task = created.json()
    assert set(task) == {"id", "title", "description", "completed", "created_at", "updated_at"}
    assert task["title"] == "Buy milk" and task["completed"] is False

    second = (await harness.client.post(base, json={"title": "Call mom", "description": None}, headers=auth)).json()
    patched = await harness.client.patch(f"{base}/{task['id']}", json={"completed": True}, headers=auth)
    assert patched.status_code == 200 and patched.json()["completed"] is True
    assert patched.json()["description"] == "2 litres"

    cleared = (await harness.client.patch(f"{base}/{task['id']}", json={"description": None}, headers=auth)).json()
    assert cleared["description"] is None and cleared["title"] == "Buy milk"

    listing = {
        status: [t["id"] for t in (await harness.client.get(f"{base}?status={status}", headers=auth)).json()]
        for status in ("all", "pending", "completed")
    }
    assert listing == {
        "all": [task["id"], second["id"]],
        "pending": [second["id"]],
        "completed": [task["id"]],
    }

    assert (await harness.client.delete(f"{base}/{task['id']}", headers=auth)).status_code == 204
    assert (await harness.client.get(f"{base}/{task['id']}", headers=auth)).status_code == 404


async def test_another_users_task_is_byte_identical_to_a_missing_one(harness: Harness) -> None:
    owner, other = new_user(), new_user()
    task = (
        await harness.client.post(f"/api/{owner}/tasks", json={"title": "Secret"}, headers=harness.auth(owner))
    ).json()
    base = f"/api/{other}/tasks"
    for method, body in (("GET", None), ("PATCH", {"title": "mine now"}), ("DELETE", None)):
        theirs = await harness.client.request(method, f"{base}/{task['id']}", json=body, headers=harness.auth(other))
        missing = await harness.client.request(method, f"{base}/99999999", json=body, headers=harness.auth(other))
        assert theirs.status_code == missing.status_code == 404
        assert theirs.content == missing.content
    still = (await harness.client.get(f"/api/{owner}/tasks/{task['id']}", headers=harness.auth(owner))).json()
    assert still["title"] == "Secret"


async def test_task_validation_errors(harness: Harness) -> None:
    user = new_user()
    auth = harness.auth(user)
    base = f"/api/{user}/tasks"
    cases = [
        {"title": ""},
        {"title": "x" * 201},
        {"description": "no title"},
        {"title": "ok", "description": "d" * 1001},
        {"title": 5},
        {"title": "ok", "owner": "someone"},
    ]
    for body in cases:
        response = await harness.client.post(base, json=body, headers=auth)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"
    task = (await harness.client.post(base, json={"title": "ok"}, headers=auth)).json()
    bad_patch = await harness.client.patch(f"{base}/{task['id']}", json={"title": None}, headers=auth)
    assert bad_patch.status_code == 422
    bad_status = await harness.client.get(f"{base}?status=everything", headers=auth)
    assert bad_status.status_code == 422


async def test_conversations_list_read_delete(harness: Harness) -> None:
    user, other = new_user(), new_user()
    auth = harness.auth(user)
    first = (await harness.chat(user, "Add a task to buy bread")).json()["conversation_id"]
    second = (await harness.chat(user, "Show me all my tasks")).json()["conversation_id"]
    listing = (await harness.client.get(f"/api/{user}/conversations", headers=auth)).json()
    assert [c["id"] for c in listing] == [second, first]
    assert set(listing[0]) == {"id", "title", "created_at", "updated_at"}
    paged = (await harness.client.get(f"/api/{user}/conversations?limit=1&offset=1", headers=auth)).json()
    assert [c["id"] for c in paged] == [first]

    detail = (await harness.client.get(f"/api/{user}/conversations/{first}", headers=auth)).json()
    assert detail["id"] == first and len(detail["messages"]) == 2
    assert set(detail["messages"][0]) == {"id", "role", "content", "tool_calls", "created_at", "feedback"}

    theirs = await harness.client.get(f"/api/{other}/conversations/{first}", headers=harness.auth(other))
    missing = await harness.client.get(f"/api/{other}/conversations/99999999", headers=harness.auth(other))
    assert theirs.status_code == missing.status_code == 404 and theirs.content == missing.content
    continue_theirs = await harness.chat(other, "hello", conversation_id=first)
    continue_missing = await harness.chat(other, "hello", conversation_id=99999999)
    assert continue_theirs.status_code == continue_missing.status_code == 404
    assert continue_theirs.content == continue_missing.content
    assert (await harness.client.get(f"/api/{other}/conversations", headers=harness.auth(other))).json() == []

    assert (await harness.client.delete(f"/api/{user}/conversations/{first}", headers=auth)).status_code == 204
    assert (await harness.client.get(f"/api/{user}/conversations/{first}", headers=auth)).status_code == 404


async def test_each_rest_request_is_one_threadpool_trip(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Auth and the other dependencies run on the event loop and a route's database work is one trip to the
    threadpool: a sync route with a session dependency took four, and under load those hand-offs cost more than
    the queries."""
    trips: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(func, "__qualname__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    user = new_user()
    auth = harness.auth(user)
    base = f"/api/{user}/tasks"
    task = (await harness.client.post(base, json={"title": "Buy milk"}, headers=auth)).json()
    calls = [
        harness.client.get(base, headers=auth),
        harness.client.get(f"{base}/{task['id']}", headers=auth),
        harness.client.patch(f"{base}/{task['id']}", json={"completed": True}, headers=auth),
        harness.client.get(f"/api/{user}/conversations", headers=auth),
        harness.client.delete(f"{base}/{task['id']}", headers=auth),
        harness.client.get(f"{base}/{task['id']}", headers=auth),  # a 404 too
    ]
    for call in calls:
        await call
    assert len(trips) == 1 + len(calls), trips
