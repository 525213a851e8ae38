"""The todo agent: configuration for the OpenAI Agents SDK, run by `TodoAgent.stream`, which yields typed events.

Every door renders these events its own way (JSON, SSE, ChatKit, Gradio); none of them talks to the SDK directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio
import openai
from agents import Agent, FunctionTool, ModelSettings, RunConfig, Runner, TResponseInputItem
from agents.exceptions import AgentsException, MaxTurnsExceeded, ModelBehaviorError
from agents.items import ItemHelpers, MessageOutputItem, ToolCallItem
from agents.models.interface import Model
from agents.tool_context import ToolContext
from agents.tracing import set_trace_provider
from agents.tracing.provider import DefaultTraceProvider

from backend import metrics, tools, tracing
from backend.models import Message
from backend.prompts import split_prompt


@functools.cache
def _silent_trace_provider() -> DefaultTraceProvider:
    provider = DefaultTraceProvider()
    provider.set_disabled(True)
    return provider


def tracing_off() -> None:
    """Nothing leaves the machine: the Agents SDK's tracing is off for the process. A provider of our own, with no
    processor, also spares the SDK building its default one, whose exporter makes an HTTP client and a TLS context
    (in every server and eval worker process, tracing off or not)."""
    set_trace_provider(_silent_trace_provider())


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class ToolCallRecord:
    """One executed tool call, as the contract returns it and the database stores it."""

    name: str
    arguments: dict[str, Any]
    result: tools.ToolResult
    duration_ms: float = 0.0

    @property
    def is_error(self) -> bool:
        return isinstance(self.result, dict) and "error" in self.result

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "result": self.result}


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolCallFinished:
    call_id: str
    call: ToolCallRecord


@dataclass(frozen=True)
class FinalReply:
    text: str
    tool_calls: list[ToolCallRecord]
    usage: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentFailure:
    """The turn could not finish; `tool_calls` are the calls that did run (their effects are real)."""

    code: str  # model_error | model_timeout
    message: str
    tool_calls: list[ToolCallRecord] = field(default_factory=list)


AgentEvent = TextDelta | ToolCallStarted | ToolCallFinished | FinalReply | AgentFailure


# ---------------------------------------------------------------- run state


@dataclass
class TurnState:
    """The run context the SDK hands to tools; the model never sees it."""

    tool_context: tools.ToolRunContext
    calls: dict[str, ToolCallRecord] = field(default_factory=dict)
    # The SDK runs the calls of one model response concurrently; they must take effect in the order the model
    # wrote them ("add X, then list" lists X; ids are assigned in call order; `calls` stays in call order).
    # asyncio.Lock is FIFO and the SDK starts the calls in order, so holding it per call serialises them in order.
    tool_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _sdk_tool(tool: tools.TodoTool) -> FunctionTool:
    async def on_invoke(ctx: ToolContext[TurnState], raw_arguments: str) -> str:
        arguments = tools.parse_arguments(raw_arguments)
        async with ctx.context.tool_lock:
            started = time.perf_counter()
            result = await anyio.to_thread.run_sync(tools.invoke, ctx.context.tool_context, tool.name, arguments)
            ctx.context.calls[ctx.tool_call_id] = ToolCallRecord(
                name=tool.name,
                arguments=arguments if arguments is not None else {"_raw": raw_arguments},
                result=result,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        return json.dumps(result, ensure_ascii=False, default=str)

    return FunctionTool(
        name=tool.name,
        description=tool.description,
        params_json_schema=tool.parameters_schema(),
        on_invoke_tool=on_invoke,
        strict_json_schema=False,
    )


SDK_TOOLS: list[FunctionTool] = [_sdk_tool(tool) for tool in tools.TOOLS]


def history_items(messages: Sequence[Message]) -> list[TResponseInputItem]:
    """Stored messages as model input; past tool calls are replayed so "mark it done" can find "it"."""
    items: list[TResponseInputItem] = []
    for message in messages:
        if message.role == "user":
            items.append({"role": "user", "content": message.content})
            continue
        for index, call in enumerate(message.tool_calls or []):
            call_id = f"call_{message.id}_{index}"
            items.append(
                {
                    "type": "function_call",
                    "call_id": call_id,
                    "name": call["name"],
                    "arguments": json.dumps(call.get("arguments") or {}, ensure_ascii=False),
                }
            )
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": json.dumps(call.get("result"), ensure_ascii=False, default=str),
                }
            )
        if message.content:
            items.append({"role": "assistant", "content": message.content})
    return items


# ---------------------------------------------------------------- the turn's deadline


@dataclass
class _Deadline:
    """The running turn's timeout, reachable from code the turn calls (the model client's transport)."""

    timeout: asyncio.Timeout | None = None


_TURN_DEADLINE: ContextVar[_Deadline | None] = ContextVar("todo_agent_turn_deadline", default=None)


def extend_turn_deadline(seconds: float) -> None:
    """Move the running turn's deadline `seconds` later: for time a caller's own transport spent waiting for a free
    model slot (the eval runner's), which says nothing about whether the model answers in time. Outside a turn,
    nothing happens."""
    holder = _TURN_DEADLINE.get()
    if holder is None or holder.timeout is None or seconds <= 0:
        return
    when = holder.timeout.when()
    if when is not None:
        holder.timeout.reschedule(when + seconds)


def turn_deadline() -> float | None:
    """The event-loop time the running turn times out at (None outside a turn)."""
    holder = _TURN_DEADLINE.get()
    return holder.timeout.when() if holder is not None and holder.timeout is not None else None


@contextlib.contextmanager
def _deadline_holder() -> Iterator[_Deadline]:
    """Set before the Agents SDK starts its run: a streamed run is a task that copies the context when created,
    before the timeout exists, so the variable holds a box the timeout is put in."""
    holder = _Deadline()
    token = _TURN_DEADLINE.set(holder)
    try:
        yield holder
    finally:
        _TURN_DEADLINE.reset(token)


# ---------------------------------------------------------------- the agent


class MeteredModel(Model):
    """The agent's model with each call's latency observed; everything else is the wrapped model's."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        started, outcome, call_span = time.perf_counter(), "error", tracing.start("model_call")
        try:
            response = await self.inner.get_response(*args, **kwargs)
            outcome = "ok"
            return response
        finally:
            metrics.MODEL_CALL_SECONDS.labels(outcome).observe(time.perf_counter() - started)
            tracing.end(call_span, outcome=outcome)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return self._stream(*args, **kwargs)

    async def _stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        started, outcome, call_span = time.perf_counter(), "error", tracing.start("model_call", streamed=True)
        try:
            async for event in self.inner.stream_response(*args, **kwargs):
                yield event
            outcome = "ok"
        finally:
            metrics.MODEL_CALL_SECONDS.labels(outcome).observe(time.perf_counter() - started)
            tracing.end(call_span, outcome=outcome)

    def get_retry_advice(self, request: Any) -> Any:
        return self.inner.get_retry_advice(request)

    async def close(self) -> None:
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self.inner._cleanup_on_run_end(owner)


@dataclass(frozen=True)
class AgentConfig:
    instructions: str  # the whole prompt file: system prompt plus an optional turn-context template
    temperature: float = 0.0
    seed: int | None = 42
    max_output_tokens: int = 512
    max_turns: int = 6
    timeout: float = 90.0


class TodoAgent:
    """An agent definition plus the model it runs on; holds no per-conversation state."""

    def __init__(self, model: Model, config: AgentConfig) -> None:
        self.model = model
        model = MeteredModel(model)
        self.config = config
        self.prompt = split_prompt(config.instructions)
        extra = {"seed": config.seed} if config.seed is not None else None
        self._agent = Agent[TurnState](
            name="todo-assistant",
            instructions=self.prompt.system,
            tools=list(SDK_TOOLS),
            model=model,
            model_settings=ModelSettings(
                temperature=config.temperature, max_tokens=config.max_output_tokens, extra_args=extra
            ),
        )

    @property
    def wants_tasks(self) -> bool:
        """Whether a turn needs the user's task list (the prompt has a turn context that shows it)."""
        return self.prompt.turn_context is not None

    async def stream(
        self,
        *,
        context: tools.ToolRunContext,
        history: list[TResponseInputItem],
        message: str,
        tasks: str | None = None,
        stream_tokens: bool = True,
    ) -> AsyncIterator[AgentEvent]:
        """Run one turn; always ends with exactly one FinalReply or AgentFailure.

        `tasks` (the user's tasks as `tasks.task_lines` renders them) fills the prompt's turn context, if it has one.
        With `stream_tokens=False` the model is asked for whole answers (no TextDelta events): a caller that only
        wants the result (the JSON door, the eval runner) then skips parsing a stream chunk by chunk, which with a
        token-streaming endpoint is most of a turn's own CPU. Tool-call events still come, after each call ran.
        """
        state = TurnState(tool_context=context)
        items: list[TResponseInputItem] = list(history)
        turn_context = self.prompt.render_turn_context(tasks) if tasks is not None else None
        if turn_context:
            items.append({"role": "system", "content": turn_context})
        items.append({"role": "user", "content": message})
        turn_span = tracing.start("turn", streamed=stream_tokens)
        if not stream_tokens:
            async for whole_event in self._run_whole(state, items, turn_span):
                yield whole_event
            return
        with _deadline_holder() as deadline, tracing.use(turn_span):  # the run's task inherits both
            result = Runner.run_streamed(
                self._agent,
                items,
                context=state,
                max_turns=self.config.max_turns,
                run_config=RunConfig(tracing_disabled=True),
            )
        texts: list[str] = []
        current: list[str] = []
        finished: set[str] = set()
        failure: AgentFailure | None = None
        try:
            async with asyncio.timeout(self.config.timeout) as deadline.timeout:
                async for event in result.stream_events():
                    if event.type == "raw_response_event":
                        if event.data.type == "response.output_text.delta" and event.data.delta:
                            if not current and texts:
                                yield TextDelta("\n\n")
                            current.append(event.data.delta)
                            yield TextDelta(event.data.delta)
                    elif event.type == "run_item_stream_event":
                        item = event.item
                        if event.name == "tool_called" and isinstance(item, ToolCallItem):
                            raw = item.raw_item
                            call_id = str(getattr(raw, "call_id", "") or "")
                            args = tools.parse_arguments(getattr(raw, "arguments", None)) or {}
                            yield ToolCallStarted(call_id, str(getattr(raw, "name", "")), args)
                        elif event.name == "tool_output":
                            raw_out = item.raw_item
                            call_id = str(
                                raw_out.get("call_id") if isinstance(raw_out, dict) else getattr(raw_out, "call_id", "")
                            )
                            record = state.calls.get(call_id)
                            if record is not None and call_id not in finished:
                                finished.add(call_id)
                                yield ToolCallFinished(call_id, record)
                        elif event.name == "message_output_created" and isinstance(item, MessageOutputItem):
                            text = ItemHelpers.text_message_output(item)
                            if text:
                                texts.append(text)
                            current = []
        except TimeoutError:
            result.cancel()
            failure = self._timed_out()
        except _MODEL_FAILURES as exc:
            failure = self._failure(exc)
        yield _traced(turn_span, self._outcome(state, texts, failure, result.context_wrapper.usage))

    async def _run_whole(
        self, state: TurnState, items: list[TResponseInputItem], turn_span: Any
    ) -> AsyncIterator[AgentEvent]:
        texts: list[str] = []
        failure: AgentFailure | None = None
        usage = None
        try:
            with _deadline_holder() as deadline, tracing.use(turn_span):
                async with asyncio.timeout(self.config.timeout) as deadline.timeout:
                    result = await Runner.run(
                        self._agent,
                        items,
                        context=state,
                        max_turns=self.config.max_turns,
                        run_config=RunConfig(tracing_disabled=True),
                    )
            usage = result.context_wrapper.usage
            for item in result.new_items:
                text = ItemHelpers.text_message_output(item) if isinstance(item, MessageOutputItem) else ""
                if text:
                    texts.append(text)
        except TimeoutError:
            failure = self._timed_out()
        except _MODEL_FAILURES as exc:
            failure = self._failure(exc)
        for call_id, record in list(state.calls.items()):
            yield ToolCallStarted(call_id, record.name, record.arguments)
            yield ToolCallFinished(call_id, record)
        yield _traced(turn_span, self._outcome(state, texts, failure, usage))

    def _timed_out(self) -> AgentFailure:
        return AgentFailure("model_timeout", f"The model did not answer within {self.config.timeout:g} s.")

    def _failure(self, exc: BaseException) -> AgentFailure:
        if isinstance(exc, MaxTurnsExceeded):
            return AgentFailure("model_error", f"The assistant did not finish within {self.config.max_turns} steps.")
        if isinstance(exc, openai.APITimeoutError):
            return AgentFailure("model_timeout", "The model endpoint timed out.")
        if isinstance(exc, openai.APIConnectionError):
            return AgentFailure("model_error", "The model endpoint could not be reached.")
        if isinstance(exc, openai.APIStatusError):
            return AgentFailure("model_error", f"The model endpoint answered HTTP {exc.status_code}.")
        return AgentFailure("model_error", f"The model returned an unusable answer ({type(exc).__name__}).")

    @staticmethod
    def _outcome(state: TurnState, texts: list[str], failure: AgentFailure | None, usage: Any) -> AgentEvent:
        """The last event of a turn: its reply, or its failure with the calls that did run."""
        calls = [state.calls[key] for key in state.calls]
        if failure is None and not texts and not calls:
            failure = AgentFailure("model_error", "The model returned an empty answer.")
        if failure is not None:
            return AgentFailure(failure.code, failure.message, calls)
        return FinalReply(
            text="\n\n".join(texts).strip() or _fallback_reply(calls),
            tool_calls=calls,
            usage={"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens} if usage else {},
        )


# What a turn turns into an AgentFailure instead of raising (MaxTurnsExceeded and the openai errors included).
_MODEL_FAILURES = (ModelBehaviorError, AgentsException, openai.OpenAIError, ValueError, KeyError)


def _traced(turn_span: Any, event: AgentEvent) -> AgentEvent:
    """End the turn's span with its outcome (no text: replies stay out of traces)."""
    outcome = event.code if isinstance(event, AgentFailure) else "ok"
    calls = event.tool_calls if isinstance(event, AgentFailure | FinalReply) else []
    tracing.end(turn_span, outcome=outcome, tool_calls=len(calls))
    return event


def _fallback_reply(calls: list[ToolCallRecord]) -> str:
    """A model that ends a turn with no text still owes the user a sentence."""
    return "Done." if calls and not calls[-1].is_error else "Sorry, I could not do that."
