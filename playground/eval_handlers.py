"""Eval tab handlers: run the suite (`evals.suite.run_evals`, the runner CI uses) with the session's prompt and
model, compare with the committed baseline (`evals.compare`), and render the table, the chart and a case's evidence.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # a server: figures are rendered to images, never to a window

import pandas as pd
from matplotlib.figure import Figure

from backend.prompts import load_prompt, prompt_version
from evals.analysis import tag_comparison
from evals.compare import CaseComparison, compare
from evals.dataset import Case, DatasetError, ExpectedTask, TaskListExpectation, load_dataset
from evals.matchers import describe
from evals.plots import tag_figure
from evals.reports.markdown import call_text
from evals.results import RunResult, TrialResult
from evals.runner import TrialOutcome
from evals.suite import SCRIPTED_MODEL, EvalConfig, run_evals
from playground.context import PlaygroundContext
from playground.prompt_handlers import prompt_files, saved_file_for
from playground.session import PlaygroundSession

ResultsView = Literal["all", "failures", "regressions", "changed"]
RESULTS_VIEWS: dict[str, ResultsView] = {
    "All cases": "all",
    "Failures": "failures",
    "Regressions": "regressions",
    "Changed vs baseline": "changed",
}
log = logging.getLogger("todo_agent")
RESULT_COLUMNS = ["case", "tags", "result", "passed trials", "failure kinds", "baseline", "vs baseline"]
CHANGED = frozenset({"regression", "fixed", "flaky", "new"})


def available_tags(ctx: PlaygroundContext) -> list[str]:
    """The dataset's tags; none, said in one log line, when there is no dataset (a non-editable install carries
    none): the chat and prompt tabs still work."""
    try:
        return load_dataset(ctx.dataset).tags
    except DatasetError as exc:
        log.warning("playground evals off: %s", str(exc).splitlines()[0])
        return []


def tag_counts(ctx: PlaygroundContext) -> dict[str, int]:
    """Cases per tag (what a tag chip holds); empty without a dataset, as `available_tags`."""
    tags = available_tags(ctx)
    if not tags:
        return {}
    cases = load_dataset(ctx.dataset).cases
    return {tag: sum(tag in case.tags for case in cases) for tag in tags}


def load_baseline(ctx: PlaygroundContext) -> RunResult | None:
    return RunResult.load(ctx.baseline) if ctx.baseline.exists() else None


# ---------------------------------------------------------------- running


def prompt_file_for_run(ctx: PlaygroundContext, session: PlaygroundSession) -> Path:
    """The eval target reads its prompt from a file: a saved version when the text is one, else a scratch copy
    named by its hash (under data_dir, not in git)."""
    text = session.prompt_text or load_prompt(ctx.baseline_prompt_file)
    saved = saved_file_for(ctx, text)
    if saved is not None:
        return saved
    scratch = ctx.settings.data_dir / "playground" / f"prompt-{prompt_version(text)}.md"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    scratch.write_text(text, encoding="utf-8")
    return scratch


def eval_config(ctx: PlaygroundContext, session: PlaygroundSession, tags: list[str]) -> EvalConfig:
    settings = ctx.model_settings(session.model)
    return EvalConfig(
        dataset=ctx.dataset,
        tags=list(tags),
        prompt=prompt_file_for_run(ctx, session),
        settings=settings,
        concurrency=None,  # what the model answers at once (the local model's slots; 4 for a hosted one)
        turn_timeout=settings.model_timeout + 30,
        cache_mode="off",  # a prompt engineer wants what the model says now, not what it said last time
        deepeval=False,  # the gate's verdict is our scorer's; deepeval's summary only adds minutes here
        responder=ctx.eval_responder,
    )


async def run(
    ctx: PlaygroundContext,
    session: PlaygroundSession,
    tags: list[str],
    *,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[TrialOutcome], None] | None = None,
    on_begin: Callable[[Case, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> PlaygroundSession:
    """Run the evals with the session's prompt and model, save the run (RUNS_DIR: it outlives the page), and
    compare it with the baseline. Setting `stop` ends it at once, saved as cancelled."""
    config = eval_config(ctx, session, tags)
    result = await run_evals(
        config, on_start=on_start, on_result=on_result, on_begin=on_begin, stop=stop, label=session.prompt_name or None
    )
    ctx.runs.save(result)
    baseline = load_baseline(ctx)
    session.candidate = result
    session.prompt_file = str(config.prompt)
    session.comparison = compare(baseline, result) if baseline is not None else None
    return session


# ---------------------------------------------------------------- the table


def _case_rows(session: PlaygroundSession) -> dict[str, CaseComparison | None]:
    assert session.candidate is not None
    rows: dict[str, CaseComparison | None] = dict.fromkeys(session.candidate.by_case())
    if session.comparison is not None:
        for item in session.comparison.cases:
            if item.case_id in rows:
                rows[item.case_id] = item
    return rows


def results_frame(session: PlaygroundSession, view: ResultsView = "all") -> pd.DataFrame:
    if session.candidate is None:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    by_case = session.candidate.by_case()
    rows = []
    for case_id, item in _case_rows(session).items():
        trials = by_case[case_id]
        passed = sum(t.passed for t in trials)
        status = item.status if item is not None else "no baseline"
        changed = item is not None and (item.status in CHANGED or item.definition_changed)
        if view == "failures" and passed == len(trials):
            continue
        if view == "regressions" and status != "regression":
            continue
        if view == "changed" and not changed:
            continue
        if item is None or not item.baseline_trials:
            baseline = "—"
        else:
            baseline = "pass" if item.baseline_passed == item.baseline_trials else "fail"
            baseline += f" {item.baseline_passed}/{item.baseline_trials}"
        kinds = sorted({kind for t in trials for kind in t.score.failure_kinds})
        rows.append(
            [
                case_id,
                ", ".join(trials[0].tags),
                "✓ pass" if passed == len(trials) else ("✗ fail" if passed == 0 else "~ flaky"),
                f"{passed}/{len(trials)}",
                ", ".join(kinds),
                baseline,
                status + (" (case edited)" if item is not None and item.definition_changed else ""),
            ]
        )
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def summary_markdown(session: PlaygroundSession) -> str:
    result = session.candidate
    if result is None:
        return "No run yet."
    m = result.metrics
    target = result.info.target
    line = (
        f"**{m.get('cases_passing_all_trials')}/{m.get('cases')} cases pass** · pass rate {m.get('case_pass_rate')}"
        f" · {result.info.wall_seconds} s · model `{target.get('model')}` · prompt `{target.get('prompt_version')}`"
    )
    comparison = session.comparison
    if comparison is None:
        return line + " · no baseline to compare with"
    return line + (
        f" · vs baseline: {len(comparison.regressions)} regression(s), {len(comparison.fixed)} newly passing, "
        f"{len(comparison.flaky)} flaky"
    )


# ---------------------------------------------------------------- the chart


def compared_runs(session: PlaygroundSession) -> dict[str, RunResult]:
    """The candidate and, on the same cases, the baseline: what the per-tag chart puts side by side."""
    if session.candidate is None:
        return {}
    runs: dict[str, RunResult] = {}
    if session.comparison is not None:
        ran = set(session.candidate.by_case())
        same_cases = [t for t in session.comparison.baseline.trials if t.case_id in ran]
        if same_cases:
            runs["baseline"] = session.comparison.baseline.model_copy(update={"trials": same_cases})
    runs["candidate"] = session.candidate
    return runs


def pass_rates(session: PlaygroundSession) -> pd.DataFrame:
    """Pass rate per tag, a column per run (`evals.analysis.tag_comparison`, as the notebooks and reports use)."""
    return tag_comparison(compared_runs(session))


def pass_rate_figure(session: PlaygroundSession) -> Figure:
    """The per-tag chart (`evals.plots`: a Figure of its own, no pyplot state in a long-running server)."""
    return tag_figure(compared_runs(session), empty="run the evals to see pass rates")


# ---------------------------------------------------------------- one case, side by side


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "<br>".join(html.escape(v) for v in value)
    return (
        "<pre style='margin:0;white-space:pre-wrap'>"
        + html.escape(json.dumps(value, indent=1, ensure_ascii=False, default=str))
        + "</pre>"
    )


def _expected_tasks(expectation: TaskListExpectation | None) -> Any:
    if expectation is None:
        return "(not checked)"
    if expectation == "unchanged":
        return "unchanged"
    return [_expected_task(e) for e in expectation]


def _expected_task(task: ExpectedTask) -> str:
    """One expected task as a person writes it: `title one of 'Buy milk', 'Milk' · completed True`."""
    parts = []
    for key in sorted(task.model_fields_set, key=list(type(task).model_fields).index):
        value = getattr(task, key)  # the matcher itself: a dump would show every unset field of it
        parts.append(f"{key} {describe(value) if key in ('title', 'description') else value!r}")
    return " · ".join(parts)


def _task_lines(tasks: list[dict[str, Any]] | None) -> Any:
    if tasks is None:
        return "(not read)"
    return [f"{t.get('id')}. {t.get('title')}{' ✓' if t.get('completed') else ''}" for t in tasks] or "(no tasks)"


def _actual_calls(trial: TrialResult | None, index: int) -> Any:
    if trial is None or index >= len(trial.transcript.turns):
        return "–"
    turn = trial.transcript.turns[index]
    return [
        call_text(c) + f" → {json.dumps(c.result, ensure_ascii=False, default=str)[:120]}" for c in turn.tool_calls
    ] or "no tool call"


def _reply(trial: TrialResult | None, index: int) -> str:
    if trial is None or index >= len(trial.transcript.turns):
        return "–"
    turn = trial.transcript.turns[index]
    return turn.error or turn.response or ""


def _tasks_after(trial: TrialResult | None, index: int) -> Any:
    if trial is None or index >= len(trial.transcript.turns):
        return "–"
    return _task_lines(trial.transcript.turns[index].tasks_after)


def _find_case(ctx: PlaygroundContext, case_id: str) -> Case | None:
    return next((c for c in load_dataset(ctx.dataset).cases if c.id == case_id), None)


def case_detail_html(ctx: PlaygroundContext, session: PlaygroundSession, case_id: str | None) -> str:
    """A case's transcript: expected calls and state next to what the candidate (and the baseline) did."""
    if session.candidate is None or not case_id:
        return "<p>Pick a case in the table.</p>"
    trials = session.candidate.by_case().get(case_id)
    case = _find_case(ctx, case_id)
    if not trials or case is None:
        return f"<p>No case {html.escape(case_id)} in this run.</p>"
    candidate = next((t for t in trials if not t.passed), trials[0])
    item = next((c for c in session.comparison.cases if c.case_id == case_id), None) if session.comparison else None
    baseline = item.baseline_evidence if item is not None else None
    columns = ["", "expected", "candidate"] + (["baseline"] if baseline is not None else [])
    verdict = "passed" if candidate.passed else "failed"
    parts = [
        f"<h3>{html.escape(case_id)} — {verdict} (trial {candidate.trial})</h3>",
        f"<p>{html.escape(case.description)} <i>[{html.escape(', '.join(case.tags))}]</i></p>",
        "<table style='width:100%;border-collapse:collapse' border='1' cellpadding='4'>",
        "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>",
    ]

    def row(label: str, *cells: Any) -> None:
        parts.append(
            f"<tr><th style='text-align:left'>{label}</th>"
            + "".join(f"<td>{_cell(c)}</td>" for c in cells[: len(columns) - 1])
            + "</tr>"
        )

    row("starting tasks", [f"{t.ref}: {t.title}{' ✓' if t.completed else ''}" for t in case.tasks] or "(none)",
        _task_lines(candidate.transcript.tasks_before), _task_lines(baseline.transcript.tasks_before) if baseline else "")  # fmt: skip
    for index, turn in enumerate(case.turns):
        user = candidate.transcript.turns[index].user if index < len(candidate.transcript.turns) else turn.user
        parts.append(f"<tr><td colspan='{len(columns)}'><b>turn {index + 1}</b> — user: {html.escape(user)}</td></tr>")
        expected_calls: Any = (
            "no tool call" if turn.no_tool_calls
            else [f"{c.tool}({', '.join(f'{k} {describe(v)}' for k, v in c.args.items())})" + (" (optional)" if c.optional else "") for c in turn.calls]
            or "(not checked)"
        )  # fmt: skip
        row("calls", expected_calls, _actual_calls(candidate, index), _actual_calls(baseline, index))
        reply = turn.reply.model_dump(exclude_defaults=True) if turn.reply is not None else "(not checked)"
        row("reply", reply, _reply(candidate, index), _reply(baseline, index))
        row(
            "tasks after",
            _expected_tasks(turn.tasks_after),
            _tasks_after(candidate, index),
            _tasks_after(baseline, index),
        )
    last = len(candidate.transcript.turns) - 1
    base_last = len(baseline.transcript.turns) - 1 if baseline else -1
    row(
        "final tasks",
        _expected_tasks(case.final_tasks),
        _tasks_after(candidate, last),
        _tasks_after(baseline, base_last),
    )
    parts.append("</table>")
    for heading, trial in (("Why it failed", candidate), ("Why the baseline failed", baseline)):
        if trial is None or not trial.score.failures:
            continue
        parts.append(f"<h4>{heading}</h4><ul>")
        for failure in trial.score.failures:
            where = "" if failure.turn is None else f" (turn {failure.turn + 1})"
            parts.append(f"<li><b>{failure.kind}</b>{where}: {html.escape(failure.message)}</li>")
        parts.append("</ul>")
    return "".join(parts)


