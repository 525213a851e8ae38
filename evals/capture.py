"""A real conversation becomes an eval case (`todo-agent eval capture`).

It is read from the database the backend uses: the starting tasks are the snapshot the first turn stored with its
user message, the turns are the user's messages, the calls each reply made become the (editable) expectation, and
the final task list is the snapshot the last reply stored. Task ids become the dataset's references: the N-th starting
task is `{task: tN}` (and `{tN}` in the user's text), a task created during the conversation is `{task_titled: ...}`.
Real conversations can hold personal data: `redact` replaces every task title by a neutral one everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from backend import crud
from backend.models import Message
from backend.tools import read_only_tools
from evals.dataset import Case

_ID_IN_TEXT = re.compile(r"(?i)\b(task\s*(?:number\s*)?#?\s*|#|id\s*)(\d+)\b")
PERSONAL_DATA_WARNING = (
    "A captured conversation holds what a real user wrote and the titles of their tasks: it may be personal data. "
    "Review the file before committing it, or capture with --redact to replace every task title."
)


class CaptureError(ValueError):
    """The conversation cannot become a case (not found, or stored before turns kept their task lists)."""


def disliked_conversations(engine: Engine, user_id: str | None = None) -> list[tuple[str, int, str]]:
    """(user, conversation id, the disliked reply's text) for replies with negative feedback, newest first."""
    with Session(engine) as session:
        query = select(Message).where(Message.feedback == "negative", Message.role == "assistant")
        if user_id is not None:
            query = query.where(Message.user_id == user_id)
        rows = session.exec(query.order_by(col(Message.id).desc())).all()
        seen: dict[tuple[str, int], str] = {}
        for row in rows:
            seen.setdefault((row.user_id, row.conversation_id), row.content)
        return [(user, conversation, text) for (user, conversation), text in seen.items()]


def _titles(tasks: Sequence[dict[str, Any]]) -> dict[int, str]:
    return {int(t["id"]): str(t["title"]) for t in tasks}


def capture_case(engine: Engine, *, user_id: str, conversation_id: int, case_id: str, redact: bool = False) -> Case:
    with Session(engine) as session:
        if crud.get_conversation(session, user_id=user_id, conversation_id=conversation_id) is None:
            raise CaptureError(f"user {user_id!r} has no conversation {conversation_id}")
        messages = list(crud.list_messages(session, conversation_id=conversation_id))
    users = [m for m in messages if m.role == "user"]
    if not users:
        raise CaptureError(f"conversation {conversation_id} has no user message")
    start = users[0].tasks
    if start is None:
        raise CaptureError(
            f"conversation {conversation_id} was stored before turns kept the user's task list: its starting tasks "
            "cannot be recovered"
        )
    refs = {int(t["id"]): f"t{number}" for number, t in enumerate(start, start=1)}
    names: dict[str, str] = {}
    if redact:
        every = [t for m in messages for t in m.tasks or []]
        for task in every:
            names.setdefault(str(task["title"]), f"Task {len(names) + 1}")

    def hide(text: str) -> str:
        for title, neutral in sorted(names.items(), key=lambda item: -len(item[0])):
            text = re.sub(re.escape(title), neutral, text, flags=re.IGNORECASE)
        return text

    def value(name: str, raw: Any, known: dict[int, str]) -> Any:
        if name == "task_id" and isinstance(raw, int | str) and str(raw).isdecimal():
            task_id = int(raw)
            if task_id in refs:
                return {"task": refs[task_id]}
            if task_id in known:
                return {"task_titled": hide(known[task_id])}
        return hide(raw) if isinstance(raw, str) else raw

    turns: list[dict[str, Any]] = []
    final: list[dict[str, Any]] | None = None
    for index, user in enumerate(users):
        before = _titles(user.tasks or [])
        text = _ID_IN_TEXT.sub(
            lambda m: m.group(1) + ("{" + refs[int(m.group(2))] + "}" if int(m.group(2)) in refs else m.group(2)),
            hide(user.content),
        )
        following = messages[messages.index(user) + 1 :]
        reply = next((m for m in following if m.role == "assistant"), None)
        if reply is not None and index + 1 < len(users) and following.index(reply) > following.index(users[index + 1]):
            reply = None  # that turn got no stored reply
        calls = []
        for call in (reply.tool_calls or []) if reply is not None else []:
            name = str(call.get("name", ""))
            arguments = call.get("arguments") or {}
            expected: dict[str, Any] = {"tool": name, "args": {k: value(k, v, before) for k, v in arguments.items()}}
            if name in read_only_tools():
                expected["optional"] = True
            calls.append(expected)
        turn: dict[str, Any] = {"user": text}
        if calls:
            turn["calls"] = calls
        else:
            turn["no_tool_calls"] = True
        turns.append(turn)
        if reply is not None and reply.tasks is not None:
            final = reply.tasks
    seeds = [
        {"ref": refs[int(t["id"])], "title": hide(str(t["title"]))}
        | ({"description": hide(t["description"])} if t.get("description") else {})
        | ({"completed": True} if t.get("completed") else {})
        for t in start
    ]
    case: dict[str, Any] = {
        "id": case_id,
        "tags": ["captured"],
        "description": f"Captured from conversation {conversation_id}; check the expected calls and the final tasks.",
        "tasks": seeds,
        "turns": turns,
    }
    if final is not None:
        by_id = {int(t["id"]): t for t in start}
        expected_final = []
        for task in final:
            task_id = int(task["id"])
            if task_id in refs:
                entry: dict[str, Any] = {"ref": refs[task_id]}
                for name in ("title", "description", "completed"):
                    if task.get(name) != by_id[task_id].get(name):
                        entry[name] = hide(task[name]) if isinstance(task.get(name), str) else task.get(name)
            else:
                entry = {"title": hide(str(task["title"]))}
                if task.get("description"):
                    entry["description"] = hide(task["description"])
                if task.get("completed"):
                    entry["completed"] = True
            expected_final.append(entry)
        case["final_tasks"] = expected_final
    return Case.model_validate(case)


def case_yaml(case: Case) -> str:
    """The case as a dataset file (`cases: [...]`) an author edits."""
    data = case.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump({"cases": [data]}, allow_unicode=True, sort_keys=False, width=100)
