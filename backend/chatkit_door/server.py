"""The ChatKit server: `respond` runs the turn the door opened through the chat service and renders its events.

Tool calls show as a workflow (a task per call, loading then complete), reply text as assistant message deltas, a
model failure as an error event. While the turn runs, those items carry provisional ids; once the chat service has
stored the reply, they are removed and the stored reply's items (`wf_N`, `msg_N`) take their place, so the thread a
client builds from the stream is exactly what `items.list` returns afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from chatkit.server import ChatKitServer
from chatkit.store import NotFoundError
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    CustomTask,
    ErrorEvent,
    FeedbackKind,
    StreamOptions,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    Workflow,
    WorkflowItem,
    WorkflowTaskAdded,
    WorkflowTaskUpdated,
)

from backend.agent import AgentEvent, AgentFailure, FinalReply, TextDelta, ToolCallFinished, ToolCallStarted
from backend.chat import ChatService, detached
from backend.chatkit_door.items import (
    finished_task,
    parse_item_id,
    parse_thread_id,
    running_task,
    thread_id,
    workflow_summary,
)
from backend.chatkit_door.store import ConversationStore, RequestContext, provisional_id
from backend.errors import ApiError

log = logging.getLogger("todo_agent.chatkit")


class ReplyRenderer:
    """Our agent events as ChatKit events, on provisional items that the stored reply replaces at the end."""

    def __init__(self, thread: str) -> None:
        self.thread = thread
        self.workflow: WorkflowItem | None = None
        self.calls: dict[str, int] = {}  # call id -> task index in the open workflow
        self.names: list[str] = []  # tool names in the open workflow
        self.message: AssistantMessageItem | None = None
        self.provisional: list[str] = []

    def render(self, event: AgentEvent) -> list[ThreadStreamEvent]:
        if isinstance(event, ToolCallStarted):
            return self._add_task(event.call_id, event.name, running_task(event.name, event.arguments))
        if isinstance(event, ToolCallFinished):
            task = finished_task(event.call.public())
            index = self.calls.get(event.call_id)
            if self.workflow is None or index is None:  # a finish we saw no start for: show it all the same
                return self._add_task(event.call_id, event.call.name, task)
            self.workflow.workflow.tasks[index] = task
            update = WorkflowTaskUpdated(task_index=index, task=task)
            return [ThreadItemUpdatedEvent(item_id=self.workflow.id, update=update)]
        if isinstance(event, TextDelta):
            return self._text(event.text)
        return []

    def retract(self) -> list[ThreadStreamEvent]:
        """Remove every provisional item; the stored reply's items follow."""
        removed: list[ThreadStreamEvent] = [ThreadItemRemovedEvent(item_id=item) for item in self.provisional]
        self.provisional = []
        return removed

    def _new_id(self, kind: str) -> str:
        item_id = provisional_id(kind)
        self.provisional.append(item_id)
        return item_id

    def _add_task(self, call_id: str, name: str, task: CustomTask) -> list[ThreadStreamEvent]:
        if self.workflow is None:
            self.workflow = WorkflowItem(
                id=self._new_id("wf"),
                thread_id=self.thread,
                created_at=datetime.now(UTC),
                workflow=Workflow(type="custom", tasks=[task]),
            )
            self.calls, self.names = {call_id: 0}, [name]
            return [ThreadItemAddedEvent(item=self.workflow.model_copy(deep=True))]
        self.workflow.workflow.tasks.append(task)
        index = len(self.workflow.workflow.tasks) - 1
        self.calls[call_id] = index
        self.names.append(name)
        update = WorkflowTaskAdded(task_index=index, task=task)
        return [ThreadItemUpdatedEvent(item_id=self.workflow.id, update=update)]

    def _text(self, delta: str) -> list[ThreadStreamEvent]:
        events: list[ThreadStreamEvent] = []
        if self.workflow is not None:
            # As the SDK's own agent bridge does it: a workflow is done when the reply text starts.
            self.workflow.workflow.summary = workflow_summary([{"name": name} for name in self.names])
            events.append(ThreadItemDoneEvent(item=self.workflow.model_copy(deep=True)))
            self.workflow, self.calls, self.names = None, {}, []
        if self.message is None:
            self.message = AssistantMessageItem(
                id=self._new_id("msg"), thread_id=self.thread, created_at=datetime.now(UTC), content=[]
            )
            events.append(ThreadItemAddedEvent(item=self.message.model_copy(deep=True)))
            part = AssistantMessageContentPartAdded(content_index=0, content=AssistantMessageContent(text=""))
            events.append(ThreadItemUpdatedEvent(item_id=self.message.id, update=part))
        text = AssistantMessageContentPartTextDelta(content_index=0, delta=delta)
        events.append(ThreadItemUpdatedEvent(item_id=self.message.id, update=text))
        return events


