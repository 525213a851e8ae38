"""Results files as pandas tables, for the analysis notebooks (`notebooks/*.ipynb`).

Loading and reshaping only: the scoring, the suite metrics and the baseline comparison stay where they are computed
(`evals.scoring`, `evals.metrics`, `evals.compare`); this module lays their output out as tidy frames — one row per
case-trial, per turn, per call, per failure — and as the few summaries the notebooks plot. Every function reads a
`RunResult`, so a notebook cell is one call and a table or a plot.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from evals.compare import CaseComparison, Comparison, compare
from evals.dataset import PROJECT_ROOT
from evals.metrics import by_tag, replayed, summarise, trials_frame, turns_frame
from evals.results import RunResult, TrialResult
from evals.runs import runs_dir
from evals.scoring import FAILURE_KINDS, CallScore, TurnScore
from evals.transcript import ObservedCall

DEFAULT_BASELINE = PROJECT_ROOT / "evals" / "baselines" / "local.json"
# Where runs are saved (RUNS_DIR, default data/runs), from the project root when relative: notebooks run elsewhere.
DEFAULT_OUT = PROJECT_ROOT / runs_dir() if not runs_dir().is_absolute() else runs_dir()
OVERVIEW_METRICS = (
    "case_pass_rate", "tool_name_accuracy", "argument_accuracy", "state_accuracy", "latency_p50_ms", "latency_p95_ms",
)  # fmt: skip

# ---------------------------------------------------------------- loading


def newest_results(out_dir: Path = DEFAULT_OUT, *, unlike: Path | None = None) -> Path | None:
    """The most recently written `<run>/results.json` under a runs folder (RUNS_DIR, or an `eval run --out`) that is
    not `unlike` (the baseline) nor a replay of it: after `make eval-gate`, the newest run is the baseline replayed
    from its own cache, and comparing the two says nothing."""
    found = [p for p in out_dir.glob("*/results.json") if p.is_file()] if out_dir.is_dir() else []
    base = RunResult.load(unlike) if unlike is not None and unlike.is_file() else None
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        if base is None or not _same_run(RunResult.load(path), base):
            return path
    return None


def _same_run(run: RunResult, base: RunResult) -> bool:
    """Whether `run` is `base` or a full replay of it (same model and prompt, every answer from the cache)."""
    if run.info.run_id == base.info.run_id:
        return True
    cache = run.info.cache or {}
    same_agent = all(run.info.target.get(k) == base.info.target.get(k) for k in ("model", "prompt_version"))
    return same_agent and str(cache.get("mode", "")).startswith("replay") and not cache.get("misses")


def _from_project_root(value: str) -> Path:
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def results_path(env_var: str, default: Path | None) -> Path | None:
    """A results file named by an environment variable (relative paths from the project root), else `default`."""
    value = os.environ.get(env_var, "").strip()
    return _from_project_root(value) if value else default


def results_paths(env_var: str) -> list[Path]:
    """Results files named by an environment variable, separated by `os.pathsep` (`:`), from the project root."""
    return [_from_project_root(v) for v in os.environ.get(env_var, "").split(os.pathsep) if v.strip()]


def run_label(result: RunResult) -> str:
    """A short name for a run in tables and legends: model, prompt version and run id."""
    target = result.info.target
    model = target.get("model") or target.get("agent_model") or target.get("url") or "?"
    prompt = target.get("prompt_version")
    return f"{model} · prompt {prompt} · {result.info.run_id}" if prompt else f"{model} · {result.info.run_id}"


def described(runs: Mapping[str, RunResult]) -> dict[str, RunResult]:
    """The same runs keyed `name (model, prompt file)`, so a figure's legend says what each run was, whatever the
    caller called it ("baseline", "candidate")."""
    out: dict[str, RunResult] = {}
    for name, result in runs.items():
        target = result.info.target
        model = target.get("model") or target.get("agent_model") or target.get("url") or "?"
        how = [str(model), Path(str(target.get("prompt_file") or "?")).name]
        if (result.info.cache or {}).get("mode") == "replay":
            how.append("replayed")
        out[f"{name} ({', '.join(how)})" if str(model) not in name else name] = result
    return out


def load_runs(paths: Iterable[Path | str] | Mapping[str, Path | str]) -> dict[str, RunResult]:
    """Load results files, keyed by label: the mapping's keys, else `run_label` (made unique with `#2`, `#3`...)."""
    items = paths.items() if isinstance(paths, Mapping) else ((None, p) for p in paths)
    runs: dict[str, RunResult] = {}
    for label, path in items:
        result = RunResult.load(Path(path))
        name = label or run_label(result)
        unique, n = name, 1
        while unique in runs:
            n += 1
            unique = f"{name} #{n}"
        runs[unique] = result
    return runs


