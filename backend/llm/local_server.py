"""The local model process: Qwen2.5-Coder-1.5B (GGUF) behind an OpenAI-compatible Chat Completions API.

One process per machine on a fixed loopback port, started on demand by whichever worker needs it first and
reused by all the others, because the model costs ~2 GB of RAM and must never be loaded twice. llama.cpp
(through xllamacpp, in-process) does the inference; this layer adds what the small model needs to drive the
same agent code a hosted endpoint drives: calls written as JSON text become real `tool_calls`, a malformed
call is retried once with output constrained to a valid call, sampling is deterministic unless the client asks
otherwise, and streaming is one complete answer re-emitted as chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from filelock import FileLock, Timeout

from backend.llm.claims import ACTION_OF_TOOL, DoneCall, unbacked_claims
from backend.llm.decision import Decision, ReplyKind, decision_grammar, parse_decision
from backend.llm.grounding import ungrounded, without_arguments
from backend.llm.openai_compat import completion, stream_chunks, tool_call
from backend.llm.targets import TargetProblem, TaskContext, check_target, task_context, tool_results, unhandled_ids
from backend.llm.targets import feedback as targets_feedback
from backend.llm.toolcall_parser import contains_call_markup, extract_tool_calls, looks_like_tool_call
from backend.llm.weights import ensure_model_file
from backend.settings import Settings, get_settings
from backend.tools import parse_task_lines

MODEL_ID = "qwen2.5-coder-1.5b-instruct"
log = logging.getLogger("todo_agent.local_model")
# Without a cap a confused model can generate until the context is full (minutes on 2 cores).
DEFAULT_MAX_TOKENS = 1024
LOG_NAME = "model-server.log"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ModelRequestError(Exception):
    """llama.cpp refused the request (bad body, prompt too long): the client's fault, answered with 400."""


@dataclass
class Completed:
    """One raw completion: its text and llama.cpp's timings (prompt tokens re-read, decoded tokens, milliseconds)."""

    text: str
    timings: dict[str, float] = field(default_factory=dict)


class _Engine:
    """The loaded model, and a gate that lets at most one request per slot reach it (the rest queue here)."""

    def __init__(self, model_path: Path, *, n_ctx: int, threads: int, seed: int, slots: int = 1) -> None:
        import xllamacpp  # imported here so tools that never serve the model don't pay for the native library

        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_ctx = n_ctx * slots  # llama.cpp divides the context between the slots
        params.n_parallel = slots
        params.use_jinja = True
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.sampling.seed = seed
        # llama.cpp also opens its own HTTP server; keep it on loopback (a random port) for /apply-template.
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        self.server = xllamacpp.Server(params)
        self.native_url = str(self.server.listening_address)
        self.seed = seed
        self.slots = slots
        self.lock = asyncio.Semaphore(slots)
        self._http = httpx.Client(base_url=self.native_url, timeout=30)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """One blocking, non-streamed chat completion (the native call releases the GIL)."""
        try:
            result: dict[str, Any] = self.server.handle_chat_completions(body)
        except ValueError as exc:  # llama.cpp's invalid-request exceptions arrive as ValueError
            raise ModelRequestError(str(exc)) from exc
        _raise_for_error(result)
        return result

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        """The exact prompt llama.cpp's chat template makes of these messages and tools (its /apply-template)."""
        rendered = self._http.post("/apply-template", json={"messages": messages, "tools": tools})
        if rendered.status_code >= 400:
            raise ModelRequestError(rendered.text[:300])
        prompt: str = rendered.json()["prompt"]
        return prompt

    def complete(self, prompt: str, *, grammar: str, sampling: dict[str, Any]) -> Completed:
        """A raw completion of `prompt` under `grammar` (the prompt prefix cache applies as for chat requests)."""
        request = {"prompt": prompt, "grammar": grammar, "cache_prompt": True, **sampling}
        try:
            result: dict[str, Any] = self.server.handle_completions(request)
        except ValueError as exc:
            raise ModelRequestError(str(exc)) from exc
        _raise_for_error(result)
        choices = result.get("choices") or [{}]  # the OpenAI completions shape: the text is the choice's
        return Completed(str(choices[0].get("text") or ""), dict(result.get("timings") or {}))


