"""The eval suite as deepeval test cases, one per case and trial, judged by our deterministic scorer.

    DEEPEVAL_TELEMETRY_OPT_OUT=1 DEEPEVAL_DISABLE_DOTENV=1 deepeval test run evals/test_deepeval_suite.py

runs offline (no judge model, no telemetry; plain `pytest evals/test_deepeval_suite.py` works too). What it scores:

- `EVAL_RESULTS=path/results.json`: an existing run (no backend, no model needed);
- otherwise the suite is run in-process first: `EVAL_MODEL` (default: the configured AGENT_MODEL, i.e. `local`)
  replayed from the committed cache (`EVAL_CACHE`, default `replay-or-record`: a miss calls the model), or
  `EVAL_MODEL=scripted` for the rule-based reference agent; `EVAL_TAGS` / `EVAL_IDS` filter (comma-separated).

Each test asserts our `TodoAgentMetric` and shows deepeval's `ToolCorrectnessMetric` in its strict settings next to
it (reported, not gating: it fails harmless lookups and reworded titles, see evals/deepeval_metric.py).
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
os.environ.setdefault("DEEPEVAL_DISABLE_DOTENV", "1")

from pathlib import Path

import pytest
from deepeval.evaluate import assert_test

from evals.dataset import Case, load_dataset
from evals.deepeval_metric import ReportOnly, TodoAgentMetric, strict_tool_correctness, to_test_case
from evals.results import RunResult, TrialResult
from evals.suite import EvalConfig, run_evals


def _split(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


def _load() -> list[tuple[Case, TrialResult]]:
    results = os.environ.get("EVAL_RESULTS")
    if results:
        result = RunResult.load(Path(results))
    else:
        config = EvalConfig(
            model=os.environ.get("EVAL_MODEL") or None,
            tags=_split("EVAL_TAGS"),
            ids=_split("EVAL_IDS"),
            concurrency=int(os.environ["EVAL_CONCURRENCY"]) if os.environ.get("EVAL_CONCURRENCY") else None,
            cache_mode=os.environ.get("EVAL_CACHE", "replay-or-record"),  # type: ignore[arg-type]
            deepeval=False,
        )
        if config.model == "scripted":
            config.cache_mode = "off"
        result = asyncio.run(run_evals(config))
    cases = {c.id: c for c in load_dataset().cases}
    return [(cases[t.case_id], t) for t in result.trials if t.case_id in cases]


TRIALS = _load()


@pytest.mark.parametrize(("case", "trial"), TRIALS, ids=[f"{t.case_id}#{t.trial}" for _, t in TRIALS])
def test_case(case: Case, trial: TrialResult) -> None:
    assert_test(to_test_case(case, trial), [TodoAgentMetric(), ReportOnly(strict_tool_correctness())], run_async=False)