# ---------------------------------------------------------------- formatting calls


def format_call(name: str, arguments: Mapping[str, Any] | None) -> str:
    """`delete_task(task_id=3)`: one call, as a person reads it."""
    args = ", ".join(f"{k}={v!r}" for k, v in (arguments or {}).items())
    return f"{name}({args})"


def format_calls(calls: Sequence[ObservedCall]) -> str:
    return "; ".join(format_call(c.name, c.arguments) for c in calls) or "(no call)"


def expected_calls(turn: TurnScore) -> list[str]:
    """The calls a turn expected, rebuilt from its score (argument matchers as the scorer describes them).

    A matched or mis-argued call carries its argument checks; a missing or wrong call carries the expectation in its
    failure's evidence. Optional calls that were skipped are shown with a trailing `?`.
    """
    evidence: dict[str, list[dict[str, Any]]] = {}
    for f in turn.failures:
        if f.kind in ("missing_call", "wrong_tool") and isinstance(f.expected, dict):
            evidence.setdefault(str(f.expected.get("name")), []).append(f.expected.get("arguments") or {})
    shown = []
    for call in sorted((c for c in turn.calls if c.expected_index is not None), key=_expected_order):
        tool = call.expected_tool or "?"
        if call.args:
            args: Mapping[str, Any] = {a.name: _Described(a.expected) for a in call.args}
        else:
            found = evidence.get(tool) or [{}]
            args = {k: _Described(str(v)) for k, v in found.pop(0).items()}
        shown.append(format_call(tool, args) + ("?" if call.outcome == "skipped_optional" else ""))
    return shown or ["(none)"]


class _Described(str):
    """A matcher description, shown bare (`contains 'milk'`) rather than quoted by repr; an exact value as a value."""

    def __repr__(self) -> str:
        return self.removeprefix("= ")


def _expected_order(call: CallScore) -> int:
    return call.expected_index if call.expected_index is not None else 0


# ---------------------------------------------------------------- tidy frames


def _first_failure(trial: TrialResult) -> str:
    return trial.score.failures[0].message if trial.score.failures else ""


def cases_frame(result: RunResult) -> pd.DataFrame:
    """One row per case-trial: `evals.metrics.trials_frame` plus failure kinds, turns, latency and the first failure."""
    df = trials_frame(result.trials)
    extra = pd.DataFrame(
        [
            {
                "failure_kinds": t.score.failure_kinds,
                "turns": len(t.transcript.turns),
                "latency_ms": sum(turn.latency_ms or 0.0 for turn in t.transcript.turns),
                "first_failure": _first_failure(t),
            }
            for t in result.trials
        ],
        columns=["failure_kinds", "turns", "latency_ms", "first_failure"],
    )
    return pd.concat([df.reset_index(drop=True), extra], axis=1)


def turns_table(result: RunResult) -> pd.DataFrame:
    """One row per turn: `evals.metrics.turns_frame` plus what was said, called and concluded."""
    df = turns_frame(result.trials)
    extra = []
    for t in result.trials:
        scores = {s.index: s for s in t.score.turns}
        for turn in t.transcript.turns:
            score = scores.get(turn.index)
            extra.append(
                {
                    "user": turn.user,
                    "response": turn.response,
                    "calls": format_calls(turn.tool_calls),
                    "n_calls": len(turn.tool_calls),
                    "passed": None if score is None else score.passed,
                    "failure_kinds": [] if score is None else sorted({f.kind for f in score.failures}),
                }
            )
    columns = ["user", "response", "calls", "n_calls", "passed", "failure_kinds"]
    return pd.concat([df.reset_index(drop=True), pd.DataFrame(extra, columns=columns)], axis=1)