def _raise_for_error(result: dict[str, Any]) -> None:
    if "error" in result or ("code" in result and "choices" not in result):
        error = result.get("error", result)
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        raise ModelRequestError(message)


def _flatten_content(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Text-part lists (`[{"type": "text", ...}]`) become strings: Qwen's template only reads strings."""
    flat: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
            message = {**message, "content": "".join(str(p.get("text", "")) for p in content)}
        flat.append(message)
    return flat


def _model_body(body: dict[str, Any], seed: int) -> dict[str, Any]:
    """The request as llama.cpp gets it: never streamed, deterministic unless the client chose otherwise."""
    request = {k: v for k, v in body.items() if k not in {"stream", "stream_options"}}
    request["messages"] = _flatten_content(list(body.get("messages") or []))
    if request.get("temperature") is None:
        request["temperature"] = 0.0
    if request.get("seed") is None:
        request["seed"] = seed
    if request.get("max_tokens") is None:
        request["max_tokens"] = request.pop("max_completion_tokens", None) or DEFAULT_MAX_TOKENS
    if not request.get("tools"):
        request.pop("tools", None)
        request.pop("tool_choice", None)
        request.pop("parallel_tool_calls", None)
    return request


# ---------------------------------------------------------------- one answer: a decision, checked


@dataclass
class AnswerReport:
    """What one answer cost and which aids acted: returned with the completion (`todo_agent`) for the eval runs and
    the bench, and logged when an aid had to step in."""

    model_calls: int = 0
    prompt_n: int = 0  # prompt tokens llama.cpp had to read (not from its cache)
    cache_n: int = 0  # prompt tokens reused from its cache
    predicted_n: int = 0
    prompt_ms: float = 0.0
    predicted_ms: float = 0.0
    reasked: list[str] = field(default_factory=list)  # why the model was asked again: "claim", "markup"
    unparsed_call: int = 0  # a reply that still looked like a call after the re-ask: answered with an apology

    def add_usage(self, result: dict[str, Any]) -> None:
        """A chat completion's timings (llama.cpp returns them with every answer)."""
        self.add(Completed("", dict(result.get("timings") or {})))

    def usage(self) -> dict[str, int]:
        prompt = self.prompt_n + self.cache_n
        return {
            "prompt_tokens": prompt,
            "completion_tokens": self.predicted_n,
            "total_tokens": prompt + self.predicted_n,
        }

    def add(self, done: Completed) -> None:
        timings = done.timings
        self.model_calls += 1
        self.prompt_n += int(timings.get("prompt_n", 0))
        self.cache_n += int(timings.get("cache_n", 0))
        self.predicted_n += int(timings.get("predicted_n", 0))
        self.prompt_ms += float(timings.get("prompt_ms", 0.0))
        self.predicted_ms += float(timings.get("predicted_ms", 0.0))

    def public(self) -> dict[str, Any]:
        return {
            "model_calls": self.model_calls,
            "prompt_n": self.prompt_n,
            "cache_n": self.cache_n,
            "predicted_n": self.predicted_n,
            "prompt_ms": round(self.prompt_ms, 1),
            "predicted_ms": round(self.predicted_ms, 1),
            "reasked": self.reasked,
            "unparsed_call": self.unparsed_call,
        }


_CREATING = {name for name, action in ACTION_OF_TOOL.items() if action == "added"}
APOLOGY = "Sorry, I could not do that. Could you say it another way?"


def done_calls(messages: list[dict[str, Any]]) -> tuple[list[DoneCall], list[DoneCall]]:
    """The calls that succeeded since the user's last message, and those before it (from the tool results)."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    names: dict[str, str] = {}
    titles: dict[int, str] = {}  # the task list the turn context showed before the user's message
    for index, message in enumerate(messages):
        for call in message.get("tool_calls") or []:
            names[str(call.get("id"))] = str((call.get("function") or {}).get("name", ""))
        if message.get("role") == "system" and index < last_user:
            titles.update(parse_task_lines(str(message.get("content") or "")))
    now: list[DoneCall] = []
    before: list[DoneCall] = []
    for index, message in enumerate(messages):
        action = ACTION_OF_TOOL.get(names.get(str(message.get("tool_call_id")), ""))
        if message.get("role") != "tool" or action is None:
            continue
        try:
            result = json.loads(message.get("content") or "null")
        except (TypeError, ValueError):
            continue
        if not isinstance(result, dict) or "error" in result:
            continue  # a failed call backs nothing
        task_id = result.get("task_id") if isinstance(result.get("task_id"), int) else None
        old = titles.get(task_id, "") if task_id is not None and action == "updated" else ""
        done = DoneCall(action, str(result.get("title") or ""), task_id, old)
        (now if index > last_user else before).append(done)
    return now, before


def _sampling(body: dict[str, Any], seed: int) -> dict[str, Any]:
    return {
        "temperature": body.get("temperature", 0.0),
        "seed": body.get("seed", seed),
        "max_tokens": body.get("max_tokens", DEFAULT_MAX_TOKENS),
    }


def answer(engine: _Engine, body: dict[str, Any]) -> dict[str, Any]:
    """One complete `chat.completion` for the request.

    The model answers through llama.cpp's chat template, as it was trained to. Then, with tools, each check may ask
    it once more, under a grammar (`decision`) over the same prompt; none of them changes what it wrote:
    - calls it wrote as text (tags, wrappers, fenced or bare JSON) become real `tool_calls` (`toolcall_parser`);
    - a call whose optional text (a description) is not what the user said is asked for again with that argument
      out of the tool's schema (`grounding`);
    - a reply that still carries call markup is asked again for calls only; if even that fails the user gets an
      apology, never the markup (`unparsed_call`);
    - a reply that says a task was added, completed, deleted or changed when no call that did so succeeded in this
      turn (`claims`), that repeats the user's message, or that names a tool to the user, is asked again for calls
      or a question.
    """
    tools = body.get("tools") or []
    native = engine.chat(body)
    report = AnswerReport()
    report.add_usage(native)
    message = native["choices"][0]["message"]
    content: str | None = message.get("content")
    calls = [(c["function"]["name"], tools_arguments(c)) for c in _native_calls(message)]
    if tools:
        tool_names = {t.get("function", {}).get("name") for t in tools} - {None}
        step = _Step(engine, body, report)
        if not calls and content:
            calls = extract_tool_calls(content, tool_names) or []
        decision = step.checked_calls(calls) if calls else step.checked_reply(content or "", tool_names)
        calls, content = decision.calls, (None if decision.calls else decision.reply)
    if report.reasked or report.unparsed_call:
        log.warning("local model: %s", json.dumps(report.public()))
    return completion(
        model=MODEL_ID,
        content=content,
        tool_calls=[tool_call(name, args) for name, args in calls] or None,
        usage=report.usage(),
        extra={"todo_agent": report.public()},
    )


def tools_arguments(call: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(call["function"].get("arguments") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def _plain(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


# Notes a re-ask adds for the model after the conversation (a system message, as the turn context is).
_CLAIM_NOTE = (
    "No tool has run for this message yet, so nothing was changed. If the user asked for a change, make the call "
    "now; if you cannot tell what they want, ask a short question."
)
_SAY_NOTE = (
    "Do not repeat the request or name tools to the user. If they asked you to do something with their tasks, "
    "make that call; otherwise answer them briefly in their words."
)
_LIST_NOTE = "Answer the user by naming each task the tool returned, with its id and title."
_JOINED = re.compile(r"\s(?:and|&|then|aur|پھر|اور)\s", re.IGNORECASE)
_JOINED_NOTE = (
    "Each thing the user asked to add is a task of its own: if that title holds several, add each with its own "
    "call; if it is one task, make the same call again."
)
_LISTED_MAX = 15  # longer lists are not checked for names: a reply may fairly summarise them


class _Step:
    """The checks on one answer, and the re-asks they make (each recorded in the report)."""

    def __init__(self, engine: _Engine, body: dict[str, Any], report: AnswerReport) -> None:
        self.engine = engine
        self.body = body
        self.report = report
        self.messages: list[dict[str, Any]] = body["messages"]
        self.tools: list[dict[str, Any]] = body["tools"]

    def reask(
        self,
        kind: ReplyKind,
        why: str,
        tools: list[dict[str, Any]] | None = None,
        note: str | None = None,
        max_calls: int | None = None,
        reply_chars: int | None = None,
    ) -> Decision | None:
        """Ask again under a grammar over `tools` (all by default; none: text only), with an optional note."""
        self.report.reasked.append(why)
        messages = self.messages + ([{"role": "system", "content": note}] if note else [])
        prompt = self.engine.render(messages, self.tools)  # the prompt so far is still in llama.cpp's cache
        grammar = decision_grammar(self.tools if tools is None else tools, kind, max_calls, reply_chars)
        done = self.engine.complete(prompt, grammar=grammar, sampling=_sampling(self.body, self.engine.seed))
        self.report.add(done)
        return parse_decision(done.text)

    @functools.cached_property
    def context(self) -> TaskContext:
        """The tasks the request's messages show (the messages don't change while this answer is checked)."""
        return task_context(self.messages, _CREATING)

    @functools.cached_property
    def after_user(self) -> list[dict[str, Any]]:
        """The messages of this turn after the user's: the calls and results it has made so far."""
        last_user = max((i for i, m in enumerate(self.messages) if m.get("role") == "user"), default=-1)
        return self.messages[last_user + 1 :]

    def _named(self, names: set[str]) -> list[dict[str, Any]]:
        return [t for t in self.tools if (t.get("function") or {}).get("name") in names]

    def checked_calls(self, calls: list[tuple[str, dict[str, Any]]]) -> Decision:
        dropped = ungrounded(calls, self.tools, last_user_text(self.messages))
        if dropped:
            # The same tools only, the made-up argument out of their schemas: the model rewrites its own call.
            narrowed = without_arguments(self._named({name for name, _ in calls}), dropped)
            retried = self.reask("none", "ungrounded", narrowed, max_calls=len(calls))
            if retried is not None and retried.calls:
                calls = retried.calls
        creating = [(name, args) for name, args in calls if name in _CREATING]
        if len(creating) == 1 and len(calls) == 1 and _JOINED.search(str(creating[0][1].get("title") or "")):
            retried = self.reask("none", "joined", self._named(_CREATING), _JOINED_NOTE)
            if retried is not None and retried.calls:
                calls = retried.calls
        problem = self._target_problem(calls)
        if problem is None:
            return Decision(calls=calls)
        # Asked again without the refused call's tool: the other calls of the batch (an add) may stand.
        offending = next(name for name, args in calls if args.get("task_id") == problem.task_id)
        others = [t for t in self.tools if (t.get("function") or {}).get("name") != offending]
        if problem.kind == "ambiguous":
            readers = [t for t in others if (t.get("function") or {}).get("name") not in ACTION_OF_TOOL]
            retried = self.reask("question", problem.kind, readers, targets_feedback(problem))
        else:
            why = "not_found" if problem.none_named else "unrequested"
            retried = self.reask("any", why, others, targets_feedback(problem))
        if retried is None or (retried.calls and self._target_problem(retried.calls) is not None):
            return Decision(reply=APOLOGY)
        return retried

    def _target_problem(self, calls: list[tuple[str, dict[str, Any]]]) -> TargetProblem | None:
        user_text = last_user_text(self.messages)
        for name, arguments in calls:
            task_id = arguments.get("task_id")
            if name in ACTION_OF_TOOL and isinstance(task_id, int):
                problem = check_target(task_id, arguments, user_text, self.context)
                if problem is not None:
                    return problem
        return None

    def checked_reply(self, reply: str, tool_names: set[str]) -> Decision:
        if looks_like_tool_call(reply) or contains_call_markup(reply):
            retried = self.reask("none", "markup")
            if retried is not None and retried.calls:
                return self.checked_calls(retried.calls)
            self.report.unparsed_call += 1
            return Decision(reply=APOLOGY)
        listed = self._listed_now()
        if listed and not all(title.casefold() in reply.casefold() for title in listed):
            retried = self.reask("any", "list", [], _LIST_NOTE)
            return retried if retried is not None and retried.reply else Decision(reply=reply)
        left = self._unhandled_ids()
        if left:
            note = f"The user also named task {', '.join(map(str, left))}: handle it too with a call, or reply."
            retried = self.reask("any", "unhandled", note=note)
            if retried is not None and retried.calls:
                return self.checked_calls(retried.calls)
            return Decision(reply=reply)
        # A reply to a turn that listed tasks describes them ("Buy milk is completed"): it is not a claim.
        why = self._suspect(reply, tool_names, claims=not listed)
        if why is not None:
            # A claim with nothing behind it: the model meant to call; asked for calls only, it makes them.
            kind: ReplyKind = "none" if why == "claim" else "question"
            retried = self.reask(kind, why, note=_CLAIM_NOTE if why == "claim" else _SAY_NOTE)
            if retried is None:
                return Decision(reply=APOLOGY)
            return self.checked_calls(retried.calls) if retried.calls else retried
        if not self._ran_now():
            # A plain reply to the user's message: a second opinion under the decision grammar, which can only
            # call or reply ("mark it done" answered "Mark task 1 as completed." with no call).
            second = self.reask("any", "second_opinion", reply_chars=1)  # its text is never used: cut it short
            if second is not None and second.calls:
                return self.checked_calls(second.calls)
        return Decision(reply=reply)

    def _unhandled_ids(self) -> list[int]:
        """Task ids the user's message names that this turn's changing calls left alone, once some ran."""
        done_now, _ = done_calls(self.messages)
        if not any(done.action != "added" for done in done_now):
            return []
        handled: set[int] = {d.task_id for d in done_now if d.task_id is not None}
        values: list[str] = []
        for message in self.after_user:
            for call in message.get("tool_calls") or []:
                arguments = tools_arguments(call)
                if isinstance(arguments.get("task_id"), int):
                    handled.add(arguments["task_id"])
                values.extend(str(v) for v in arguments.values() if isinstance(v, str))
        return unhandled_ids(last_user_text(self.messages), self.context.titles, handled, values)

    def _ran_now(self) -> bool:
        return any(m.get("role") == "tool" for m in self.after_user)

    def _listed_now(self) -> list[str]:
        """The titles a tool listed in this turn (its result an array of tasks), when few enough to name."""
        titles: list[str] = []
        for _, _, result in tool_results(self.after_user):
            if isinstance(result, list):
                titles.extend(str(item["title"]) for item in result if isinstance(item, dict) and "title" in item)
        return titles if len(titles) <= _LISTED_MAX else []

    def _suspect(self, reply: str, tool_names: set[str], *, claims: bool = True) -> str | None:
        """Why a plain reply cannot stand, if it cannot."""
        done_now, done_before = done_calls(self.messages)
        if claims and unbacked_claims(reply, done_now, done_before):
            return "claim"
        said = _plain(last_user_text(self.messages))
        if said and _plain(reply) == said:
            return "echo"  # the request repeated back: the model did not know what to do
        if any(re.search(rf"\b{re.escape(name)}\b", reply) for name in tool_names):
            return "tool_name"  # "use list_tasks with status pending": telling the user to do the model's job
        return None


