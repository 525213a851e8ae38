"""The chat service: the only place a turn happens.

A turn is stateless (DESIGN.md, "The stateless turn"): load a bounded window of history from the database, store the
user message, run the agent, store the reply with its tool calls. A lease row on the conversation serialises turns
across workers. Every door (JSON, SSE, ChatKit, playground, evals) goes through `ChatService`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from agents import TResponseInputItem
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlmodel import Session

from backend import crud
from backend.agent import AgentEvent, AgentFailure, FinalReply, TodoAgent, ToolCallRecord, history_items
from backend.errors import ApiError
from backend.models import MESSAGE_MAX, Message
from backend.tools import ToolRunContext, task_lines

# How long a turn may hold its conversation before another worker may assume it crashed.
LEASE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class OpenTurn:
    """A turn whose user message is stored and whose conversation is leased to it."""

    user_id: str
    conversation_id: int
    message: str
    history: list[TResponseInputItem]
    user_message_id: int
    tasks: str | None = None  # the turn context's task list, read with the turn's opening (None: read when needed)


@dataclass
class TurnResult:
    conversation_id: int
    response: str
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    assistant_message_id: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "response": self.response,
            "tool_calls": [call.public() for call in self.tool_calls],
        }


MODEL_ERROR_STATUS = {"model_error": 502, "model_timeout": 504}


def database_unavailable() -> ApiError:
    return ApiError(503, "database_unavailable", "The database is unavailable; try again shortly.")


class ChatService:
    def __init__(
        self, engine: Engine, agent: TodoAgent, *, history_window: int = 20, task_context_limit: int = 50
    ) -> None:
        self.engine = engine
        self.agent = agent
        self.history_window = history_window
        # Tasks shown to the model before each turn (0: none, the model must call list_tasks).
        self.task_context_limit = task_context_limit

    # ------------------------------------------------------------ opening a turn
    async def open_turn(self, *, user_id: str, message: str, conversation_id: int | None) -> OpenTurn:
        """Validate, lease the conversation and store the user message; raises ApiError (404/409/422/503)."""
        if not message.strip():
            raise ApiError(422, "validation_error", "message must not be blank")
        if len(message) > MESSAGE_MAX:
            raise ApiError(422, "validation_error", f"message must be at most {MESSAGE_MAX} characters")
        try:
            return await anyio.to_thread.run_sync(self._open_turn_sync, user_id, message, conversation_id)
        except DataError as exc:  # PostgreSQL refuses a NUL character in text: the message's fault
            raise ApiError(422, "validation_error", "The message cannot be stored.") from exc
        except (OperationalError, DBAPIError) as exc:
            raise database_unavailable() from exc

    def _open_turn_sync(self, user_id: str, message: str, conversation_id: int | None) -> OpenTurn:
        lease_seconds = self.agent.config.timeout + LEASE_MARGIN_SECONDS
        with Session(self.engine, expire_on_commit=False) as session:
            # Read in the same session as the turn's opening (one trip to a worker thread instead of two).
            tasks = (
                task_lines(session, user_id=user_id, limit=self.task_context_limit)
                if self.agent.wants_tasks and self.task_context_limit > 0
                else None
            )
            if conversation_id is None:
                started, first = crud.start_conversation(
                    session, user_id=user_id, first_message=message, lease_seconds=lease_seconds
                )
                assert started.id is not None and first.id is not None
                return OpenTurn(user_id, started.id, message, [], first.id, tasks)
            conversation = crud.get_conversation(session, user_id=user_id, conversation_id=conversation_id)
            if conversation is None:
                raise ApiError(404, "not_found", "Conversation not found.")
            if not crud.acquire_turn_lease(session, conversation_id=conversation_id, seconds=lease_seconds):
                raise ApiError(409, "conflict", "A turn is already running on this conversation.")
            assert conversation.id is not None
            window = crud.recent_messages(session, conversation_id=conversation.id, limit=self.history_window)
            try:
                stored = crud.add_message(
                    session, user_id=user_id, conversation_id=conversation.id, role="user", content=message
                )
            except Exception:
                crud.release_turn_lease(session, conversation_id=conversation.id)
                raise
            assert stored.id is not None
            return OpenTurn(user_id, conversation.id, message, history_items(window), stored.id, tasks)

    async def reopen_turn(self, *, user_id: str, conversation_id: int, user_message_id: int) -> OpenTurn:
        """Run the turn of a stored user message again (ChatKit's retry): the messages after it are dropped.

        Raises ApiError 404 when the message is not a user message of the caller's conversation, 409 when a turn is
        running, 503 when the database is down.
        """
        try:
            return await anyio.to_thread.run_sync(self._reopen_turn_sync, user_id, conversation_id, user_message_id)
        except (OperationalError, DBAPIError) as exc:
            raise database_unavailable() from exc

    def _reopen_turn_sync(self, user_id: str, conversation_id: int, user_message_id: int) -> OpenTurn:
        lease_seconds = self.agent.config.timeout + LEASE_MARGIN_SECONDS
        with Session(self.engine, expire_on_commit=False) as session:
            conversation = crud.get_conversation(session, user_id=user_id, conversation_id=conversation_id)
            message = session.get(Message, user_message_id)
            if (
                conversation is None
                or message is None
                or message.conversation_id != conversation_id
                or message.role != "user"
            ):
                raise ApiError(404, "not_found", "Message not found.")
            if not crud.acquire_turn_lease(session, conversation_id=conversation_id, seconds=lease_seconds):
                raise ApiError(409, "conflict", "A turn is already running on this conversation.")
            try:
                # Under the lease: what followed the message goes, the window is what came before it.
                for later in crud.list_messages(session, conversation_id=conversation_id, after_id=user_message_id):
                    session.delete(later)
                session.commit()
                window = crud.list_messages(
                    session,
                    conversation_id=conversation_id,
                    after_id=user_message_id,
                    limit=self.history_window,
                    newest_first=True,
                )
            except Exception:
                crud.release_turn_lease(session, conversation_id=conversation_id)
                raise
            history = history_items(list(reversed(window)))
            return OpenTurn(user_id, conversation_id, message.content, history, user_message_id)

    # ------------------------------------------------------------ running it
    async def events(
        self, turn: OpenTurn, *, agent: TodoAgent | None = None, stream_tokens: bool = True
    ) -> AsyncIterator[AgentEvent]:
        """Run the agent and persist its outcome; the last event is a FinalReply or an AgentFailure.

        The reply (or, on failure, the tool calls that did run) is stored before the last event is yielded, and the
        lease is released whatever happens, so a client that sees the end can immediately start the next turn.
        """
        runner = agent or self.agent
        context = ToolRunContext(user_id=turn.user_id, engine=self.engine)
        released = False
        try:
            tasks = turn.tasks
            if tasks is None and runner.wants_tasks and self.task_context_limit > 0:
                tasks = await anyio.to_thread.run_sync(self._task_lines, turn.user_id)
            stream = runner.stream(
                context=context, history=turn.history, message=turn.message, tasks=tasks, stream_tokens=stream_tokens
            )
            async for event in stream:
                if isinstance(event, FinalReply):
                    released = True  # _finish releases the lease whether or not it can store the reply
                    await self._finish(turn, event.text, event.tool_calls)
                elif isinstance(event, AgentFailure):
                    released = True
                    # Calls that ran changed real data: keep them in the conversation so the next turn knows.
                    await self._finish(turn, "" if event.tool_calls else None, event.tool_calls)
                yield event
        finally:
            if not released:  # cancelled or failed before the end: never leave the conversation locked
                await self._release(turn.conversation_id)

    def _task_lines(self, user_id: str) -> str:
        with Session(self.engine) as session:
            return task_lines(session, user_id=user_id, limit=self.task_context_limit)

    async def _finish(self, turn: OpenTurn, text: str | None, calls: list[ToolCallRecord]) -> None:
        """Store the reply (when there is one) and release the lease in one transaction."""

        def finish() -> None:
            with Session(self.engine) as session:
                if text is not None:
                    session.add(
                        Message(
                            user_id=turn.user_id,
                            conversation_id=turn.conversation_id,
                            role="assistant",
                            content=text,
                            tool_calls=[call.public() for call in calls] or None,
                        )
                    )
                crud.release_turn_lease(session, conversation_id=turn.conversation_id)  # commits both

        try:
            await anyio.to_thread.run_sync(finish)
        except (OperationalError, DBAPIError) as exc:
            await self._release(turn.conversation_id)
            raise database_unavailable() from exc

    async def _release(self, conversation_id: int) -> None:
        def release() -> None:
            with Session(self.engine) as session:
                crud.release_turn_lease(session, conversation_id=conversation_id)

        # A database outage here must not mask the turn's outcome; the lease then simply expires.
        with contextlib.suppress(Exception):
            await anyio.to_thread.run_sync(release)

    async def run(self, *, user_id: str, message: str, conversation_id: int | None) -> TurnResult:
        """One whole turn for the JSON door."""
        turn = await self.open_turn(user_id=user_id, message=message, conversation_id=conversation_id)
        return await collect(turn, self.events(turn, stream_tokens=False))


async def collect(turn: OpenTurn, events: AsyncIterator[AgentEvent]) -> TurnResult:
    """Drain a turn's events into its result; a failure becomes the ApiError the doors return."""
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        return await _collect(turn, events)


async def _collect(turn: OpenTurn, events: AsyncIterator[AgentEvent]) -> TurnResult:
    async for event in events:
        if isinstance(event, FinalReply):
            return TurnResult(turn.conversation_id, event.text, event.tool_calls, event.usage)
        if isinstance(event, AgentFailure):
            raise ApiError(
                MODEL_ERROR_STATUS.get(event.code, 502),
                event.code,
                event.message,
                details={"conversation_id": turn.conversation_id},
            )
    raise ApiError(502, "model_error", "The turn ended without a reply.")


async def detached(events: AsyncIterator[AgentEvent]) -> AsyncIterator[AgentEvent]:
    """Run a turn in its own task: a client that goes away mid-stream does not cut the turn short.

    The turn finishes, stores its reply and releases its lease even when nobody is listening any more.
    """
    queue: asyncio.Queue[AgentEvent | BaseException | None] = asyncio.Queue()

    async def produce() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            await queue.put(exc)
        else:
            await queue.put(None)

    task = asyncio.create_task(produce())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    while True:
        item = await queue.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


_BACKGROUND: set[asyncio.Task[None]] = set()
