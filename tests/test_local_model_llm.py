"""The real local model behind its OpenAI-compatible API, driven by the official `openai` client.

Slow (loads Qwen2.5-Coder-1.5B, ~2 GB): marked `llm`. It uses ./data so the 1.1 GB weights are joined once and
shared with the dev server, and port 8182 so it never clashes with a dev model server on 8181.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from backend.settings import Settings
from backend.tools import chat_completions_tools

pytestmark = pytest.mark.llm

SYSTEM_PROMPT = (
    "You are a friendly todo-list assistant. When the user asks to add, list, complete, delete or change "
    "tasks, call the matching tool. A task's number is its task_id. For greetings or anything else, reply "
    "briefly in plain text without calling a tool."
)


TOOLS = chat_completions_tools()  # the schemas the agent really sends


def _messages(text: str) -> list[Any]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


@pytest.fixture
async def client(local_model_settings: Settings) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=local_model_settings.local_model_base_url, api_key="local", timeout=180) as c:
        yield c


async def test_models_endpoint_lists_the_model(client: AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == ["qwen2.5-coder-1.5b-instruct"]


async def test_add_task_becomes_a_real_tool_call(client: AsyncOpenAI) -> None:
    response = await client.chat.completions.create(
        model="local", messages=_messages("Add a task to buy groceries"), tools=TOOLS
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert calls, choice.message.content
    call = calls[0]
    assert call.type == "function"
    assert call.function.name == "add_task"
    assert "groceries" in json.loads(call.function.arguments)["title"].lower()


async def test_streaming_yields_the_same_tool_call(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="local", messages=_messages("Add a task to buy groceries"), tools=TOOLS, stream=True
    )
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    finish = None
    async for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            if delta.function and delta.function.name:
                names[delta.index] = delta.function.name
            if delta.function and delta.function.arguments:
                arguments[delta.index] = arguments.get(delta.index, "") + delta.function.arguments
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert names.get(0) == "add_task"
    assert "groceries" in json.loads(arguments[0])["title"].lower()


async def test_greeting_is_plain_text(client: AsyncOpenAI) -> None:
    response = await client.chat.completions.create(model="local", messages=_messages("Hello!"), tools=TOOLS)
    message = response.choices[0].message
    assert not message.tool_calls
    assert message.content and message.content.strip()
    assert response.choices[0].finish_reason == "stop"


async def test_tool_result_turn_gets_a_text_reply(client: AsyncOpenAI) -> None:
    """The second half of a turn: after the tool result, the model answers the user in words."""
    messages = [
        *_messages("Add a task to buy groceries"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add_task", "arguments": '{"title": "Buy groceries"}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": '{"task_id": 1, "status": "created", "title": "Buy groceries"}',
        },
    ]
    response = await client.chat.completions.create(model="local", messages=messages, tools=TOOLS)
    message = response.choices[0].message
    assert not message.tool_calls
    assert message.content and message.content.strip()