def _native_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        calls.append(tool_call(function.get("name", ""), function.get("arguments") or "{}", call.get("id") or None))
    return calls


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def create_local_model_app(
    model_path: Path, *, n_ctx: int = 4096, threads: int = 2, seed: int = 42, slots: int = 1
) -> FastAPI:
    """The ASGI app; the model loads during startup, so /health answers 200 only once it can serve."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        app.state.engine = await asyncio.to_thread(
            _Engine, model_path, n_ctx=n_ctx, threads=threads, seed=seed, slots=slots
        )
        app.state.load_seconds = round(time.perf_counter() - started, 2)
        yield
        app.state.engine = None

    app = FastAPI(title="todo-agent local model", lifespan=lifespan)
    app.state.engine = None

    def engine_of(request: Request) -> _Engine | None:
        return getattr(request.app.state, "engine", None)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        engine = engine_of(request)
        if engine is None:
            return JSONResponse({"status": "loading", "pid": os.getpid()}, status_code=503)
        return JSONResponse(
            {
                "status": "ok",
                "model": MODEL_ID,
                "pid": os.getpid(),
                "slots": engine.slots,
                "load_seconds": request.app.state.load_seconds,
            }
        )

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "local"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        engine = engine_of(request)
        if engine is None:
            return _error(503, "the model is still loading", "server_error")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "`messages` must be a non-empty list", "invalid_request_error")
        model_body = _model_body(body, engine.seed)
        try:
            async with engine.lock:  # a request per slot: the others queue here instead of inside llama.cpp
                done = await asyncio.to_thread(answer, engine, model_body)
        except ModelRequestError as exc:
            return _error(400, str(exc), "invalid_request_error")
        if body.get("stream"):
            return StreamingResponse(stream_chunks(done), media_type="text/event-stream")
        return JSONResponse(done)

    return app


def run_local_model_server(settings: Settings) -> None:
    """Verify (joining if needed) the weights, then serve on the configured loopback port with one worker."""
    import uvicorn

    model_path = ensure_model_file(settings.resolved_model_dir)
    app = create_local_model_app(model_path, seed=settings.seed, slots=settings.local_model_slots)
    uvicorn.run(app, host=settings.local_model_host, port=settings.local_model_port, workers=1, log_level="info")


def _health_url(settings: Settings) -> str:
    return f"http://{settings.local_model_host}:{settings.local_model_port}/health"


def local_model_health(settings: Settings, *, timeout: float = 2.0) -> dict[str, Any] | None:
    """The /health body when the model server answers 200 (it carries the server's pid), else None."""
    try:
        response = httpx.get(_health_url(settings), timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def local_model_healthy(settings: Settings) -> bool:
    """Whether a model server is up and loaded on the configured port."""
    return local_model_health(settings) is not None


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _child_env(settings: Settings) -> dict[str, str]:
    """The caller's environment plus the settings the child must share, so explicit Settings win."""
    env = dict(os.environ)
    env["DATA_DIR"] = str(settings.data_dir.resolve())
    env["MODEL_DIR"] = str(settings.resolved_model_dir.resolve())
    env["LOCAL_MODEL_HOST"] = settings.local_model_host
    env["LOCAL_MODEL_PORT"] = str(settings.local_model_port)
    env["LOCAL_MODEL_SLOTS"] = str(settings.local_model_slots)
    env["SEED"] = str(settings.seed)
    # Run the same source tree as the caller, whether or not the project is installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def ensure_local_model_server(settings: Settings, *, timeout: float = 180) -> str:
    """Return the model server's base URL, starting it (once per machine) if nothing healthy answers.

    A file lock in data_dir makes concurrent callers (uvicorn workers, the playground, the eval runner)
    wait for the one that spawns the server instead of loading the model again.
    """
    base_url = settings.local_model_base_url
    if local_model_healthy(settings):
        return base_url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / LOG_NAME
    lock = FileLock(str(settings.data_dir / f"model-server-{settings.local_model_port}.lock"))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for another process starting the model") from exc
    try:
        if local_model_healthy(settings):
            return base_url
        with log_path.open("ab") as log:
            log.write(f"\n--- starting local model server on {settings.local_model_port} ---\n".encode())
            log.flush()
            process = subprocess.Popen(
                [sys.executable, "-m", "backend.llm.local_server"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(settings),
                start_new_session=True,  # outlives the caller: other workers keep using it
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if local_model_healthy(settings):
                return base_url
            if process.poll() is not None:
                raise RuntimeError(
                    f"the local model server exited with code {process.returncode}; log {log_path}:\n"
                    f"{_log_tail(log_path)}"
                )
            time.sleep(0.5)
        process.terminate()  # not healthy in time: don't leave a half-started 2 GB process behind
        raise RuntimeError(
            f"the local model server was not healthy after {timeout:.0f}s; log {log_path}:\n{_log_tail(log_path)}"
        )
    finally:
        lock.release()


def _gone(pid: int) -> bool:
    """Whether the process has exited (reaping it if it is our own child, so a zombie doesn't look alive)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:  # not our child: ask the kernel whether the pid still exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def stop_local_model_server(settings: Settings, *, timeout: float = 15) -> bool:
    """Stop the server on the configured port (found through its /health pid); True if one was stopped."""
    health = local_model_health(settings)
    pid = health.get("pid") if health else None
    if not isinstance(pid, int):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


if __name__ == "__main__":
    run_local_model_server(get_settings())
