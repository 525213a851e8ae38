"""Runs tab handlers: the saved runs (`evals.runs`, the files the CLI and the notebooks read), reopened, deleted, and
any of them side by side (`evals.matrix`) with the case drill-down of the Evals tab for any cell; and the live
progress of a run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from evals.compare import compare
from evals.matrix import changes
from evals.plots import tag_figure
from evals.results import RunResult
from evals.runner import TrialOutcome
from evals.runs import UnknownRun
from playground.context import PlaygroundContext
from playground.eval_handlers import case_detail_html, load_baseline
from playground.session import PlaygroundSession

RUN_COLUMNS = ["run", "started", "label", "model", "prompt", "cases passing", "status", "tags"]


def runs_frame(ctx: PlaygroundContext) -> pd.DataFrame:
    rows = [
        [
            run.run_id,
            run.started_at.replace("T", " ")[:19],
            run.label or "",
            run.model or "?",
            run.prompt_version or "?",
            f"{run.passing}/{run.cases}" if run.cases is not None else "?",
            run.status,
            ", ".join(run.tags) or "all",
        ]
        for run in ctx.runs.list()
    ]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def run_choices(ctx: PlaygroundContext) -> list[tuple[str, str]]:
    """(what the run was, its id) for the picker: an id alone says nothing about the run."""
    return [(f"{run.label or run.model or '?'} · {run.run_id}", run.run_id) for run in ctx.runs.list()]


def _load(ctx: PlaygroundContext, run_id: str) -> RunResult:
    try:
        return ctx.runs.load(run_id)
    except (UnknownRun, ValueError) as exc:
        raise ValueError(str(exc)) from exc


def reopen(ctx: PlaygroundContext, session: PlaygroundSession, run_id: str) -> PlaygroundSession:
    """Make a saved run the session's current run, compared with the baseline, as if it had just finished."""
    result = _load(ctx, run_id)
    baseline = load_baseline(ctx)
    session.candidate = result
    session.comparison = compare(baseline, result) if baseline is not None else None
    session.prompt_file = result.info.target.get("prompt_file")
    return session


def delete(ctx: PlaygroundContext, run_id: str) -> str:
    try:
        ctx.runs.delete(run_id)
    except UnknownRun as exc:
        raise ValueError(str(exc)) from exc
    return f"Deleted run `{run_id}`."


def _label(run: RunResult) -> str:
    target = run.info.target
    name = run.info.label or f"{target.get('model', '?')} · prompt {target.get('prompt_version', '?')}"
    return f"{name} [{run.info.run_id}]"


def side_by_side(ctx: PlaygroundContext, chosen: list[str]) -> dict[str, RunResult]:
    """The chosen runs in the order picked, labelled by what they ran; the first is the reference."""
    return {_label(run): run for run in (_load(ctx, run_id) for run_id in chosen)}


def matrix_summary(runs: dict[str, RunResult]) -> str:
    if len(runs) < 2:
        return "Pick two or more runs: the first is the reference, every other is compared with it."
    labels = list(runs)
    lines = [f"Reference: **{labels[0]}**"]
    for label, found in changes(runs).items():
        counts = ", ".join(f"{len(cases)} {name}" for name, cases in found.items())
        m = runs[label].metrics
        lines.append(f"- **{label}**: {m.get('cases_passing_all_trials')}/{m.get('cases')} pass; {counts}")
    return "\n".join(lines)


def matrix_figure(runs: dict[str, RunResult]) -> Figure:
    return tag_figure(runs, empty="pick runs to compare", height=4)


def cell_detail_html(ctx: PlaygroundContext, chosen: list[str], case_id: str | None, run_id: str | None) -> str:
    """One cell of the matrix: the case in `run_id` beside the reference run (the first chosen), as the Evals tab
    shows a candidate beside the baseline."""
    if not chosen or not case_id or not run_id:
        return "<p>Pick a case and a run.</p>"
    reference, run = _load(ctx, chosen[0]), _load(ctx, run_id)
    view = PlaygroundSession(candidate=run, comparison=compare(reference, run) if run_id != chosen[0] else None)
    return case_detail_html(ctx, view, case_id)


# ---------------------------------------------------------------- live progress


@dataclass
class RunProgress:
    """What the progress panel shows while a run goes: counts so far, the cases running, elapsed and an estimate."""

    total: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0
    running: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    stopping: bool = False
    finished: bool = False

    @property
    def done(self) -> int:
        return self.passed + self.failed + self.errored

    def begin(self, case_id: str) -> None:
        self.running.append(case_id)

    def result(self, outcome: TrialOutcome) -> None:
        if outcome.case.id in self.running:
            self.running.remove(outcome.case.id)
        score = outcome.score
        if score.errored:
            self.errored += 1
        elif score.passed:
            self.passed += 1
        else:
            self.failed += 1

    def markdown(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self.started
        if not self.total:
            return f"Starting the run (the model server, the app) · {elapsed:.0f} s"
        parts = [
            f"**{self.done}/{self.total} trials** · ✓ {self.passed} passed · ✗ {self.failed} failed"
            + (f" · ! {self.errored} errored" if self.errored else ""),
            f"{elapsed:.0f} s elapsed",
        ]
        if self.finished:
            return " · ".join(parts) + (" · **cancelled**" if self.stopping else " · done")
        if self.done:
            left = elapsed / self.done * (self.total - self.done)
            parts.append(f"about {left:.0f} s left")
        if self.running:
            parts.append("running " + ", ".join(f"`{c}`" for c in self.running[:3]))
        if self.stopping:
            parts.append("stopping…")
        return " · ".join(parts)