def calls_frame(result: RunResult) -> pd.DataFrame:
    """One row per scored call slot (matched, bad arguments, wrong tool, missing, extra...)."""
    rows = [
        {
            "case_id": t.case_id,
            "trial": t.trial,
            "turn": turn.index + 1,  # turns are numbered from 1 in every report and frame
            "outcome": call.outcome,
            "expected_tool": call.expected_tool,
            "actual_tool": call.actual_tool,
            "actual_call": None if call.actual_tool is None else format_call(call.actual_tool, call.actual_arguments),
            "args_checked": len(call.args),
            "args_ok": all(a.ok for a in call.args) if call.args else None,
            "bad_args": "; ".join(f"{a.name}: {a.reason}" for a in call.args if not a.ok),
        }
        for t in result.trials
        for turn in t.score.turns
        for call in turn.calls
    ]
    columns = ["case_id", "trial", "turn", "outcome", "expected_tool", "actual_tool", "actual_call", "args_checked",
               "args_ok", "bad_args"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def failures_frame(result: RunResult) -> pd.DataFrame:
    """One row per failure, with its evidence (`turn` is None for whole-case checks such as the final task list)."""
    rows = [
        {
            "case_id": t.case_id,
            "trial": t.trial,
            "turn": None if f.turn is None else f.turn + 1,
            "kind": f.kind,
            "message": f.message,
            "expected": f.expected,
            "actual": f.actual,
        }
        for t in result.trials
        for f in t.score.failures
    ]
    df = pd.DataFrame(rows, columns=["case_id", "trial", "turn", "kind", "message", "expected", "actual"])
    return df.astype({"turn": "Int64"})


# ---------------------------------------------------------------- summaries


def overview(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """One row per run: what ran (model, prompt, dataset) and `evals.metrics.summarise` of its trials."""
    rows = []
    for label, result in runs.items():
        metrics = summarise(result.trials)
        target = result.info.target
        rows.append(
            {
                "run": label,
                "model": target.get("model") or target.get("agent_model"),
                "prompt_version": target.get("prompt_version"),
                "dataset": result.info.dataset.get("fingerprint"),
                "cases": metrics.get("cases", 0),
                "trials_per_case": metrics.get("trials_per_case", 0),
                **{k: metrics.get(k) for k in OVERVIEW_METRICS},
            }
        )
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


def tag_metrics(result: RunResult) -> pd.DataFrame:
    """Per tag: `evals.metrics.by_tag` (cases, trials, pass rate, failures by kind) plus tool-name and argument
    accuracy over the calls of that tag's cases."""
    table = by_tag(result.trials)
    df = trials_frame(result.trials).explode("tags").rename(columns={"tags": "tag"})
    if df.empty:
        return table.assign(tool_name_accuracy=pd.Series(dtype=float), argument_accuracy=pd.Series(dtype=float))
    sums = df.groupby("tag")[["name_correct", "name_slots", "args_correct", "args_checked"]].sum()
    accuracy = pd.DataFrame(
        {
            "tool_name_accuracy": _safe_ratio(sums["name_correct"], sums["name_slots"]),
            "argument_accuracy": _safe_ratio(sums["args_correct"], sums["args_checked"]),
        }
    ).reset_index()
    return table.merge(accuracy, on="tag", how="left")


def _safe_ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num / den.where(den > 0)).round(4)


def tag_comparison(runs: Mapping[str, RunResult], metric: str = "pass_rate") -> pd.DataFrame:
    """One `tag_metrics` column (pass_rate, argument_accuracy...) side by side: tags as rows, runs as columns."""
    columns = {label: tag_metrics(result).set_index("tag")[metric] for label, result in runs.items()}
    return pd.DataFrame(columns).sort_index()


def failure_breakdown(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """Per failure reason and run: the trials that failed for it (a trial can fail for several), that as a share of
    the run's trials (comparable across runs with different trial counts), and the failures themselves (a trial can
    fail the same way in several turns). Every reason appears, zero or not."""
    rows = []
    for label, result in runs.items():
        failures = failures_frame(result)
        by_kind = summarise(result.trials).get("failures_by_kind", {})
        for kind in FAILURE_KINDS:
            trials = int(by_kind.get(kind, 0))
            rows.append(
                {
                    "run": label,
                    "kind": kind,
                    "trials": trials,
                    "share": round(trials / len(result.trials), 4) if result.trials else 0.0,
                    "failures": int((failures["kind"] == kind).sum()),
                }
            )
    return pd.DataFrame(rows, columns=["run", "kind", "trials", "share", "failures"])


LATENCY_COLUMNS = ["run", "case_id", "trial", "turn", "model", "latency_ms", "model_calls"]


def latency_frame(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """One row per turn with a measured latency: run, case, trial, turn, model ("live", or "replayed" when every
    answer came from the cache), latency_ms, model_calls."""
    frames = []
    for label, result in runs.items():
        turns = turns_frame(result.trials)
        frames.append(
            turns.assign(run=label, model=replayed(turns).map({True: "replayed", False: "live"}))[LATENCY_COLUMNS]
        )
    if not frames:
        return pd.DataFrame(columns=LATENCY_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    return df.dropna(subset=["latency_ms"]).reset_index(drop=True)


def latency_summary(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """Per run and model (live or replayed, never pooled): turn latency count, mean and p50 / p90 / p95 / max in
    milliseconds."""
    df = latency_frame(runs)
    if df.empty:
        return pd.DataFrame(columns=["turns", "mean", "p50", "p90", "p95", "max"])
    grouped = df.groupby(["run", "model"], sort=False)["latency_ms"]
    return pd.DataFrame(
        {
            "turns": grouped.size(),
            "mean": grouped.mean(),
            "p50": grouped.quantile(0.5),
            "p90": grouped.quantile(0.9),
            "p95": grouped.quantile(0.95),
            "max": grouped.max(),
        }
    ).round(1)


def pass_hat_k_curve(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """pass^k against k (1..trials per case) per run, from `evals.metrics.summarise`; one row per run and k."""
    rows = [
        {"run": label, "k": int(k), "pass_hat_k": value}
        for label, result in runs.items()
        for k, value in summarise(result.trials).get("pass_hat_k", {}).items()
    ]
    return pd.DataFrame(rows, columns=["run", "k", "pass_hat_k"])


# ---------------------------------------------------------------- two runs


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    """One row per case of `evals.compare.compare`: status, passes per side, and whether the case was redefined."""
    rows = [
        {
            "case_id": c.case_id,
            "status": c.status,
            "tags": c.tags,
            "baseline_passed": c.baseline_passed,
            "baseline_trials": c.baseline_trials,
            "candidate_passed": c.candidate_passed,
            "candidate_trials": c.candidate_trials,
            "definition_changed": c.definition_changed,
        }
        for c in comparison.cases
    ]
    columns = ["case_id", "status", "tags", "baseline_passed", "baseline_trials", "candidate_passed",
               "candidate_trials", "definition_changed"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def status_counts(comparison: Comparison) -> pd.Series:
    """How many cases per comparison status (regression, fixed, flaky, still_passing...)."""
    return comparison_frame(comparison)["status"].value_counts().rename("cases")


def metric_deltas(comparison: Comparison) -> pd.DataFrame:
    """`Comparison.metric_deltas` as a table: baseline, candidate and candidate - baseline per metric."""
    rows = [
        {"metric": k, "baseline": b, "candidate": c, "delta": None if b is None or c is None else round(c - b, 4)}
        for k, (b, c) in comparison.metric_deltas().items()
    ]
    return pd.DataFrame(rows, columns=["metric", "baseline", "candidate", "delta"]).set_index("metric")


def _evidence_rows(case: CaseComparison) -> list[dict[str, Any]]:
    """Turn by turn: what the case expected, what the baseline did and what the candidate did."""
    base, cand = case.baseline_evidence, case.candidate_evidence
    reference = cand or base
    if reference is None:
        return []
    rows = []
    for index, turn in enumerate(reference.transcript.turns):
        score = _turn_score(cand, index) or _turn_score(base, index)
        cand_score = _turn_score(cand, index)
        rows.append(
            {
                "case_id": case.case_id,
                "status": case.status,
                "turn": index + 1,
                "user": turn.user,
                "expected_calls": "; ".join(expected_calls(score)) if score else "",
                "baseline_calls": _calls_at(base, index),
                "candidate_calls": _calls_at(cand, index),
                "candidate_failures": "; ".join(f"[{f.kind}] {f.message}" for f in cand_score.failures)
                if cand_score
                else "",
            }
        )
    if cand is not None:
        whole_case = [f for f in cand.score.failures if f.turn is None]
        if whole_case:
            rows.append(
                {
                    "case_id": case.case_id,
                    "status": case.status,
                    "turn": None,
                    "user": "(end of conversation)",
                    "expected_calls": "",
                    "baseline_calls": "",
                    "candidate_calls": "",
                    "candidate_failures": "; ".join(f"[{f.kind}] {f.message}" for f in whole_case),
                }
            )
    return rows


def _turn_score(trial: TrialResult | None, index: int) -> TurnScore | None:
    if trial is None:
        return None
    return next((s for s in trial.score.turns if s.index == index), None)


def _calls_at(trial: TrialResult | None, index: int) -> str:
    if trial is None or index >= len(trial.transcript.turns):
        return ""
    return format_calls(trial.transcript.turns[index].tool_calls)


EVIDENCE_COLUMNS = ["case_id", "status", "turn", "user", "expected_calls", "baseline_calls", "candidate_calls",
                    "candidate_failures"]  # fmt: skip


def case_evidence(comparison: Comparison, *statuses: str) -> pd.DataFrame:
    """Per turn of every case with one of `statuses` (default: all): expected vs baseline vs candidate calls, and
    why the candidate failed. The trials shown are `evals.compare`'s evidence (a passing baseline trial, a failing
    candidate trial for a regression)."""
    cases = [c for c in comparison.cases if not statuses or c.status in statuses]
    df = pd.DataFrame([row for c in cases for row in _evidence_rows(c)], columns=EVIDENCE_COLUMNS)
    return df.astype({"turn": "Int64"})


def regressions(baseline: RunResult, candidate: RunResult) -> pd.DataFrame:
    """The regression list (passed in every baseline trial, fails in every candidate trial), turn by turn with each
    case's expected vs actual calls."""
    return case_evidence(compare(baseline, candidate), "regression")


# ---------------------------------------------------------------- two prompt versions


def prompt_of(result: RunResult) -> str:
    target = result.info.target
    return f"{target.get('prompt_file') or '?'} ({target.get('prompt_version') or '?'})"


def prompt_case_table(a: RunResult, b: RunResult) -> pd.DataFrame:
    """Case by case, run `a` (one prompt version) against run `b` (another): pass counts, status of b relative to a
    (`evals.compare` statuses), failure kinds on each side and the first trial's calls on each side."""
    comparison = compare(a, b)
    a_cases, b_cases = a.by_case(), b.by_case()
    rows = []
    for c in comparison.cases:
        a_trials, b_trials = a_cases.get(c.case_id, []), b_cases.get(c.case_id, [])
        rows.append(
            {
                "case_id": c.case_id,
                "tags": c.tags,
                "status": c.status,
                "a_pass_rate": _pass_rate(a_trials),
                "b_pass_rate": _pass_rate(b_trials),
                "change": _change(_pass_rate(a_trials), _pass_rate(b_trials)),
                "a_failures": sorted({k for t in a_trials for k in t.score.failure_kinds}),
                "b_failures": sorted({k for t in b_trials for k in t.score.failure_kinds}),
                "a_calls": _all_calls(a_trials[0]) if a_trials else "",
                "b_calls": _all_calls(b_trials[0]) if b_trials else "",
            }
        )
    columns = ["case_id", "tags", "status", "a_pass_rate", "b_pass_rate", "change", "a_failures", "b_failures",
               "a_calls", "b_calls"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _pass_rate(trials: Sequence[TrialResult]) -> float | None:
    return None if not trials else round(sum(t.passed for t in trials) / len(trials), 4)


def _change(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "only in b" if a is None else "only in a"
    return "better" if b > a else "worse" if b < a else "same"


def _all_calls(trial: TrialResult) -> str:
    return " | ".join(format_calls(turn.tool_calls) for turn in trial.transcript.turns)


def prompt_change_by_tag(a: RunResult, b: RunResult) -> pd.DataFrame:
    """Pass rate per tag under each prompt and the difference (b - a), worst first."""
    table = tag_comparison({"a": a, "b": b}).dropna(how="all")
    table["delta"] = (table["b"] - table["a"]).round(4)
    return table.sort_values("delta")
