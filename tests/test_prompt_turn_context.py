"""The prompt file's turn context: what the model is shown about the user's tasks before each turn, through the real
stack (a scripted model records every request it gets)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.prompts import load_prompt, split_prompt
from backend.settings import DEFAULT_PROMPT_FILE
from tests.conftest import Harness, new_user


async def _add(harness: Harness, user: str, title: str) -> int:
    response = await harness.client.post(f"/api/{user}/tasks", json={"title": title}, headers=harness.auth(user))
    assert response.status_code == 201, response.text
    task_id: int = response.json()["id"]
    return task_id


def _last_request(harness: Harness) -> list[dict[str, Any]]:
    """The messages of the last turn's first model request (the one that ends with the user's message)."""
    messages: list[dict[str, Any]] = next(
        r["messages"] for r in reversed(harness.model_requests) if r["messages"][-1]["role"] == "user"
    )
    return messages


def test_a_prompt_without_a_marker_is_all_system_prompt_byte_for_byte() -> None:
    text = "You manage tasks.\n\n- Be brief.\n"
    assert split_prompt(text).system == text
    assert split_prompt(text).turn_context is None
    assert split_prompt(text + "<!-- turn context -->\n\n").turn_context is None  # an empty template shows nothing


async def test_the_default_prompt_shows_the_users_own_tasks_after_the_conversation(
    harness: Harness,
) -> None:
    user, other = new_user(), new_user()
    meeting = await _add(harness, user, "Team meeting")
    tricky = 'Read "Dune" {tasks}'  # quotes are escaped and a placeholder in a title is not expanded again
    quoted = await _add(harness, user, tricky)
    await _add(harness, other, "Someone else's secret")
    first = (await harness.chat(user, "hello")).json()
    await harness.chat(user, "Show me all my tasks", first["conversation_id"])

    messages = _last_request(harness)
    parts = split_prompt(load_prompt(DEFAULT_PROMPT_FILE))
    # The byte-stable system prompt comes first (the prefix cache covers it), without the template or its marker.
    assert messages[0] == {"role": "system", "content": parts.system}
    assert "{tasks}" not in parts.system and "turn context" not in parts.system
    # The turn context sits after the history, right before the new user message.
    assert [m["role"] for m in messages[-2:]] == ["system", "user"]
    assert messages[-1]["content"] == "Show me all my tasks"
    assert [m["content"] for m in messages[1:-2] if m["role"] == "user"] == ["hello"]
    shown = messages[-2]["content"]
    lines = [f'- id {meeting}: "Team meeting"', f"- id {quoted}: {json.dumps(tricky)}"]
    assert shown == parts.turn_context.replace("{tasks}", "\n".join(lines))  # type: ignore[union-attr]
    assert "Someone else" not in json.dumps(messages)


async def test_the_list_is_bounded_and_says_what_it_left_out(make_harness: Callable[..., Any]) -> None:
    harness: Harness = await make_harness(task_context_limit=2)
    user = new_user()
    ids = [await _add(harness, user, f"Task number {n}") for n in range(1, 5)]
    await harness.chat(user, "hello")
    shown = _last_request(harness)[-2]["content"]
    assert f'- id {ids[2]}: "Task number 3"' in shown and f'- id {ids[3]}: "Task number 4"' in shown
    assert "Task number 1" not in shown and "(2 older tasks not shown.)" in shown

    empty = new_user()
    await harness.chat(empty, "hello")
    assert "(the user has no tasks)" in _last_request(harness)[-2]["content"]


async def test_no_turn_context_in_the_prompt_or_a_zero_limit_shows_no_list(
    make_harness: Callable[..., Any], tmp_path: Path
) -> None:
    plain = tmp_path / "plain.md"
    plain.write_text("You manage the user's tasks with tools.\n", encoding="utf-8")
    for overrides in ({"system_prompt_file": plain}, {"task_context_limit": 0}):
        harness: Harness = await make_harness(**overrides)
        user = new_user()
        await _add(harness, user, "Team meeting")
        await harness.chat(user, "hello")
        messages = _last_request(harness)
        assert [m["role"] for m in messages] == ["system", "user"], overrides
        assert "Team meeting" not in json.dumps(messages)
    assert messages[0]["content"] == split_prompt(load_prompt(DEFAULT_PROMPT_FILE)).system
