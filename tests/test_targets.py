"""The local model's target guard: a changing call must aim at a task the user referred to.

Labelled by hand: what the user said, the tasks the turn shows, the call the model made, and the verdict a careful
reader gives. The guard refuses only what words can tell; everything else is left to the model.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.llm.targets import TaskContext, check_target, feedback, task_context

MILK = {1: "Buy milk for home", 2: "Buy milk for the office", 3: "Go to the gym"}
BILLS = {1: "Pay the electricity bill", 2: "Pay the water bill"}
SARAH = {1: "Email Sarah about the budget", 2: "Email Sarah the slides"}
MIXED = {1: "Clean the garage", 2: "Read chapter 4", 3: "Fix the bike", 7: "Book a dentist appointment"}


def _context(titles: dict[int, str], recent: set[int] | None = None, created: set[int] | None = None) -> TaskContext:
    return TaskContext(dict(titles), recent or set(), created or set())


@pytest.mark.parametrize(
    ("user", "titles", "task_id", "arguments", "verdict"),
    [
        # ambiguous: the words fit two tasks equally
        ("Delete the buy milk task", MILK, 1, {}, "ambiguous"),
        ("Mark the pay bill task as done", BILLS, 2, {}, "ambiguous"),
        ("Rename the email Sarah task to 'Email Sarah today'", SARAH, 1, {"title": "Email Sarah today"}, "ambiguous"),
        ("mark the milk one done", MILK, 2, {}, "ambiguous"),
        ("Pay bills is done", BILLS, 1, {}, "ambiguous"),
        # the words single one task out
        ("The one for the office", MILK, 2, {}, None),
        ("Delete buy milk for home", MILK, 1, {}, None),
        ("I paid the water bill", BILLS, 2, {}, None),
        ("Email Sarah the slides is done", SARAH, 2, {}, None),
        ("Rename 'Fix the bike' to 'Fix the bicycle'", MIXED, 3, {"title": "Fix the bicycle"}, None),
        ("Delete the dentist one", MIXED, 7, {}, None),
        ("I finished cleaning the garage", MIXED, 1, {}, None),
        # named by id, or by a word for several tasks
        ("Mark tasks 1 and 3 as done", MIXED, 3, {}, None),
        ("task 7 is done", MIXED, 7, {}, None),
        ("Delete both milk tasks", MILK, 2, {}, None),
        ("Delete all my completed tasks", MIXED, 3, {}, None),
        ("dono milk wale tasks delete kar do", MILK, 1, {}, None),
        # the wrong task, or one nobody named
        ("Complete the 'Renew car insurance' task", MIXED, 1, {}, "unreferred"),
        ("Mark the dentist appointment done", MIXED, 1, {}, "unreferred"),
        ("I read chapter 4 already", MIXED, 3, {}, "unreferred"),
        ("Update the bike task: new tyres", MIXED, 2, {"description": "new tyres"}, "unreferred"),
        # another script than the titles: words can't tell, the model decides
        ("گیراج صاف کرنے والا کام مکمل کریں", MIXED, 1, {}, None),
        ("ڈینٹسٹ والا کام حذف کریں", MIXED, 7, {}, None),
        # Roman Urdu sharing a title word
        ("garage wala task complete kar do", MIXED, 1, {}, None),
        ("bike wala kaam delete karo", MIXED, 1, {}, "unreferred"),
    ],
)
def test_a_changing_call_is_checked_against_what_the_user_named(
    user: str, titles: dict[int, str], task_id: int, arguments: dict[str, Any], verdict: str | None
) -> None:
    problem = check_target(task_id, arguments, user, _context(titles))
    assert (problem.kind if problem else None) == verdict


@pytest.mark.parametrize("user", ["Mark it done", "rename it to 'Call mum'", "delete that one", "ho gaya"])
def test_a_follow_up_that_names_no_task_may_change_the_task_the_last_turn_touched(user: str) -> None:
    arguments = {"title": "Call mum"} if "rename" in user else {}
    assert check_target(3, arguments, user, _context(MIXED, recent={3})) is None
    problem = check_target(3, arguments, user, _context(MIXED, recent={1}))
    assert problem is not None and problem.kind == "unreferred"


def test_a_task_this_turn_created_is_never_changed_in_the_same_turn() -> None:
    problem = check_target(9, {}, "I need to remember to pay bills", _context({9: "Pay bills"}, created={9}))
    assert problem is not None and problem.kind == "unreferred"


def test_ambiguity_feedback_names_the_tasks_as_data() -> None:
    problem = check_target(1, {}, "Delete the buy milk task", _context(MILK))
    assert problem is not None
    note = feedback(problem)
    assert '"Buy milk for home"' in note and '"Buy milk for the office"' in note and "which one" in note
    assert "Go to the gym" not in note


def _tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def test_task_context_reads_titles_recent_and_created_ids_from_the_messages() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are..."},
        {"role": "user", "content": "Add a task to buy eggs"},
        {"role": "assistant", "content": None, "tool_calls": [_tool_call("a", "add_task", {"title": "Buy eggs"})]},
        {"role": "tool", "tool_call_id": "a", "content": json.dumps({"task_id": 4, "status": "created", "title": "Buy eggs"})},
        {"role": "assistant", "content": "Added 'Buy eggs'."},
        {"role": "system", "content": 'The user\'s tasks:\n- id 4: "Buy eggs"\n- id 2: "Read chapter 4"'},
        {"role": "user", "content": "add bread and list everything"},
        {"role": "assistant", "content": None, "tool_calls": [_tool_call("b", "add_task", {"title": "Bread"}), _tool_call("c", "list_tasks", {})]},
        {"role": "tool", "tool_call_id": "b", "content": json.dumps({"task_id": 5, "status": "created", "title": "Bread"})},
        {"role": "tool", "tool_call_id": "c", "content": json.dumps([{"id": 4, "title": "Buy eggs"}, {"id": 5, "title": "Bread"}])},
        {"role": "tool", "tool_call_id": "x", "content": json.dumps({"error": {"code": "not_found"}})},
    ]  # fmt: skip
    context = task_context(messages, {"add_task"})
    assert context.titles == {4: "Buy eggs", 2: "Read chapter 4", 5: "Bread"}
    assert context.recent == {4}
    assert context.created_now == {5}
