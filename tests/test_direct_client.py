"""The direct Chat Completions client sends exactly what the OpenAI SDK's own transform would have sent."""

from __future__ import annotations

from typing import Any

from openai._utils._transform import async_maybe_transform
from openai.types.chat import completion_create_params

from backend.llm.direct_client import request_body
from tests.conftest import Harness, new_user


async def test_agent_request_bodies_are_fixed_points_of_the_sdk_transform(make_harness: Any) -> None:
    harness: Harness = await make_harness()
    user = new_user()
    conversation = (await harness.chat(user, "Add a task to buy groceries")).json()["conversation_id"]
    await harness.chat(user, "Show me all my tasks", conversation)
    await harness.chat(user, "Mark task 1 as complete", conversation)
    assert len(harness.model_requests) >= 6
    for body in harness.model_requests:
        params = completion_create_params.CompletionCreateParamsStreaming
        assert await async_maybe_transform(body, params) == body
    assert any(m["role"] == "tool" for m in harness.model_requests[-1]["messages"])
    assert harness.model_requests[-1]["tools"][0]["function"]["name"] == "add_task"


def test_unset_arguments_and_request_options_are_not_sent() -> None:
    from openai import NOT_GIVEN, omit

    body = request_body(
        {"model": "m", "messages": [], "store": omit, "top_p": NOT_GIVEN, "extra_headers": {"x": "1"}, "seed": 0}
    )
    assert body == {"model": "m", "messages": [], "seed": 0}
