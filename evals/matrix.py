"""Runs side by side: prompt drafts × models, or any saved runs. The first run is the reference; every other is
compared with it case by case (`evals.compare`), so a cell says whether the case passes there and whether it
regressed, was fixed or flipped against the reference. The CLI's `eval matrix` and the playground's runs view both
render these frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from evals.analysis import tag_comparison
from evals.compare import CaseStatus, compare
from evals.results import RunResult, TrialResult
from evals.runner import first_error

CHANGES: dict[CaseStatus, str] = {"regression": "regressed", "fixed": "fixed", "flaky": "flips"}


@dataclass(frozen=True)
class Cell:
    """One prompt × model of a matrix: its label and what it runs."""

    label: str
    prompt: str | None
    model: str | None


def cells(prompts: list[str], models: list[str]) -> list[Cell]:
    """Every prompt with every model (none given: the configured one), labelled `prompt × model`."""
    chosen_prompts: list[str | None] = list(prompts) or [None]
    chosen_models: list[str | None] = list(models) or [None]
    return [
        Cell(f"{_name(prompt, 'default prompt')} × {model or 'default model'}", prompt, model)
        for prompt in chosen_prompts
        for model in chosen_models
    ]


def _name(path: str | None, default: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".md") if path else default


def _outcome(trials: list[TrialResult] | None) -> str:
    if not trials:
        return "–"
    passed = sum(t.passed for t in trials)
    if all(t.score.errored for t in trials):
        return "error"
    mark = "pass" if passed == len(trials) else "fail" if passed == 0 else "flaky"
    return mark if len(trials) == 1 else f"{mark} {passed}/{len(trials)}"


def case_matrix(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """A row per case (in the reference run's order, then any others), a column per run: pass / fail / flaky /
    error, and against the reference `regressed`, `fixed` or `flips` where it changed."""
    labels = list(runs)
    if not labels:
        return pd.DataFrame(columns=["case", "tags"])
    reference = runs[labels[0]]
    statuses = {label: {c.case_id: c.status for c in compare(reference, run).cases} for label, run in runs.items()}
    grouped = {label: run.by_case() for label, run in runs.items()}
    order = list(dict.fromkeys(case for label in labels for case in grouped[label]))
    rows = []
    for case_id in order:
        tags = next(trials[0].tags for by_case in grouped.values() if (trials := by_case.get(case_id)))
        row: dict[str, str] = {"case": case_id, "tags": ", ".join(tags)}
        for index, label in enumerate(labels):
            cell = _outcome(grouped[label].get(case_id))
            change = CHANGES.get(statuses[label].get(case_id, "not_run")) if index else None
            row[label] = f"{cell} ({change})" if change else cell
        rows.append(row)
    return pd.DataFrame(rows, columns=["case", "tags", *labels])


def tag_matrix(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """Pass rate per tag, a column per run (the reports' and notebooks' `tag_comparison`)."""
    return tag_comparison(runs)


def changes(runs: Mapping[str, RunResult]) -> dict[str, dict[str, list[str]]]:
    """Per run after the reference: the cases that regressed, were fixed or flip against it."""
    labels = list(runs)
    found: dict[str, dict[str, list[str]]] = {}
    for label in labels[1:]:
        comparison = compare(runs[labels[0]], runs[label])
        found[label] = {name: [c.case_id for c in comparison.with_status(status)] for status, name in CHANGES.items()}
    return found


def _table(frame: pd.DataFrame) -> list[str]:
    def text(value: object) -> str:
        if isinstance(value, float):
            return "–" if pd.isna(value) else f"{value:.2f}"
        return str(value).replace("|", "\\|")

    header = [text(c) for c in frame.columns]
    rows = [[text(v) for v in row] for row in frame.itertuples(index=False)]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def render_matrix_markdown(runs: Mapping[str, RunResult]) -> str:
    """The comparison report of a matrix: each run's headline, what changed against the reference, per tag and per
    case."""
    labels = list(runs)
    lines = ["# Eval matrix", ""]
    if not labels:
        return "\n".join([*lines, "No runs."]) + "\n"
    lines += [f"Reference: **{labels[0]}**. Every other run is compared with it case by case.", ""]
    lines += ["| run | run id | model | prompt | cases passing | pass rate | status |", "|---|---|---|---|---|---|---|"]
    for label, run in runs.items():
        m, target = run.metrics, run.info.target
        lines.append(
            f"| {label} | {run.info.run_id} | {target.get('model')} | {target.get('prompt_version')} | "
            f"{m.get('cases_passing_all_trials')}/{m.get('cases')} | {m.get('case_pass_rate')} | {run.info.status} |"
        )
    for label, found in changes(runs).items():
        lines += ["", f"## {label} against {labels[0]}", ""]
        for name, cases in found.items():
            lines.append(f"- {name} ({len(cases)}): {', '.join(cases) if cases else '—'}")
    lines += ["", "## Pass rate per tag", "", *_table(tag_matrix(runs).reset_index(names="tag")), ""]
    lines += ["## Per case", "", *_table(case_matrix(runs)), ""]
    errors = [
        f"- {label}: {t.case_id} (trial {t.trial}): {first_error(t.score)}"
        for label, run in runs.items()
        for t in run.trials
        if t.score.errored
    ]
    if errors:
        lines += ["## Errors (never regressions)", "", *errors, ""]
    return "\n".join(lines)
