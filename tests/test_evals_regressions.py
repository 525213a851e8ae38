"""Issue 4's "Must hold": a planted regression fails the gate and names the broken cases; the unchanged agent rerun
against its own baseline passes (no false alarm). (b)-(d) plant faults in the scripted model; (a) removes the
lookup-by-title instruction from the prompt and runs the local model over the by-title cases."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from backend.settings import DEFAULT_PROMPT_FILE, get_settings
from evals.compare import ExitCode, compare, gate
from evals.config import CACHE_DIR
from evals.dataset import load_dataset
from evals.reports import render_junit, render_markdown
from evals.results import RunResult
from evals.runner import expected_model_calls
from evals.suite import EvalConfig, run_evals
from tests.evals_support import (
    delete_instead_of_complete,
    drop_description,
    extra_delete_after_correct_call,
    scripted_config,
)

COMMITTED_CACHE = CACHE_DIR / "qwen2.5-coder-1.5b-instruct.jsonl"


@pytest.fixture(scope="module")
async def baseline(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The unchanged reference agent over the whole suite."""
    return await run_evals(scripted_config(tmp_path_factory.mktemp("baseline")))


async def test_unchanged_agent_against_its_own_baseline_passes(baseline: RunResult, tmp_path: Path) -> None:
    rerun = await run_evals(scripted_config(tmp_path))
    comparison = compare(baseline, rerun)
    verdict = gate(rerun, comparison, min_pass=0.8)
    assert verdict.exit_code == ExitCode.OK, verdict.reasons
    assert not comparison.regressions and not comparison.flaky
    # Deterministic: the same trials pass and the same evidence is produced.
    assert [t.passed for t in rerun.trials] == [t.passed for t in baseline.trials]


@pytest.mark.parametrize(
    ("planted", "tags", "must_name"),
    [
        (
            delete_instead_of_complete,
            ["complete"],
            ["ref-complete-by-id", "complete-by-id-finished", "complete-by-title"],
        ),
        (extra_delete_after_correct_call, ["by-id"], ["ref-complete-by-id", "ref-update-title", "update-title-by-id"]),
        (drop_description, ["description"], ["add-with-description", "update-description-by-id"]),
    ],
    ids=["b-delete-instead-of-complete", "c-extra-delete", "d-drop-description"],
)
async def test_planted_regression_fails_the_gate_and_names_the_cases(
    baseline: RunResult, tmp_path: Path, planted: object, tags: list[str], must_name: list[str]
) -> None:
    candidate = await run_evals(scripted_config(tmp_path, planted(), tags=tags))  # type: ignore[operator]
    comparison = compare(baseline, candidate)
    verdict = gate(candidate, comparison, min_pass=None)
    assert verdict.exit_code == ExitCode.REGRESSION
    named = {c.case_id for c in comparison.regressions}
    for case_id in must_name:
        assert next(t for t in baseline.trials if t.case_id == case_id).passed, f"{case_id} must pass in the baseline"
        assert case_id in named, f"{case_id} not reported as a regression"
        assert case_id in verdict.reasons[0]
    report = render_markdown(candidate, comparison=comparison, gate=verdict)
    for case_id in must_name:
        assert f"#### `{case_id}`" in report  # evidence side by side, per regression
    assert "**FAILED** (exit 1)" in report and "GATE FAILED: " in report
    junit = render_junit(candidate, comparison=comparison)
    for case_id in must_name:
        assert re.search(rf'name="{re.escape(case_id)}"[^>]*>\s*<failure', junit)


def _by_title_config(cache: Path, prompt: Path | None = None, **settings_update: object) -> EvalConfig:
    settings = get_settings().model_copy(update=settings_update) if settings_update else None
    return EvalConfig(
        model="local", prompt=prompt, settings=settings, tags=["by-title"], concurrency=1, deepeval=False,
        cache_mode="replay-or-record", cache_file=cache, turn_timeout=300,
    )  # fmt: skip


def _committed_cache_copy(tmp_path: Path) -> Path:
    cache = tmp_path / "cache.jsonl"
    if COMMITTED_CACHE.exists():
        shutil.copyfile(COMMITTED_CACHE, cache)  # a test never writes the committed file
    return cache


@pytest.mark.llm
async def test_a_prompt_without_the_lookup_instruction_regresses_by_title_cases_on_the_local_model(
    tmp_path: Path,
) -> None:
    """(a) remove the rule on acting on a task named by its title from the prompt (it lives in
    the prompt's turn context, next to the task list it refers to); by-title cases must regress, and only those.
    The baseline side replays the committed cache (unchanged prompt); the candidate runs live."""
    text = DEFAULT_PROMPT_FILE.read_text(encoding="utf-8")
    rule = next(line for line in text.splitlines() if "by its title" in line)
    without = tmp_path / "system_no_lookup.md"
    without.write_text(text.replace(rule + "\n", ""), encoding="utf-8")
    assert rule not in without.read_text(encoding="utf-8")
    assert "{tasks}" in without.read_text(encoding="utf-8")  # the task list itself is still shown: only the rule went
    cache = _committed_cache_copy(tmp_path)
    base = await run_evals(_by_title_config(cache))
    assert (base.info.cache or {}).get("misses") == 0, "the committed cache must cover the unchanged prompt"
    candidate = await run_evals(_by_title_config(cache, without))
    comparison = compare(base, candidate)
    verdict = gate(candidate, comparison, min_pass=None)
    report = render_markdown(candidate, comparison=comparison, gate=verdict)
    assert verdict.exit_code == ExitCode.REGRESSION, report
    assert comparison.regressions and all("by-title" in c.tags for c in comparison.regressions)
    for item in comparison.regressions:
        assert f"#### `{item.case_id}`" in report and item.case_id in verdict.reasons[0]


@pytest.mark.llm
async def test_losing_the_task_lookup_regresses_by_title_cases_on_the_local_model(tmp_path: Path) -> None:
    """(a), the other half of the lookup: without the task list in the turn context (TASK_CONTEXT_LIMIT=0) the local
    model acts on guessed ids, and the gate must fail naming the by-title cases."""
    cache = _committed_cache_copy(tmp_path)
    base = await run_evals(_by_title_config(cache))
    candidate = await run_evals(_by_title_config(tmp_path / "live.jsonl", task_context_limit=0))
    comparison = compare(base, candidate)
    verdict = gate(candidate, comparison, min_pass=None)
    report = render_markdown(candidate, comparison=comparison, gate=verdict)
    assert verdict.exit_code == ExitCode.REGRESSION, report
    assert comparison.regressions and all("by-title" in c.tags for c in comparison.regressions)
    for item in comparison.regressions:
        assert f"#### `{item.case_id}`" in report and item.case_id in verdict.reasons[0]


def test_the_scheduling_estimate_is_the_reference_agents_model_calls(baseline: RunResult) -> None:
    """Longest-first scheduling packs a suite only as well as it guesses each case's length."""
    cases = {c.id: c for c in load_dataset().cases}
    exact = [
        t.case_id
        for t in baseline.trials
        if expected_model_calls(cases[t.case_id]) == sum(turn.model_calls or 0 for turn in t.transcript.turns)
    ]
    assert len(exact) >= 0.9 * len(baseline.trials)
