"""Tables and API schemas: one model family per entity (Base / Create / Update / table / Public)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, field_validator
from pydantic import Field as PydanticField
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel

TITLE_MAX = 200
Feedback = Literal["positive", "negative"]
TASK_SNAPSHOT_FIELDS = ("id", "title", "description", "completed")
DESCRIPTION_MAX = 1000
MESSAGE_MAX = 4000
USER_ID_MAX = 128
# Row ids are PostgreSQL INTEGERs: a larger id names no row (and must not reach the database, which would refuse it).
ROW_ID_MAX = 2**31 - 1


# An id names one row forever: "task 2" in an old conversation must never name a newer task, and a deleted
# conversation's id must never be handed to someone else. PostgreSQL sequences never go back; SQLite reuses the
# highest deleted rowid unless the table is AUTOINCREMENT.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- tasks
# Text the API stores: PostgreSQL cannot store a NUL character, and a title or a message must not be blank (nor made
# only of invisible characters: zero-width spaces and joiners, word joiners, the byte-order mark). Said as patterns
# so the OpenAPI schema tells clients (and schemathesis) what the server refuses.
_INVISIBLE = "\\u200b-\\u200f\\u2060-\\u2064\\ufeff"
TEXT_PATTERN = r"^[^\x00]*$"
NON_BLANK_TEXT_PATTERN = rf"^[^\x00]*[^\s\x00{_INVISIBLE}][^\x00]*$"
_VISIBLE = re.compile(rf"[^\s{_INVISIBLE}]")


def is_blank_text(text: str) -> bool:
    """Nothing a reader could see: whitespace and invisible characters only."""
    return _VISIBLE.search(text) is None


Title = Annotated[str, PydanticField(min_length=1, max_length=TITLE_MAX, pattern=NON_BLANK_TEXT_PATTERN)]


class TaskBase(SQLModel):
    title: str = Field(min_length=1, max_length=TITLE_MAX, schema_extra={"pattern": NON_BLANK_TEXT_PATTERN})
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX, schema_extra={"pattern": TEXT_PATTERN})

    @field_validator("title", mode="before")
    @classmethod
    def _strip_title(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class TaskCreate(TaskBase):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]


class TaskUpdate(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    # `title` and `completed` may be left out but not be null (the route refuses null): the schema says so.
    title: Title | SkipJsonSchema[None] = None
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX, schema_extra={"pattern": TEXT_PATTERN})
    completed: bool | SkipJsonSchema[None] = None

    @field_validator("title", mode="before")
    @classmethod
    def _strip_title(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class Task(TaskBase, table=True):
    __tablename__ = "task"
    __table_args__ = (Index("ix_task_user_completed", "user_id", "completed"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, max_length=USER_ID_MAX)
    completed: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class TaskPublic(TaskBase):
    id: int
    completed: bool
    created_at: datetime
    updated_at: datetime


TaskStatus = Literal["all", "pending", "completed"]
# What a task is, to anyone judging one (the eval suite's state checks): its public fields, less its id and the
# timestamps that change on every run.
TASK_FIELDS: tuple[str, ...] = tuple(f for f in TaskPublic.model_fields if f not in ("id", "created_at", "updated_at"))


# ---------------------------------------------------------------- conversations and messages
class Conversation(SQLModel, table=True):
    __tablename__ = "conversation"
    __table_args__ = (Index("ix_conversation_user_updated", "user_id", "updated_at"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, max_length=USER_ID_MAX)
    title: str = Field(default="New conversation", max_length=TITLE_MAX)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # A turn in progress holds this lease (any worker can see it); an expired lease is free again. Only the holder
    # of the token can release it.
    turn_lease_until: datetime | None = Field(default=None)
    turn_lease_token: str | None = Field(default=None, max_length=32)


class ConversationPublic(SQLModel):
    id: int
    title: str
    created_at: datetime
    updated_at: datetime


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (Index("ix_message_conversation_id_id", "conversation_id", "id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, max_length=USER_ID_MAX)
    conversation_id: int = Field(foreign_key="conversation.id", ondelete="CASCADE")
    role: str = Field(max_length=16)
    content: str = Field(sa_type=Text)  # the migration's TEXT (a bare `str` would map to VARCHAR)
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    # The user's task list (TASK_SNAPSHOT_FIELDS) as the turn saw it: before it on a user message, after it on the
    # reply. A conversation can then be replayed from its true start (`todo-agent eval capture`).
    tasks: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    feedback: str | None = Field(default=None, max_length=16)  # `Feedback`: the user's thumbs on a reply (ChatKit)


class MessagePublic(SQLModel):
    id: int
    role: str
    content: str
    tool_calls: list[dict[str, Any]] | None
    created_at: datetime
    feedback: Feedback | None = None


class ConversationDetail(ConversationPublic):
    messages: list[MessagePublic]
