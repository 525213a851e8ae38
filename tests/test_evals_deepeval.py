"""deepeval: our scorer as a deepeval metric, cases as LLMTestCases, and why ToolCorrectnessMetric's defaults are
not trusted (they score an extra delete_task as perfect)."""

from __future__ import annotations

from typing import Any

from deepeval.test_case import LLMTestCase, ToolCall

from evals.dataset import Case, load_dataset
from evals.deepeval_metric import (
    TodoAgentMetric,
    default_tool_correctness,
    expected_tools,
    strict_tool_correctness,
    to_test_case,
)
from evals.transcript import ObservedCall, Transcript, TurnRecord

CASE = next(c for c in load_dataset().cases if c.id == "ref-complete-by-id")


def transcript(calls: list[tuple[str, dict[str, Any]]], after: list[dict[str, Any]]) -> Transcript:
    before = [
        {"id": 1, "title": "Buy milk", "description": None, "completed": False},
        {"id": 2, "title": "Water the plants", "description": None, "completed": False},
        {"id": 3, "title": "Write the quarterly report", "description": None, "completed": False},
    ]
    return Transcript(
        case_id=CASE.id, trial=1, user_id="u", ids={"milk": 1, "plants": 2, "report": 3}, missing_id=987,
        tasks_before=before,
        turns=[TurnRecord(index=0, user="Mark task 3 as complete", status=200, response="Done!",
                          tool_calls=[ObservedCall(name=n, arguments=a, result={}) for n, a in calls],
                          tasks_after=after)],
    )  # fmt: skip


DONE = [
    {"id": 1, "title": "Buy milk", "description": None, "completed": False},
    {"id": 2, "title": "Water the plants", "description": None, "completed": False},
    {"id": 3, "title": "Write the quarterly report", "description": None, "completed": True},
]
EXTRA_DELETE = transcript([("complete_task", {"task_id": 3}), ("delete_task", {"task_id": 3})], DONE[:2])


def test_deepeval_defaults_score_an_extra_delete_as_perfect() -> None:
    """The trap DESIGN.md warns about, demonstrated: names-only matching ignores the extra destructive call."""
    case = LLMTestCase(
        input="Mark task 3 as complete",
        actual_output="Done!",
        tools_called=[ToolCall(name="complete_task", input_parameters={"task_id": 3}),
                      ToolCall(name="delete_task", input_parameters={"task_id": 3})],
        expected_tools=[ToolCall(name="complete_task", input_parameters={"task_id": 3})],
    )  # fmt: skip
    lenient = default_tool_correctness()
    assert lenient.measure(case, _show_indicator=False) == 1.0 and lenient.is_successful()
    strict = strict_tool_correctness()
    assert strict.measure(case, _show_indicator=False) == 0.0 and not strict.is_successful()


def test_our_metric_fails_the_extra_delete_with_typed_reasons() -> None:
    metric = TodoAgentMetric()
    assert metric.measure(to_test_case(CASE, EXTRA_DELETE)) == 0.0
    assert not metric.is_successful()
    assert "[extra_call]" in (metric.reason or "") and "was deleted" in (metric.reason or "")


def test_a_good_trial_passes_both_and_maps_to_a_test_case() -> None:
    good = transcript([("complete_task", {"task_id": 3})], DONE)
    test_case = to_test_case(CASE, good)
    assert test_case.name == "ref-complete-by-id#1" and test_case.tags == CASE.tags
    assert [t.name for t in test_case.tools_called or []] == ["complete_task"]
    assert [(t.name, t.input_parameters) for t in test_case.expected_tools or []] == [("complete_task", {"task_id": 3})]
    assert TodoAgentMetric().measure(test_case) == 1.0
    assert strict_tool_correctness().measure(test_case, _show_indicator=False) == 1.0


def test_strict_tool_correctness_fails_a_harmless_lookup_that_we_allow() -> None:
    looked_up = transcript([("list_tasks", {}), ("complete_task", {"task_id": 3})], DONE)
    test_case = to_test_case(CASE, looked_up)
    assert TodoAgentMetric().measure(test_case) == 1.0
    assert strict_tool_correctness().measure(test_case, _show_indicator=False) == 0.0


def test_every_case_round_trips_through_test_case_metadata() -> None:
    for case in load_dataset().cases:
        test_case = to_test_case(case, transcript([], DONE))
        assert Case.model_validate((test_case.metadata or {})["case"]) == case
        expected_tools(case, transcript([], DONE))  # resolvable for every case
