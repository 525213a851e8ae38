"""Which model a turn runs on: the local llama.cpp server, or any OpenAI-compatible endpoint by name."""

from __future__ import annotations

from typing import Any, cast

import httpx
from agents.models.interface import Model
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from openai import AsyncOpenAI

from backend.llm.direct_client import DirectAsyncOpenAI
from backend.settings import Settings

LOCAL_MODEL_NAME = "qwen2.5-coder-1.5b-instruct"


def model_base_url(settings: Settings) -> str | None:
    return settings.local_model_base_url if settings.is_local_model else settings.openai_base_url


def model_name(settings: Settings) -> str:
    return LOCAL_MODEL_NAME if settings.is_local_model else settings.agent_model


def model_capacity(settings: Settings) -> int | None:
    """Model requests the configured endpoint answers at once without queueing them, where the backend knows it
    (the bundled model's slots); None for a hosted endpoint, whose capacity is its operator's."""
    return settings.local_model_slots if settings.is_local_model else None


def build_client(settings: Settings, *, http_client: httpx.AsyncClient | None = None) -> AsyncOpenAI:
    return DirectAsyncOpenAI(
        base_url=model_base_url(settings),
        api_key=settings.openai_api_key or ("local" if settings.is_local_model else None),
        timeout=settings.model_timeout,
        max_retries=0 if settings.is_local_model else 2,
        # openai 3 speaks httpx2 but accepts an httpx client (tests reach in-process apps through one).
        http_client=cast(Any, http_client),
    )


def build_model(settings: Settings, *, http_client: httpx.AsyncClient | None = None) -> Model:
    return OpenAIChatCompletionsModel(
        model=model_name(settings), openai_client=build_client(settings, http_client=http_client)
    )


async def model_reachable(settings: Settings, client: AsyncOpenAI | None = None) -> bool:
    """Readiness: the endpoint answers its model list (cheap on every OpenAI-compatible server)."""
    client = client or build_client(settings)
    try:
        await client.with_options(timeout=3.0, max_retries=0).models.list()
    except Exception:
        return False
    return True
