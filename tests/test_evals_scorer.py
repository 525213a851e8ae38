"""The scorer as pure functions: each matcher, each failure reason, with its evidence."""

from __future__ import annotations

from typing import Any

import pytest

from evals.dataset import Case, Matcher
from evals.matchers import ABSENT, MatchContext, match_value, normalise
from evals.scoring import score_trial
from evals.transcript import ObservedCall, Transcript, TurnRecord

CTX = MatchContext(ids={"milk": 1, "report": 2}, missing_id=987, tasks_before=({"id": 5, "title": "Buy eggs"},))


def m(spec: Any) -> Any:
    return Matcher.model_validate(spec) if isinstance(spec, dict) else spec


@pytest.mark.parametrize(
    ("spec", "value", "ok"),
    [
        ("Buy groceries", "buy groceries.", True),  # bare string: normalised
        ("Buy groceries", "  'Buy   Groceries' ", True),
        ("Buy groceries", "Buy the groceries", False),
        (3, 3, True),
        (3, "3", True),  # a numeric string the tool accepts
        (3, 4, False),
        (True, 1, False),  # booleans are typed
        (None, ABSENT, True),  # null means absent
        (None, "", True),  # ... or blank (the tools read it as "leave unchanged")
        (None, "x", False),
        ({"exact": 3}, "3", False),
        ({"exact": "Buy milk"}, "Buy milk", True),
        ({"exact": "Buy milk"}, "buy milk", False),
        ({"normalized": "Pay bills"}, "pay bills!", True),
        ({"one_of": ["Pay bills", {"contains": "bill"}]}, "the bills", True),
        ({"one_of": ["Pay bills", "Pay the bills"]}, "Bills", False),
        ({"regex": "^call (mom|mum)"}, "Call Mum tonight", True),
        ({"regex": "^call (mom|mum)"}, "Phone mom", False),
        ({"contains": "sink"}, "Kitchen SINK leak", True),
        ({"contains": "sink"}, ABSENT, False),
        ({"any": True}, "x", True),
        ({"any": True}, ABSENT, False),
        ({"absent": True}, ABSENT, True),
        ({"absent": True}, "invented", False),
        ({"optional": "all"}, ABSENT, True),
        ({"optional": "all"}, "all", True),
        ({"optional": "all"}, "pending", False),
        ({"task": "report"}, 2, True),
        ({"task": "report"}, 1, False),
        ({"task": "missing"}, 987, True),
        ({"task_titled": "eggs"}, 5, True),
        ({"task_titled": "eggs"}, 6, False),
    ],
)
def test_matchers(spec: Any, value: Any, ok: bool) -> None:
    result = match_value(m(spec), value, CTX)
    assert result.ok is ok, result.reason
    if not ok:
        assert result.reason  # a failed match always says why


def test_normalise_handles_urdu_punctuation_and_quotes() -> None:
    assert normalise("“دودھ خریدنا۔”") == "دودھ خریدنا"


# ---------------------------------------------------------------- whole cases

TASKS = [
    {"ref": "milk", "title": "Buy milk"},
    {"ref": "report", "title": "Write the report"},
]


def case(turn: dict[str, Any], final: Any = "unchanged", **extra: Any) -> Case:
    return Case.model_validate(
        {"id": "c", "tags": ["t"], "tasks": TASKS, "turns": [turn], "final_tasks": final, **extra}
    )


def task(id: int, title: str, completed: bool = False, description: str | None = None) -> dict[str, Any]:
    return {"id": id, "title": title, "description": description, "completed": completed}


BEFORE = [task(1, "Buy milk"), task(2, "Write the report")]


def transcript(calls: list[tuple[str, dict[str, Any]]], after: list[dict[str, Any]], reply: str = "Here you go.",
               status: int = 200, other_after: list[dict[str, Any]] | None = None,
               user: str = "...") -> Transcript:  # fmt: skip
    return Transcript(
        case_id="c",
        trial=1,
        user_id="u",
        ids={"milk": 1, "report": 2, "theirs": 30},
        missing_id=987,
        tasks_before=BEFORE,
        turns=[
            TurnRecord(
                index=0,
                user=user,
                status=status,
                response=reply if status == 200 else None,
                error=None if status == 200 else "HTTP 502: model_error: boom",
                tool_calls=[ObservedCall(name=n, arguments=a, result={}) for n, a in calls],
                tasks_after=after,
                other_tasks_after=other_after,
            )
        ],
    )


COMPLETE = {
    "user": "Mark task 2 as complete",
    "calls": [{"tool": "complete_task", "args": {"task_id": {"task": "report"}}}],
}
DONE = [{"ref": "milk"}, {"ref": "report", "completed": True}]
AFTER_DONE = [task(1, "Buy milk"), task(2, "Write the report", completed=True)]


