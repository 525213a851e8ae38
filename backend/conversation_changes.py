"""The statements that change a conversation: start it, lease it for a turn, store a message, rewind, rename, delete.

Only `ChatService` (`backend.chat`) runs them (`make lint` enforces it with an import contract): every change to a
conversation then happens under its one lease rule, and no door can cut a running turn in two.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, or_, update
from sqlmodel import Session, col, select

from backend.crud import conversation_title
from backend.models import TITLE_MAX, Conversation, Feedback, Message, utcnow


def create_conversation(session: Session, *, user_id: str, title: str) -> Conversation:
    conversation = Conversation(user_id=user_id, title=conversation_title(title))
    session.add(conversation)
    session.commit()
    session.refresh(conversation)
    return conversation


def start_conversation(
    session: Session,
    *,
    user_id: str,
    first_message: str,
    lease_seconds: float,
    tasks: list[dict[str, Any]] | None = None,
) -> tuple[Lease, Message]:
    """A new conversation, already leased for its first turn, with its first user message: one transaction, so a
    failure leaves neither an empty conversation nor a lease behind."""
    now = utcnow()
    token = new_lease_token()
    conversation = Conversation(
        user_id=user_id,
        title=conversation_title(first_message),
        turn_lease_until=now + timedelta(seconds=lease_seconds),
        turn_lease_token=token,
    )
    session.add(conversation)
    session.flush()  # assigns the id
    assert conversation.id is not None
    message = Message(
        user_id=user_id, conversation_id=conversation.id, role="user", content=first_message, created_at=now,
        tasks=tasks,
    )  # fmt: skip
    session.add(message)
    session.commit()
    return Lease(conversation.id, user_id, token), message


# ---------------------------------------------------------------- leases
# The lease statements every turn runs, built once and run on the table (Core): an ORM-enabled UPDATE built per call
# costs several times more Python than this. No loaded Conversation needs syncing: the lease is only read in SQL.
# A lease is a holder's token and an expiry: only its holder (conversation, user and token) can release it, so a
# turn whose lease expired and was taken over can neither clear the new holder's lease nor store its late reply.
_conversation = Conversation.__table__.c  # type: ignore[attr-defined]
_lease_free = or_(_conversation.turn_lease_until.is_(None), _conversation.turn_lease_until < bindparam("p_now"))
_ACQUIRE_LEASE = (
    update(Conversation.__table__)  # type: ignore[attr-defined]
    .where(_conversation.id == bindparam("p_id"))
    .where(_conversation.user_id == bindparam("p_user"))
    .where(_lease_free)
    .values(turn_lease_until=bindparam("p_until"), turn_lease_token=bindparam("p_token"))
)
_RELEASE_LEASE = (
    update(Conversation.__table__)  # type: ignore[attr-defined]
    .where(_conversation.id == bindparam("p_id"))
    .where(_conversation.user_id == bindparam("p_user"))
    .where(_conversation.turn_lease_token == bindparam("p_token"))
    .values(turn_lease_until=None, turn_lease_token=None, updated_at=bindparam("p_now"))
)


@dataclass(frozen=True)
class Lease:
    """A turn's hold on a conversation: released only by whoever holds this token."""

    conversation_id: int
    user_id: str
    token: str


def new_lease_token() -> str:
    return secrets.token_hex(16)


def acquire_turn_lease(session: Session, *, conversation_id: int, user_id: str, seconds: float) -> Lease | None:
    """Atomically claim the user's conversation; None when it is not theirs or another holder's lease is live."""
    now = utcnow()
    token = new_lease_token()
    result = session.execute(
        _ACQUIRE_LEASE,
        {
            "p_id": conversation_id,
            "p_user": user_id,
            "p_now": now,
            "p_until": now + timedelta(seconds=seconds),
            "p_token": token,
        },
    )
    if not getattr(result, "rowcount", 0):
        session.rollback()
        return None
    session.commit()
    return Lease(conversation_id, user_id, token)


def release_turn_lease(session: Session, *, lease: Lease, commit: bool = True) -> bool:
    """Give the lease back; False when this holder no longer has it (expired and taken over, or deleted)."""
    result = session.execute(
        _RELEASE_LEASE,
        {"p_id": lease.conversation_id, "p_user": lease.user_id, "p_token": lease.token, "p_now": utcnow()},
    )
    released = bool(getattr(result, "rowcount", 0))
    if commit:
        session.commit()
    return released


def delete_conversation(session: Session, *, lease: Lease) -> None:
    """Delete a conversation and its messages; the caller holds its lease, so no turn is running on it."""
    session.execute(delete(Message).where(col(Message.conversation_id) == lease.conversation_id))
    session.execute(
        delete(Conversation)
        .where(col(Conversation.id) == lease.conversation_id)
        .where(col(Conversation.turn_lease_token) == lease.token)
    )
    session.commit()


def add_message(
    session: Session,
    *,
    user_id: str,
    conversation_id: int,
    role: str,
    content: str,
    tool_calls: list[dict[str, Any]] | None = None,
    created_at: datetime | None = None,
    tasks: list[dict[str, Any]] | None = None,
) -> Message:
    message = Message(
        user_id=user_id,
        conversation_id=conversation_id,
        role=role,
        content=content,
        tool_calls=tool_calls,
        created_at=created_at or utcnow(),
        tasks=tasks,
    )
    session.add(message)
    session.commit()  # the id is assigned at flush; no refresh round trip needed (expire_on_commit is off)
    return message


def keep_tasks(session: Session, *, message: Message, tasks: list[dict[str, Any]]) -> None:
    """The task list a turn of `message` reads, kept with it (a retried turn reads the list as it is then)."""
    message.tasks = tasks
    session.add(message)
    session.commit()


def set_feedback(
    session: Session, *, user_id: str, conversation_id: int, message_ids: list[int], feedback: Feedback
) -> int:
    """The user's thumbs on replies of their conversation; returns how many replies took it (others' rows: none)."""
    rows = session.exec(
        select(Message).where(
            Message.user_id == user_id,
            Message.conversation_id == conversation_id,
            Message.role == "assistant",
            col(Message.id).in_(message_ids),
        )
    ).all()
    for row in rows:
        row.feedback = feedback
        session.add(row)
    session.commit()
    return len(rows)


def delete_messages(
    session: Session, *, conversation_id: int, after_id: int | None = None, ids: Sequence[int] | None = None
) -> None:
    """Delete a conversation's messages after `after_id`, or those in `ids` (the caller holds the lease)."""
    statement = delete(Message).where(col(Message.conversation_id) == conversation_id)
    if after_id is not None:
        statement = statement.where(col(Message.id) > after_id)
    if ids is not None:
        statement = statement.where(col(Message.id).in_(list(ids)))
    session.execute(statement)
    session.commit()


def rename_conversation(session: Session, *, conversation: Conversation, title: str) -> Conversation:
    conversation.title = title[:TITLE_MAX]
    conversation.updated_at = utcnow()
    session.add(conversation)
    session.commit()
    session.refresh(conversation)
    return conversation


# ---------------------------------------------------------------- messages
