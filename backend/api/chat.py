"""The chat contract: `POST /api/{user_id}/chat` and `POST /api/chat`, JSON or Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from sse_starlette import EventSourceResponse, ServerSentEvent

from backend.agent import AgentFailure, FinalReply, TextDelta, ToolCallFinished
from backend.chat import ChatService, OpenTurn, TurnResult, collect, detached
from backend.deps import ChatDep, LimitedPathUser, LimitedUser
from backend.errors import error_responses
from backend.models import MESSAGE_MAX, NON_BLANK_TEXT_PATTERN

router = APIRouter(tags=["chat"])


class ChatRequest(BaseModel):
    # Unknown fields (a `user_id` in the body, say) are ignored: the user comes from the token alone.
    model_config = ConfigDict(extra="ignore")

    message: StrictStr = Field(min_length=1, max_length=MESSAGE_MAX, pattern=NON_BLANK_TEXT_PATTERN)
    conversation_id: StrictInt | None = Field(default=None, ge=1)

    @field_validator("conversation_id", mode="before")
    @classmethod
    def _integral_number(cls, value: object) -> object:
        """JSON does not tell 7 from 7.0 (JSON Schema calls both integers); strings stay refused."""
        return int(value) if isinstance(value, float) and value.is_integer() else value


class ToolCallOut(BaseModel):
    name: str
    arguments: dict[str, Any]
    result: Any


class ChatResponse(BaseModel):
    conversation_id: int
    response: str
    tool_calls: list[ToolCallOut]


def wants_stream(accept: str | None) -> bool:
    return "text/event-stream" in (accept or "").lower()


def _sse(event: str, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event=event, data=json.dumps(data, ensure_ascii=False, default=str))


async def sse_events(service: ChatService, turn: OpenTurn) -> AsyncIterator[ServerSentEvent]:
    """`start`, then `tool_call` / `delta` as they happen, then exactly one `done` or `error`."""
    yield _sse("start", {"conversation_id": turn.conversation_id})
    try:
        async for event in detached(service.events(turn)):
            if isinstance(event, TextDelta):
                yield _sse("delta", {"text": event.text})
            elif isinstance(event, ToolCallFinished):
                yield _sse("tool_call", event.call.public())
            elif isinstance(event, FinalReply):
                result = TurnResult(turn.conversation_id, event.text, event.tool_calls, event.usage)
                yield _sse("done", result.public())
                return
            elif isinstance(event, AgentFailure):
                yield _sse("error", {"code": event.code, "message": event.message})
                return
    except Exception as exc:
        code = getattr(exc, "code", "internal_error")
        message = getattr(exc, "message", "Something went wrong on our side.")
        yield _sse("error", {"code": code, "message": message})
        return
    yield _sse("error", {"code": "model_error", "message": "The turn ended without a reply."})


async def _chat(service: ChatService, user_id: str, body: ChatRequest, accept: str | None) -> Any:
    stream = wants_stream(accept)
    turn = await service.open_turn(
        user_id=user_id, message=body.message, conversation_id=body.conversation_id, door="sse" if stream else "json"
    )
    if stream:
        return EventSourceResponse(sse_events(service, turn), ping=15)
    result = await collect(turn, service.events(turn, stream_tokens=False))  # nobody reads the tokens one by one
    return result.public()


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The reply, or (with `Accept: text/event-stream`) a stream of named SSE events",
        "content": {"text/event-stream": {}},
    },
    **error_responses(400, 401, 404, 409, 422, 429, 502, 503, 504),
}


@router.post("/api/{user_id}/chat", response_model=ChatResponse, responses={**_RESPONSES, **error_responses(403)})
async def chat_as_path_user(
    user: LimitedPathUser, body: ChatRequest, service: ChatDep, accept: Annotated[str | None, Header()] = None
) -> Any:
    """Send a message; a new conversation is created when `conversation_id` is absent."""
    return await _chat(service, user, body, accept)


@router.post("/api/chat", response_model=ChatResponse, responses=_RESPONSES)
async def chat_as_token_user(
    user: LimitedUser, body: ChatRequest, service: ChatDep, accept: Annotated[str | None, Header()] = None
) -> Any:
    """The same turn, the user taken from the token (what a Next.js route in front of ChatKit calls)."""
    return await _chat(service, user, body, accept)
