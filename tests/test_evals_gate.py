"""The gate never cries wolf: an error is retried and, if it persists, inconclusive (never a regression); a suspected
regression is confirmed by more trials; the concurrency fits the model; shards merge into what one run gives; and
CI reads a verdict line and a short summary."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from backend.settings import get_settings
from evals.cli import confirm_regressions
from evals.compare import ExitCode, compare, gate
from evals.config import HOSTED_CONCURRENCY, SCRIPTED_CONCURRENCY, target_capacity
from evals.dataset import load_dataset
from evals.reference_agent import reference_responder
from evals.results import RunResult
from evals.scripted_model import Reply, Responder, last_user_text
from evals.suite import MergeError, merge_runs, run_evals
from tests.conftest import make_settings
from tests.evals_support import delete_instead_of_complete, scripted_config
from todo_agent.cli import app

CASE = "ref-complete-by-id"  # expects complete_task: a reply without a call fails it
OTHERS = ["chat-hello", "ref-add-groceries"]


def first_message(case_id: str) -> str:
    """The words of the case's first user turn before its first `{ref}` (refs become ids only at run time)."""
    return load_dataset().select(ids=[case_id]).cases[0].turns[0].user.split("{")[0]


def faulty_for(
    case_id: str, fault: Reply, times: int | None = None, base: Responder = reference_responder
) -> Responder:
    """The reference agent, except that requests of `case_id`'s first turn get `fault` (the first `times` only)."""
    text = first_message(case_id)
    left = [times]

    def respond(request: dict[str, Any]) -> Reply:
        if text in last_user_text(request) and (left[0] is None or left[0] > 0):
            if left[0] is not None:
                left[0] -= 1
            return fault
        return base(request)

    return respond


ERROR = Reply(status=400)  # the backend answers 502 model_error (not retried by the client: one request a turn)


async def test_a_trial_that_errors_is_retried_and_the_retry_is_recorded(tmp_path: Path) -> None:
    result = await run_evals(scripted_config(tmp_path, faulty_for(CASE, ERROR, times=1), ids=[CASE]))
    (trial,) = result.trials
    assert trial.passed and not trial.score.errored
    assert len(trial.transcript.retried) == 1 and "502" in trial.transcript.retried[0]
    assert result.metrics["errored_trials"] == 0 and result.info.options["retries"] == 2


async def test_a_case_that_only_errors_is_inconclusive_not_a_regression(tmp_path: Path) -> None:
    ids = [CASE, *OTHERS]
    baseline = await run_evals(scripted_config(tmp_path / "b", ids=ids))
    candidate = await run_evals(scripted_config(tmp_path / "c", faulty_for(CASE, ERROR), ids=ids, retries=1))
    errored = next(t for t in candidate.trials if t.case_id == CASE)
    assert errored.score.errored and not errored.passed and len(errored.transcript.retried) == 1
    comparison = compare(baseline, candidate)
    assert [c.case_id for c in comparison.inconclusive] == [CASE] and not comparison.regressions
    verdict = gate(candidate, comparison, min_pass=None)
    assert verdict.exit_code == ExitCode.INCONCLUSIVE
    assert verdict.line == "GATE INCONCLUSIVE: 0 regressions, 0 flaky, 1 inconclusive, pass rate 1.000 (baseline 1.000)"


def test_a_flip_is_confirmed_as_flaky_and_a_real_regression_stays_one(tmp_path: Path) -> None:
    """A case that fails once and passes when run again is a flip: flaky, reported, not a regression. A case that
    fails every time it is run again is a regression."""
    ids = [CASE, *OTHERS]
    baseline = asyncio.run(run_evals(scripted_config(tmp_path / "b", ids=ids)))
    flip = scripted_config(tmp_path / "f", faulty_for(CASE, Reply(text="Done."), times=1), ids=ids)
    once = asyncio.run(run_evals(flip))
    assert [c.case_id for c in compare(baseline, once).regressions] == [CASE]  # what the gate saw before
    confirmed = confirm_regressions(flip, baseline, once, 2)
    assert [t.trial for t in confirmed.trials if t.case_id == CASE] == [1, 2, 3]
    comparison = compare(baseline, confirmed)
    assert not comparison.regressions and [c.case_id for c in comparison.flaky] == [CASE]
    assert gate(confirmed, comparison, min_pass=None).exit_code == ExitCode.OK
    broken = scripted_config(tmp_path / "r", delete_instead_of_complete(), ids=ids)
    still = confirm_regressions(broken, baseline, asyncio.run(run_evals(broken)), 2)
    assert [c.case_id for c in compare(baseline, still).regressions] == [CASE]
    assert sum(t.case_id == CASE for t in still.trials) == 3


async def test_the_default_concurrency_is_what_the_target_answers_at_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert target_capacity(settings.model_copy(update={"agent_model": "local", "local_model_slots": 3})) == 3
    assert target_capacity(settings, "local") == settings.local_model_slots
    assert target_capacity(settings, "gpt-4.1-mini") == HOSTED_CONCURRENCY
    result = await run_evals(scripted_config(tmp_path, ids=OTHERS, concurrency=None))
    assert result.info.options["concurrency"] == SCRIPTED_CONCURRENCY == target_capacity(settings, "scripted")