class TodoChatKitServer(ChatKitServer[RequestContext]):
    """ChatKit's protocol on top of the chat service; the door has opened the turn before `respond` runs."""

    store: ConversationStore

    def __init__(self, store: ConversationStore, chat: ChatService) -> None:
        super().__init__(store)
        self.store = store
        self.chat = chat

    def get_stream_options(self, thread: ThreadMetadata, context: RequestContext) -> StreamOptions:
        # Stop ends the stream at once. The turn itself runs to its end (its tool calls change real data, and half a
        # turn would leave calls without a reply) and is stored: the thread shows the whole turn when reloaded.
        return StreamOptions(allow_cancel=True)

    async def handle_stream_cancelled(
        self, thread: ThreadMetadata, pending_items: list[ThreadItem], context: RequestContext
    ) -> None:
        # The client stopped or went away: the turn runs on (detached) and the chat service stores its reply. The
        # SDK's default would store partial items and a hidden "cancelled" note, which are not part of our history.
        return None

    async def add_feedback(
        self, thread_id: str, item_ids: list[str], feedback: FeedbackKind, context: RequestContext
    ) -> None:
        """Thumbs up or down on reply items, kept on their messages (the conversation endpoints show it, and
        `todo-agent eval capture --feedback negative` lists the conversations users disliked)."""
        conversation_id = parse_thread_id(thread_id)
        keys = [parse_item_id(item) for item in item_ids]
        if conversation_id is None or any(key is None for key in keys):
            raise NotFoundError(f"Thread {thread_id} or one of its items not found")
        message_ids = sorted({key.message_id for key in keys if key is not None})
        try:
            await self.chat.give_feedback(
                user_id=context.user_id, conversation_id=conversation_id, message_ids=message_ids, feedback=feedback
            )
        except ApiError as exc:
            if exc.status == 404:
                raise NotFoundError(f"Thread {thread_id} not found") from exc
            raise

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: RequestContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        turn = context.turn
        if turn is None or thread.id != thread_id(turn.conversation_id):
            yield ErrorEvent(message="This request does not start a turn.", allow_retry=False)
            return
        stored_user = await self.store.user_item(turn, context)
        if thread.title is None:  # a new thread: show it as stored (named after its first message)
            stored = await self.store.load_thread(thread.id, context)
            thread.title, thread.created_at = stored.title, stored.created_at
        if input_user_message is not None and stored_user is not None and stored_user != input_user_message:
            # The SDK built the user's item from the request; show the stored message (its time, its text).
            yield ThreadItemReplacedEvent(item=stored_user)

        renderer = ReplyRenderer(thread.id)
        outcome: FinalReply | AgentFailure | None = None
        context.turn_started = True  # from here the chat service releases the conversation, whatever happens
        try:
            async for event in detached(self.chat.events(turn)):
                for rendered in renderer.render(event):
                    yield rendered
                if isinstance(event, FinalReply | AgentFailure):
                    outcome = event
        except ApiError as exc:  # the reply could not be stored (database down)
            log.warning("chatkit turn on %s failed: %s", thread.id, exc.code)
            for rendered in renderer.retract():
                yield rendered
            yield ErrorEvent(message=exc.message, allow_retry=True)
            return
        for rendered in renderer.retract():
            yield rendered
        for item in await self.store.reply_items(turn, context):
            yield ThreadItemDoneEvent(item=item)
        if isinstance(outcome, AgentFailure):
            yield ErrorEvent(message=outcome.message, allow_retry=True)
        elif outcome is None:
            yield ErrorEvent(message="The turn ended without a reply.", allow_retry=True)
