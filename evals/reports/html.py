"""A self-contained HTML report: metrics, a chart per tag (inline SVG, no scripts or downloads), the comparison with
the baseline, and the transcripts of failing trials with their evidence."""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any

from evals.compare import Comparison, GateResult
from evals.metrics import by_tag
from evals.reports.markdown import METRIC_LABELS, call_text, fmt, headline, task_lines
from evals.results import RunResult, TrialResult
from evals.scoring import FAILURE_KINDS

COLOURS = {
    "passed": "#2e7d32",
    "wrong_tool": "#c62828",
    "missing_call": "#ef6c00",
    "extra_call": "#ad1457",
    "bad_args": "#f9a825",
    "state_mismatch": "#6a1b9a",
    "reply_mismatch": "#1565c0",
    "false_claim": "#b71c1c",
    "unrequested_change": "#4e342e",
    "error": "#424242",
}
assert set(COLOURS) == {"passed", *FAILURE_KINDS}, "every failure kind needs a colour"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f5f5f5}.ok{color:#2e7d32}.bad{color:#c62828}.muted{color:#777}
.tags{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px}
.tag{border:1px solid #ddd;border-radius:6px;padding:8px}.tag h3{margin:0 0 4px}
code,pre{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}pre{white-space:pre-wrap;background:#fafafa;
padding:6px;border:1px solid #eee;margin:4px 0}details{margin:6px 0}summary{cursor:pointer}
.legend span{display:inline-block;margin-right:10px}.sw{display:inline-block;width:10px;height:10px;margin-right:3px}
.side{display:grid;grid-template-columns:1fr 1fr;gap:10px}
"""


def _svg_bar(segments: list[tuple[str, float]], width: int = 250, height: int = 16) -> str:
    total = sum(v for _, v in segments) or 1
    x = 0.0
    parts = []
    for key, value in segments:
        if value <= 0:
            continue
        w = width * value / total
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{COLOURS.get(key, "#999")}">'
            f"<title>{escape(key)}: {value:g}</title></rect>"
        )
        x += w
    return f'<svg width="{width}" height="{height}" role="img">{"".join(parts)}</svg>'


def _svg_cases(trials: list[TrialResult], width: int = 250) -> str:
    """One square per trial of the tag's cases: green passed, coloured by the first failure kind otherwise."""
    size, gap = 9, 2
    per_row = max(1, width // (size + gap))
    rows = (len(trials) + per_row - 1) // per_row
    parts = []
    for i, t in enumerate(trials):
        kind = "passed" if t.passed else (t.score.failures[0].kind if t.score.failures else "error")
        x, y = (i % per_row) * (size + gap), (i // per_row) * (size + gap)
        parts.append(
            f'<rect x="{x}" y="{y}" width="{size}" height="{size}" fill="{COLOURS[kind]}">'
            f"<title>{escape(t.case_id)} (trial {t.trial}): {escape(kind)}</title></rect>"
        )
    return f'<svg width="{width}" height="{max(1, rows) * (size + gap)}" role="img">{"".join(parts)}</svg>'


def _tag_charts(result: RunResult, comparison: Comparison | None) -> str:
    table = by_tag(result.trials)
    base_rates: dict[str, float] = {}
    if comparison is not None:
        base_table = by_tag(comparison.baseline_same_cases.trials)
        base_rates = dict(zip(base_table["tag"], base_table["pass_rate"], strict=False))
    cards = []
    for row in table.to_dict("records"):
        tag = row["tag"]
        segments = [("passed", float(row["passed"]))]
        # A failing trial is counted once, under its first failure kind, so the bar adds up to the trials.
        first_kinds: dict[str, int] = {}
        trials = [t for t in result.trials if tag in t.tags]
        for t in trials:
            if not t.passed and t.score.failures:
                first_kinds[t.score.failures[0].kind] = first_kinds.get(t.score.failures[0].kind, 0) + 1
        segments += [(k, float(first_kinds.get(k, 0))) for k in FAILURE_KINDS]
        base = base_rates.get(tag)
        base_text = f' <span class="muted">(baseline {fmt(base)})</span>' if base is not None else ""
        cards.append(
            f'<div class="tag"><h3>{escape(tag)}</h3>'
            f"<div>{int(row['passed'])}/{int(row['trials'])} passed · {fmt(row['pass_rate'])}{base_text}</div>"
            f"{_svg_bar(segments)}<div>{_svg_cases(trials)}</div></div>"
        )
    legend = "".join(f'<span><i class="sw" style="background:{c}"></i>{escape(k)}</span>' for k, c in COLOURS.items())
    return f'<p class="legend">{legend}</p><div class="tags">{"".join(cards)}</div>'


def _metrics(result: RunResult, comparison: Comparison | None) -> str:
    base = comparison.baseline_same_cases if comparison else None
    rows = []
    for key, label in METRIC_LABELS.items():
        b = f"<td>{fmt(base.metrics.get(key))}</td>" if base else ""
        rows.append(f"<tr><th>{escape(label)}</th><td>{fmt(result.metrics.get(key))}</td>{b}</tr>")
    for k, v in (result.metrics.get("pass_hat_k") or {}).items():
        b = f"<td>{fmt((base.metrics.get('pass_hat_k') or {}).get(k))}</td>" if base else ""
        rows.append(f"<tr><th>pass^{escape(k)}</th><td>{fmt(v)}</td>{b}</tr>")
    if result.deepeval:
        rows.append(
            "<tr><th>deepeval ToolCorrectness (strict) mean</th>"
            f"<td>{fmt(result.deepeval.get('tool_correctness_strict_mean'))}</td>{'<td></td>' if base else ''}</tr>"
        )
    head = "<tr><th>metric</th><th>value</th>" + ("<th>baseline</th>" if base else "") + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def inline(text: str) -> str:
    """Text written for Markdown (`code` spans) as HTML: escaped, the spans as <code>, no backtick left showing."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


def _json(value: Any) -> str:
    return escape(json.dumps(value, ensure_ascii=False, indent=1, default=str))


def _transcript(trial: TrialResult) -> str:
    parts = []
    t = trial.transcript
    if t.tasks_before:
        listed = "".join(f"<li>{escape(line)}</li>" for line in task_lines(t.tasks_before))
        parts.append(f"<p>tasks before the first turn:</p><ul>{listed}</ul>")
    if t.retried:
        parts.append(f"<p class='muted'>retried after: {escape('; '.join(t.retried))}</p>")
    if t.setup_error:
        parts.append(f'<p class="bad">setup failed: {escape(t.setup_error)}</p>')
    for turn in t.turns:
        calls = (
            "".join(
                f"<li><code>{escape(call_text(c))}</code> → <code>{escape(json.dumps(c.result, ensure_ascii=False, default=str))}</code></li>"
                for c in turn.tool_calls
            )
            or '<li class="muted">no tool calls</li>'
        )
        reply = escape(turn.error or turn.response or "")
        tasks = _json(turn.tasks_after) if turn.tasks_after is not None else "n/a"
        parts.append(
            f"<h4>turn {turn.index + 1} <span class='muted'>({fmt(turn.latency_ms)} ms)</span></h4>"
            f"<p><b>user:</b> {escape(turn.user)}</p><ul>{calls}</ul><p><b>reply:</b></p><pre>{reply}</pre>"
            f"<details><summary>task list after the turn</summary><pre>{tasks}</pre></details>"
        )
    failures = "".join(
        f"<li><b>{escape(f.kind)}</b>{'' if f.turn is None else f' (turn {f.turn + 1})'}: {escape(f.message)}"
        f"<details><summary>expected / actual</summary><div class='side'><pre>{_json(f.expected)}</pre>"
        f"<pre>{_json(f.actual)}</pre></div></details></li>"
        for f in trial.score.failures
    )
    return "".join(parts) + (f"<ul>{failures}</ul>" if failures else "")


def _comparison(comparison: Comparison) -> str:
    out = [
        f"<p>Baseline <code>{escape(comparison.baseline.info.run_id)}</code>: {inline(headline(comparison.baseline))}</p>"
    ]
    out.append(f"<h3>Regressions ({len(comparison.regressions)})</h3>")
    if not comparison.regressions:
        out.append("<p>None.</p>")
    for item in comparison.regressions:
        base = _transcript(item.baseline_evidence) if item.baseline_evidence else ""
        cand = _transcript(item.candidate_evidence) if item.candidate_evidence else ""
        out.append(
            f"<details open><summary><code>{escape(item.case_id)}</code> "
            f"[{escape(', '.join(item.tags))}]</summary><div class='side'><div><h4>baseline</h4>{base}</div>"
            f"<div><h4>candidate</h4>{cand}</div></div></details>"
        )
    for title, items in (("Newly passing", comparison.fixed), ("Flaky (reported, not failed)", comparison.flaky),
                         ("Inconclusive (every trial errored)", comparison.inconclusive)):  # fmt: skip
        listed = "".join(
            f"<li><code>{escape(i.case_id)}</code>: baseline {i.baseline_passed}/{i.baseline_trials}, "
            f"candidate {i.candidate_passed}/{i.candidate_trials}</li>"
            for i in items
        )
        out.append(f"<h3>{title} ({len(items)})</h3><ul>{listed or '<li>None.</li>'}</ul>")
    return "".join(out)


def render_html(result: RunResult, *, comparison: Comparison | None = None, gate: GateResult | None = None) -> str:
    failing = [t for t in result.trials if not t.passed]
    verdict = ""
    if gate is not None:
        cls = "ok" if gate.passed else "bad"
        reasons = "".join(f"<li>{escape(r)}</li>" for r in gate.reasons)
        verdict = (
            f"<h2>Gate</h2><p class='{cls}'><b>{gate.verdict}</b> (exit {int(gate.exit_code)}): "
            f"<code>{escape(gate.line)}</code></p><ul>{reasons}</ul>"
        )
    failures = "".join(
        f"<details><summary><code>{escape(t.case_id)}</code> trial {t.trial} "
        f"[{escape(', '.join(t.tags))}] — {escape(', '.join(t.score.failure_kinds))}</summary>{_transcript(t)}</details>"
        for t in failing
    )
    body = (
        f"<h1>Eval run <code>{escape(result.info.run_id)}</code></h1><p>{inline(headline(result))}</p>{verdict}"
        f"<h2>Metrics</h2>{_metrics(result, comparison)}"
        f"<h2>By tag</h2>{_tag_charts(result, comparison)}"
        + (f"<h2>Compared with the baseline</h2>{_comparison(comparison)}" if comparison else "")
        + f"<h2>Failing transcripts ({len(failing)})</h2>{failures or '<p>None.</p>'}"
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>todo-agent eval {escape(result.info.run_id)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
