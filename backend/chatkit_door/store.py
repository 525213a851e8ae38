"""A ChatKit `Store` over our tables: threads are the caller's conversations, items are rendered messages.

The chat service is the only writer of messages. The SDK's write hooks (`add_thread_item`, `save_item`) fire for
items the chat service has already stored, so they write nothing; threads are stored without their items (only the
title is ours to change). Every query is scoped to the token's user, so another user's thread is simply not found.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from chatkit.store import NotFoundError, Store
from chatkit.types import Attachment, Page, ThreadItem, ThreadMetadata
from sqlalchemy import Engine, tuple_
from sqlmodel import Session, col, select

from backend import crud, db
from backend.chat import ChatService, OpenTurn
from backend.chatkit_door.items import (
    TEXT_PART,
    ItemKey,
    as_utc,
    message_items,
    parse_item_id,
    parse_thread_id,
    thread_id,
)
from backend.models import Conversation, Message

log = logging.getLogger("todo_agent.chatkit")

T = TypeVar("T")

# Items a turn streams before its reply is stored carry this prefix; the stored items replace them.
PROVISIONAL_PREFIX = "pending_"
# A page holds 1..MAX_PAGE entries whatever the request's `limit` says (a negative LIMIT is a database error).
MAX_PAGE = 100


@dataclass
class RequestContext:
    """One ChatKit request: who asks, and the turn the door opened for it (if the request runs one)."""

    user_id: str
    turn: OpenTurn | None = None
    turn_started: bool = False  # set when the chat service took the turn over (it then releases the lease)
    user_item_issued: bool = False


class ConversationStore(Store[RequestContext]):
    def __init__(self, engine: Engine, chat: ChatService) -> None:
        self.engine = engine
        self.chat = chat  # every change to a conversation goes through it

    async def _run(self, work: Callable[[Session], T]) -> T:
        return await db.run_in_session(self.engine, work)

    @staticmethod
    def _conversation(session: Session, context: RequestContext, thread: str) -> Conversation:
        conversation_id = parse_thread_id(thread)
        found = (
            crud.get_conversation(session, user_id=context.user_id, conversation_id=conversation_id)
            if conversation_id is not None
            else None
        )
        if found is None:
            raise NotFoundError(f"Thread {thread} not found")
        return found

    @staticmethod
    def _metadata(conversation: Conversation) -> ThreadMetadata:
        assert conversation.id is not None
        return ThreadMetadata(
            id=thread_id(conversation.id), title=conversation.title, created_at=as_utc(conversation.created_at)
        )

    # ------------------------------------------------------------ ids
    def generate_thread_id(self, context: RequestContext) -> str:
        # The door opens the turn (and so creates the conversation) before the SDK names the new thread.
        if context.turn is None:
            raise RuntimeError("a ChatKit thread is created by opening a turn")
        return thread_id(context.turn.conversation_id)

    def generate_item_id(self, item_type: Any, thread: ThreadMetadata, context: RequestContext) -> str:
        # The SDK names the user's message item before `respond`; the chat service has stored it already.
        if item_type == "message" and context.turn is not None and not context.user_item_issued:
            context.user_item_issued = True
            return ItemKey(context.turn.user_message_id, TEXT_PART).id
        return provisional_id(str(item_type))

    # ------------------------------------------------------------ threads
    async def load_thread(self, thread_id: str, context: RequestContext) -> ThreadMetadata:
        return await self._run(lambda session: self._metadata(self._conversation(session, context, thread_id)))

    async def save_thread(self, thread: ThreadMetadata, context: RequestContext) -> None:
        current = await self.load_thread(thread.id, context)
        conversation_id = parse_thread_id(thread.id)
        if thread.title is not None and thread.title != current.title and conversation_id is not None:
            await self.chat.rename_conversation(
                user_id=context.user_id, conversation_id=conversation_id, title=thread.title
            )

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: RequestContext
    ) -> Page[ThreadMetadata]:
        limit = max(1, min(limit, MAX_PAGE))

        def load(session: Session) -> Page[ThreadMetadata]:
            # By last activity (a turn's end or a rename moves `updated_at`), the id breaking ties; the cursor is the
            # last thread of the previous page, read back for its place in that order.
            query = select(Conversation).where(Conversation.user_id == context.user_id)
            activity, row_id = col(Conversation.updated_at), col(Conversation.id)
            if after is not None:
                cursor_id = parse_thread_id(after)
                cursor = (
                    crud.get_conversation(session, user_id=context.user_id, conversation_id=cursor_id)
                    if cursor_id is not None
                    else None
                )
                if cursor is None:
                    raise NotFoundError(f"Thread {after} not found")
                if order == "desc":
                    query = query.where(tuple_(activity, row_id) < tuple_(cursor.updated_at, cursor.id))
                else:
                    query = query.where(tuple_(activity, row_id) > tuple_(cursor.updated_at, cursor.id))
            ordering = (activity.desc(), row_id.desc()) if order == "desc" else (activity, row_id)
            rows = session.exec(query.order_by(*ordering).limit(limit + 1)).all()
            data = [self._metadata(row) for row in rows[:limit]]
            has_more = len(rows) > limit
            return Page(data=data, has_more=has_more, after=data[-1].id if data and has_more else None)

        return await self._run(load)

    async def delete_thread(self, thread_id: str, context: RequestContext) -> None:
        conversation_id = parse_thread_id(thread_id)
        if conversation_id is None:
            raise NotFoundError(f"Thread {thread_id} not found")
        await self.chat.delete_conversation(user_id=context.user_id, conversation_id=conversation_id)

    # ------------------------------------------------------------ items
    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: RequestContext
    ) -> Page[ThreadItem]:
        newest_first = order == "desc"
        limit = max(1, min(limit, MAX_PAGE))

        def load(session: Session) -> Page[ThreadItem]:
            conversation = self._conversation(session, context, thread_id)
            cursor = parse_item_id(after) if after is not None else None
            if after is not None and cursor is None:
                raise NotFoundError(f"Item {after} not found")
            items: list[ThreadItem] = []
            # A message shows as one or two items: read rows in batches until the page (plus one) is full.
            bound, inclusive = (cursor.message_id, True) if cursor else (None, False)
            batch = limit + 2
            while True:
                query = select(Message).where(Message.conversation_id == conversation.id)
                if bound is not None:
                    column = col(Message.id)
                    if newest_first:
                        query = query.where(column <= bound if inclusive else column < bound)
                    else:
                        query = query.where(column >= bound if inclusive else column > bound)
                query = query.order_by(col(Message.id).desc() if newest_first else col(Message.id)).limit(batch)
                rows = session.exec(query).all()
                for row in rows:
                    keyed = message_items(row, thread_id)
                    for key, item in reversed(keyed) if newest_first else keyed:
                        if cursor is None or (key < cursor if newest_first else key > cursor):
                            items.append(item)
                if len(items) > limit or len(rows) < batch:
                    break
                bound, inclusive = rows[-1].id, False
            data = items[:limit]
            has_more = len(items) > limit
            return Page(data=data, has_more=has_more, after=data[-1].id if data and has_more else None)

        return await self._run(load)

    async def load_item(self, thread_id: str, item_id: str, context: RequestContext) -> ThreadItem:
        def load(session: Session) -> ThreadItem:
            conversation = self._conversation(session, context, thread_id)
            key = parse_item_id(item_id)
            row = session.get(Message, key.message_id) if key is not None else None
            if row is not None and row.conversation_id == conversation.id:
                for found_key, item in message_items(row, thread_id):
                    if found_key == key:
                        return item
            raise NotFoundError(f"Item {item_id} not found")

        return await self._run(load)

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        self._already_stored(thread_id, item)

    async def save_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        self._already_stored(thread_id, item)

    @staticmethod
    def _already_stored(thread_id: str, item: ThreadItem) -> None:
        """The chat service stored what this item shows; provisional items are replaced before the turn ends."""
        if parse_item_id(item.id) is None and not item.id.startswith(PROVISIONAL_PREFIX):
            log.warning(
                "chatkit: %s item %s on %s is not kept (the chat service owns the history)",
                item.type,
                item.id,
                thread_id,
            )

    async def delete_thread_item(self, thread_id: str, item_id: str, context: RequestContext) -> None:
        """Deletes a message (`msg_N`); a workflow stays with its message, and provisional items were never stored."""
        key = parse_item_id(item_id)
        conversation_id = parse_thread_id(thread_id)
        if key is None or key.part != TEXT_PART or conversation_id is None:
            return
        await self.chat.delete_message(
            user_id=context.user_id, conversation_id=conversation_id, message_id=key.message_id
        )

    # ------------------------------------------------------------ attachments (not offered by this server)
    async def save_attachment(self, attachment: Attachment, context: RequestContext) -> None:
        raise NotImplementedError("attachments are not supported")

    async def load_attachment(self, attachment_id: str, context: RequestContext) -> Attachment:
        raise NotFoundError(f"Attachment {attachment_id} not found")

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        raise NotFoundError(f"Attachment {attachment_id} not found")

    # ------------------------------------------------------------ for the door
    async def owned_conversation_id(self, thread: str, context: RequestContext) -> int | None:
        def find(session: Session) -> int | None:
            try:
                return self._conversation(session, context, thread).id
            except NotFoundError:
                return None

        return await self._run(find)

    async def user_item(self, turn: OpenTurn, context: RequestContext) -> ThreadItem | None:
        """The turn's user message as items.list shows it."""

        def load(session: Session) -> ThreadItem | None:
            row = session.get(Message, turn.user_message_id)
            if row is None or row.user_id != context.user_id:
                return None
            return message_items(row, thread_id(turn.conversation_id))[0][1]

        return await self._run(load)

    async def reply_items(self, turn: OpenTurn, context: RequestContext) -> list[ThreadItem]:
        """The items of the reply the chat service stored for `turn`: the message right after the turn's user message,
        if it is the assistant's (the turn held the conversation's lease from its user message to its reply)."""

        def load(session: Session) -> list[ThreadItem]:
            query = (
                select(Message)
                .where(Message.conversation_id == turn.conversation_id)
                .where(Message.user_id == context.user_id)
                .where(col(Message.id) > turn.user_message_id)
                .order_by(col(Message.id))
                .limit(1)
            )
            row = session.exec(query).first()
            if row is None or row.role != "assistant":
                return []
            return [item for _, item in message_items(row, thread_id(turn.conversation_id))]

        return await self._run(load)


def provisional_id(kind: str) -> str:
    return f"{PROVISIONAL_PREFIX}{kind}_{uuid.uuid4().hex[:12]}"
