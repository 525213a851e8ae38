"""How stored messages look to ChatKit: string ids, message items, and tool calls as a workflow.

Ids come from our side, never from the model (Chat Completions names every message `__fake_id__`):
`conv_42` is conversation 42; message row 17 is `msg_17` (its text) and, for an assistant message that called
tools, `wf_17` (its tool calls, shown before the text). Items are rendered from rows on every read, so a turn run
through the JSON contract reads as a ChatKit thread and a ChatKit turn reads through the contract.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    CustomSummary,
    CustomTask,
    InferenceOptions,
    ThreadItem,
    UserMessageItem,
    UserMessageTextContent,
    Workflow,
    WorkflowItem,
)

from backend.models import Message

# Ids are INTEGER columns: a larger number is simply not ours (and would make PostgreSQL raise, not answer 404).
MAX_ROW_ID = 2**31 - 1
_THREAD_ID = re.compile(r"conv_([1-9][0-9]{0,9})")
_ITEM_ID = re.compile(r"(wf|msg)_([1-9][0-9]{0,9})")

WORKFLOW_PART = 0  # an assistant message's tool calls come before its text
TEXT_PART = 1
_PART_PREFIX = {WORKFLOW_PART: "wf", TEXT_PART: "msg"}


def thread_id(conversation_id: int) -> str:
    return f"conv_{conversation_id}"


def parse_thread_id(value: str) -> int | None:
    match = _THREAD_ID.fullmatch(value)
    if match is None or int(match.group(1)) > MAX_ROW_ID:
        return None
    return int(match.group(1))


@dataclass(frozen=True, order=True)
class ItemKey:
    """Where an item sits: its message row, then its part of that row; ordering keys is ordering items."""

    message_id: int
    part: int

    @property
    def id(self) -> str:
        return f"{_PART_PREFIX[self.part]}_{self.message_id}"


def parse_item_id(value: str) -> ItemKey | None:
    match = _ITEM_ID.fullmatch(value)
    if match is None or int(match.group(2)) > MAX_ROW_ID:
        return None
    return ItemKey(int(match.group(2)), WORKFLOW_PART if match.group(1) == "wf" else TEXT_PART)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they are UTC, and a client must not read them as local time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------- messages


def message_items(message: Message, thread: str) -> list[tuple[ItemKey, ThreadItem]]:
    """The items one stored message shows as, in thread order, each with its key."""
    assert message.id is not None
    created_at = as_utc(message.created_at)
    if message.role == "user":
        key = ItemKey(message.id, TEXT_PART)
        user_item = UserMessageItem(
            id=key.id,
            thread_id=thread,
            created_at=created_at,
            content=[UserMessageTextContent(text=message.content)],
            inference_options=InferenceOptions(),
        )
        return [(key, user_item)]
    items: list[tuple[ItemKey, ThreadItem]] = []
    if message.tool_calls:
        key = ItemKey(message.id, WORKFLOW_PART)
        workflow = Workflow(
            type="custom",
            tasks=[finished_task(call) for call in message.tool_calls],
            summary=workflow_summary(message.tool_calls),
            expanded=False,
        )
        items.append((key, WorkflowItem(id=key.id, thread_id=thread, created_at=created_at, workflow=workflow)))
    if message.content:
        key = ItemKey(message.id, TEXT_PART)
        text = AssistantMessageItem(
            id=key.id,
            thread_id=thread,
            created_at=created_at,
            content=[AssistantMessageContent(text=message.content)],
        )
        items.append((key, text))
    return items


# ---------------------------------------------------------------- tool calls

_ICONS = {
    "add_task": "plus",
    "list_tasks": "notebook",
    "complete_task": "check-circle",
    "delete_task": "empty-circle",
    "update_task": "write",
}


def _call_text(name: str, arguments: Mapping[str, Any]) -> str:
    return f"{name} {json.dumps(dict(arguments), ensure_ascii=False, default=str)}"


def _outcome(name: str, arguments: Mapping[str, Any], result: Any) -> str:
    """One line a user can read: what the call did, or why it failed."""
    if isinstance(result, dict) and isinstance(result.get("error"), dict):
        return f"{name} failed: {result['error'].get('message', 'error')}"
    if isinstance(result, list):
        status = arguments.get("status") or "all"
        which = "" if status == "all" else f"{status} "
        return f"Listed {len(result)} {which}task{'' if len(result) == 1 else 's'}"
    if isinstance(result, dict) and result.get("status") and result.get("title") is not None:
        return f"{str(result['status']).capitalize()} “{result['title']}”"
    return name


def running_task(name: str, arguments: Mapping[str, Any]) -> CustomTask:
    return CustomTask(
        title=f"Running {name}",
        content=_call_text(name, arguments),
        icon=_ICONS.get(name, "bolt"),
        status_indicator="loading",
    )


def finished_task(call: Mapping[str, Any]) -> CustomTask:
    """A stored (or just finished) call `{name, arguments, result}` as a completed workflow task."""
    name = str(call.get("name", ""))
    arguments = call.get("arguments") or {}
    return CustomTask(
        title=_outcome(name, arguments, call.get("result")),
        content=_call_text(name, arguments),
        icon=_ICONS.get(name, "bolt"),
        status_indicator="complete",
    )


def workflow_summary(calls: Sequence[Mapping[str, Any]]) -> CustomSummary:
    names = ", ".join(dict.fromkeys(str(call.get("name", "")) for call in calls))
    return CustomSummary(title=f"Used {names}", icon="bolt")
