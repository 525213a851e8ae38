"""pass^k, the suite metrics, and the regression / flaky / newly-passing logic behind the gate."""

from __future__ import annotations

from typing import Any

import pytest

from evals.compare import ExitCode, compare, gate
from evals.metrics import by_tag, pass_hat_k, summarise
from evals.results import RunInfo, RunResult, TrialResult
from evals.scoring import Failure, Tallies, TrialScore
from evals.transcript import Transcript, TurnRecord


def trial(case_id: str, n: int, passed: bool, tags: tuple[str, ...] = ("t",), latency: float = 100.0) -> TrialResult:
    failures = [] if passed else [Failure(kind="wrong_tool", turn=0, message="expected complete_task, got delete_task")]
    return TrialResult(
        case_id=case_id,
        trial=n,
        tags=list(tags),
        case_fingerprint="f",
        transcript=Transcript(case_id=case_id, trial=n, user_id="u",
                              turns=[TurnRecord(index=0, user="hi", status=200, response="ok", latency_ms=latency)]),
        score=TrialScore(case_id=case_id, trial=n, passed=passed, failures=failures,
                         tallies=Tallies(name_slots=1, name_correct=int(passed), state_checks=1,
                                         state_correct=int(passed))),
    )  # fmt: skip


def run(spec: dict[str, list[bool]]) -> RunResult:
    trials = [trial(case_id, i + 1, ok) for case_id, oks in spec.items() for i, ok in enumerate(oks)]
    return RunResult(info=RunInfo(run_id="r", started_at="now"), metrics=summarise(trials), trials=trials)


@pytest.mark.parametrize(
    ("c", "n", "k", "expected"),
    [(3, 3, 3, 1.0), (0, 3, 1, 0.0), (2, 4, 1, 0.5), (2, 4, 2, 1 / 6), (3, 4, 2, 0.5), (1, 4, 2, 0.0)],
)
def test_pass_hat_k(c: int, n: int, k: int, expected: float) -> None:
    assert pass_hat_k(c, n, k) == pytest.approx(expected)


def test_summary_metrics() -> None:
    result = run({"a": [True, True], "b": [True, False], "c": [False, False]})
    m = result.metrics
    assert m["cases"] == 3 and m["trials"] == 6 and m["case_pass_rate"] == 0.5
    assert m["pass_hat_k"] == {"1": 0.5, "2": round((1 + 0 + 0) / 3, 4)}
    assert m["cases_passing_all_trials"] == 1
    assert m["tool_name_accuracy"] == 0.5 and m["state_accuracy"] == 0.5
    assert m["latency_p50_ms"] == 100.0 and m["input_tokens"] is None  # nothing reported: None, not 0
    assert m["failures_by_kind"]["wrong_tool"] == 3


def test_by_tag_counts_a_case_under_each_tag() -> None:
    trials = [trial("a", 1, True, ("x", "y")), trial("b", 1, False, ("y",))]
    table = by_tag(trials).set_index("tag")
    assert table.loc["x", "pass_rate"] == 1.0 and table.loc["y", "pass_rate"] == 0.5
    assert table.loc["y", "wrong_tool"] == 1


def statuses(base: dict[str, list[bool]], cand: dict[str, list[bool]]) -> dict[str, str]:
    return {c.case_id: c.status for c in compare(run(base), run(cand)).cases}


def test_regression_needs_every_baseline_trial_passing_and_every_candidate_trial_failing() -> None:
    got = statuses(
        {"reg": [True, True], "flaky_now": [True, True], "flaky_before": [True, False], "fixed": [False, False],
         "same": [True, True], "bad": [False, False], "gone": [True]},
        {"reg": [False, False], "flaky_now": [True, False], "flaky_before": [False, False], "fixed": [True, True],
         "same": [True, True], "bad": [False, False], "new": [True]},
    )  # fmt: skip
    assert got == {
        "reg": "regression", "flaky_now": "flaky", "flaky_before": "flaky", "fixed": "fixed",
        "same": "still_passing", "bad": "still_failing", "new": "new", "gone": "not_run",
    }  # fmt: skip


def test_gate_exit_codes() -> None:
    base = run({"a": [True], "b": [True]})
    same = run({"a": [True], "b": [True]})
    assert gate(same, compare(base, same), min_pass=1.0).exit_code == ExitCode.OK
    broken = run({"a": [False], "b": [True]})
    verdict = gate(broken, compare(base, broken), min_pass=0.9)
    assert verdict.exit_code == ExitCode.REGRESSION and "a" in verdict.reasons[0] and len(verdict.reasons) == 2
    flaky = run({"a": [True, False], "b": [True, True]})
    verdict = gate(flaky, compare(base, flaky), min_pass=0.7)
    assert verdict.exit_code == ExitCode.OK  # flaky is reported, never failed
    assert gate(flaky, None, min_pass=0.8).exit_code == ExitCode.BELOW_MIN_PASS


def test_evidence_is_picked_from_the_right_trials() -> None:
    comparison = compare(run({"a": [False, True]}), run({"a": [False, False]}))
    item: Any = comparison.cases[0]
    assert item.status == "flaky"
    comparison = compare(run({"a": [True]}), run({"a": [False]}))
    item = comparison.regressions[0]
    assert item.baseline_evidence.passed and not item.candidate_evidence.passed


def test_junit_reports_known_failures_as_skipped_when_a_baseline_is_given() -> None:
    import xml.etree.ElementTree as ET

    from evals.reports import render_junit

    base = run({"known": [False], "broke": [True], "fine": [True]})
    cand = run({"known": [False], "broke": [False], "fine": [True]})
    root = ET.fromstring(render_junit(cand, comparison=compare(base, cand)))
    first = root.findall("testsuite")[0]
    assert (first.get("failures"), first.get("skipped")) == ("1", "1")
    by_name = {c.get("name"): c for c in first.iter("testcase")}
    assert by_name["known"].find("skipped") is not None and by_name["broke"].find("failure") is not None
    alone = ET.fromstring(render_junit(cand)).findall("testsuite")[0]
    assert alone.get("failures") == "2"  # without a baseline every failure is a failure
