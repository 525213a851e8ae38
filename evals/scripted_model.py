"""A scripted OpenAI-compatible model server: the fake at the model boundary.

Tests, benchmarks, the eval suite's `--model scripted` and its self-tests drive the real agent code path (OpenAI
client, Agents SDK, Chat Completions wire format) against this server, either in-process through
`httpx.ASGITransport` or served by uvicorn. Each answer comes from a responder: a function from the request body to
a reply, so a script can be a fixed list of steps or a deterministic policy (`evals.reference_agent`). It lives with
the evals, not in the backend: production never runs a fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from backend.llm.openai_compat import completion, stream_chunks, tool_call


@dataclass
class Reply:
    """What the fake model answers: text, tool calls, or a fault."""

    text: str | None = None
    calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    status: int = 200  # a fault: answer this HTTP status
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # a fault: the body is not JSON at all
    wait: Callable[[], Awaitable[None]] | None = None  # awaited before answering (tests hold a turn open with it)


Responder = Callable[[dict[str, Any]], Reply]


def script(replies: Iterable[Reply | str], *, then: Responder | None = None) -> Responder:
    """A responder that plays `replies` in order (a str is a plain text reply), then defers to `then`."""
    queue = [Reply(text=r) if isinstance(r, str) else r for r in replies]

    def respond(request: dict[str, Any]) -> Reply:
        if queue:
            return queue.pop(0)
        if then is not None:
            return then(request)
        return Reply(text="(script exhausted)")

    return respond


def create_scripted_app(responder: Responder, *, model_name: str = "scripted") -> FastAPI:
    app = FastAPI(title="scripted model")
    app.state.requests = []  # every request body, for assertions
    app.state.model_list_calls = 0  # readiness probes

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        app.state.model_list_calls += 1
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "tests"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        body = await request.json()
        app.state.requests.append(body)
        reply = responder(body)
        if reply.wait is not None:
            await reply.wait()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return JSONResponse(status_code=reply.status, content={"error": {"message": "scripted fault"}})
        if reply.drop:
            return PlainTextResponse("<html>bad gateway</html>", media_type="application/json")
        done = completion(
            model=body.get("model", model_name),
            content=reply.text,
            tool_calls=[tool_call(name, args) for name, args in reply.calls] or None,
            usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        )
        if body.get("stream"):
            return StreamingResponse(stream_chunks(done), media_type="text/event-stream")
        return done

    return app


def asgi_http_client(app: FastAPI) -> httpx.AsyncClient:
    """An httpx client that reaches `app` in-process: the OpenAI client speaks real HTTP to it, no socket."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scripted.test")


def last_user_text(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return str(content or "")
    return ""
