"""pass^k, the suite metrics, and the regression / flaky / newly-passing logic behind the gate."""

from __future__ import annotations

from typing import Any

import pytest

from evals.compare import ExitCode, compare, gate
from evals.metrics import by_tag, pass_hat_k, summarise
from evals.results import RunInfo, RunResult, TrialResult
from evals.scoring import Failure, Tallies, TrialScore
from evals.transcript import Transcript, TurnRecord

ERRORED = None  # a trial that got no answer (a timeout, a 5xx)


def trial(
    case_id: str, n: int, passed: bool | None, tags: tuple[str, ...] = ("t",), latency: float = 100.0
) -> TrialResult:
    """A trial that passed, failed, or (`ERRORED`) got a 504 from the backend."""
    if passed is ERRORED:
        failures = [Failure(kind="error", turn=0, message="HTTP 504 model_timeout: The model did not answer")]
        record = TurnRecord(index=0, user="hi", status=504, error="HTTP 504 model_timeout", latency_ms=latency)
    else:
        failures = [] if passed else [Failure(kind="wrong_tool", turn=0, message="expected complete_task, got delete")]
        record = TurnRecord(index=0, user="hi", status=200, response="ok", latency_ms=latency)
    ok = bool(passed)
    return TrialResult(
        case_id=case_id,
        trial=n,
        tags=list(tags),
        case_fingerprint="f",
        transcript=Transcript(case_id=case_id, trial=n, user_id="u", turns=[record]),
        score=TrialScore(case_id=case_id, trial=n, passed=ok, failures=failures, errored=passed is ERRORED,
                         tallies=Tallies(name_slots=1, name_correct=int(ok), state_checks=1, state_correct=int(ok))),
    )  # fmt: skip


def run(spec: dict[str, list[bool | None]]) -> RunResult:
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


def statuses(base: dict[str, list[bool | None]], cand: dict[str, list[bool | None]]) -> dict[str, str]:
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


def test_errored_trials_count_in_no_rate_and_say_how_many_they_were() -> None:
    m = run({"a": [True, ERRORED], "b": [False], "c": [ERRORED, ERRORED]}).metrics
    assert m["trials"] == 5 and m["errored_trials"] == 3 and m["cases_inconclusive"] == 1
    assert m["case_pass_rate"] == 0.5  # a passed, b failed: the errors count neither way
    assert m["tool_name_accuracy"] == 0.5 and m["cases_passing_all_trials"] == 1
    assert run({"a": [ERRORED]}).metrics["case_pass_rate"] is None  # nothing answered: no rate at all


def test_errors_are_never_regressions_a_case_with_only_errors_is_inconclusive() -> None:
    got = statuses(
        {"timed_out": [True], "one_error": [True, True], "base_errored": [ERRORED], "fine": [True]},
        {"timed_out": [ERRORED, ERRORED], "one_error": [ERRORED, True], "base_errored": [False], "fine": [True]},
    )
    assert got == {"timed_out": "inconclusive", "one_error": "still_passing", "base_errored": "inconclusive",
                   "fine": "still_passing"}  # fmt: skip


def test_the_gate_says_inconclusive_with_its_own_exit_code_and_a_verdict_line() -> None:
    base = run({"a": [True], "b": [True], "c": [True]})
    errored = run({"a": [ERRORED], "b": [True], "c": [True]})
    verdict = gate(errored, compare(base, errored), min_pass=None)
    assert verdict.exit_code == ExitCode.INCONCLUSIVE and verdict.verdict == "INCONCLUSIVE"
    assert verdict.line == "GATE INCONCLUSIVE: 0 regressions, 0 flaky, 1 inconclusive, pass rate 1.000 (baseline 1.000)"
    assert "a" in verdict.reasons[0]
    worse = run({"a": [ERRORED], "b": [False], "c": [True, False]})
    verdict = gate(worse, compare(base, worse), min_pass=None)
    assert verdict.exit_code == ExitCode.REGRESSION  # a regression outranks an inconclusive case
    assert verdict.line == "GATE FAILED: 1 regression, 1 flaky, 1 inconclusive, pass rate 0.333 (baseline 1.000)"
    low = run({"a": [ERRORED], "b": [False, True], "c": [True]})
    assert gate(low, compare(base, low), min_pass=0.9).exit_code == ExitCode.BELOW_MIN_PASS
    alone = gate(errored, None, min_pass=None)
    assert alone.exit_code == ExitCode.INCONCLUSIVE and alone.line.endswith("pass rate 1.000")
    passed = gate(base, compare(base, base), min_pass=0.5)
    assert passed.line == "GATE PASSED: 0 regressions, 0 flaky, 0 inconclusive, pass rate 1.000 (baseline 1.000)"


def test_junit_is_valid_xml_whatever_the_model_wrote_and_errors_are_errors() -> None:
    import xml.etree.ElementTree as ET

    from evals.reports import render_junit

    cand = run({"a": [True], "b": [ERRORED]})
    cand.trials[0].transcript.turns[0].response = "done \x1b[31mred\x1b[0m \x00 \x08 ok"
    cand.trials[0].transcript.turns[0].user = "bell \x07"
    root = ET.fromstring(render_junit(cand, comparison=compare(run({"a": [True], "b": [True]}), cand)))
    first = root.findall("testsuite")[0]
    assert (first.get("failures"), first.get("errors")) == ("0", "1")
    out = next(c for c in first.iter("testcase") if c.get("name") == "a").find("system-out")
    assert out is not None and out.text is not None and "\\x1b[31mred" in out.text and "bell \\x07" in out.text
    gate_suite = root.findall("testsuite")[1]
    assert gate_suite.get("errors") == "1" and gate_suite.find("testcase/error") is not None
