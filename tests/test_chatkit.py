"""The ChatKit door: the request bodies ChatKit's client sends, replayed through the real ASGI app.

Every SSE event and JSON answer is validated with the `openai-chatkit` SDK's own pydantic types; streamed events are
applied to a model of the thread, which must then equal what `items.list` returns.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ErrorEvent,
    Page,
    ProgressUpdateEvent,
    StreamOptionsEvent,
    Thread,
    ThreadCreatedEvent,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
    ThreadUpdatedEvent,
    UserMessageItem,
    WorkflowItem,
    WorkflowTaskAdded,
    WorkflowTaskUpdated,
)
from httpx_sse import aconnect_sse
from pydantic import TypeAdapter
from sqlmodel import Session

from backend import conversation_changes, db
from backend.main import create_app
from evals.reference_agent import reference_responder
from evals.scripted_model import Reply, script
from tests.conftest import Harness, ThreadHold, TurnLog, make_settings, new_user
from tests.live_server import serve

STREAM_EVENT: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)
THREAD: TypeAdapter[Thread] = TypeAdapter(Thread)
THREAD_PAGE: TypeAdapter[Page[Thread]] = TypeAdapter(Page[Thread])
ITEM_PAGE: TypeAdapter[Page[ThreadItem]] = TypeAdapter(Page[ThreadItem])


# ---------------------------------------------------------------- what the ChatKit client sends


def user_input(text: str) -> dict[str, Any]:
    return {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}


def create_body(text: str) -> dict[str, Any]:
    return {"type": "threads.create", "params": {"input": user_input(text)}, "metadata": {}}


def add_body(thread: str, text: str) -> dict[str, Any]:
    return {"type": "threads.add_user_message", "params": {"thread_id": thread, "input": user_input(text)}}


def retry_body(thread: str, item: str) -> dict[str, Any]:
    return {"type": "threads.retry_after_item", "params": {"thread_id": thread, "item_id": item}}


def get_body(thread: str) -> dict[str, Any]:
    return {"type": "threads.get_by_id", "params": {"thread_id": thread}}


def items_body(
    thread: str, *, order: str = "asc", limit: int | None = None, after: str | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"thread_id": thread, "order": order}
    if limit is not None:
        params["limit"] = limit
    if after is not None:
        params["after"] = after
    return {"type": "items.list", "params": params}


def list_body(*, order: str = "desc", limit: int | None = None, after: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"order": order}
    if limit is not None:
        params["limit"] = limit
    if after is not None:
        params["after"] = after
    return {"type": "threads.list", "params": params}


def update_body(thread: str, title: str) -> dict[str, Any]:
    return {"type": "threads.update", "params": {"thread_id": thread, "title": title}}


def delete_body(thread: str) -> dict[str, Any]:
    return {"type": "threads.delete", "params": {"thread_id": thread}}


# ---------------------------------------------------------------- a client's model of a thread


@dataclass
class ThreadModel:
    """What a ChatKit client holds after applying a stream's events, checked for protocol sanity on the way."""

    thread: Thread | None = None
    items: dict[str, ThreadItem] = field(default_factory=dict)
    errors: list[ErrorEvent] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)

    def apply(self, event: ThreadStreamEvent) -> None:
        if isinstance(event, ThreadCreatedEvent | ThreadUpdatedEvent):
            self.thread = event.thread
        elif isinstance(event, ThreadItemAddedEvent):
            assert event.item.id not in self.items, f"added twice: {event.item.id}"
            self._put(event.item)
        elif isinstance(event, ThreadItemDoneEvent):
            self._put(event.item)
        elif isinstance(event, ThreadItemReplacedEvent):
            assert event.item.id in self.items, f"replaced an unknown item: {event.item.id}"
            self._put(event.item)
        elif isinstance(event, ThreadItemRemovedEvent):
            assert event.item_id in self.items, f"removed an unknown item: {event.item_id}"
            del self.items[event.item_id]
        elif isinstance(event, ThreadItemUpdatedEvent):
            self._update(event)
        elif isinstance(event, ErrorEvent):
            self.errors.append(event)
        else:
            assert isinstance(event, StreamOptionsEvent | ProgressUpdateEvent), event

    def _put(self, item: ThreadItem) -> None:
        assert item.id != "__fake_id__"
        self.seen_ids.add(item.id)
        self.items[item.id] = item.model_copy(deep=True)

    def _update(self, event: ThreadItemUpdatedEvent) -> None:
        item = self.items[event.item_id]
        update = event.update
        if isinstance(update, AssistantMessageContentPartAdded | AssistantMessageContentPartDone):
            assert isinstance(item, AssistantMessageItem)
            while len(item.content) <= update.content_index:
                item.content.append(AssistantMessageContent(text=""))
            item.content[update.content_index] = update.content
        elif isinstance(update, AssistantMessageContentPartTextDelta):
            assert isinstance(item, AssistantMessageItem)
            item.content[update.content_index].text += update.delta
        elif isinstance(update, WorkflowTaskAdded):
            assert isinstance(item, WorkflowItem)
            assert update.task_index == len(item.workflow.tasks)
            item.workflow.tasks.append(update.task)
        elif isinstance(update, WorkflowTaskUpdated):
            assert isinstance(item, WorkflowItem)
            item.workflow.tasks[update.task_index] = update.task
        else:
            raise AssertionError(f"unexpected update {update.type}")

    @property
    def text(self) -> list[str]:
        return [item.content[0].text for item in self.items.values() if isinstance(item, AssistantMessageItem)]


