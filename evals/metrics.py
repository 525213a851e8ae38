"""Suite metrics, aggregated with pandas from the trials of a run.

- case pass rate: passed trials / trials (= pass^1);
- pass^k: for each case with n trials of which c passed, C(c, k) / C(n, k) (the chance that k trials drawn from
  the n all pass, tau-bench's estimator), averaged over cases, for k = 1..n;
- tool-name accuracy: call slots with the right tool / all slots (an expected call, an unexpected call, or a turn
  that should have had none);
- argument accuracy: calls with every argument right / calls with the right tool;
- state accuracy: task-list checks that held / all checks (per turn where given, final, other user's list);
- latency p50 / p95 per turn; token usage summed when the model reported it (in-process runs), else None.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb
from typing import Any

import pandas as pd

from evals.results import TrialResult
from evals.scoring import FAILURE_KINDS


def trials_frame(trials: Sequence[TrialResult]) -> pd.DataFrame:
    rows = []
    for t in trials:
        s = t.score
        rows.append(
            {
                "case_id": t.case_id,
                "trial": t.trial,
                "tags": list(t.tags),
                "passed": s.passed,
                **s.tallies.model_dump(),
                **{f"fail_{kind}": any(f.kind == kind for f in s.failures) for kind in FAILURE_KINDS},
            }
        )
    columns = ["case_id", "trial", "tags", "passed", "name_slots", "name_correct", "args_checked", "args_correct",
               "state_checks", "state_correct", *(f"fail_{k}" for k in FAILURE_KINDS)]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def turns_frame(trials: Sequence[TrialResult]) -> pd.DataFrame:
    rows = [
        {
            "case_id": t.case_id,
            "trial": t.trial,
            "turn": turn.index,
            "latency_ms": turn.latency_ms,
            "model_calls": turn.model_calls,
            "cache_hits": turn.cache_hits,
            "cache_misses": turn.cache_misses,
            "input_tokens": turn.input_tokens,
            "output_tokens": turn.output_tokens,
        }
        for t in trials
        for turn in t.transcript.turns
    ]
    columns = ["case_id", "trial", "turn", "latency_ms", "model_calls", "cache_hits", "cache_misses",
               "input_tokens", "output_tokens"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def pass_hat_k(successes: int, trials: int, k: int) -> float:
    """The probability that k trials drawn without replacement from `trials` all passed."""
    if k > trials:
        raise ValueError("k exceeds the number of trials")
    return comb(successes, k) / comb(trials, k)


def _ratio(num: float, den: float) -> float | None:
    return None if not den else round(float(num) / float(den), 4)


def _sum_or_none(series: pd.Series) -> int | None:
    present = series.dropna()
    return None if present.empty else int(present.sum())


def summarise(trials: Sequence[TrialResult]) -> dict[str, Any]:
    df = trials_frame(trials)
    turns = turns_frame(trials)
    if df.empty:
        return {"cases": 0, "trials": 0}
    per_case = df.groupby("case_id")["passed"].agg(["sum", "count"])
    n_min = int(per_case["count"].min())
    pass_k = {
        str(k): round(
            float(per_case.apply(lambda r, k=k: pass_hat_k(int(r["sum"]), int(r["count"]), k), axis=1).mean()), 4
        )
        for k in range(1, n_min + 1)
    }
    latency = turns["latency_ms"].dropna()
    failures = {kind: int(df[f"fail_{kind}"].sum()) for kind in FAILURE_KINDS}
    return {
        "cases": len(per_case),
        "trials": len(df),
        "trials_per_case": n_min,
        "passed_trials": int(df["passed"].sum()),
        "case_pass_rate": round(float(df["passed"].mean()), 4),
        "cases_passing_all_trials": int((per_case["sum"] == per_case["count"]).sum()),
        "pass_hat_k": pass_k,
        "tool_name_accuracy": _ratio(df["name_correct"].sum(), df["name_slots"].sum()),
        "argument_accuracy": _ratio(df["args_correct"].sum(), df["args_checked"].sum()),
        "state_accuracy": _ratio(df["state_correct"].sum(), df["state_checks"].sum()),
        "latency_p50_ms": None if latency.empty else round(float(latency.quantile(0.5)), 1),
        "latency_p95_ms": None if latency.empty else round(float(latency.quantile(0.95)), 1),
        "turns": len(turns),
        "model_calls": _sum_or_none(turns["model_calls"]),
        "input_tokens": _sum_or_none(turns["input_tokens"]),
        "output_tokens": _sum_or_none(turns["output_tokens"]),
        "cache_misses": _sum_or_none(turns["cache_misses"]),
        "failures_by_kind": failures,
    }


def by_tag(trials: Sequence[TrialResult]) -> pd.DataFrame:
    """Per tag: cases, trials, pass rate and failure counts by kind (a case counts under each of its tags)."""
    df = trials_frame(trials).explode("tags").rename(columns={"tags": "tag"})
    if df.empty:
        return pd.DataFrame(columns=["tag", "cases", "trials", "passed", "pass_rate"])
    aggregations: dict[str, Any] = {
        "cases": ("case_id", "nunique"),
        "trials": ("passed", "size"),
        "passed": ("passed", "sum"),
        **{kind: (f"fail_{kind}", "sum") for kind in FAILURE_KINDS},
    }
    table = df.groupby("tag").agg(**aggregations).reset_index()
    table["pass_rate"] = (table["passed"] / table["trials"]).round(4)
    return table.sort_values("tag").reset_index(drop=True)
