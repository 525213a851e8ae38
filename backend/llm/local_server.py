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
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from filelock import FileLock, Timeout

from backend.llm.openai_compat import completion, stream_chunks, tool_call
from backend.llm.toolcall_parser import extract_tool_calls, looks_like_tool_call
from backend.llm.weights import ensure_model_file
from backend.settings import Settings, get_settings

MODEL_ID = "qwen2.5-coder-1.5b-instruct"
# Without a cap a confused model can generate until the context is full (minutes on 2 cores).
DEFAULT_MAX_TOKENS = 1024
LOG_NAME = "model-server.log"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ModelRequestError(Exception):
    """llama.cpp refused the request (bad body, prompt too long): the client's fault, answered with 400."""


class _Engine:
    """The loaded model and the one lock that serialises requests to its single slot."""

    def __init__(self, model_path: Path, *, n_ctx: int, threads: int, seed: int) -> None:
        import xllamacpp  # imported here so tools that never serve the model don't pay for the native library

        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_ctx = n_ctx
        params.n_parallel = 1
        params.use_jinja = True
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.sampling.seed = seed
        # llama.cpp also opens its own HTTP server; keep it on loopback (a random port) for /apply-template.
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        self._xllamacpp = xllamacpp
        self.server = xllamacpp.Server(params)
        self.native_url = str(self.server.listening_address)
        self.seed = seed
        self.lock = asyncio.Lock()

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """One blocking, non-streamed chat completion (the native call releases the GIL)."""
        try:
            result: dict[str, Any] = self.server.handle_chat_completions(body)
        except ValueError as exc:  # llama.cpp's invalid-request exceptions arrive as ValueError
            raise ModelRequestError(str(exc)) from exc
        _raise_for_error(result)
        return result

    def constrained_call(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """Re-ask for the same turn with output constrained to a valid call of one of the request's tools.

        llama.cpp refuses a grammar together with `tools`, so render the exact prompt the chat call used
        (its own /apply-template, keeping the prefix cache warm) and complete it raw under a grammar built
        from the tools.
        """
        schema = _tool_call_schema(body.get("tools") or [])
        if schema is None:
            return None
        try:
            grammar = self._xllamacpp.json_schema_to_grammar(schema)
        except ValueError:
            return None
        rendered = httpx.post(
            f"{self.native_url}/apply-template",
            json={"messages": body["messages"], "tools": body["tools"]},
            timeout=30,
        )
        rendered.raise_for_status()
        request = {
            "prompt": rendered.json()["prompt"],
            "grammar": grammar,
            "temperature": body.get("temperature", 0.0),
            "seed": body.get("seed", self.seed),
            "max_tokens": body.get("max_tokens", DEFAULT_MAX_TOKENS),
        }
        result = self.server.handle_completions(request)
        _raise_for_error(result)
        try:
            call = json.loads(result["choices"][0]["text"])
        except (KeyError, IndexError, ValueError):
            return None
        if not (isinstance(call, dict) and isinstance(call.get("arguments"), dict)):
            return None
        return str(call["name"]), call["arguments"]


def _raise_for_error(result: dict[str, Any]) -> None:
    if "error" in result or ("code" in result and "choices" not in result):
        error = result.get("error", result)
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        raise ModelRequestError(message)


def _tool_call_schema(tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """JSON schema for `{"name": <one tool>, "arguments": <its parameters>}`."""
    options: list[dict[str, Any]] = []
    for tool in tools:
        function = tool.get("function") or {}
        name = function.get("name")
        if not name:
            continue
        parameters = function.get("parameters") or {"type": "object"}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": name}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    if not options:
        return None
    return options[0] if len(options) == 1 else {"anyOf": options}


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


def _native_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        calls.append(tool_call(function.get("name", ""), function.get("arguments") or "{}", call.get("id") or None))
    return calls


def answer(engine: _Engine, body: dict[str, Any]) -> dict[str, Any]:
    """One complete `chat.completion` for the request, with text-written calls turned into real tool_calls."""
    result = engine.chat(body)
    message = result["choices"][0]["message"]
    content: str | None = message.get("content")
    calls = _native_calls(message)
    tool_names = {t.get("function", {}).get("name") for t in body.get("tools") or []} - {None}
    if not calls and content and tool_names:
        found = extract_tool_calls(content, tool_names)
        if found is None and looks_like_tool_call(content):
            retried = engine.constrained_call(body)
            found = [retried] if retried else None
        if found:
            calls = [tool_call(name, args) for name, args in found]
            content = None
    usage = result.get("usage") or {}
    return completion(
        model=MODEL_ID,
        content=content,
        tool_calls=calls or None,
        usage={k: int(usage.get(k, 0)) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    )


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def create_local_model_app(model_path: Path, *, n_ctx: int = 4096, threads: int = 2, seed: int = 42) -> FastAPI:
    """The ASGI app; the model loads during startup, so /health answers 200 only once it can serve."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        app.state.engine = await asyncio.to_thread(_Engine, model_path, n_ctx=n_ctx, threads=threads, seed=seed)
        app.state.load_seconds = round(time.perf_counter() - started, 2)
        yield
        app.state.engine = None

    app = FastAPI(title="todo-agent local model", lifespan=lifespan)
    app.state.engine = None

    def engine_of(request: Request) -> _Engine | None:
        return getattr(request.app.state, "engine", None)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        if engine_of(request) is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse(
            {
                "status": "ok",
                "model": MODEL_ID,
                "pid": os.getpid(),
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
            async with engine.lock:  # one slot: requests queue here instead of inside llama.cpp
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
    app = create_local_model_app(model_path, seed=settings.seed)
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