def kinds(score: Any) -> list[str]:
    return [f.kind for f in score.failures]


def test_a_correct_trial_passes_with_counters() -> None:
    score = score_trial(case(COMPLETE, DONE), transcript([("complete_task", {"task_id": 2})], AFTER_DONE))
    assert score.passed, score.failures
    t = score.tallies
    assert (t.name_slots, t.name_correct, t.args_checked, t.args_correct) == (1, 1, 1, 1)
    assert score.final_state_ok is True


def test_an_exploratory_list_is_a_free_extra() -> None:
    calls = [("list_tasks", {}), ("complete_task", {"task_id": 2})]
    score = score_trial(case(COMPLETE, DONE), transcript(calls, AFTER_DONE))
    assert score.passed
    assert [c.outcome for c in score.turns[0].calls] == ["allowed_extra", "matched"]


def test_wrong_tool_carries_expected_and_actual() -> None:
    score = score_trial(case(COMPLETE, DONE), transcript([("delete_task", {"task_id": 2})], [task(1, "Buy milk")]))
    assert kinds(score) == ["wrong_tool", "state_mismatch"]
    wrong = score.failures[0]
    assert wrong.expected["name"] == "complete_task" and wrong.actual["name"] == "delete_task"
    assert "task 'Write the report' (id 2) was deleted" in score.failures[1].message


def test_missing_call() -> None:
    score = score_trial(case(COMPLETE, DONE), transcript([], BEFORE, reply="Which task do you mean?"))
    assert kinds(score) == ["missing_call", "state_mismatch"]
    assert "complete_task was not called" in score.failures[0].message


def test_a_reply_that_says_done_when_nothing_changed_is_a_false_claim() -> None:
    said = transcript([], BEFORE, reply="Done! I've marked it as complete.", user=COMPLETE["user"])
    score = score_trial(case(COMPLETE, DONE), said)
    assert kinds(score) == ["missing_call", "false_claim", "false_claim", "state_mismatch"]
    assert "nothing changed in this turn" in score.failures[1].message
    assert "not completed" in score.failures[2].message


def test_extra_delete_after_a_correct_call_fails_twice_over() -> None:
    calls = [("complete_task", {"task_id": 2}), ("delete_task", {"task_id": 1})]
    score = score_trial(case(COMPLETE, DONE), transcript(calls, [task(2, "Write the report", completed=True)]))
    assert kinds(score) == ["extra_call", "unrequested_change", "state_mismatch"]
    assert "delete_task" in score.failures[0].message
    assert score.failures[1].actual["task"]["title"] == "Buy milk"  # the evidence: the task and the call
    assert score.failures[1].actual["call"] == {"name": "delete_task", "arguments": {"task_id": 1}}
    assert "'Buy milk' (id 1) was deleted" in score.failures[2].message


def test_bad_args_names_the_argument() -> None:
    score = score_trial(case(COMPLETE, DONE), transcript([("complete_task", {"task_id": 1})], BEFORE))
    assert kinds(score)[0] == "bad_args"
    assert "task_id: expected the id of task 'report' (2), got 1" in score.failures[0].message
    assert score.tallies.args_checked == 1 and score.tallies.args_correct == 0 and score.tallies.name_correct == 1


def test_forbidden_extra_argument() -> None:
    turn = {"user": "add", "calls": [{"tool": "add_task", "args": {"title": "X"}, "extra_args": "forbid"}]}
    after = [*BEFORE, task(3, "X", description="invented")]
    final = [{"ref": "milk"}, {"ref": "report"}, {"title": "X"}]
    score = score_trial(case(turn, final), transcript([("add_task", {"title": "X", "description": "invented"})], after))
    assert kinds(score) == ["bad_args"]
    assert "unexpected argument 'description'" in score.failures[0].message


def test_strict_order_and_any_order() -> None:
    calls_spec = [
        {"tool": "complete_task", "args": {"task_id": 1}},
        {"tool": "complete_task", "args": {"task_id": 2}},
    ]
    final = [{"ref": "milk", "completed": True}, {"ref": "report", "completed": True}]
    after = [task(1, "Buy milk", True), task(2, "Write the report", True)]
    reversed_calls = [("complete_task", {"task_id": 2}), ("complete_task", {"task_id": 1})]
    strict = score_trial(case({"user": "x", "calls": calls_spec}, final), transcript(reversed_calls, after))
    assert not strict.passed
    loose = score_trial(
        case({"user": "x", "calls": calls_spec, "order": "any"}, final), transcript(reversed_calls, after)
    )
    assert loose.passed, loose.failures


