"""Runs are artifacts: saved under RUNS_DIR by every run, listed, reopened and deleted by id; a run stopped midway is
kept, marked cancelled, and no gate or promotion trusts it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from backend.settings import get_settings
from evals.compare import ExitCode, compare, gate
from evals.results import RunResult
from evals.runner import TrialOutcome
from evals.runs import RunStore, UnknownRun
from evals.scripted_model import Reply, last_user_text
from evals.suite import EvalConfig, run_evals
from tests.conftest import Hold, reached
from todo_agent.cli import app

SMOKE_IDS = ["ref-complete-by-id", "chat-hello", "add-with-description"]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BETTER_AUTH_SECRET", "x" * 48)
    monkeypatch.delenv("RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["eval", *args])
    return result.exit_code, result.output


def _config(**overrides: Any) -> EvalConfig:
    return EvalConfig(**{"model": "scripted", "ids": SMOKE_IDS, "deepeval": False, **overrides})


def test_a_cli_run_is_saved_listed_compared_by_id_and_deleted(tmp_path: Path) -> None:
    code, output = invoke("run", "--model", "scripted", "--ids", ",".join(SMOKE_IDS), "--quiet", "--no-deepeval")
    assert code == ExitCode.OK, output
    store = RunStore(tmp_path / "data" / "runs")
    (saved,) = store.list()
    assert saved.status == "complete" and saved.cases == len(SMOKE_IDS) and saved.model == "scripted"
    result = store.load(saved.run_id)
    assert result.info.prompt_text and "{tasks}" in result.info.prompt_text  # the prompt itself, not only its hash
    assert {p.name for p in saved.path.parent.iterdir()} >= {"results.json", "summary.json", "report.md"}

    code, output = invoke("runs")
    assert code == 0 and saved.run_id in output and f"{len(SMOKE_IDS)}/{len(SMOKE_IDS)}" in output
    code, output = invoke("compare", saved.run_id, saved.run_id, "--short")
    assert code == ExitCode.OK, output

    code, output = invoke("runs", "--delete", saved.run_id)
    assert code == 0 and store.list() == []


@pytest.mark.parametrize("bad", ["../data", "..", "/etc", "a/b", ""])
def test_a_run_id_that_is_a_path_is_refused(tmp_path: Path, bad: str) -> None:
    store = RunStore(tmp_path / "runs")
    (tmp_path / "data").mkdir()
    with pytest.raises(UnknownRun):
        store.delete(bad)
    assert (tmp_path / "data").is_dir()
    code, _ = invoke("runs", "--delete", bad or "x")
    assert code == ExitCode.USAGE


async def test_stopping_a_run_cancels_the_trial_in_flight_and_keeps_the_finished_ones() -> None:
    hold, stop, others_done = Hold(), asyncio.Event(), asyncio.Event()
    held_case = "chat-how-are-you"

    def respond(request: dict[str, Any]) -> Reply:
        # One case's model call is held open for good: only stopping the run can end it.
        return Reply(text="never", wait=hold) if "how are you" in last_user_text(request).lower() else Reply(text="Hi!")

    began: list[str] = []
    finished: list[str] = []

    def on_result(outcome: TrialOutcome) -> None:
        finished.append(outcome.case.id)
        if len(finished) == 2:
            others_done.set()

    config = _config(responder=respond, concurrency=2, ids=["chat-hello", "chat-thanks", held_case])
    running = asyncio.create_task(
        run_evals(config, on_begin=lambda case, _trial: began.append(case.id), on_result=on_result, stop=stop)
    )
    await reached(hold.entered)
    await reached(others_done)
    stop.set()
    result = await asyncio.wait_for(running, timeout=60)  # bounded so a regression fails instead of hanging
    assert result.info.status == "cancelled"
    assert sorted(t.case_id for t in result.trials) == ["chat-hello", "chat-thanks"]
    assert held_case in began  # it was running, and was cancelled mid-call
    assert result.incomplete() is not None
    verdict = gate(result, None, min_pass=None)
    assert verdict.exit_code == ExitCode.RUN_FAILED and "cancelled" in verdict.reasons[0]
    assert gate(result, compare(result, result), min_pass=None).exit_code == ExitCode.RUN_FAILED


async def test_a_run_left_alone_is_complete_and_a_partial_one_is_refused_by_the_gate() -> None:
    result = await run_evals(_config(), stop=asyncio.Event())
    assert result.info.status == "complete" and result.incomplete() is None
    assert gate(result, None, min_pass=None).exit_code == ExitCode.OK
    partial = result.model_copy(update={"trials": result.trials[:1]})
    assert "partial" in (partial.incomplete() or "")
    assert gate(partial, None, min_pass=None).exit_code == ExitCode.RUN_FAILED


async def test_the_baseline_command_refuses_a_cancelled_run(tmp_path: Path) -> None:
    result = await run_evals(_config())
    cancelled: RunResult = result.model_copy(update={"info": result.info.model_copy(update={"status": "cancelled"})})
    RunStore.default().save(cancelled)
    target = tmp_path / "baseline.json"
    code, output = invoke("baseline", "--from", cancelled.info.run_id, "--to", str(target))
    assert code == ExitCode.RUN_FAILED, output
    assert "cancelled" in output and not target.exists()


def test_a_matrix_of_two_prompts_saves_a_run_per_cell_and_one_comparison(tmp_path: Path) -> None:
    from backend.settings import DEFAULT_PROMPT_FILE

    draft_a, draft_b = tmp_path / "draft_a.md", tmp_path / "draft_b.md"
    text = DEFAULT_PROMPT_FILE.read_text(encoding="utf-8")
    draft_a.write_text(text, encoding="utf-8")
    draft_b.write_text(text.replace("{tasks}", "{tasks}\n- Be brief."), encoding="utf-8")
    out = tmp_path / "matrix"
    code, output = invoke("matrix", "--prompt", str(draft_a), "--prompt", str(draft_b), "--model", "scripted",
                          "--ids", ",".join(SMOKE_IDS), "--out", str(out))  # fmt: skip
    assert code == 0, output
    labels = ["draft_a × scripted", "draft_b × scripted"]
    report = (out / "matrix.md").read_text(encoding="utf-8")
    assert all(label in report for label in labels) and "## Per case" in report
    assert all(case in report for case in SMOKE_IDS)
    cells = [RunResult.load(out / f"cell-{n}" / "results.json") for n in (1, 2)]
    assert [c.info.label for c in cells] == labels
    assert cells[0].info.prompt_text != cells[1].info.prompt_text
    saved = {run.label for run in RunStore.default().list()}
    assert saved == set(labels)
    code, output = invoke("matrix", "--prompt", str(draft_a), "--model", "scripted")
    assert code == ExitCode.USAGE  # one cell is no comparison


async def test_the_case_matrix_names_what_regressed_fixed_and_flips_against_the_reference() -> None:
    from evals.matrix import case_matrix, changes

    reference = await run_evals(_config())
    broken = reference.model_copy(deep=True)
    trial = next(t for t in broken.trials if t.case_id == "chat-hello")
    trial.score.passed = False
    frame = case_matrix({"ref": reference, "draft": broken}).set_index("case")
    assert frame.loc["chat-hello", "ref"] == "pass"
    assert frame.loc["chat-hello", "draft"] == "fail (regressed)"
    assert frame.loc["ref-complete-by-id", "draft"] == "pass"
    assert changes({"ref": reference, "draft": broken})["draft"]["regressed"] == ["chat-hello"]
    assert changes({"ref": broken, "draft": reference})["draft"]["fixed"] == ["chat-hello"]
