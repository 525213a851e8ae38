"""An AsyncOpenAI client whose Chat Completions call sends the request body as given.

The SDK walks every request through a TypedDict transform (aliases, dates, base64 files) before sending it. For the
plain JSON the Agents SDK builds, that walk is an identity, yet it was most of a turn's own overhead with a long
history (`bench/chat_api.py` measures it). This client skips it and keeps everything
else: retries, timeouts, auth, streaming, response parsing. `tests/test_direct_client.py` checks that what it sends
equals what the SDK's transform would have sent.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from openai import AsyncOpenAI, AsyncStream
from openai._base_client import make_request_options
from openai._types import NotGiven, Omit
from openai.resources.chat import AsyncChat
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletion, ChatCompletionChunk

_OPTION_KEYS = ("extra_headers", "extra_query", "extra_body", "timeout")


def request_body(params: dict[str, Any]) -> dict[str, Any]:
    """The JSON body for `params`: unset arguments (`omit` / `not_given`) dropped, nothing else touched."""
    return {
        key: value
        for key, value in params.items()
        if key not in _OPTION_KEYS and not isinstance(value, NotGiven | Omit)
    }


class _DirectCompletions(AsyncCompletions):
    async def create(self, **params: Any) -> Any:  # type: ignore[override]
        options = {key: params[key] for key in _OPTION_KEYS if key in params and params[key] is not None}
        stream = bool(params.get("stream") or False)
        return await self._post(
            "/chat/completions",
            body=request_body(params),
            options=make_request_options(**options, security={"bearer_auth": True}),
            cast_to=ChatCompletion,
            stream=stream,
            stream_cls=AsyncStream[ChatCompletionChunk],
        )


class _DirectChat(AsyncChat):
    @cached_property
    def completions(self) -> AsyncCompletions:
        return _DirectCompletions(self._client)


class DirectAsyncOpenAI(AsyncOpenAI):
    @cached_property
    def chat(self) -> AsyncChat:
        return _DirectChat(self)
