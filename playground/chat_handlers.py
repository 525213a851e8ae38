"""Chat tab handlers: run a turn through the chat service and render its events as Gradio chat messages.

Pure where possible: `TurnRenderer` turns agent events into `gr.ChatMessage`s (a tool call is a collapsible message
whose metadata carries title, status and duration), and the async functions take the playground context and the
session and return (or yield) the updated session, so tests call them without a browser.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import anyio
import gradio as gr
import pandas as pd
from sqlmodel import Session

from backend import crud
from backend.agent import (
    AgentEvent,
    AgentFailure,
    FinalReply,
    TextDelta,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallStarted,
)
from backend.chat import OpenTurn, detached
from backend.errors import ApiError
from backend.models import Message
from backend.prompts import prompt_version
from backend.settings import Settings
from playground.context import DEV_USER, PlaygroundContext
from playground.session import PlaygroundSession

TASK_COLUMNS = ["id", "title", "completed", "description"]
DOOR = "playground"


# ---------------------------------------------------------------- who is chatting


def resolve_user(settings: Settings, requested: str | None, login: str | None) -> str:
    """In development the playground may act as any chosen user; elsewhere only as its logged-in user."""
    if settings.environment == "development":
        return (requested or "").strip() or login or DEV_USER
    if not login:
        raise PermissionError("the playground needs a login outside development")
    return f"playground-{login}"


# ---------------------------------------------------------------- rendering


def _json_block(value: Any) -> str:
    return "```json\n" + json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n```"


def tool_started_message(call_id: str, name: str, arguments: dict[str, Any]) -> gr.ChatMessage:
    return gr.ChatMessage(
        role="assistant",
        content=f"**arguments**\n{_json_block(arguments)}\n\n*running…*",
        metadata={"title": f"⚙ {name}", "status": "pending", "id": call_id},
    )


def tool_finished_message(call_id: str, call: ToolCallRecord) -> gr.ChatMessage:
    title = f"⚙ {call.name}"
    if call.is_error:
        error = call.result.get("error", {}) if isinstance(call.result, dict) else {}
        title += f" — ✗ {error.get('code', 'error')}"
    return gr.ChatMessage(
        role="assistant",
        content=f"**arguments**\n{_json_block(call.arguments)}\n\n**result**\n{_json_block(call.result)}",
        metadata={
            "title": title,
            "status": "done",
            "duration": round(call.duration_ms / 1000, 3),
            "id": call_id,
            "log": "error" if call.is_error else "ok",
        },
    )


def failure_message(code: str, message: str) -> gr.ChatMessage:
    return gr.ChatMessage(role="assistant", content=message, metadata={"title": f"⚠ {code}", "status": "done"})


def stored_messages(messages: list[Message]) -> list[gr.ChatMessage]:
    """A stored conversation as chat messages (stored tool calls have no duration: it is not persisted)."""
    shown: list[gr.ChatMessage] = []
    for message in messages:
        if message.role == "user":
            shown.append(gr.ChatMessage(role="user", content=message.content))
            continue
        for index, raw in enumerate(message.tool_calls or []):
            call = ToolCallRecord(raw.get("name", ""), raw.get("arguments") or {}, raw.get("result", {}))
            shown.append(tool_finished_message(f"stored_{message.id}_{index}", call))
            shown[-1].metadata.pop("duration", None)
        if message.content:
            shown.append(gr.ChatMessage(role="assistant", content=message.content))
    return shown


class TurnRenderer:
    """Applies one turn's events to the chat: tool calls as collapsible messages, text streamed into a bubble."""

    def __init__(self, messages: list[gr.ChatMessage]) -> None:
        self.messages = list(messages)
        self._tool_index: dict[str, int] = {}
        self._text_index: int | None = None  # the bubble deltas go to; a tool call starts a new one
        self.streamed_text = False

    def apply(self, event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            if self._text_index is None:
                if not event.text.strip():
                    return  # a separator before any text of this bubble
                self.messages.append(gr.ChatMessage(role="assistant", content=""))
                self._text_index = len(self.messages) - 1
            bubble = self.messages[self._text_index]
            self.messages[self._text_index] = replace(bubble, content=str(bubble.content) + event.text)
            self.streamed_text = True
        elif isinstance(event, ToolCallStarted):
            self.messages.append(tool_started_message(event.call_id, event.name, event.arguments))
            self._tool_index[event.call_id] = len(self.messages) - 1
            self._text_index = None
        elif isinstance(event, ToolCallFinished):
            message = tool_finished_message(event.call_id, event.call)
            index = self._tool_index.get(event.call_id)
            if index is None:  # a finish without a start (the SDK did not report it): show it anyway
                self.messages.append(message)
                self._text_index = None
            else:
                self.messages[index] = message
        elif isinstance(event, FinalReply):
            if not self.streamed_text and event.text:
                self.messages.append(gr.ChatMessage(role="assistant", content=event.text))
        elif isinstance(event, AgentFailure):
            self.messages.append(failure_message(event.code, event.message))


def tool_call_messages(messages: list[Any]) -> list[Any]:
    """The tool-call messages of a chat (objects or the dicts a Gradio client receives)."""
    found = []
    for message in messages:
        metadata = message.get("metadata") if isinstance(message, dict) else message.metadata
        if metadata and str(metadata.get("title", "")).startswith("⚙"):
            found.append(message)
    return found


# ---------------------------------------------------------------- a turn


def _call_json(call: ToolCallRecord) -> dict[str, Any]:
    return {**call.public(), "duration_ms": round(call.duration_ms, 1), "is_error": call.is_error}


async def _stream_turn(
    ctx: PlaygroundContext, session: PlaygroundSession, open_turn: Any, message: str
) -> AsyncIterator[PlaygroundSession]:
    started = time.perf_counter()
    instructions = session.prompt_text or ctx.chat.agent.config.instructions
    request = {
        "user_id": session.user_id,
        "conversation_id": session.conversation_id,
        "message": message,
        "model": session.model.describe(),
        "temperature": ctx.settings.temperature if session.model.temperature is None else session.model.temperature,
        "prompt_name": session.prompt_name or "(edited)",
        "prompt_version": prompt_version(instructions),
    }
    try:
        agent = await ctx.agent_for(session.model, instructions)
        turn: OpenTurn = await open_turn()
    except (ApiError, ValueError, RuntimeError) as exc:
        code = exc.code if isinstance(exc, ApiError) else "playground_error"
        session.messages = [*session.messages, failure_message(code, str(exc))]
        session.last_turn = {"request": request, "error": {"code": code, "message": str(exc)}}
        yield session
        return
    session.conversation_id = turn.conversation_id
    renderer = TurnRenderer(session.messages)
    timing: dict[str, float] = {}
    outcome: dict[str, Any] = {}
    async for event in detached(ctx.chat.events(turn, agent=agent)):
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        timing.setdefault("first_event_ms", elapsed)
        if isinstance(event, ToolCallStarted):
            timing.setdefault("first_tool_call_ms", elapsed)
        if isinstance(event, TextDelta):
            timing.setdefault("first_text_ms", elapsed)
        if isinstance(event, FinalReply):
            outcome = {
                "response": event.text,
                "tool_calls": [_call_json(c) for c in event.tool_calls],
                "usage": event.usage,
            }
        elif isinstance(event, AgentFailure):
            outcome = {
                "error": {"code": event.code, "message": event.message},
                "tool_calls": [_call_json(c) for c in event.tool_calls],
            }
        renderer.apply(event)
        session.messages = renderer.messages
        if not isinstance(event, FinalReply | AgentFailure):
            yield session  # the end is yielded once below, with the raw turn
    timing["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    session.last_turn = {
        "request": {**request, "conversation_id": turn.conversation_id},
        "conversation_id": turn.conversation_id,
        **outcome,
        "timing": timing,
    }
    yield session


async def send(ctx: PlaygroundContext, session: PlaygroundSession, message: str) -> AsyncIterator[PlaygroundSession]:
    """One turn: the user's message, then each event as it comes; the last session carries the raw turn JSON."""
    if not message.strip():
        yield session
        return
    session.messages = [*session.messages, gr.ChatMessage(role="user", content=message)]

    async def open_turn() -> OpenTurn:
        return await ctx.chat.open_turn(
            user_id=session.user_id, message=message, conversation_id=session.conversation_id, door=DOOR
        )

    async for updated in _stream_turn(ctx, session, open_turn, message):
        yield updated


def _last_user_index(messages: list[gr.ChatMessage]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)


def _last_user_message(ctx: PlaygroundContext, session: PlaygroundSession) -> Message | None:
    if session.conversation_id is None:
        return None
    with Session(ctx.engine) as db:
        stored = crud.list_messages(db, conversation_id=session.conversation_id, newest_first=True)
        return next((m for m in stored if m.role == "user" and m.user_id == session.user_id), None)


async def retry(ctx: PlaygroundContext, session: PlaygroundSession) -> AsyncIterator[PlaygroundSession]:
    """Run the last user message again (what followed it is dropped, as ChatKit's retry does)."""
    last = await anyio.to_thread.run_sync(_last_user_message, ctx, session)
    if last is None or last.id is None or session.conversation_id is None:
        yield session
        return
    index = _last_user_index(session.messages)
    session.messages = session.messages[: index + 1] if index is not None else session.messages
    conversation_id, message_id = session.conversation_id, last.id

    async def open_turn() -> OpenTurn:
        return await ctx.chat.reopen_turn(
            user_id=session.user_id, conversation_id=conversation_id, user_message_id=message_id, door=DOOR
        )

    async for updated in _stream_turn(ctx, session, open_turn, last.content):
        yield updated


async def undo(ctx: PlaygroundContext, session: PlaygroundSession) -> tuple[PlaygroundSession, str]:
    """Remove the last exchange from the conversation and hand its text back for editing.

    Only the conversation is rewound: tool calls already ran, so their effect on tasks stays (the task list shows it).
    """
    last = await anyio.to_thread.run_sync(_last_user_message, ctx, session)
    if last is None or last.id is None or session.conversation_id is None:
        return session, ""
    await ctx.chat.rewind(user_id=session.user_id, conversation_id=session.conversation_id, user_message_id=last.id)
    index = _last_user_index(session.messages)
    if index is not None:
        session.messages = session.messages[:index]
    session.last_turn = {}
    return session, last.content


def new_conversation(session: PlaygroundSession) -> PlaygroundSession:
    session.conversation_id = None
    session.messages = []
    session.last_turn = {}
    return session


def resume(ctx: PlaygroundContext, session: PlaygroundSession, conversation_id: int | str | None) -> PlaygroundSession:
    """Show a stored conversation; the next message continues it."""
    if conversation_id is None or conversation_id == "":
        return new_conversation(session)
    wanted = int(conversation_id) if str(conversation_id).isdigit() else None
    with Session(ctx.engine) as db:
        conversation = (
            crud.get_conversation(db, user_id=session.user_id, conversation_id=wanted) if wanted is not None else None
        )
        if conversation is None or wanted is None:
            raise ApiError(404, "not_found", "Conversation not found.")
        messages = list(crud.list_messages(db, conversation_id=wanted))
    session.conversation_id = wanted
    session.messages = stored_messages(messages)
    session.last_turn = {}
    return session


# ---------------------------------------------------------------- beside the chat


def task_table(ctx: PlaygroundContext, user_id: str) -> pd.DataFrame:
    with Session(ctx.engine) as db:
        tasks = crud.list_tasks(db, user_id=user_id)
        rows = [[t.id, t.title, t.completed, t.description or ""] for t in tasks]
    return pd.DataFrame(rows, columns=TASK_COLUMNS)


def conversation_choices(ctx: PlaygroundContext, user_id: str, limit: int = 50) -> list[tuple[str, int]]:
    with Session(ctx.engine) as db:
        conversations = crud.list_conversations(db, user_id=user_id, limit=limit)
        return [(f"#{c.id} {c.title}", int(c.id)) for c in conversations if c.id is not None]
