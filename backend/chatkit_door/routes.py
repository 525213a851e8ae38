"""`POST /chatkit` (the ChatKit protocol) and `GET /chatkit/demo` (the official web component against it).

Everything that can refuse a request is settled before a stream starts, so refusals are plain HTTP answers with our
error body: 401 without a valid token, 400 for a body that is not a ChatKit request (or asks for something this
server does not offer), 404 for a thread or item that is missing or not the caller's (the same answer for both),
409 while a turn runs on the thread, 422 for a blank or over-long message or title. Turns are opened here, through
the chat service, and `respond` continues them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from chatkit.errors import ErrorCode
from chatkit.server import StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import (
    ChatKitReq,
    ErrorEvent,
    ItemsFeedbackReq,
    ItemsListReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsDeleteReq,
    ThreadsGetByIdReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadsUpdateReq,
    UserMessageInput,
    is_streaming_req,
)
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import TypeAdapter, ValidationError

from backend.chat import ChatService
from backend.chatkit_door.items import TEXT_PART, parse_item_id, parse_thread_id
from backend.chatkit_door.server import TodoChatKitServer
from backend.chatkit_door.store import RequestContext
from backend.deps import ChatDep, CurrentUser, get_limited_user, limit
from backend.errors import ApiError, validation_details
from backend.models import TITLE_MAX

log = logging.getLogger("todo_agent.chatkit")
DOOR = "chatkit"

router = APIRouter(tags=["chatkit"])

DEMO_PAGE = Path(__file__).resolve().parent.parent / "static" / "chatkit_demo.html"
_REQUEST: TypeAdapter[ChatKitReq] = TypeAdapter(ChatKitReq)
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def bad_request(message: str, details: object = None) -> ApiError:
    return ApiError(400, "bad_request", message, details=details)


def thread_not_found() -> ApiError:
    return ApiError(404, "not_found", "Thread not found.")


def parse_request(body: bytes) -> ChatKitReq:
    try:
        return _REQUEST.validate_json(body)
    except ValidationError as exc:
        details = validation_details(exc.errors())
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"]) or "body"
        raise bad_request(f"Not a ChatKit request: {where}: {first['msg']}", details) from exc


def message_text(user_input: UserMessageInput) -> str:
    """The text the chat service stores and the agent reads; tags count as their text."""
    if user_input.attachments:
        raise bad_request("Attachments are not supported by this server.")
    text = "".join(part.text for part in user_input.content)
    if user_input.quoted_text:
        text = f"> {user_input.quoted_text}\n\n{text}"
    return text


async def prepare(request: ChatKitReq, context: RequestContext, server: TodoChatKitServer, chat: ChatService) -> None:
    """Check the request against the caller's data and open the turn it runs; raises ApiError."""
    store = server.store

    async def owned(thread: str) -> int:
        conversation_id = await store.owned_conversation_id(thread, context)
        if conversation_id is None:
            raise thread_not_found()
        return conversation_id

    user = context.user_id
    match request:
        case ThreadsCreateReq():
            text = message_text(request.params.input)
            context.turn = await chat.open_turn(user_id=user, message=text, conversation_id=None, door=DOOR)
        case ThreadsAddUserMessageReq():
            text = message_text(request.params.input)
            conversation_id = await owned(request.params.thread_id)
            context.turn = await chat.open_turn(user_id=user, message=text, conversation_id=conversation_id, door=DOOR)
        case ThreadsRetryAfterItemReq():
            conversation_id = await owned(request.params.thread_id)
            key = parse_item_id(request.params.item_id)
            if key is None or key.part != TEXT_PART:
                raise ApiError(404, "not_found", "Message not found.")
            context.turn = await chat.reopen_turn(
                user_id=user, conversation_id=conversation_id, user_message_id=key.message_id, door=DOOR
            )
        case ThreadsUpdateReq():
            if not request.params.title.strip() or len(request.params.title) > TITLE_MAX:
                raise ApiError(422, "validation_error", f"title must be 1..{TITLE_MAX} characters")
            await owned(request.params.thread_id)
        case ItemsListReq():
            if request.params.after is not None and parse_item_id(request.params.after) is None:
                raise bad_request("params.after is not an item id of this server.")
            await owned(request.params.thread_id)
        case ThreadsGetByIdReq() | ThreadsDeleteReq() | ItemsFeedbackReq():
            await owned(request.params.thread_id)
        case ThreadsListReq():
            if request.params.after is not None and parse_thread_id(request.params.after) is None:
                raise bad_request("params.after is not a thread id of this server.")
        case _:
            raise bad_request(f"{request.type} is not supported by this server.")


async def release_unstarted(context: RequestContext, chat: ChatService) -> None:
    """A turn the door opened but `respond` never took over (the client left first) must not keep its lease."""
    if context.turn is not None and not context.turn_started:
        await chat.abandon(context.turn)


def _error_chunk() -> bytes:
    event = ErrorEvent(code=ErrorCode.STREAM_ERROR, allow_retry=True)
    return b"data: " + event.model_dump_json(exclude_none=True).encode() + b"\n\n"


async def guarded(result: StreamingResult, context: RequestContext, chat: ChatService) -> AsyncIterator[bytes]:
    try:
        async for chunk in result:
            yield chunk
    except Exception:
        # The SDK re-raises what goes wrong mid-stream; the client gets a protocol error instead of a cut stream.
        log.exception("chatkit stream failed")
        yield _error_chunk()
    finally:
        await release_unstarted(context, chat)


@router.post(
    "/chatkit",
    responses={
        200: {"description": "A JSON object, or for streaming requests a stream of ChatKit events (SSE)"},
        400: {"description": "Not a ChatKit request, or one this server does not offer"},
        401: {"description": "No valid bearer token"},
        404: {"description": "The thread or item is missing or not the caller's"},
        409: {"description": "A turn is already running on the thread"},
        422: {"description": "A blank or over-long message or title"},
        429: {"description": "Too many turns this minute"},
    },
)
async def chatkit_endpoint(request: Request, user: CurrentUser, chat: ChatDep) -> Response:
    """The ChatKit protocol: JSON body `{type, params}`; streaming requests answer with Server-Sent Events."""
    server: TodoChatKitServer = request.app.state.chatkit
    body = await request.body()
    chatkit_request = parse_request(body)
    if is_streaming_req(chatkit_request):  # a turn costs model time: the same per-user limit as the contract
        await get_limited_user(request, user)
    elif isinstance(chatkit_request, ThreadsUpdateReq | ThreadsDeleteReq):  # changes: the REST doors' write limit
        await limit(request.app.state.write_limiter, user, "changes")
    context = RequestContext(user_id=user)
    await prepare(chatkit_request, context, server, chat)
    try:
        result = await server.process(body, context)
    except NotFoundError as exc:  # the thread went away between the check and the work
        await release_unstarted(context, chat)
        raise thread_not_found() from exc
    except BaseException:
        await release_unstarted(context, chat)
        raise
    if isinstance(result, StreamingResult):
        return StreamingResponse(guarded(result, context, chat), media_type="text/event-stream", headers=_SSE_HEADERS)
    return Response(content=result.json, media_type="application/json")


demo_router = APIRouter(tags=["chatkit"])


@demo_router.get("/chatkit/demo", response_class=HTMLResponse, include_in_schema=False)
def chatkit_demo() -> HTMLResponse:
    """The official ChatKit web component against `/chatkit` (loads its script from OpenAI's CDN)."""
    return HTMLResponse(DEMO_PAGE.read_text(encoding="utf-8"))
