"""Chat Completions wire format shared by the model servers we run ourselves (local llama.cpp, scripted fakes).

Both answer one request with one complete message; a streaming client gets that message re-emitted as chunks, so
the agent code path is the same one a hosted OpenAI-compatible endpoint drives.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any


def tool_call(name: str, arguments: dict[str, Any] | str, call_id: str | None = None) -> dict[str, Any]:
    """One `tool_calls[]` entry; arguments are sent as a JSON string, as the API does."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {
        "id": call_id or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    }


def completion(
    *,
    model: str,
    content: str | None,
    tool_calls: list[dict[str, Any]] | None = None,
    usage: dict[str, int] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `chat.completion` object with one choice (`extra`: fields of our own, which clients ignore)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        **(extra or {}),
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def stream_chunks(done: dict[str, Any], text_chunk_chars: int = 24) -> Iterator[str]:
    """Re-emit a complete `chat.completion` as SSE `data:` lines of `chat.completion.chunk` objects."""
    base = {
        "id": done["id"],
        "object": "chat.completion.chunk",
        "created": done["created"],
        "model": done["model"],
    }
    choice = done["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    text = message.get("content") or ""
    for start in range(0, len(text), text_chunk_chars):
        yield chunk({"content": text[start : start + text_chunk_chars]})
    for index, call in enumerate(message.get("tool_calls") or []):
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {
                            "name": call["function"]["name"],
                            "arguments": call["function"]["arguments"],
                        },
                    }
                ]
            }
        )
    yield chunk({}, choice["finish_reason"])
    last = {**base, "choices": [], "usage": done.get("usage")}
    if "todo_agent" in done:
        last["todo_agent"] = done["todo_agent"]
    yield f"data: {json.dumps(last)}\n\n"
    yield "data: [DONE]\n\n"