def _without_timings(result: RunResult) -> list[Any]:
    """Everything a run concluded, less what depends on the clock and on the users and ids it happened to get."""
    return [
        (
            t.case_id,
            t.trial,
            t.passed,
            t.score.model_dump(),
            [(r.user, r.status, r.response, [c.model_dump() for c in r.tool_calls]) for r in t.transcript.turns],
        )
        for t in result.trials
    ]


TIMED = ("latency", "wall", "replayed")


async def test_shards_merge_into_what_one_run_gives(tmp_path: Path) -> None:
    dataset = load_dataset()
    whole = await run_evals(scripted_config(tmp_path / "one"))
    shards = [await run_evals(scripted_config(tmp_path / f"s{i}", shard=(i, 3))) for i in (1, 2, 3)]
    assert sorted(c for s in shards for c in (t.case_id for t in s.trials)) == sorted(t.case_id for t in whole.trials)
    assert min(len(s.trials) for s in shards) >= len(dataset) // 3  # dealt evenly
    merged = merge_runs([shards[2], shards[0], shards[1]], dataset)
    assert _without_timings(merged) == _without_timings(whole)
    untimed = {k: v for k, v in whole.metrics.items() if not any(word in k for word in TIMED)}
    assert {k: merged.metrics[k] for k in untimed} == untimed
    assert merged.info.dataset["fingerprint"] == whole.info.dataset["fingerprint"]
    assert merged.info.dataset["cases"] == len(dataset)
    for wrong in ([shards[0], shards[1]], [shards[0], shards[0], shards[1], shards[2]], [whole]):
        with pytest.raises(MergeError):
            merge_runs(wrong, dataset)


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BETTER_AUTH_SECRET", "x" * 48)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    return CliRunner()


def test_the_verdict_line_closes_every_gate_and_the_summary_says_it_too(cli: CliRunner, tmp_path: Path) -> None:
    common = ["--model", "scripted", "--ids", "chat-hello", "--no-deepeval", "--quiet"]
    ok = cli.invoke(app, ["eval", "run", *common, "--out", "base", "--summary", "summary.md"])
    assert ok.exit_code == ExitCode.OK, ok.output
    assert ok.stdout.strip().splitlines()[-1] == "GATE PASSED: 0 regressions, 0 flaky, 0 inconclusive, pass rate 1.000"
    # Every turn times out (a deadline no turn can meet): errors, not behaviour; the gate cannot vouch for the case.
    timed_out = cli.invoke(app, ["eval", "run", *common, "--turn-timeout", "0.000001", "--retries", "1",
                                 "--baseline", "base/results.json", "--out", "late", "--summary", "summary.md"])  # fmt: skip
    assert timed_out.exit_code == ExitCode.INCONCLUSIVE, timed_out.output
    line = "GATE INCONCLUSIVE: 0 regressions, 0 flaky, 1 inconclusive, pass rate n/a (baseline 1.000)"
    assert timed_out.stdout.strip().splitlines()[-1] == line
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "### Eval gate: PASSED" in summary and f"`{line}`" in summary and "**Inconclusive (1)**" in summary
    short = cli.invoke(app, ["eval", "compare", "base/results.json", "late/results.json", "--short"])
    assert short.exit_code == ExitCode.INCONCLUSIVE and short.stdout.strip().splitlines()[-1] == line
    assert "## Failures" not in short.stdout and "| `chat-hello` |" in short.stdout


def test_shards_from_the_cli_merge_and_gate(cli: CliRunner) -> None:
    common = ["--model", "scripted", "--tags", "smoke", "--no-deepeval", "--quiet"]
    for i in (1, 2):
        result = cli.invoke(app, ["eval", "run", *common, "--shard", f"{i}/2", "--out", f"s{i}"])
        assert result.exit_code == ExitCode.OK, result.output
    whole = cli.invoke(app, ["eval", "run", *common, "--out", "whole"])
    merged = cli.invoke(app, ["eval", "merge", "s1/results.json", "s2/results.json", "--out", "m", "--quiet",
                              "--baseline", "whole/results.json"])  # fmt: skip
    assert merged.exit_code == ExitCode.OK, merged.output
    assert merged.stdout.strip().splitlines()[-1].startswith("GATE PASSED: 0 regressions")
    assert len(RunResult.load(Path("m/results.json")).trials) == len(RunResult.load(Path("whole/results.json")).trials)
    assert whole.exit_code == ExitCode.OK
    half = cli.invoke(app, ["eval", "merge", "s1/results.json", "--out", "h"])
    assert half.exit_code == ExitCode.DATASET_INVALID and "missing [2]" in half.output
    bad = cli.invoke(app, ["eval", "run", *common, "--shard", "3/2"])
    assert bad.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("command", [[], ["eval"], ["eval", "run"], ["eval", "compare"], ["eval", "merge"],
                                     ["eval", "baseline"], ["serve"], ["model"], ["token"], ["playground"]])  # fmt: skip
def test_help_reads_at_80_columns(cli: CliRunner, command: list[str]) -> None:
    result = cli.invoke(app, [*command, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    options = [line for line in lines if line.lstrip().startswith("--")]
    for noise in ("<bool>", "<str>", "<int>", "<float>", "<path>", "list[str]", "<int range>", "<float range>"):
        assert not [line for line in options if noise in line], noise
    assert "╭" not in result.output
