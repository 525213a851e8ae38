"""evals.analysis: results files as tidy frames and summaries, checked against evals.metrics / evals.compare on fresh
scripted runs (a good agent, and one with a planted regression and another prompt) and on the committed baseline."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from backend.settings import DEFAULT_PROMPT_FILE
from evals import analysis
from evals.compare import compare
from evals.metrics import by_tag, summarise
from evals.results import RunResult
from evals.scoring import CallScore, Failure, TurnScore
from evals.suite import run_evals
from tests.evals_support import delete_instead_of_complete, scripted_config

TAGS = ["complete", "smoke"]


@pytest.fixture(scope="module")
async def good(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return await run_evals(scripted_config(tmp_path_factory.mktemp("good"), tags=TAGS, trials=2))


@pytest.fixture(scope="module")
async def broken(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """Another prompt version, and a model that deletes where it should complete."""
    tmp = tmp_path_factory.mktemp("broken")
    prompt = tmp / "system_v2.md"
    prompt.write_text(DEFAULT_PROMPT_FILE.read_text(encoding="utf-8") + "\nBe brief.\n", encoding="utf-8")
    config = scripted_config(tmp, delete_instead_of_complete(), tags=TAGS, trials=2, prompt=prompt)
    return await run_evals(config)


@pytest.fixture(scope="module")
def committed() -> RunResult:
    return RunResult.load(analysis.DEFAULT_BASELINE)


# ---------------------------------------------------------------- loading


def test_load_runs_labels_runs_and_keeps_labels_unique(committed: RunResult) -> None:
    runs = analysis.load_runs([analysis.DEFAULT_BASELINE, str(analysis.DEFAULT_BASELINE)])
    label = analysis.run_label(committed)
    assert list(runs) == [label, f"{label} #2"]
    assert "qwen2.5" in label and committed.info.run_id in label
    assert list(analysis.load_runs({"base": analysis.DEFAULT_BASELINE})) == ["base"]


def test_load_runs_refuses_a_file_that_is_not_a_results_file(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="not a results file"):
        analysis.load_runs([bad])


def test_newest_results_and_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert analysis.newest_results(tmp_path / "missing") is None
    for i, name in enumerate(["b-run", "a-run"]):
        path = tmp_path / name / "results.json"
        path.parent.mkdir()
        path.write_text("{}", encoding="utf-8")
        os.utime(path, (1_000 + i, 1_000 + i))
    assert analysis.newest_results(tmp_path) == tmp_path / "a-run" / "results.json"
    monkeypatch.delenv("EVAL_X", raising=False)
    assert analysis.results_path("EVAL_X", None) is None
    monkeypatch.setenv("EVAL_X", "evals/baselines/local.json")
    assert analysis.results_path("EVAL_X", None) == analysis.DEFAULT_BASELINE
    monkeypatch.setenv("EVAL_X", str(tmp_path))
    assert analysis.results_path("EVAL_X", None) == tmp_path
    monkeypatch.setenv("EVAL_X", f"evals/baselines/local.json{os.pathsep}{tmp_path}{os.pathsep}")
    assert analysis.results_paths("EVAL_X") == [analysis.DEFAULT_BASELINE, tmp_path]


# ---------------------------------------------------------------- tidy frames


def test_frames_have_one_row_per_trial_turn_call_and_failure(good: RunResult, broken: RunResult) -> None:
    for run in (good, broken):
        cases = analysis.cases_frame(run)
        assert len(cases) == len(run.trials) == 2 * len(run.by_case())
        assert cases["passed"].tolist() == [t.passed for t in run.trials]
        assert cases["failure_kinds"].tolist() == [t.score.failure_kinds for t in run.trials]
        turns = analysis.turns_table(run)
        assert len(turns) == sum(len(t.transcript.turns) for t in run.trials) == summarise(run.trials)["turns"]
        assert turns["n_calls"].sum() == sum(len(turn.tool_calls) for t in run.trials for turn in t.transcript.turns)
        calls = analysis.calls_frame(run)
        assert len(calls) == sum(len(s.calls) for t in run.trials for s in t.score.turns)
        failures = analysis.failures_frame(run)
        assert len(failures) == sum(len(t.score.failures) for t in run.trials)
    calls = analysis.calls_frame(broken)
    wrong = calls[(calls["expected_tool"] == "complete_task") & (calls["actual_tool"] == "delete_task")]
    assert not wrong.empty and set(wrong["outcome"]) == {"wrong_tool"}


def test_frames_of_an_empty_run_are_empty_with_columns(good: RunResult) -> None:
    empty = good.model_copy(update={"trials": []})
    assert analysis.cases_frame(empty).empty and "first_failure" in analysis.cases_frame(empty).columns
    assert analysis.calls_frame(empty).empty and analysis.failures_frame(empty).empty
    assert analysis.latency_frame({"e": empty}).empty and analysis.pass_hat_k_curve({"e": empty}).empty


# ---------------------------------------------------------------- summaries


def test_overview_reproduces_the_committed_baseline_metrics(committed: RunResult) -> None:
    table = analysis.overview({"baseline": committed})
    row = table.loc["baseline"]
    for key in analysis.OVERVIEW_METRICS:
        assert row[key] == pytest.approx(committed.metrics[key]), key
    assert row["cases"] == committed.metrics["cases"] == len(committed.by_case())
    assert row["prompt_version"] == committed.info.target["prompt_version"]


def test_tag_metrics_extend_evals_metrics_by_tag(committed: RunResult) -> None:
    table = analysis.tag_metrics(committed).set_index("tag")
    expected = by_tag(committed.trials).set_index("tag")
    pd.testing.assert_series_equal(table["pass_rate"], expected["pass_rate"])
    # Argument accuracy of one tag, by hand.
    trials = [t for t in committed.trials if "add" in t.tags]
    checked = sum(t.score.tallies.args_checked for t in trials)
    assert table.loc["add", "argument_accuracy"] == pytest.approx(
        round(sum(t.score.tallies.args_correct for t in trials) / checked, 4)
    )
    assert pd.isna(table.loc["no-tool", "argument_accuracy"])  # no argument checked there


def test_tag_comparison_puts_runs_side_by_side(good: RunResult, broken: RunResult) -> None:
    table = analysis.tag_comparison({"good": good, "broken": broken})
    assert list(table.columns) == ["good", "broken"]
    assert table.loc["complete", "good"] > table.loc["complete", "broken"]


def test_failure_breakdown_counts_trials_and_failures_for_every_reason(committed: RunResult) -> None:
    table = analysis.failure_breakdown({"baseline": committed}).set_index("kind")
    assert table["trials"].to_dict() == summarise(committed.trials)["failures_by_kind"]
    assert table["failures"].sum() == sum(len(t.score.failures) for t in committed.trials)
    assert (table["failures"] >= table["trials"]).all()
    share = round(table.loc["missing_call", "trials"] / len(committed.trials), 4)
    assert table.loc["missing_call", "share"] == pytest.approx(share)


def test_latency_frame_and_summary(committed: RunResult, good: RunResult) -> None:
    runs = {"baseline": committed, "good": good}
    frame = analysis.latency_frame(runs)
    assert len(frame[frame["run"] == "baseline"]) == committed.metrics["turns"]
    summary = analysis.latency_summary(runs)
    assert summary.loc[("baseline", "live"), "p50"] == pytest.approx(committed.metrics["latency_p50_ms"], abs=0.1)
    assert summary.loc[("baseline", "live"), "p95"] == pytest.approx(committed.metrics["latency_p95_ms"], abs=0.1)
    assert list(summary.index) == [("baseline", "live"), ("good", "live")]  # scripted answers are live too


def test_pass_hat_k_curve_follows_summarise(good: RunResult, broken: RunResult, committed: RunResult) -> None:
    curve = analysis.pass_hat_k_curve({"good": good, "broken": broken, "baseline": committed})
    assert curve.groupby("run")["k"].max().to_dict() == {"good": 2, "broken": 2, "baseline": 1}
    for label, run in (("good", good), ("broken", broken)):
        values = curve[curve["run"] == label].set_index("k")["pass_hat_k"]
        assert {str(k): v for k, v in values.items()} == summarise(run.trials)["pass_hat_k"]


# ---------------------------------------------------------------- two runs


def test_regressions_list_each_case_with_expected_and_actual_calls(good: RunResult, broken: RunResult) -> None:
    table = analysis.regressions(good, broken)
    assert set(table["case_id"]) == {c.case_id for c in compare(good, broken).regressions}
    assert "ref-complete-by-id" in set(table["case_id"])
    row = table[(table["case_id"] == "ref-complete-by-id") & table["turn"].notna()].iloc[0]
    assert row["expected_calls"].startswith("complete_task(task_id=")
    assert row["baseline_calls"].startswith("complete_task(")
    assert "delete_task(" in row["candidate_calls"]
    assert "[wrong_tool]" in row["candidate_failures"]
    # The unwanted delete also fails the final task list, shown as the end of the conversation.
    end = table[(table["case_id"] == "ref-complete-by-id") & table["turn"].isna()]
    assert "[state_mismatch]" in end.iloc[0]["candidate_failures"]


def test_no_regression_against_itself(committed: RunResult) -> None:
    assert analysis.regressions(committed, committed).empty
    passing = sum(t.passed for t in committed.trials)
    assert 0 < passing < len(committed.trials)  # the committed baseline has both, so both rows must show
    assert analysis.status_counts(compare(committed, committed)).to_dict() == {
        "still_passing": passing,
        "still_failing": len(committed.trials) - passing,
    }
    deltas = analysis.metric_deltas(compare(committed, committed))
    assert (deltas["delta"] == 0).all()


def test_expected_calls_come_from_the_score_and_its_failure_evidence() -> None:
    turn = TurnScore(
        index=0,
        passed=False,
        calls=[
            CallScore(outcome="skipped_optional", expected_index=0, expected_tool="list_tasks"),
            CallScore(outcome="missing", expected_index=1, expected_tool="delete_task"),
        ],
        failures=[
            Failure(
                kind="missing_call",
                turn=0,
                message="delete_task was not called",
                expected={"name": "delete_task", "arguments": {"task_id": "3"}},
            )
        ],
    )
    assert analysis.expected_calls(turn) == ["list_tasks()?", "delete_task(task_id=3)"]
    assert analysis.expected_calls(TurnScore(index=0, passed=True)) == ["(none)"]


# ---------------------------------------------------------------- two prompt versions


def test_prompt_case_table_compares_two_prompt_versions_case_by_case(good: RunResult, broken: RunResult) -> None:
    assert good.info.target["prompt_version"] != broken.info.target["prompt_version"]
    assert analysis.prompt_of(broken).startswith(str(broken.info.target["prompt_file"]))
    table = analysis.prompt_case_table(good, broken).set_index("case_id")
    statuses = {c.case_id: c.status for c in compare(good, broken).cases}
    assert table["status"].to_dict() == statuses
    assert table.loc["ref-complete-by-id", "change"] == "worse"
    assert table.loc["ref-complete-by-id", "b_failures"][:1] != []
    assert "delete_task(" in table.loc["ref-complete-by-id", "b_calls"]
    same = table[table["status"] == "still_passing"]
    assert (same["change"] == "same").all() and (same["a_pass_rate"] == 1.0).all()
    by_tag_change = analysis.prompt_change_by_tag(good, broken)
    assert by_tag_change.loc["complete", "delta"] < 0
    assert by_tag_change["delta"].is_monotonic_increasing


def test_the_default_candidate_is_the_newest_run_that_is_not_the_baseline(tmp_path: Path, committed: RunResult) -> None:
    """After `make eval-gate` the newest run is the baseline replayed from its own cache: comparing them says
    nothing, so the notebooks' default candidate is the newest run that is neither the baseline nor a replay of it."""
    baseline = tmp_path / "baseline.json"
    committed.save(baseline)
    live = committed.model_copy(update={"info": committed.info.model_copy(update={"run_id": "live-run"})})
    replay_info = committed.info.model_copy(update={"run_id": "replayed", "cache": {"mode": "replay-or-record",
                                                                                     "hits": 9, "misses": 0}})  # fmt: skip
    for i, (name, run) in enumerate([("live", live), ("gate", committed.model_copy(update={"info": replay_info}))]):
        run.save(tmp_path / "out" / name / "results.json")
        os.utime(tmp_path / "out" / name / "results.json", (1_000 + i, 1_000 + i))
    assert analysis.newest_results(tmp_path / "out") == tmp_path / "out" / "gate" / "results.json"
    assert analysis.newest_results(tmp_path / "out", unlike=baseline) == tmp_path / "out" / "live" / "results.json"
