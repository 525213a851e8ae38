"""One eval run, end to end: load and filter the dataset, run every case and trial (in this process, `local_run`, or
across worker processes, `parallel`), score, aggregate, and return the results document.

The CLI, the playground, the deepeval test module, the self-tests and the bench all call `run_evals`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from evals.config import SCRIPTED_MODEL, EvalConfig, auto_workers, default_cache_file, select
from evals.dataset import PROJECT_ROOT, Dataset
from evals.local_run import LocalRun, build_model_transport, run_here
from evals.metrics import summarise
from evals.parallel import run_in_workers
from evals.results import RunInfo, RunResult, TrialResult, versions
from evals.runner import TrialOutcome

__all__ = [
    "SCRIPTED_MODEL",
    "EvalConfig",
    "LocalRun",
    "auto_workers",
    "build_model_transport",
    "default_cache_file",
    "rescore",
    "run_evals",
    "select",
]


async def run_evals(
    config: EvalConfig,
    *,
    dataset: Dataset | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[TrialOutcome], None] | None = None,
) -> RunResult:
    config.validate()
    dataset = dataset if dataset is not None else select(config)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    if config.workers > 1 and not config.url:
        run = await run_in_workers(config, dataset, on_start=on_start, on_result=on_result)
    else:
        run = await run_here(config, dataset, on_start=on_start, on_result=on_result)
    outcomes, cache, startup = run.outcomes, run.cache, run.startup_seconds
    if (
        cache is not None
        and config.cache_mode in ("record", "replay-or-record")
        and (cache.recorded or config.prune_cache)
    ):
        cache.save(prune=config.prune_cache)  # untouched when nothing was recorded (CI's working copy stays clean)
    trials = [
        TrialResult(
            case_id=o.case.id,
            trial=o.transcript.trial,
            tags=list(o.case.tags),
            case_fingerprint=o.case.fingerprint(),
            transcript=o.transcript,
            score=o.score,
        )
        for o in outcomes
    ]
    info = RunInfo(
        run_id=started_at.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
        started_at=started_at.isoformat(timespec="seconds"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_seconds=round(time.perf_counter() - started, 2),
        startup_seconds=round(startup, 2),
        run_seconds=round(run.run_seconds, 2),
        target=run.target,
        dataset={
            "path": _relative(config.dataset),
            "fingerprint": dataset.fingerprint(),
            "cases": len(dataset),
            "tags": config.tags,
            "ids": config.ids,
        },
        options={
            "trials": config.trials,
            "concurrency": config.concurrency,
            "workers": config.workers,
            "turn_timeout": config.turn_timeout,
        },
        cache=({"mode": config.cache_mode, **cache.stats()} if cache is not None else {"mode": "off"}),
        versions=versions(),
    )
    if cache is not None and info.cache is not None and info.cache.get("file"):
        info.cache["file"] = _relative(Path(info.cache["file"]))
    result = RunResult(info=info, metrics=summarise(trials), trials=trials)
    if config.deepeval:
        from evals.deepeval_metric import strict_tool_correctness_summary

        result.deepeval = strict_tool_correctness_summary(result, dataset)
    return result


def rescore(result: RunResult, dataset: Dataset) -> RunResult:
    """Score a run's transcripts again against the current case definitions (expectations changed, model answers
    did not): trials of cases that no longer exist are dropped; metrics and the deepeval summary are recomputed."""
    from evals.scoring import score_trial

    cases = {c.id: c for c in dataset.cases}
    trials = [
        t.model_copy(
            update={
                "tags": list(cases[t.case_id].tags),
                "case_fingerprint": cases[t.case_id].fingerprint(),
                "score": score_trial(cases[t.case_id], t.transcript),
            }
        )
        for t in result.trials
        if t.case_id in cases
    ]
    info = result.info.model_copy(
        update={"dataset": {**result.info.dataset, "fingerprint": dataset.fingerprint(), "rescored": True}}
    )
    rescored = RunResult(info=info, metrics=summarise(trials), trials=trials)
    if result.deepeval is not None:
        from evals.deepeval_metric import strict_tool_correctness_summary

        rescored.deepeval = strict_tool_correctness_summary(rescored, dataset)
    return rescored


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
