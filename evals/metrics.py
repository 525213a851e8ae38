"""Suite metrics, aggregated with pandas from the trials of a run.

- errored trials (a timeout, a 5xx, a transport failure: `TrialScore.errored`) say nothing about the agent: every
  rate below counts the other trials only, and a case whose trials all errored is inconclusive;
- case pass rate: passed trials / trials that did not error (= pass^1);
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
                "errored": s.errored,
                **s.tallies.model_dump(),
                **{f"fail_{kind}": any(f.kind == kind for f in s.failures) for kind in FAILURE_KINDS},
            }
        )
    columns = ["case_id", "trial", "tags", "passed", "errored", "name_slots", "name_correct", "args_checked", "args_correct",
               "state_checks", "state_correct", *(f"fail_{k}" for k in FAILURE_KINDS)]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def turns_frame(trials: Sequence[TrialResult]) -> pd.DataFrame:
    rows = [
        {
            "case_id": t.case_id,
            "trial": t.trial,
            "turn": turn.index + 1,  # numbered from 1, as every report numbers turns
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
    everything = trials_frame(trials)
    turns = turns_frame(trials)
    if everything.empty:
        return {"cases": 0, "trials": 0}
    df = everything[~everything["errored"]]
    per_case = df.groupby("case_id")["passed"].agg(["sum", "count"])
    n_min = int(per_case["count"].min()) if not per_case.empty else 0
    pass_k = {
        str(k): round(
            float(per_case.apply(lambda r, k=k: pass_hat_k(int(r["sum"]), int(r["count"]), k), axis=1).mean()), 4
        )
        for k in range(1, n_min + 1)
    }
    live, replayed = latency_split(turns)
    failures = {kind: int(df[f"fail_{kind}"].sum()) for kind in FAILURE_KINDS}
    return {
        "cases": int(everything["case_id"].nunique()),
        "trials": len(everything),
        "trials_per_case": n_min,
        "passed_trials": int(df["passed"].sum()),
        "errored_trials": int(everything["errored"].sum()),
        "cases_inconclusive": int(everything["case_id"].nunique() - len(per_case)),
        "case_pass_rate": None if df.empty else round(float(df["passed"].mean()), 4),
        "cases_passing_all_trials": int((per_case["sum"] == per_case["count"]).sum()),
        "pass_hat_k": pass_k,
        "tool_name_accuracy": _ratio(df["name_correct"].sum(), df["name_slots"].sum()),
        "argument_accuracy": _ratio(df["args_correct"].sum(), df["args_checked"].sum()),
        "state_accuracy": _ratio(df["state_correct"].sum(), df["state_checks"].sum()),
        "latency_p50_ms": _quantile(live, 0.5),
        "latency_p95_ms": _quantile(live, 0.95),
        "replayed_latency_p50_ms": _quantile(replayed, 0.5),
        "replayed_turns": len(replayed),
        "turns": len(turns),
        "model_calls": _sum_or_none(turns["model_calls"]),
        "input_tokens": _sum_or_none(turns["input_tokens"]),
        "output_tokens": _sum_or_none(turns["output_tokens"]),
        "cache_misses": _sum_or_none(turns["cache_misses"]),
        "failures_by_kind": failures,
    }


def replayed(turns: pd.DataFrame) -> pd.Series:
    """Per turn: whether every model answer it got came from the replay cache (its latency is then milliseconds of
    the backend's own work, not the model's)."""
    calls = turns["model_calls"].fillna(0)
    return (calls > 0) & (turns["cache_hits"].fillna(0) >= calls)


def latency_split(turns: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Turn latencies of turns the model answered live, and of replayed turns: two different figures, never one."""
    timed = turns.dropna(subset=["latency_ms"])
    mask = replayed(timed)
    return timed.loc[~mask, "latency_ms"], timed.loc[mask, "latency_ms"]


def _quantile(values: pd.Series, q: float) -> float | None:
    return None if values.empty else round(float(values.quantile(q)), 1)


def by_tag(trials: Sequence[TrialResult]) -> pd.DataFrame:
    """Per tag: cases, trials, pass rate and failure counts by kind (a case counts under each of its tags)."""
    frame = trials_frame(trials)
    df = frame[~frame["errored"]].explode("tags").rename(columns={"tags": "tag"})
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