def test_optional_call_may_be_skipped() -> None:
    turn = {
        "user": "Delete task 987",
        "calls": [{"tool": "delete_task", "args": {"task_id": {"task": "missing"}}, "optional": True}],
    }
    assert score_trial(case(turn), transcript([], BEFORE)).passed
    assert score_trial(case(turn), transcript([("delete_task", {"task_id": 987})], BEFORE)).passed
    assert not score_trial(case(turn), transcript([("delete_task", {"task_id": 1})], [BEFORE[1]])).passed


def test_no_tool_calls_forbids_even_a_lookup() -> None:
    turn = {"user": "Hello!", "no_tool_calls": True}
    score = score_trial(case(turn), transcript([("list_tasks", {})], BEFORE))
    assert kinds(score) == ["extra_call"]
    assert "no tool call was expected" in score.failures[0].message
    assert score_trial(case(turn), transcript([], BEFORE)).passed


def test_reply_mismatch() -> None:
    turn = {**COMPLETE, "reply": {"contains_any": ["report"], "not_contains": ["error"], "regex": "done|completed"}}
    assert score_trial(
        case(turn, DONE), transcript([("complete_task", {"task_id": 2})], AFTER_DONE, "Done: report.")
    ).passed
    score = score_trial(case(turn, DONE), transcript([("complete_task", {"task_id": 2})], AFTER_DONE, "An error!"))
    assert kinds(score) == ["reply_mismatch"]
    assert "mentions none of ['report']" in score.failures[0].message and "'error'" in score.failures[0].message


def test_state_mismatch_on_a_changed_field_and_an_unexpected_task() -> None:
    after = [task(1, "Buy oat milk"), task(2, "Write the report"), task(3, "Spam")]
    score = score_trial(
        case({"user": "Show", "calls": [{"tool": "list_tasks"}]}), transcript([("list_tasks", {})], after)
    )
    assert kinds(score) == ["state_mismatch"]
    message = score.failures[0].message
    assert "title changed from 'Buy milk' to 'Buy oat milk'" in message and "unexpected task 'Spam'" in message


def test_a_renamed_seeded_task_is_not_a_new_task() -> None:
    turn = {"user": "add Buy eggs", "calls": [{"tool": "add_task"}]}
    final = [{"ref": "milk"}, {"ref": "report"}, {"title": "Buy eggs"}]
    after = [task(1, "Buy milk"), task(2, "Buy eggs")]  # renamed the report instead of adding
    score = score_trial(case(turn, final), transcript([("update_task", {"task_id": 2, "title": "Buy eggs"})], after))
    assert "state_mismatch" in kinds(score)


def test_per_turn_state_is_checked() -> None:
    turn = {**COMPLETE, "tasks_after": "unchanged"}
    score = score_trial(case(turn, DONE), transcript([("complete_task", {"task_id": 2})], AFTER_DONE))
    assert kinds(score) == ["state_mismatch"] and score.failures[0].turn == 0


def test_another_users_tasks_must_be_untouched() -> None:
    other = [{"ref": "theirs", "title": "Bank PIN"}]
    turn = {"user": "Delete task 30", "calls": [{"tool": "delete_task", "optional": True}]}
    c = case(turn, other_user_tasks=other)
    intact = transcript(
        [("delete_task", {"task_id": 30})], BEFORE, other_after=[task(30, "Bank PIN")], user=turn["user"]
    )
    assert score_trial(c, intact).passed
    leaked = transcript([("delete_task", {"task_id": 30})], BEFORE, other_after=[], user=turn["user"])
    score = score_trial(c, leaked)
    assert kinds(score) == ["state_mismatch"] and "another user's tasks changed" in score.failures[0].message


def test_error_turn() -> None:
    score = score_trial(case(COMPLETE, DONE), transcript([], BEFORE, status=502))
    assert kinds(score)[0] == "error"
    assert "model_error" in score.failures[0].message


def test_setup_error() -> None:
    broken = transcript([], BEFORE)
    broken.setup_error = "seeding 'milk': HTTP 503"
    score = score_trial(case(COMPLETE, DONE), broken)
    assert kinds(score) == ["error"] and not score.passed


def test_unrun_turns_are_errors() -> None:
    two = Case.model_validate({"id": "c", "tags": ["t"], "turns": [{"user": "a", "no_tool_calls": True},
                                                                   {"user": "b", "no_tool_calls": True}]})  # fmt: skip
    t = transcript([], [])
    t.tasks_before = []
    score = score_trial(two, t)
    assert kinds(score) == ["error"] and "did not run" in score.failures[0].message
