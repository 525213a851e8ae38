"""One eval run, end to end: load and filter the dataset, run every case and trial (in this process, `local_run`, or
across worker processes, `parallel`), score, aggregate, and return the results document.

The CLI, the playground, the deepeval test module, the self-tests and the bench all call `run_evals`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.config import SCRIPTED_MODEL, EvalConfig, auto_workers, default_cache_file, select
from evals.dataset import PROJECT_ROOT, Case, Dataset
from evals.local_run import LocalRun, build_model_transport, run_here
from evals.metrics import summarise
from evals.parallel import run_in_workers
from evals.results import RunInfo, RunResult, TrialResult, versions
from evals.runner import TrialOutcome

__all__ = [
    "SCRIPTED_MODEL",
    "EvalConfig",
    "LocalRun",
    "MergeError",
    "auto_workers",
    "build_model_transport",
    "default_cache_file",
    "merge_runs",
    "rescore",
    "run_evals",
    "select",
    "with_more_trials",
]


async def run_evals(
    config: EvalConfig,
    *,
    dataset: Dataset | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[TrialOutcome], None] | None = None,
    on_begin: Callable[[Case, int], None] | None = None,
    stop: asyncio.Event | None = None,
    label: str | None = None,
) -> RunResult:
    """Run the selected cases. `on_begin(case, trial)` and `stop` (set: end the run now, keep the finished trials,
    mark it `cancelled`) apply to runs in this process; worker processes report results only."""
    config.validate()
    config = config.settled()
    dataset = dataset if dataset is not None else select(config)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    if config.workers > 1 and not config.url:
        run = await run_in_workers(config, dataset, on_start=on_start, on_result=on_result)
    else:
        run = await run_here(config, dataset, on_start=on_start, on_result=on_result, on_begin=on_begin, stop=stop)
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
    expected = len(dataset) * config.trials
    target = dict(run.target)
    prompt_text = target.pop("prompt_text", None)
    info = RunInfo(
        run_id=started_at.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
        started_at=started_at.isoformat(timespec="seconds"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_seconds=round(time.perf_counter() - started, 2),
        startup_seconds=round(startup, 2),
        run_seconds=round(run.run_seconds, 2),
        target=target,
        dataset={
            "path": _relative(config.dataset),
            "fingerprint": dataset.fingerprint(),
            "cases": len(dataset),
            "tags": config.tags,
            "ids": config.ids,
            **_shard_info(config),
        },
        options={
            "trials": config.trials,
            "concurrency": run.concurrency,
            "retries": config.retries,
            "workers": config.workers,
            "turn_timeout": config.turn_timeout,
        },
        cache=({"mode": config.cache_mode, **cache.stats()} if cache is not None else {"mode": "off"}),
        versions=versions(),
        status="cancelled" if stop is not None and stop.is_set() and len(trials) < expected else "complete",
        label=label,
        prompt_text=prompt_text,
    )
    if cache is not None and info.cache is not None and info.cache.get("file"):
        info.cache["file"] = _relative(Path(info.cache["file"]))
    result = RunResult(info=info, metrics=summarise(trials), trials=trials)
    if config.deepeval:
        from evals.deepeval_metric import strict_tool_correctness_summary

        result.deepeval = strict_tool_correctness_summary(result, dataset)
    return result


def _shard_info(config: EvalConfig) -> dict[str, Any]:
    """What `merge_runs` checks shards against: which shard this is, and the whole selection it is a shard of."""
    if config.shard is None:
        return {}
    whole = select(replace(config, shard=None))
    return {"shard": list(config.shard), "suite_fingerprint": whole.fingerprint(), "suite_cases": len(whole)}


class MergeError(ValueError):
    """Results files that do not make one run together."""


def merge_runs(runs: Sequence[RunResult], dataset: Dataset | None = None) -> RunResult:
    """The results of one run made of the shards of a run (`--shard i/n`, every shard exactly once), as one run of
    the whole selection gives them: trials in the dataset's order, metrics (and the deepeval summary, when the
    shards had one and `dataset` is given) computed over all of them."""
    if not runs:
        raise MergeError("nothing to merge")
    shards = [r.info.dataset.get("shard") for r in runs]
    if any(s is None for s in shards):
        raise MergeError("only the shards of a run (--shard i/n) can be merged; a results file without one was given")
    counts = {s[1] for s in shards if s is not None}
    suites = {r.info.dataset.get("suite_fingerprint") for r in runs}
    if len(counts) != 1 or len(suites) != 1:
        raise MergeError("these results are shards of different runs (their --shard n or selected cases differ)")
    (count,) = counts
    indices = sorted(s[0] for s in shards if s is not None)
    if indices != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise MergeError(f"shards of {count}: missing {missing or 'none'}, given twice {repeated or 'none'}")
    first = runs[0]
    trials = [t for run in runs for t in run.trials]
    order = {c.id: i for i, c in enumerate(dataset.cases)} if dataset is not None else {}
    seen: dict[str, int] = {}
    for t in trials:
        seen.setdefault(t.case_id, len(seen))
    trials.sort(key=lambda t: (order.get(t.case_id, len(order) + seen[t.case_id]), t.trial))
    caches = [r.info.cache or {} for r in runs]
    cache = {**caches[0], **{k: sum(int(c.get(k) or 0) for c in caches) for k in ("hits", "misses", "recorded")}}
    info = first.info.model_copy(
        update={
            "run_id": first.info.run_id + "-merged",
            "started_at": min(r.info.started_at for r in runs),
            "finished_at": max((r.info.finished_at or "") for r in runs) or None,
            "wall_seconds": max((r.info.wall_seconds or 0.0) for r in runs),
            "run_seconds": max((r.info.run_seconds or 0.0) for r in runs),
            "dataset": {
                **{
                    k: v
                    for k, v in first.info.dataset.items()
                    if k not in ("shard", "suite_cases", "suite_fingerprint")
                },
                "fingerprint": first.info.dataset["suite_fingerprint"],
                "cases": first.info.dataset.get("suite_cases"),
                "merged_shards": count,
            },
            "cache": cache if first.info.cache is not None else None,
            "status": "complete" if all(r.info.status == "complete" for r in runs) else "cancelled",
        }
    )
    merged = RunResult(info=info, metrics=summarise(trials), trials=trials)
    if dataset is not None and all(r.deepeval is not None for r in runs):
        from evals.deepeval_metric import strict_tool_correctness_summary

        merged.deepeval = strict_tool_correctness_summary(merged, dataset)
    return merged


def with_more_trials(result: RunResult, more: RunResult, dataset: Dataset | None = None) -> RunResult:
    """`result` with the trials of `more` (further trials of some of its cases, numbered on from its own) added,
    and its metrics recomputed: how a suspected regression is confirmed or found to be a flip."""
    order = {t.case_id: i for i, t in enumerate(result.trials)}
    trials = sorted([*result.trials, *more.trials], key=lambda t: (order.get(t.case_id, len(order)), t.trial))
    confirmed = sorted({t.case_id for t in more.trials})
    info = result.info.model_copy(update={"options": {**result.info.options, "confirmed": confirmed}})
    combined = RunResult(info=info, metrics=summarise(trials), trials=trials)
    if dataset is not None and result.deepeval is not None:
        from evals.deepeval_metric import strict_tool_correctness_summary

        combined.deepeval = strict_tool_correctness_summary(combined, dataset)
    return combined


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
