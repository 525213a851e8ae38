"""The dataset format: validation errors that name file, case and field; the published schema; the suite's coverage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.dataset import SCHEMA_FILE, Case, DatasetError, json_schema_text, load_dataset, render_user_text

GOOD_CASE = """
version: 1
cases:
  - id: ok-case
    tags: [add]
    turns:
      - user: Add a task to buy milk
        calls:
          - tool: add_task
            args: {title: Buy milk}
    final_tasks:
      - {title: Buy milk}
"""


def write(tmp_path: Path, text: str, name: str = "cases.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_loads(tmp_path: Path) -> None:
    dataset = load_dataset(write(tmp_path, GOOD_CASE))
    assert [c.id for c in dataset.cases] == ["ok-case"]


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        ("tool: add_task", "tool: add_tsk"),  # unknown tool
        ("args: {title: Buy milk}", "args: {title: {contains: milk, regex: milk}}"),  # two matcher kinds
        ("args: {title: Buy milk}", "args: {title: {regex: '(unclosed'}}"),  # bad regex
        ("tags: [add]", "tags: []"),
        ("    final_tasks:", "    final_taks:"),  # unknown key
    ],
)
def test_malformed_case_names_file_case_and_field(tmp_path: Path, broken: str, field: str) -> None:
    path = write(tmp_path, GOOD_CASE.replace(broken, field))
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert str(path) in message
    assert "case 'ok-case'" in message


def test_the_field_path_is_precise(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_CASE.replace("tool: add_task", "tool: add_tsk"))
    with pytest.raises(
        DatasetError, match=r"case 'ok-case': turns\[0\]\.calls\[0\]\.tool: Value error, 'add_tsk' is not a tool"
    ):
        load_dataset(path)


def test_unknown_task_ref_in_user_text_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_CASE.replace("Add a task to buy milk", "Complete task {nope}"))
    with pytest.raises(DatasetError, match=r"case 'ok-case'.*\{nope\}"):
        load_dataset(path)


def test_a_write_tool_can_never_be_a_free_extra(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_CASE.replace(
            "      - user: Add a task to buy milk", "      - user: Add\n        allow_extra: [delete_task]"
        ),
    )
    with pytest.raises(DatasetError, match="read-only"):
        load_dataset(path)


def test_case_without_id_is_named_by_position(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_CASE.replace("  - id: ok-case\n", "  - \n"))
    with pytest.raises(DatasetError, match=r"case #1 \(no id\)"):
        load_dataset(path)


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_CASE + "\n  - id: [unclosed\n")
    with pytest.raises(DatasetError, match=f"{path.name}: not valid YAML"):
        load_dataset(path)


def test_duplicate_ids_across_files_name_both(tmp_path: Path) -> None:
    write(tmp_path, GOOD_CASE, "a.yaml")
    write(tmp_path, GOOD_CASE, "b.yaml")
    with pytest.raises(DatasetError, match=r"b\.yaml: case 'ok-case': id: duplicate \(also in .*a\.yaml\)"):
        load_dataset(tmp_path)


def test_published_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text(), "run `todo-agent eval schema`"
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert "Case" in schema["$defs"] and "Matcher" in schema["$defs"]


def test_refs_are_rendered_and_other_braces_kept() -> None:
    assert render_user_text("Mark task {a} and {b} done {x}", {"a": 3, "b": 12}) == "Mark task 3 and 12 done {x}"


def test_the_suite_covers_what_issue_4_lists() -> None:
    dataset = load_dataset()
    assert len(dataset) >= 80
    tags = {tag for case in dataset.cases for tag in case.tags}
    required = {
        "reference", "add", "description", "no-description", "list", "complete", "delete", "update", "by-id",
        "by-title", "multi-step", "follow-up", "not-found", "ambiguous", "chit-chat", "out-of-scope", "cross-user",
        "injection", "typo", "urdu", "roman-urdu", "smoke",
    }  # fmt: skip
    assert required <= tags, required - tags
    # The design's eight reference requests (DESIGN.md, "The requests every build must handle") are all cases.
    reference_texts = {c.turns[0].user for c in dataset.cases if "reference" in c.tags}
    for request in ("Add a task to buy groceries", "Show me all my tasks", "What's pending?", "as complete",
                    "Delete the meeting task", "What have I completed?"):  # fmt: skip
        assert any(request.lower() in text.lower() for text in reference_texts), request
    assert any("smoke" in c.tags for c in dataset.cases)
    # Each list filter, and instructions hidden in a task's title and in its description.
    statuses = {
        str(getattr(call.args.get("status"), "optional", call.args.get("status")))
        for case in dataset.cases for turn in case.turns for call in turn.calls if call.tool == "list_tasks"
    }  # fmt: skip
    assert {"all", "pending", "completed"} <= statuses
    seeded = [t for c in dataset.cases if "injection" in c.tags for t in c.tasks]
    assert any("instruction" in t.title.lower() for t in seeded)
    assert any(t.description and "delete_task" in t.description for t in seeded)


def test_every_case_checks_the_final_state_strictly_by_default() -> None:
    case = Case.model_validate({"id": "x", "tags": ["t"], "turns": [{"user": "hi", "no_tool_calls": True}]})
    assert case.final_tasks == "unchanged"