def case_ids(session: PlaygroundSession) -> list[str]:
    return list(session.candidate.by_case()) if session.candidate is not None else []


# ---------------------------------------------------------------- promotion


def promote(ctx: PlaygroundContext, session: PlaygroundSession) -> str:
    """Write the session's run as the baseline file CI compares with; the lead then commits it deliberately.

    Refused for a subset of the suite (a baseline must cover every case, or later runs would have nothing to compare
    with) and for an unsaved prompt (the baseline would name a scratch file that is not in git).
    """
    result = session.candidate
    if result is None:
        raise ValueError("run the evals first")
    incomplete = result.incomplete()
    if incomplete is not None:
        raise ValueError(f"{incomplete}: only a whole run can become the baseline")
    everything = {c.id for c in load_dataset(ctx.dataset).cases}
    missing = everything - set(result.by_case())
    if missing:
        raise ValueError(
            f"this run covers {len(everything) - len(missing)} of {len(everything)} cases: run all tags to promote "
            "(a baseline must cover the whole suite)"
        )
    if session.prompt_file is None or Path(session.prompt_file) not in prompt_files(ctx).values():
        raise ValueError("save the prompt as a version first, so the baseline names a prompt file that is in git")
    if result.info.target.get("agent_model") == SCRIPTED_MODEL and ctx.baseline.name == "local.json":
        raise ValueError("a run of the scripted model cannot become the local model's baseline")
    previous = load_baseline(ctx)
    result.save(ctx.baseline)
    session.comparison = compare(result, result)
    note = ""
    if previous is not None:
        changes = compare(previous, result)
        note = (
            f" (vs the previous baseline: {len(changes.regressions)} newly failing, {len(changes.fixed)} newly passing)"
        )
    return f"Baseline written to `{ctx.baseline}`{note}; commit it deliberately."
