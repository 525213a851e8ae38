"""Keyword-only data functions shared by the REST routes, the agent's tools, MCP and ChatKit: tasks, and reading
conversations. What changes a conversation lives in `backend.conversation_changes`, for `ChatService` alone.

Every function takes the owner's `user_id` and filters on it, so a row of another user is simply not found: callers
cannot tell "missing" from "not yours".
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from backend.models import (
    ROW_ID_MAX,
    TITLE_MAX,
    Conversation,
    Message,
    Task,
    TaskCreate,
    TaskStatus,
    TaskUpdate,
    utcnow,
)


# ---------------------------------------------------------------- tasks
def create_task(session: Session, *, user_id: str, task_in: TaskCreate) -> Task:
    task = Task.model_validate(task_in, update={"user_id": user_id})
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def list_tasks(session: Session, *, user_id: str, status: TaskStatus = "all") -> Sequence[Task]:
    query = select(Task).where(Task.user_id == user_id)
    if status == "pending":
        query = query.where(col(Task.completed).is_(False))
    elif status == "completed":
        query = query.where(col(Task.completed).is_(True))
    return session.exec(query.order_by(col(Task.id))).all()


def get_task(session: Session, *, user_id: str, task_id: int) -> Task | None:
    if not 1 <= task_id <= ROW_ID_MAX:
        return None
    task = session.get(Task, task_id)
    return task if task is not None and task.user_id == user_id else None


def update_task(session: Session, *, task: Task, task_in: TaskUpdate) -> Task:
    changes = task_in.model_dump(exclude_unset=True)
    if changes.get("title") is None:
        changes.pop("title", None)
    if changes.get("completed") is None:
        changes.pop("completed", None)
    task.sqlmodel_update(changes)
    task.updated_at = utcnow()
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def delete_task(session: Session, *, task: Task) -> None:
    session.delete(task)
    session.commit()


# ---------------------------------------------------------------- conversations
def conversation_title(first_message: str) -> str:
    """A conversation is named after its first message, on one line, cut at a word boundary."""
    line = " ".join(first_message.split())
    if len(line) <= 60:
        return line or "New conversation"
    return line[:60].rsplit(" ", 1)[0][:TITLE_MAX] + "…"


def get_conversation(session: Session, *, user_id: str, conversation_id: int) -> Conversation | None:
    if not 1 <= conversation_id <= ROW_ID_MAX:
        return None
    conversation = session.get(Conversation, conversation_id)
    return conversation if conversation is not None and conversation.user_id == user_id else None


def list_conversations(session: Session, *, user_id: str, limit: int = 20, offset: int = 0) -> Sequence[Conversation]:
    query = (
        select(Conversation)
        .where(Conversation.user_id == user_id)
        .order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
        .offset(offset)
        .limit(limit)
    )
    return session.exec(query).all()


def recent_messages(session: Session, *, conversation_id: int, limit: int) -> list[Message]:
    """The last `limit` messages, oldest first: an index range scan, so cost does not grow with history."""
    query = (
        select(Message).where(Message.conversation_id == conversation_id).order_by(col(Message.id).desc()).limit(limit)
    )
    return list(reversed(session.exec(query).all()))


def list_messages(
    session: Session,
    *,
    conversation_id: int,
    after_id: int | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> Sequence[Message]:
    query = select(Message).where(Message.conversation_id == conversation_id)
    if after_id is not None:
        query = query.where(col(Message.id) < after_id) if newest_first else query.where(col(Message.id) > after_id)
    query = query.order_by(col(Message.id).desc() if newest_first else col(Message.id))
    if limit is not None:
        query = query.limit(limit)
    return session.exec(query).all()


def get_message(session: Session, *, conversation_id: int, message_id: int) -> Message | None:
    if not 1 <= message_id <= ROW_ID_MAX:
        return None
    message = session.get(Message, message_id)
    return message if message is not None and message.conversation_id == conversation_id else None