# ---------------------------------------------------------------- talking to the door


@dataclass
class Door:
    harness: Harness

    @property
    def client(self) -> httpx.AsyncClient:
        return self.harness.client

    async def post(self, user: str, body: Any, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {**self.harness.auth(user), "Content-Type": "application/json"}
        return await self.client.post("/chatkit", content=content, headers=headers, **kwargs)

    async def json(self, user: str, body: dict[str, Any]) -> Any:
        response = await self.post(user, body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()

    async def stream(self, user: str, body: dict[str, Any], model: ThreadModel | None = None) -> ThreadModel:
        """POST a streaming request, validate each event with the SDK's types and apply it to `model`."""
        model = model or ThreadModel()
        events: list[ThreadStreamEvent] = []
        async with aconnect_sse(self.client, "POST", "/chatkit", json=body, headers=self.harness.auth(user)) as source:
            assert source.response.status_code == 200
            async for sse in source.aiter_sse():
                assert "__fake_id__" not in sse.data
                events.append(STREAM_EVENT.validate_json(sse.data))
        assert events, "empty stream"
        for event in events:
            model.apply(event)
        # Nothing provisional survives the stream: every item the client keeps is one items.list knows.
        assert all(not item_id.startswith("pending_") for item_id in model.items), list(model.items)
        return model

    async def items(self, user: str, thread: str) -> list[ThreadItem]:
        page = ITEM_PAGE.validate_python(await self.json(user, items_body(thread, limit=100)))
        assert not page.has_more
        return page.data

    async def thread(self, user: str, thread: str) -> Thread:
        return THREAD.validate_python(await self.json(user, get_body(thread)))


@pytest.fixture
def door(harness: Harness) -> Door:
    return Door(harness)


def conversation_id(thread: str) -> int:
    assert thread.startswith("conv_")
    return int(thread.removeprefix("conv_"))


async def contract_conversation(harness: Harness, user: str, thread: str) -> dict[str, Any]:
    response = await harness.client.get(
        f"/api/{user}/conversations/{conversation_id(thread)}", headers=harness.auth(user)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_model_matches(model: ThreadModel, items: list[ThreadItem]) -> None:
    assert list(model.items.values()) == items
    ids = [item.id for item in items]
    assert len(ids) == len(set(ids)), ids


# ---------------------------------------------------------------- turns


async def test_new_thread_streams_the_tool_call_and_reply_and_equals_items_list(door: Door) -> None:
    user = new_user()
    model = await door.stream(user, create_body("Add a task to buy groceries"))
    assert model.thread is not None and not model.errors
    thread = model.thread.id
    assert model.thread.title == "Add a task to buy groceries"

    items = await door.items(user, thread)
    assert_model_matches(model, items)
    user_item, workflow, reply = items
    assert isinstance(user_item, UserMessageItem) and user_item.content[0].text == "Add a task to buy groceries"
    assert isinstance(workflow, WorkflowItem) and isinstance(reply, AssistantMessageItem)
    [task] = workflow.workflow.tasks
    assert task.status_indicator == "complete" and task.title == "Created “Buy groceries”"
    assert "Buy groceries" in reply.content[0].text
    # Ids come from our rows, not from the model.
    assert [item.id for item in items] == [user_item.id, f"wf_{reply.id[4:]}", reply.id]

    # The turn was the chat service's: the contract reads the same conversation, tool call included.
    conversation = await contract_conversation(door.harness, user, thread)
    assert conversation["title"] == "Add a task to buy groceries"
    messages = conversation["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert [f"msg_{m['id']}" for m in messages] == [user_item.id, reply.id]
    assert messages[1]["content"] == reply.content[0].text
    [call] = messages[1]["tool_calls"]
    assert call["name"] == "add_task" and call["arguments"] == {"title": "Buy groceries"}
    tasks = (await door.client.get(f"/api/{user}/tasks", headers=door.harness.auth(user))).json()
    assert [t["title"] for t in tasks] == ["Buy groceries"]

    # get_by_id: the same thread, with the same items.
    full = await door.thread(user, thread)
    assert full.title == model.thread.title and full.created_at == model.thread.created_at
    assert full.items.data == items


async def test_tool_calls_stream_as_workflow_tasks_before_the_text(door: Door) -> None:
    user = new_user()
    events: list[ThreadStreamEvent] = []
    async with aconnect_sse(
        door.client, "POST", "/chatkit", json=create_body("Add a task to call mom"), headers=door.harness.auth(user)
    ) as source:
        async for sse in source.aiter_sse():
            events.append(STREAM_EVENT.validate_json(sse.data))
    kinds = [e.type if not isinstance(e, ThreadItemUpdatedEvent) else e.update.type for e in events]
    assert kinds[0] == "thread.created"
    workflow_added = next(e for e in events if isinstance(e, ThreadItemAddedEvent) and e.item.type == "workflow")
    assert isinstance(workflow_added.item, WorkflowItem)
    assert workflow_added.item.workflow.tasks[0].status_indicator == "loading"
    assert kinds.index("workflow.task.updated") < kinds.index("assistant_message.content_part.text_delta")
    done = [e.item for e in events if isinstance(e, ThreadItemDoneEvent)]
    assert [item.type for item in done][-2:] == ["workflow", "assistant_message"]


async def test_several_calls_in_one_turn_are_tasks_of_one_workflow(make_harness: Any, database_url: str) -> None:
    harness: Harness = await make_harness(
        script(
            [
                Reply(calls=[("add_task", {"title": "Book the meeting room"})]),
                Reply(calls=[("list_tasks", {"status": "all"})]),
                Reply(calls=[("delete_task", {"task_id": 999999})]),
                "I added it; there was no task 999999 to delete.",
            ],
            then=reference_responder,
        ),
        database_url=database_url,
    )
    door, user = Door(harness), new_user()
    model = await door.stream(user, create_body("Book the meeting room, then tidy up"))
    assert model.thread is not None and not model.errors
    items = await door.items(user, model.thread.id)
    assert_model_matches(model, items)
    workflow = items[1]
    assert isinstance(workflow, WorkflowItem)
    assert [task.title for task in workflow.workflow.tasks] == [
        "Created “Book the meeting room”",
        "Listed 1 task",
        "delete_task failed: There is no task with id 999999.",
    ]
    assert all(task.status_indicator == "complete" for task in workflow.workflow.tasks)
    stored = (await contract_conversation(harness, user, model.thread.id))["messages"][1]["tool_calls"]
    assert [call["name"] for call in stored] == ["add_task", "list_tasks", "delete_task"]


async def test_add_user_message_continues_with_history_and_pages_both_ways(door: Door) -> None:
    user = new_user()
    model = await door.stream(user, create_body("Add a task to water plants"))
    assert model.thread is not None
    thread = model.thread.id
    model = await door.stream(user, add_body(thread, "Show me all my tasks"), model)
    assert not model.errors
    items = await door.items(user, thread)
    assert_model_matches(model, items)
    assert [item.type for item in items] == [
        "user_message",
        "workflow",
        "assistant_message",
        "user_message",
        "workflow",
        "assistant_message",
    ]
    assert "Water plants" in model.text[-1]
    # The model saw the first turn (history came from the chat service).
    roles = [m["role"] for m in door.harness.model_requests[-2]["messages"]]
    assert roles.count("user") == 2 and "tool" in roles

    for order in ("asc", "desc"):
        walked: list[ThreadItem] = []
        after: str | None = None
        while True:
            page = ITEM_PAGE.validate_python(
                await door.json(user, items_body(thread, order=order, limit=2, after=after))
            )
            walked.extend(page.data)
            if not page.has_more:
                break
            assert page.after == page.data[-1].id
            after = page.after
        assert walked == (items if order == "asc" else list(reversed(items)))

    # Limits out of range are clamped, not passed to the database (0 means the SDK's default).
    page = ITEM_PAGE.validate_python(await door.json(user, items_body(thread, limit=-5)))
    assert len(page.data) == 1 and page.has_more
    threads = THREAD_PAGE.validate_python(await door.json(user, list_body(limit=-5)))
    assert [t.id for t in threads.data] == [thread]
    assert len(ITEM_PAGE.validate_python(await door.json(user, items_body(thread, limit=10**6))).data) == 6

    # A page that starts inside a message (between its workflow and its text).
    page = ITEM_PAGE.validate_python(await door.json(user, items_body(thread, after=items[1].id, limit=1)))
    assert page.data == [items[2]] and page.has_more


async def test_contract_conversation_reads_as_a_chatkit_thread_and_continues_there(door: Door) -> None:
    user = new_user()
    first = (await door.harness.chat(user, "Add a task to file taxes")).json()
    thread = f"conv_{first['conversation_id']}"

    full = await door.thread(user, thread)
    assert full.title == "Add a task to file taxes"
    assert [item.type for item in full.items.data] == ["user_message", "workflow", "assistant_message"]
    reply = full.items.data[2]
    assert isinstance(reply, AssistantMessageItem) and reply.content[0].text == first["response"]

    listed = THREAD_PAGE.validate_python(await door.json(user, list_body()))
    assert thread in [t.id for t in listed.data]
    assert all(t.items.data == [] for t in listed.data)  # threads are listed without their items

    model = ThreadModel(items={item.id: item for item in full.items.data})
    model = await door.stream(user, add_body(thread, "What's pending?"), model)
    assert_model_matches(model, await door.items(user, thread))
    conversation = await contract_conversation(door.harness, user, thread)
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"] * 2
    assert conversation["messages"][3]["tool_calls"][0]["arguments"] == {"status": "pending"}


async def test_threads_list_update_and_delete(door: Door) -> None:
    user = new_user()
    threads = []
    for text in ("Add a task to one", "Add a task to two", "Add a task to three"):
        model = await door.stream(user, create_body(text))
        assert model.thread is not None
        threads.append(model.thread.id)

    seen: list[str] = []
    after = None
    while True:
        page = THREAD_PAGE.validate_python(await door.json(user, list_body(limit=2, after=after)))
        seen.extend(t.id for t in page.data)
        if not page.has_more:
            break
        after = page.after
    assert seen == list(reversed(threads))
    ascending = THREAD_PAGE.validate_python(await door.json(user, list_body(order="asc")))
    assert [t.id for t in ascending.data] == threads

    renamed = THREAD.validate_python(await door.json(user, update_body(threads[0], "Errands")))
    assert renamed.title == "Errands" and renamed.id == threads[0]
    assert (await contract_conversation(door.harness, user, threads[0]))["title"] == "Errands"
    assert (await door.thread(user, threads[0])).title == "Errands"

    assert await door.json(user, delete_body(threads[1])) == {}
    gone = await door.harness.client.get(
        f"/api/{user}/conversations/{conversation_id(threads[1])}", headers=door.harness.auth(user)
    )
    assert gone.status_code == 404
    assert (await door.post(user, get_body(threads[1]))).status_code == 404
    # Newest activity first: the rename was the latest, then a turn in the oldest other thread moves it up.
    remaining = THREAD_PAGE.validate_python(await door.json(user, list_body()))
    assert [t.id for t in remaining.data] == [threads[0], threads[2]]
    await door.stream(user, add_body(threads[2], "What's pending?"))
    for limit in (1, 5):
        seen = []
        after = None
        while True:
            page = THREAD_PAGE.validate_python(await door.json(user, list_body(limit=limit, after=after)))
            seen.extend(t.id for t in page.data)
            if not page.has_more:
                break
            after = page.after
        assert seen == [threads[2], threads[0]]
    ascending = THREAD_PAGE.validate_python(await door.json(user, list_body(order="asc", limit=1)))
    assert [t.id for t in ascending.data] == [threads[0]] and ascending.has_more


async def test_thumbs_on_a_reply_are_kept_and_shown_by_the_conversation_endpoints(door: Door) -> None:
    user = new_user()
    model = await door.stream(user, create_body("Add a task to water the plants"))
    assert model.thread is not None
    thread = model.thread.id
    reply = next(item.id for item in await door.items(user, thread) if item.type == "assistant_message")
    user_item = next(item.id for item in await door.items(user, thread) if item.type == "user_message")
    body = {
        "type": "items.feedback",
        "params": {"thread_id": thread, "item_ids": [reply, user_item], "kind": "negative"},
    }
    assert await door.json(user, body) == {}
    messages = (await contract_conversation(door.harness, user, thread))["messages"]
    assert [(m["role"], m["feedback"]) for m in messages] == [("user", None), ("assistant", "negative")]
    body["params"]["kind"] = "positive"
    assert await door.json(user, body) == {}
    messages = (await contract_conversation(door.harness, user, thread))["messages"]
    assert messages[1]["feedback"] == "positive"
    # Nothing of another user's takes it: their thread is simply not found.
    assert (await door.post(new_user(), body)).status_code == 404
    assert (await contract_conversation(door.harness, user, thread))["messages"][1]["feedback"] == "positive"


async def test_retry_after_item_runs_the_turn_again_in_place(make_harness: Any, database_url: str) -> None:
    harness: Harness = await make_harness(
        script(["A first answer.", "A second answer."], then=reference_responder), database_url=database_url
    )
    door, user = Door(harness), new_user()
    model = await door.stream(user, create_body("Hello there"))
    assert model.thread is not None and model.text == ["A first answer."]
    thread = model.thread.id
    user_item = next(iter(model.items.values()))

    # What the client does on "retry": it drops what followed the message, then applies the new stream.
    model.items = {user_item.id: user_item}
    model = await door.stream(user, retry_body(thread, user_item.id), model)
    assert model.text == ["A second answer."] and not model.errors
    items = await door.items(user, thread)
    assert_model_matches(model, items)
    assert items[0] == user_item  # the same message, under the same id

    messages = (await contract_conversation(harness, user, thread))["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [("user", "Hello there"), ("assistant", "A second answer.")]
    # The retried turn's model input held the user message once, and not the discarded answer.
    retried = [m for m in harness.model_requests[-1]["messages"] if m["role"] != "system"]
    assert [(m["role"], m["content"]) for m in retried] == [("user", "Hello there")]

    # Retrying from an assistant item, or from a message of nobody's, is not possible.
    for item in (items[1].id, "msg_999999", "wf_1", "nonsense"):
        assert (await door.post(user, retry_body(thread, item))).status_code == 404


async def test_model_failure_is_an_error_event_and_the_thread_stays_consistent(
    make_harness: Any, database_url: str
) -> None:
    harness: Harness = await make_harness(
        script(
            # The OpenAI client tries a 500 three times.
            [
                *[Reply(status=500)] * 3,
                Reply(calls=[("add_task", {"title": "Feed the cat"})]),
                *[Reply(status=500)] * 3,
            ],
            then=reference_responder,
        ),
        database_url=database_url,
    )
    door, user = Door(harness), new_user()
    model = await door.stream(user, create_body("Hello"))
    assert model.thread is not None
    thread = model.thread.id
    [error] = model.errors
    assert error.code == "custom" and error.message and error.allow_retry
    items = await door.items(user, thread)
    assert_model_matches(model, items)
    assert [item.type for item in items] == ["user_message"]  # the user's message stays stored

    # A failure after a tool call ran: the call is stored (its effect is real) and shown; then the error.
    model = await door.stream(user, add_body(thread, "Add a task to feed the cat"), model)
    assert len(model.errors) == 2
    items = await door.items(user, thread)
    assert_model_matches(model, items)
    assert [item.type for item in items] == ["user_message", "user_message", "workflow"]
    messages = (await contract_conversation(harness, user, thread))["messages"]
    assert messages[-1]["role"] == "assistant" and messages[-1]["tool_calls"][0]["name"] == "add_task"

    # The conversation is free again: the next turn runs.
    model = await door.stream(user, add_body(thread, "What's pending?"), model)
    assert len(model.errors) == 2 and "Feed the cat" in model.text[-1]


# ---------------------------------------------------------------- refusals, before any stream


async def test_another_users_thread_is_not_found_exactly_like_a_missing_one(door: Door) -> None:
    owner, intruder = new_user(), new_user()
    model = await door.stream(owner, create_body("Add a task to guard the castle"))
    assert model.thread is not None
    thread = model.thread.id
    user_item = next(iter(model.items))
    missing = "conv_2147483000"

    def requests(target: str) -> list[dict[str, Any]]:
        return [
            get_body(target),
            items_body(target),
            update_body(target, "mine now"),
            delete_body(target),
            add_body(target, "Delete task 1"),
            retry_body(target, user_item),
            {"type": "items.feedback", "params": {"thread_id": target, "item_ids": [user_item], "kind": "positive"}},
        ]

    for theirs, nobodys in zip(requests(thread), requests(missing), strict=True):
        answer = await door.post(intruder, theirs)
        assert answer.status_code == 404, (theirs["type"], answer.text)
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == {"error": {"code": "not_found", "message": "Thread not found."}}
        assert answer.content == (await door.post(intruder, nobodys)).content
    for odd in ("conv_abc", "conv_0", "conv_99999999999", "thr_1234abcd", ""):
        assert (await door.post(owner, get_body(odd))).status_code == 404

    listed = THREAD_PAGE.validate_python(await door.json(intruder, list_body()))
    assert listed.data == []
    # Nothing of the owner's changed.
    assert_model_matches(model, await door.items(owner, thread))
    assert (await door.thread(owner, thread)).title == "Add a task to guard the castle"
    assert len(door.harness.model_requests) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"params": {}}',
        b'{"type": "threads.explode", "params": {}}',
        b'{"type": "threads.create", "params": {}}',
        b'{"type": "threads.create", "params": {"input": {"content": [{"type": "input_text"}]}}}',
        b'{"type": "threads.get_by_id", "params": {"thread_id": 42}}',
        b'{"type": "items.list", "params": {"thread_id": "conv_1", "order": "sideways"}}',
    ],
)
async def test_malformed_body_is_a_400_json_error(door: Door, body: bytes) -> None:
    answer = await door.post(new_user(), body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "bad_request" and isinstance(error["message"], str) and error["message"]


async def test_requests_this_server_does_not_offer_are_400(door: Door) -> None:
    user = new_user()
    model = await door.stream(user, create_body("Hello"))
    assert model.thread is not None
    thread = model.thread.id
    refused = [
        {"type": "threads.create", "params": {"input": {**user_input("Hello"), "attachments": ["atc_1"]}}},
        {"type": "attachments.create", "params": {"name": "a.txt", "size": 1, "mime_type": "text/plain"}},
        {"type": "attachments.delete", "params": {"attachment_id": "atc_1"}},
        {"type": "input.transcribe", "params": {"audio_base64": "AAAA", "mime_type": "audio/webm"}},
        {"type": "threads.custom_action", "params": {"thread_id": thread, "action": {"type": "x", "payload": {}}}},
        {"type": "threads.add_client_tool_output", "params": {"thread_id": thread, "result": {}}},
        items_body(thread, after="not-an-item"),
        list_body(after="not-a-thread"),
    ]
    for body in refused:
        answer = await door.post(user, body)
        assert answer.status_code == 400, (body["type"], answer.text)
        assert answer.json()["error"]["code"] == "bad_request"
    assert len(await door.items(user, thread)) == 2  # nothing was added


async def test_blank_or_too_long_input_is_422_and_no_token_is_401(door: Door) -> None:
    user = new_user()
    for text in ("   ", "x" * 4001):
        answer = await door.post(user, create_body(text))
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "validation_error"
    model = await door.stream(user, create_body("Hello"))
    assert model.thread is not None
    assert (await door.post(user, update_body(model.thread.id, " "))).status_code == 422
    listed = THREAD_PAGE.validate_python(await door.json(user, list_body()))
    assert len(listed.data) == 1  # the refused requests created nothing

    anonymous = await door.client.post("/chatkit", json=list_body())
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    forged = await door.client.post("/chatkit", json=list_body(), headers={"Authorization": "Bearer nope"})
    assert forged.status_code == 401


async def test_a_running_turn_makes_new_turns_on_the_thread_409(door: Door) -> None:
    user = new_user()
    model = await door.stream(user, create_body("Hello"))
    assert model.thread is not None
    thread = model.thread.id
    user_item = next(iter(model.items))
    with Session(door.harness.app.state.engine) as session:  # another worker's turn holds the conversation
        lease = conversation_changes.acquire_turn_lease(
            session, conversation_id=conversation_id(thread), user_id=user, seconds=60
        )
        assert lease is not None
    for body in (add_body(thread, "Hello again"), retry_body(thread, user_item)):
        answer = await door.post(user, body)
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "conflict"
    # Reading is fine meanwhile, and nothing was stored by the refused turns.
    assert len(await door.items(user, thread)) == 2
    with Session(door.harness.app.state.engine) as session:
        conversation_changes.release_turn_lease(session, lease=lease)
    model = await door.stream(user, add_body(thread, "Hello again"), model)
    assert_model_matches(model, await door.items(user, thread))


async def test_item_ids_are_unique_across_threads_and_turns(door: Door) -> None:
    user = new_user()
    ids: list[str] = []
    for _ in range(2):
        model = await door.stream(user, create_body("Add a task to stretch"))
        assert model.thread is not None
        model = await door.stream(user, add_body(model.thread.id, "Show me all my tasks"), model)
        ids.extend(item.id for item in await door.items(user, model.thread.id))
    assert len(ids) == len(set(ids)) == 12
    assert "__fake_id__" not in ids


async def test_stop_or_a_hang_up_mid_turn_leaves_the_whole_turn_stored(
    make_harness: Any, database_url: str, turn_log: TurnLog
) -> None:
    hold = ThreadHold()  # the reply waits until the client has hung up
    harness: Harness = await make_harness(
        script(
            [Reply(calls=[("add_task", {"title": "Walk the dog"})]), Reply(text="Added 'Walk the dog'.", wait=hold)],
            then=reference_responder,
        ),
        database_url=database_url,
    )
    user = new_user()
    thread = None
    with serve(harness.app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=15) as client:
            async with aconnect_sse(
                client, "POST", "/chatkit", json=create_body("Add a task to walk the dog"), headers=harness.auth(user)
            ) as source:
                async for sse in source.aiter_sse():
                    event = STREAM_EVENT.validate_json(sse.data)
                    if isinstance(event, StreamOptionsEvent):
                        assert event.stream_options.allow_cancel  # ChatKit shows its stop button
                    if isinstance(event, ThreadCreatedEvent):
                        thread = event.thread.id
                    if isinstance(event, ThreadItemUpdatedEvent) and isinstance(event.update, WorkflowTaskUpdated):
                        break  # hang up once the tool call is done, before the reply exists
            assert thread is not None
            await hold.reached()
            hold.release.set()
            await turn_log.ended(1)  # the turn goes on without its client and stores its reply
            door = Door(Harness(harness.app, harness.model_app, client, harness.settings))
            items = await door.items(user, thread)
            assert [item.type for item in items] == ["user_message", "workflow", "assistant_message"]
            follow_up = await door.stream(user, add_body(thread, "Show me all my tasks"))  # the lease was released
            assert "Walk the dog" in follow_up.text[-1]


# ---------------------------------------------------------------- the demo page


async def test_demo_page_mounts_the_web_component_with_the_token_in_fetch(door: Door) -> None:
    page = await door.client.get("/chatkit/demo")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js" in html
    assert "<openai-chatkit" in html and "domainKey" in html
    assert '"/chatkit"' in html and "Authorization" in html and "fetch(" in html


# ---------------------------------------------------------------- the real local model


@pytest.fixture
async def local_door(local_model_settings: Any, tmp_path: Path) -> AsyncIterator[Door]:
    settings = make_settings(
        tmp_path,
        agent_model="local",
        openai_base_url=None,
        openai_api_key=None,
        model_timeout=180.0,
        data_dir=Path("data"),
        local_model_port=local_model_settings.local_model_port,
        database_url=f"sqlite:///{tmp_path / 'todo.db'}",
    )
    app = create_app(settings, migrate=False)  # no model override: the configured local model
    db.upgrade(app.state.engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=300
    ) as client:
        yield Door(Harness(app, app, client, settings))
    app.state.engine.dispose()


@pytest.mark.llm
async def test_a_chatkit_turn_on_the_local_model(local_door: Door) -> None:
    user = new_user()
    model = await local_door.stream(user, create_body("Add a task to buy groceries"))
    assert model.thread is not None and not model.errors, model.errors
    items = await local_door.items(user, model.thread.id)
    assert_model_matches(model, items)
    assert [item.type for item in items] == ["user_message", "workflow", "assistant_message"]
    reply = items[-1]
    assert isinstance(reply, AssistantMessageItem) and reply.content[0].text.strip()
    tasks = (await local_door.client.get(f"/api/{user}/tasks", headers=local_door.harness.auth(user))).json()
    assert ["groceries" in t["title"].lower() for t in tasks] == [True]
