"""`todo-agent eval check`: a case no agent could pass is found without a model, and named with the reason."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evals.compare import ExitCode
from evals.dataset import Case, load_dataset
from evals.matchers import regex_instance
from evals.selfcheck import check_case, check_dataset
from todo_agent.cli import app


def _case(text: str) -> Case:
    return Case.model_validate(yaml.safe_load(textwrap.dedent(text)))


def test_every_committed_case_passes_with_its_own_expectations() -> None:
    checks = check_dataset(load_dataset(holdout=True))
    assert checks
    assert [(c.case_id, c.reasons()) for c in checks if not c.ok] == []


@pytest.mark.parametrize(
    "pattern",
    ["friday", "invoice.*acme|acme.*invoice", r"\bbr(e|ea)d\b", r"^\d+ items?$", "call (mom|mum)", "[a-c]at",
     r"\s*dentist\s+appointment"],
)  # fmt: skip
def test_a_regex_instance_is_found_by_its_regex(pattern: str) -> None:
    instance = regex_instance(pattern)
    assert instance is not None and re.search(pattern, instance, re.IGNORECASE)


@pytest.mark.parametrize("pattern", ["(?!x)a", "[^a]b", r"(a)\1"])
def test_a_regex_with_no_buildable_instance_says_so(pattern: str) -> None:
    assert regex_instance(pattern) is None


def test_an_expected_state_the_expected_calls_contradict_is_found() -> None:
    check = check_case(
        _case("""
        id: planted-contradiction
        tags: [planted]
        turns:
          - user: add milk
            calls:
              - {tool: add_task, args: {title: {contains: milk}}}
        final_tasks:
          - {title: {contains: bread}}
        """)
    )
    assert not check.ok
    assert any("[state_mismatch]" in reason and "bread" in reason for reason in check.reasons())


def test_a_reference_to_a_task_that_is_not_there_is_found() -> None:
    check = check_case(
        _case("""
        id: planted-missing-task
        tags: [planted]
        tasks:
          - {ref: a, title: Water the plants}
        turns:
          - user: mark the dentist one done
            calls:
              - {tool: complete_task, args: {task_id: {task_titled: dentist}}}
        """)
    )
    assert not check.ok
    assert any("task_id" in reason and "no value follows" in reason for reason in check.reasons())


def test_a_completed_seed_the_case_expects_pending_is_found() -> None:
    check = check_case(
        _case("""
        id: planted-wrong-seed
        tags: [planted]
        tasks:
          - {ref: a, title: Water the plants, completed: true}
        turns:
          - user: reopen it
            calls: []
        final_tasks:
          - {ref: a, completed: false}
        """)
    )
    assert not check.ok and any("completed" in reason for reason in check.reasons())


def test_a_bare_regex_without_an_instance_needs_an_example_and_the_example_must_match() -> None:
    text = """
        id: planted-regex
        tags: [planted]
        turns:
          - user: add something
            calls:
              - tool: add_task
                args: {title: {regex: "^(?!x).*milk"%s}}
        final_tasks:
          - {title: {contains: milk}}
        """
    assert any("example" in reason for reason in check_case(_case(text % "")).reasons())
    assert check_case(_case(text % ', example: "oat milk"')).ok
    wrong = check_case(_case(text % ', example: "xmilk"'))
    assert any("does not match its own matcher" in reason for reason in wrong.reasons())


def test_a_reply_example_stands_in_for_the_phrases_and_must_pass_its_checks() -> None:
    text = """
        id: planted-reply
        tags: [planted]
        tasks:
          - {ref: a, title: Water the plants}
        turns:
          - user: delete task {a}
            calls:
              - {tool: delete_task, args: {task_id: {task: a}}}
          - user: now mark it done
            reply: {regex: "\\\\b(deleted|not)\\\\b"%s}
        final_tasks: []
        """
    # Made of the regex's first branch, the reply says "deleted" in a turn that deleted nothing: a false claim.
    assert any("[false_claim]" in reason for reason in check_case(_case(text % "")).reasons())
    assert check_case(_case(text % ', example: "It was deleted already, so I could not."')).ok
    assert any("fails its own checks" in r for r in check_case(_case(text % ', example: "Done."')).reasons())


def test_the_cli_exits_4_naming_the_impossible_case(tmp_path: Path) -> None:
    dataset = tmp_path / "planted.yaml"
    dataset.write_text(
        textwrap.dedent("""
        cases:
          - id: fine
            tags: [planted]
            turns:
              - user: add milk
                calls:
                  - {tool: add_task, args: {title: milk}}
            final_tasks:
              - {title: milk}
          - id: impossible
            tags: [planted]
            turns:
              - user: add milk
                calls:
                  - {tool: add_task, args: {title: milk}}
            final_tasks: unchanged
        """),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["eval", "check", str(dataset)])
    assert result.exit_code == ExitCode.DATASET_INVALID, result.output
    assert "impossible" in result.output and "fine (" not in result.output
    assert "1/2 cases pass" in result.output
    clean = CliRunner().invoke(app, ["eval", "check", str(dataset), "--ids", "fine"])
    assert clean.exit_code == 0, clean.output
