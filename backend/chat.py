"""The chat service: the only place a turn happens.

A turn is stateless (DESIGN.md, "The stateless turn"): load a bounded window of history from the database, store the
user message, run the agent, store the reply with its tool calls. A lease on the conversation row serialises turns
across workers. Every door (JSON, SSE, ChatKit, playground, evals) goes through `ChatService`, and so does every other
change to a conversation (retry, undo, deleting a message or the conversation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from agents import TResponseInputItem
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlmodel import Session

from backend import conversation_changes as changes
from backend import crud
from backend.agent import AgentEvent, AgentFailure, FinalReply, TodoAgent, ToolCallRecord, history_items
from backend.conversation_changes import Lease
from backend.errors import ApiError
from backend.metrics import TURNS
from backend.models import MESSAGE_MAX, ROW_ID_MAX, Feedback, Message, Task, is_blank_text
from backend.tools import ToolRunContext, format_task_lines, task_lines, task_snapshot

T = TypeVar("T")

log = logging.getLogger("todo_agent.turn")

# How long a turn may hold its conversation before another worker may assume it crashed.
LEASE_MARGIN_SECONDS = 30.0
# A reply that could not be stored (the database went away) is stored again with this backoff, until the lease ends.
RECOVERY_FIRST_DELAY = 0.5
RECOVERY_MAX_DELAY = 5.0


@dataclass(frozen=True)
class OpenTurn:
    """A turn whose user message is stored and whose conversation is leased to it."""

    lease: Lease
    message: str
    history: list[TResponseInputItem]
    user_message_id: int
    tasks: str | None = None  # the turn context's task list, read with the turn's opening (None: read when needed)
    door: str = "api"  # who opened it, for the turn's log line

    @property
    def user_id(self) -> str:
        return self.lease.user_id

    @property
    def conversation_id(self) -> int:
        return self.lease.conversation_id


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


# The statuses the doors answer for a turn that ended in an AgentFailure.
FAILURE_STATUS = {"model_error": 502, "model_timeout": 504, "conflict": 409, "database_unavailable": 503}


def database_unavailable() -> ApiError:
    return ApiError(503, "database_unavailable", "The database is unavailable; try again shortly.")


def turn_running() -> ApiError:
    return ApiError(409, "conflict", "A turn is already running on this conversation.")


def conversation_not_found() -> ApiError:
    return ApiError(404, "not_found", "Conversation not found.")


def dropped_reply(calls: list[ToolCallRecord]) -> AgentFailure:
    return AgentFailure(
        "conflict",
        "The conversation was deleted or taken over while the turn ran; the reply was not stored.",
        calls,
    )


def check_message(message: str) -> None:
    """The checks every door shares (the JSON door's schema says the same): 422 when a message is unusable."""
    if is_blank_text(message):
        raise ApiError(422, "validation_error", "message must not be blank")
    if len(message) > MESSAGE_MAX:
        raise ApiError(422, "validation_error", f"message must be at most {MESSAGE_MAX} characters")


class ChatService:
    """Every change to a conversation happens here: open a turn, finish or abandon it, rewind it (retry and undo),
    delete a message or the conversation. Each of them holds the conversation's lease while it works, so none of
    them can cut a running turn in two, and only a lease's holder can give it back."""

    def __init__(
        self, engine: Engine, agent: TodoAgent, *, history_window: int = 20, task_context_limit: int = 50
    ) -> None:
        self.engine = engine
        self.agent = agent
        self.history_window = history_window
        # Tasks shown to the model before each turn (0: none, the model must call list_tasks).
        self.task_context_limit = task_context_limit
        # Replies being stored again after a database failure (tests and shutdown wait for them).
        self.recovering: set[asyncio.Task[None]] = set()

    @property
    def lease_seconds(self) -> float:
        return self.agent.config.timeout + LEASE_MARGIN_SECONDS

    async def _db(self, work: Callable[[Session], T]) -> T:
        """Database work in one worker-thread trip; an outage answers 503."""

        def run() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                return work(session)

        try:
            return await anyio.to_thread.run_sync(run)
        except DataError as exc:  # PostgreSQL refuses a NUL character in text: the request's fault
            raise ApiError(422, "validation_error", "The message cannot be stored.") from exc
        except (OperationalError, DBAPIError) as exc:
            raise database_unavailable() from exc

    def _lease(self, session: Session, user_id: str, conversation_id: int) -> Lease:
        """The lease on the user's conversation, or 404 (missing or not theirs) / 409 (a turn holds it)."""
        lease = changes.acquire_turn_lease(
            session, conversation_id=conversation_id, user_id=user_id, seconds=self.lease_seconds
        )
        if lease is not None:
            return lease
        if crud.get_conversation(session, user_id=user_id, conversation_id=conversation_id) is None:
            raise conversation_not_found()
        raise turn_running()

    # ------------------------------------------------------------ opening a turn
    async def open_turn(
        self, *, user_id: str, message: str, conversation_id: int | None, door: str = "api"
    ) -> OpenTurn:
        """Validate, lease the conversation and store the user message; raises ApiError (404/409/422/503)."""
        check_message(message)
        return await self._db(lambda session: self._open_turn(session, user_id, message, conversation_id, door))

    def _open_turn(
        self, session: Session, user_id: str, message: str, conversation_id: int | None, door: str
    ) -> OpenTurn:
        # Read in the same session as the turn's opening (one trip to a worker thread instead of two): the turn
        # context shows it, the user message keeps it.
        listed = crud.list_tasks(session, user_id=user_id)
        tasks, snapshot = self._task_lines(listed), task_snapshot(listed)
        if conversation_id is None:
            lease, first = changes.start_conversation(
                session, user_id=user_id, first_message=message, lease_seconds=self.lease_seconds, tasks=snapshot
            )
            assert first.id is not None
            return OpenTurn(lease, message, [], first.id, tasks, door)
        if not 1 <= conversation_id <= ROW_ID_MAX:
            raise conversation_not_found()
        lease = self._lease(session, user_id, conversation_id)
        try:
            window = crud.recent_messages(session, conversation_id=conversation_id, limit=self.history_window)
            stored = changes.add_message(
                session, user_id=user_id, conversation_id=conversation_id, role="user", content=message, tasks=snapshot
            )
        except Exception:
            session.rollback()
            changes.release_turn_lease(session, lease=lease)
            raise
        assert stored.id is not None
        return OpenTurn(lease, message, history_items(window), stored.id, tasks, door)

    def _task_lines(self, tasks: Sequence[Task]) -> str | None:
        if not self.agent.wants_tasks or self.task_context_limit <= 0:
            return None
        return format_task_lines(tasks, limit=self.task_context_limit)

    def _read_task_lines(self, user_id: str) -> str:
        with Session(self.engine) as session:
            return task_lines(session, user_id=user_id, limit=self.task_context_limit)

    async def reopen_turn(
        self, *, user_id: str, conversation_id: int, user_message_id: int, door: str = "api"
    ) -> OpenTurn:
        """Run the turn of a stored user message again (retry): the messages after it are dropped.

        Raises ApiError 404 when the message is not a user message of the caller's conversation, 409 when a turn is
        running, 503 when the database is down.
        """
        return await self._db(
            lambda session: self._reopen_turn(session, user_id, conversation_id, user_message_id, door)
        )

    def _reopen_turn(
        self, session: Session, user_id: str, conversation_id: int, user_message_id: int, door: str
    ) -> OpenTurn:
        message = self._user_message(session, user_id, conversation_id, user_message_id)
        lease = self._lease(session, user_id, conversation_id)
        try:
            # Under the lease: what followed the message goes, the window is what came before it.
            changes.delete_messages(session, conversation_id=conversation_id, after_id=user_message_id)
            window = crud.list_messages(
                session,
                conversation_id=conversation_id,
                after_id=user_message_id,
                limit=self.history_window,
                newest_first=True,
            )
            listed = crud.list_tasks(session, user_id=user_id)
            tasks = self._task_lines(listed)
            changes.keep_tasks(session, message=message, tasks=task_snapshot(listed))  # the list the rerun reads
        except Exception:
            session.rollback()
            changes.release_turn_lease(session, lease=lease)
            raise
        history = history_items(list(reversed(window)))
        return OpenTurn(lease, message.content, history, user_message_id, tasks, door)

    @staticmethod
    def _user_message(session: Session, user_id: str, conversation_id: int, message_id: int) -> Message:
        if crud.get_conversation(session, user_id=user_id, conversation_id=conversation_id) is None:
            raise conversation_not_found()
        message = crud.get_message(session, conversation_id=conversation_id, message_id=message_id)
        if message is None or message.role != "user":
            raise ApiError(404, "not_found", "Message not found.")
        return message

    # ------------------------------------------------------------ other changes to a conversation
    async def rewind(self, *, user_id: str, conversation_id: int, user_message_id: int) -> str:
        """Undo: remove a user message and everything after it; returns its text. The tools' effects stay."""

        def rewind(session: Session) -> str:
            message = self._user_message(session, user_id, conversation_id, user_message_id)
            lease = self._lease(session, user_id, conversation_id)
            try:
                changes.delete_messages(session, conversation_id=conversation_id, after_id=user_message_id - 1)
            finally:
                changes.release_turn_lease(session, lease=lease)
            return message.content

        return await self._db(rewind)

    async def delete_message(self, *, user_id: str, conversation_id: int, message_id: int) -> None:
        """Remove one stored message (ChatKit's item deletion); 404/409 like every other change."""

        def delete_one(session: Session) -> None:
            lease = self._lease(session, user_id, conversation_id)
            try:
                changes.delete_messages(session, conversation_id=conversation_id, ids=[message_id])
            finally:
                changes.release_turn_lease(session, lease=lease)

        await self._db(delete_one)

    async def delete_conversation(self, *, user_id: str, conversation_id: int) -> None:
        """Delete a conversation with its messages: 404 when it is not the user's, 409 while a turn runs on it (the
        turn's reply would otherwise have nowhere to go, or, with a reused id, land in someone else's)."""

        def delete(session: Session) -> None:
            if not 1 <= conversation_id <= ROW_ID_MAX:
                raise conversation_not_found()
            changes.delete_conversation(session, lease=self._lease(session, user_id, conversation_id))

        await self._db(delete)

    async def give_feedback(
        self, *, user_id: str, conversation_id: int, message_ids: list[int], feedback: Feedback
    ) -> int:
        """The user's thumbs up or down on replies (ChatKit's items.feedback); no lease: it changes no turn. Raises
        404 when the conversation is not the user's; returns how many replies took it."""

        def give(session: Session) -> int:
            if crud.get_conversation(session, user_id=user_id, conversation_id=conversation_id) is None:
                raise conversation_not_found()
            return changes.set_feedback(
                session, user_id=user_id, conversation_id=conversation_id, message_ids=message_ids, feedback=feedback
            )

        return await self._db(give)

    async def rename_conversation(self, *, user_id: str, conversation_id: int, title: str) -> None:
        """A new title (ChatKit's threads.update); under the lease like every other change."""

        def rename(session: Session) -> None:
            lease = self._lease(session, user_id, conversation_id)
            try:
                conversation = crud.get_conversation(session, user_id=user_id, conversation_id=conversation_id)
                assert conversation is not None  # leased just now: it exists and is the user's
                changes.rename_conversation(session, conversation=conversation, title=title)
            finally:
                changes.release_turn_lease(session, lease=lease)

        await self._db(rename)

    async def abandon(self, turn: OpenTurn) -> None:
        """A turn that was opened but will not run (its client left before it started): give its lease back."""
        with anyio.CancelScope(shield=True):
            await self._release(turn)

    # ------------------------------------------------------------ running it
    async def events(
        self, turn: OpenTurn, *, agent: TodoAgent | None = None, stream_tokens: bool = True
    ) -> AsyncIterator[AgentEvent]:
        """Run the agent and persist its outcome; the last event is a FinalReply or an AgentFailure.

        The reply (or, on failure, the tool calls that did run) is stored before the last event is yielded, and the
        lease is released whatever happens, so a client that sees the end can immediately start the next turn. A
        reply whose lease was lost meanwhile (the conversation was deleted after the lease expired) is dropped: the
        last event is then an AgentFailure with code `conflict`.
        """
        runner = agent or self.agent
        context = ToolRunContext(user_id=turn.user_id, engine=self.engine)
        started = time.perf_counter()
        released = decided = False
        outcome = "cancelled"
        calls = 0
        try:
            tasks = turn.tasks
            if tasks is None and runner.wants_tasks and self.task_context_limit > 0:  # a prompt of its own
                tasks = await anyio.to_thread.run_sync(self._read_task_lines, turn.user_id)
            stream = runner.stream(
                context=context, history=turn.history, message=turn.message, tasks=tasks, stream_tokens=stream_tokens
            )
            async for event in stream:
                if isinstance(event, FinalReply | AgentFailure):
                    released = True  # _finish releases the lease whether or not it can store the reply
                    calls = len(event.tool_calls)
                    text = event.text if isinstance(event, FinalReply) else ("" if event.tool_calls else None)
                    outcome = "ok" if isinstance(event, FinalReply) else event.code
                    try:
                        stored = await self._finish(turn, text, event.tool_calls)
                    except ApiError as exc:
                        outcome = exc.code
                        raise
                    if not stored:
                        event = dropped_reply(event.tool_calls)
                        outcome = event.code
                    decided = True  # stored (or dropped): whatever happens to the consumer now, this is the outcome
                yield event
        except BaseException:
            if outcome == "ok" and not decided:
                outcome = "error"
            raise
        finally:
            if not released:  # cancelled or failed before the end: never leave the conversation locked
                await self._release(turn)
            self._log_turn(turn, outcome, calls, started)

    @staticmethod
    def _log_turn(turn: OpenTurn, outcome: str, calls: int, started: float) -> None:
        fields = {
            "door": turn.door,
            "conversation_id": turn.conversation_id,
            "outcome": outcome,
            "tool_calls": calls,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        TURNS.labels(turn.door, outcome).inc()
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log.log(level, "turn %s: %s", turn.door, outcome, extra={"fields": fields})

    async def _finish(self, turn: OpenTurn, text: str | None, calls: list[ToolCallRecord]) -> bool:
        """Store the reply (when there is one) and release the lease in one transaction; False when the lease was
        lost (nothing is stored then). A database failure answers 503 and keeps trying in the background, so the
        conversation is not left locked until its lease expires."""
        try:
            return await anyio.to_thread.run_sync(self._store_reply, turn, text, calls)
        except (OperationalError, DBAPIError) as exc:
            self._recover(turn, text, calls)
            raise database_unavailable() from exc

    def _store_reply(self, turn: OpenTurn, text: str | None, calls: list[ToolCallRecord]) -> bool:
        with Session(self.engine) as session:
            # The release comes first: it matches the lease's holder and, on PostgreSQL, locks the row, so the
            # conversation cannot be deleted between the check and the insert.
            if not changes.release_turn_lease(session, lease=turn.lease, commit=False):
                session.rollback()
                log.warning("turn on conversation %s lost its lease; reply dropped", turn.conversation_id)
                return False
            if text is not None:
                session.add(
                    Message(
                        user_id=turn.user_id,
                        conversation_id=turn.conversation_id,
                        role="assistant",
                        content=text,
                        tool_calls=[call.public() for call in calls] or None,
                        tasks=task_snapshot(crud.list_tasks(session, user_id=turn.user_id)),
                    )
                )
            session.commit()
            return True

    def _recover(self, turn: OpenTurn, text: str | None, calls: list[ToolCallRecord]) -> None:
        async def retry() -> None:
            deadline = time.monotonic() + self.lease_seconds
            delay = RECOVERY_FIRST_DELAY
            while time.monotonic() < deadline:
                await asyncio.sleep(delay)  # a backoff while the database is away, not a synchronisation
                try:
                    await anyio.to_thread.run_sync(self._store_reply, turn, text, calls)
                except (OperationalError, DBAPIError):
                    delay = min(delay * 2, RECOVERY_MAX_DELAY)
                    continue
                log.info("conversation %s released after the database came back", turn.conversation_id)
                return
            log.warning("conversation %s: gave up storing the reply; its lease expires", turn.conversation_id)

        task = asyncio.create_task(retry())
        self.recovering.add(task)
        task.add_done_callback(self.recovering.discard)

    async def _release(self, turn: OpenTurn) -> None:
        def release() -> None:
            with Session(self.engine) as session:
                changes.release_turn_lease(session, lease=turn.lease)

        # A database outage here must not mask the turn's outcome; the lease then simply expires.
        try:
            await anyio.to_thread.run_sync(release)
        except Exception:
            log.warning("conversation %s: could not release its lease", turn.conversation_id)

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
                FAILURE_STATUS.get(event.code, 502),
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
