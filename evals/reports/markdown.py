"""The Markdown summary: metrics, per-tag table, failures with evidence, and the comparison with a baseline."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from evals.compare import CaseComparison, Comparison, GateResult
from evals.metrics import by_tag
from evals.results import RunResult, TrialResult
from evals.scoring import FAILURE_KINDS

METRIC_LABELS = {
    "case_pass_rate": "case pass rate",
    "tool_name_accuracy": "tool-name accuracy",
    "argument_accuracy": "argument accuracy",
    "state_accuracy": "state accuracy",
    "latency_p50_ms": "turn latency p50, model live (ms)",
    "latency_p95_ms": "turn latency p95, model live (ms)",
    "replayed_latency_p50_ms": "turn latency p50, model replayed from the cache (ms)",
    "errored_trials": "errored trials (timeouts, 5xx; retries included)",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "model_calls": "model calls",
    "cache_misses": "cache misses",
}


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value < 10 else f"{value:,.1f}"
    return str(value)


def short_json(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_text(call: Any) -> str:
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (call.arguments or {}).items())
    return f"{call.name}({args})"


def headline(result: RunResult) -> str:
    info, m = result.info, result.metrics
    target = info.target
    cache = info.cache or {}
    parts = [
        f"target {target.get('kind')}" + (f" {target.get('url')}" if target.get("url") else ""),
        f"model `{target.get('model')}`",
        f"prompt `{target.get('prompt_file')}` ({target.get('prompt_version')})",
        f"{m.get('cases', 0)} cases × {m.get('trials_per_case', 0)} trial(s)",
    ]
    if info.wall_seconds is not None:
        parts.append(f"wall {info.wall_seconds:.1f} s")
    if cache.get("mode") and cache.get("mode") != "off":
        parts.append(f"cache {cache['mode']}: {cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses")
    return " · ".join(parts)


def metrics_table(result: RunResult, baseline: RunResult | None = None) -> list[str]:
    m = result.metrics
    head = "| metric | value |" + (" baseline |" if baseline else "")
    lines = [head, "|---|---|" + ("---|" if baseline else "")]
    rows: list[tuple[str, Any, Any]] = [
        (
            "cases passed (all trials)",
            f"{m.get('cases_passing_all_trials')}/{m.get('cases')}",
            f"{baseline.metrics.get('cases_passing_all_trials')}/{baseline.metrics.get('cases')}" if baseline else None,
        ),
    ]
    for key, label in METRIC_LABELS.items():
        rows.append((label, m.get(key), baseline.metrics.get(key) if baseline else None))
    for k, v in (m.get("pass_hat_k") or {}).items():
        rows.append((f"pass^{k}", v, (baseline.metrics.get("pass_hat_k") or {}).get(k) if baseline else None))
    if result.deepeval:
        rows.append(
            (
                "deepeval ToolCorrectness (strict) mean",
                result.deepeval.get("tool_correctness_strict_mean"),
                (baseline.deepeval or {}).get("tool_correctness_strict_mean") if baseline else None,
            )
        )
    for label, value, base in rows:
        lines.append(f"| {label} | {fmt(value)} |" + (f" {fmt(base)} |" if baseline else ""))
    return lines


def tag_table(result: RunResult) -> list[str]:
    table = by_tag(result.trials)
    kinds = [k for k in FAILURE_KINDS if k in table.columns and table[k].sum() > 0]
    lines = ["| tag | cases | pass rate |" + "".join(f" {k} |" for k in kinds),
             "|---|---|---|" + "---|" * len(kinds)]  # fmt: skip
    for row in table.itertuples(index=False):
        values = row._asdict()
        lines.append(
            f"| {values['tag']} | {values['cases']} | {fmt(values['pass_rate'])} |"
            + "".join(f" {int(values[k]) or ''} |" for k in kinds)
        )
    return lines


def task_lines(tasks: list[dict[str, Any]]) -> list[str]:
    """A task list as a person reads it: `#3 Buy milk (done) — from the corner shop`."""
    return [
        f"#{t.get('id')} {t.get('title')}" + (" (done)" if t.get("completed") else "")
        + (f" — {t['description']}" if t.get("description") else "")
        for t in tasks
    ]  # fmt: skip


def trial_evidence(trial: TrialResult) -> list[str]:
    lines = []
    if trial.transcript.tasks_before:
        lines.append(f"  - tasks before: {'; '.join(task_lines(trial.transcript.tasks_before))}")
    for turn in trial.transcript.turns:
        calls = "; ".join(call_text(c) for c in turn.tool_calls) or "no calls"
        lines.append(f"  - turn {turn.index + 1}: user: {turn.user!r}")
        lines.append(f"    - calls: `{calls}`")
        if turn.error:
            lines.append(f"    - error: {turn.error}")
        else:
            lines.append(f"    - reply: {short_json(turn.response or '', 200)}")
    for failure in trial.score.failures:
        where = "" if failure.turn is None else f" (turn {failure.turn + 1})"
        lines.append(f"  - **{failure.kind}**{where}: {failure.message}")
    return lines


def failures_section(result: RunResult, limit: int = 50) -> list[str]:
    failing = [t for t in result.trials if not t.passed]
    lines = [f"## Failures ({len(failing)} trial(s))", ""]
    if not failing:
        return [*lines, "None.", ""]
    for trial in failing[:limit]:
        suffix = f" (trial {trial.trial})" if result.metrics.get("trials_per_case", 1) > 1 else ""
        lines.append(f"- `{trial.case_id}`{suffix} [{', '.join(trial.tags)}]")
        lines += trial_evidence(trial)
    if len(failing) > limit:
        lines.append(f"- … and {len(failing) - limit} more (see the HTML report or the results file)")
    return [*lines, ""]


def side_by_side(item: CaseComparison) -> list[str]:
    base, cand = item.baseline_evidence, item.candidate_evidence
    lines = ["| | baseline | candidate |", "|---|---|---|"]
    turns = max(len(base.transcript.turns) if base else 0, len(cand.transcript.turns) if cand else 0)

    def cell(trial: TrialResult | None, index: int, what: str) -> str:
        if trial is None or index >= len(trial.transcript.turns):
            return "–"
        turn = trial.transcript.turns[index]
        if what == "calls":
            return "<br>".join(f"`{call_text(c)}`" for c in turn.tool_calls) or "no calls"
        return (turn.error or short_json(turn.response or "", 120)).replace("|", "\\|")

    for index in range(turns):
        user = (cand or base).transcript.turns[index].user if (cand or base) else ""  # type: ignore[union-attr]
        lines.append(f"| turn {index + 1} | {user!r} | |")
        lines.append(f"| calls | {cell(base, index, 'calls')} | {cell(cand, index, 'calls')} |")
        lines.append(f"| reply | {cell(base, index, 'reply')} | {cell(cand, index, 'reply')} |")
    failures = "<br>".join(f"{f.kind}: {f.message}".replace("|", "\\|") for f in cand.score.failures) if cand else ""
    lines.append(f"| failures | {'none' if base and base.passed else '…'} | {failures or 'none'} |")
    return lines


def comparison_section(comparison: Comparison) -> list[str]:
    b = comparison.baseline.info
    lines = [
        "## Compared with the baseline",
        "",
        f"Baseline `{b.run_id}`: {headline(comparison.baseline)}",
        "",
    ]
    regressions = comparison.regressions
    lines.append(f"### Regressions ({len(regressions)})")
    lines.append("")
    if not regressions:
        lines.append("None.")
    for item in regressions:
        changed = " (case definition changed since the baseline)" if item.definition_changed else ""
        lines.append(f"#### `{item.case_id}`{changed}")
        lines.append("")
        lines += side_by_side(item)
        lines.append("")
    for title, items in (("Newly passing", comparison.fixed), ("Flaky (reported, not failed)", comparison.flaky),
                         ("Inconclusive (every trial errored: neither passed nor failed)", comparison.inconclusive),
                         ("New cases", comparison.with_status("new"))):  # fmt: skip
        lines.append("")
        lines.append(f"### {title} ({len(items)})")
        lines.append("")
        for item in items:
            lines.append(
                f"- `{item.case_id}`: baseline {item.baseline_passed}/{item.baseline_trials}, "
                f"candidate {item.candidate_passed}/{item.candidate_trials}"
            )
        if not items:
            lines.append("None.")
    not_run = comparison.with_status("not_run")
    if not_run:
        lines += ["", f"{len(not_run)} baseline case(s) were not part of this run."]
    return [*lines, ""]


def render_markdown(result: RunResult, *, comparison: Comparison | None = None, gate: GateResult | None = None) -> str:
    lines = [f"# Eval run `{result.info.run_id}`", "", headline(result), ""]
    lines += ["## Metrics", ""]
    lines += metrics_table(result, comparison.baseline_same_cases if comparison else None)
    lines += ["", "## By tag", ""]
    lines += tag_table(result)
    lines.append("")
    if comparison is not None:
        lines += comparison_section(comparison)
    lines += failures_section(result)
    if gate is not None:
        lines += ["## Gate", "", f"**{gate.verdict}** (exit {int(gate.exit_code)}): `{gate.line}`", ""]
        lines += [f"- {reason}" for reason in gate.reasons]
        lines.append("")
    return "\n".join(lines)


def _case_lines(items: list[CaseComparison], why: Callable[[CaseComparison], str]) -> list[str]:
    return [f"| `{item.case_id}` | {why(item)} |" for item in items]


def _first_failure(item: CaseComparison) -> str:
    trial = item.candidate_evidence
    if trial is None or not trial.score.failures:
        return ""
    failure = trial.score.failures[0]
    where = "" if failure.turn is None else f"turn {failure.turn + 1}: "
    return f"{where}{failure.kind}: {failure.message}".replace("|", "\\|").replace("\n", " ")[:200]


def render_summary(result: RunResult, *, comparison: Comparison | None = None, gate: GateResult | None = None) -> str:
    """The short verdict a CI step summary or a pull-request comment shows: the gate line, the headline figures,
    and the cases that decided it (regressions, inconclusive, flaky); the full report has the evidence."""
    lines = [f"### Eval gate: {gate.verdict if gate else 'no gate'}", ""]
    if gate is not None:
        lines += [f"`{gate.line}`", ""]
    lines += [headline(result), ""]
    m, b = result.metrics, comparison.baseline_same_cases.metrics if comparison else None
    lines += ["| | this run |" + (" baseline |" if b else ""), "|---|---|" + ("---|" if b else "")]
    for key in ("case_pass_rate", "tool_name_accuracy", "argument_accuracy", "state_accuracy", "errored_trials",
                "latency_p50_ms"):  # fmt: skip
        lines.append(f"| {METRIC_LABELS.get(key, key)} | {fmt(m.get(key))} |" + (f" {fmt(b.get(key))} |" if b else ""))
    lines.append("")
    if comparison is not None:
        sections: list[tuple[str, list[CaseComparison], Callable[[CaseComparison], str]]] = [
            ("Regressions", comparison.regressions, _first_failure),
            ("Inconclusive", comparison.inconclusive, _first_failure),
            ("Flaky", comparison.flaky,
             lambda i: f"baseline {i.baseline_passed}/{i.baseline_trials}, this run {i.candidate_passed}/{i.candidate_trials}"),
            ("Newly passing", comparison.fixed, lambda i: f"this run {i.candidate_passed}/{i.candidate_trials}"),
        ]  # fmt: skip
        for title, items, why in sections:
            if items:
                lines += [
                    f"**{title} ({len(items)})**",
                    "",
                    "| case | why |",
                    "|---|---|",
                    *_case_lines(items, why),
                    "",
                ]
    if gate is not None and gate.reasons:
        lines += [f"- {reason}" for reason in gate.reasons]
        lines.append("")
    return "\n".join(lines)
