"""One tool vocabulary: the backend's tool definitions are the eval dataset's tool names, its JSON Schema's enum,
the agent's and MCP's tools; prompt files (literal text: their bytes are the prefix cache) name only real tools.

A sixth tool registered by a fixture passes the dataset, the schema and the prompt checks with no other edit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import Field

from backend import tools
from backend.mcp_server import tool_definitions
from backend.settings import PROMPTS_DIR
from evals.dataset import json_schema, load_dataset

SNOOZE = """version: 1
cases:
  - id: snooze-a-task
    tags: [snooze]
    tasks:
      - {ref: a, title: Water the ferns}
    turns:
      - user: Snooze task {a} for two days
        calls:
          - tool: snooze_task
            args: {task_id: {task: a}, days: 2}
        allow_extra: [list_tasks]
"""


class SnoozeArgs(tools.TaskIdArgs):
    days: int = Field(description="How many days to push it back.", ge=1)


def prompt_tool_problems(text: str) -> list[str]:
    """Tool-like names (`verb_task`, `verb_tasks`) a prompt uses that no tool has."""
    names = set(re.findall(r"\b[a-z]+_tasks?\b", text))
    return sorted(names - set(tools.tool_names()))


@pytest.fixture
def snooze_tool(monkeypatch: pytest.MonkeyPatch) -> tools.TodoTool:
    tool = tools.TodoTool("snooze_task", "Push a task back by some days.", SnoozeArgs, lambda *args: {"ok": True})
    monkeypatch.setattr(tools, "TOOLS", (*tools.TOOLS, tool))
    return tool


def test_a_tool_added_to_the_backend_is_one_a_case_can_expect(tmp_path: Path, snooze_tool: tools.TodoTool) -> None:
    (tmp_path / "snooze.yaml").write_text(SNOOZE)
    [case] = load_dataset(tmp_path).cases
    assert case.turns[0].calls[0].tool == "snooze_task"
    schema = json_schema()["$defs"]
    assert "snooze_task" in schema["ExpectedCall"]["properties"]["tool"]["enum"]
    assert schema["Turn"]["properties"]["allow_extra"]["items"]["enum"] == ["list_tasks"]  # it writes: never free
    for path in PROMPTS_DIR.glob("*.md"):
        assert prompt_tool_problems(path.read_text()) == [], path.name


def test_a_case_naming_a_tool_nobody_defined_is_refused(tmp_path: Path) -> None:
    (tmp_path / "snooze.yaml").write_text(SNOOZE)
    with pytest.raises(ValueError, match="'snooze_task' is not a tool"):
        load_dataset(tmp_path)


def test_every_prompt_names_every_tool_and_no_other() -> None:
    for path in PROMPTS_DIR.glob("*.md"):
        text = path.read_text()
        assert prompt_tool_problems(text) == [], path.name
        assert all(name in text for name in tools.tool_names()), path.name


def test_the_agent_and_mcp_advertise_the_backend_tools() -> None:
    from backend.agent import SDK_TOOLS

    assert [t.name for t in SDK_TOOLS] == [t.name for t in tool_definitions()] == list(tools.tool_names())
