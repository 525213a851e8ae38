"""Conversations: list, read, delete. Another user's conversation answers exactly like a missing one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlmodel import Session

from backend import crud
from backend.chat import conversation_not_found
from backend.deps import ChatDep, DbDep, PathUser, WritingUser
from backend.errors import error_responses
from backend.models import ROW_ID_MAX, Conversation, ConversationDetail, ConversationPublic, MessagePublic

router = APIRouter(
    prefix="/api/{user_id}/conversations",
    tags=["conversations"],
    responses=error_responses(401, 403, 422, 503),
)
NOT_FOUND = error_responses(404)


def owned_conversation(session: Session, user: str, conversation_id: int) -> Conversation:
    conversation = crud.get_conversation(session, user_id=user, conversation_id=conversation_id)
    if conversation is None:
        raise conversation_not_found()
    return conversation


@router.get("", response_model=list[ConversationPublic])
async def list_conversations(
    user: PathUser,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=ROW_ID_MAX)] = 0,
) -> list[Conversation]:
    """Newest first."""
    return await db(lambda session: list(crud.list_conversations(session, user_id=user, limit=limit, offset=offset)))


@router.get("/{conversation_id}", response_model=ConversationDetail, responses=NOT_FOUND)
async def read_conversation(user: PathUser, db: DbDep, conversation_id: int) -> ConversationDetail:
    """The conversation with its messages, oldest first."""
    return await db(lambda session: conversation_detail(session, user, conversation_id))


def conversation_detail(session: Session, user: str, conversation_id: int) -> ConversationDetail:
    conversation = owned_conversation(session, user, conversation_id)
    assert conversation.id is not None
    messages = crud.list_messages(session, conversation_id=conversation.id)
    return ConversationDetail(
        **ConversationPublic.model_validate(conversation).model_dump(),
        messages=[MessagePublic.model_validate(m) for m in messages],
    )


@router.delete("/{conversation_id}", status_code=204, responses={**NOT_FOUND, **error_responses(409, 429)})
async def delete_conversation(user: WritingUser, chat: ChatDep, conversation_id: int) -> Response:
    """409 while a turn runs on it: delete it once the turn has answered."""
    await chat.delete_conversation(user_id=user, conversation_id=conversation_id)
    return Response(status_code=204)
