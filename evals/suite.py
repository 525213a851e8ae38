"""One eval run, end to end: load and filter the dataset, build the target (and the model client's record/replay
transport), run every case and trial, score, aggregate, and return the results document.

The CLI, the deepeval test module, the self-tests and the bench all call `run_evals`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from backend.llm.provider import model_name
from backend.settings import Settings, get_settings
from evals.cache import CacheMode, RecordReplayTransport, ResponseCache
from evals.dataset import DEFAULT_DATASET, PROJECT_ROOT, Dataset, load_dataset, wants_holdout
from evals.metrics import summarise
from evals.results import RunInfo, RunResult, TrialResult, versions
from evals.runner import NextJob, RunOptions, TrialOutcome, open_cases, run_suite
from evals.scripted_model import Responder, create_scripted_app
from evals.target import InProcessTarget, RemoteTarget, Target, in_process_settings

SCRIPTED_MODEL = "scripted"  # `--model scripted`: the rule-based reference agent, in-process
CACHE_DIR = PROJECT_ROOT / "evals" / "cache"


SLOTS_PER_WORKER = 8


def auto_workers(concurrency: int, *, in_process: bool = True) -> int:
    """`--workers auto`: a process per 8 concurrent model requests, up to the CPU count. The backend's own work runs
    in the runner and is Python: one process fills a core at about 16 concurrent 200 ms model calls. A deployed
    backend (`--url`) does that work itself, so its runner is one process."""
    if not in_process:
        return 1
    return max(1, min(os.cpu_count() or 1, concurrency // SLOTS_PER_WORKER))


@dataclass
class EvalConfig:
    dataset: Path = DEFAULT_DATASET
    tags: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    trials: int = 1
    concurrency: int = 4  # model requests at once (with --url: chat turns), over all workers
    workers: int = 1  # processes (in-process runs): the runner is CPU-bound Python, one process fills one core
    turn_timeout: float = 120.0
    prompt: Path | None = None
    model: str | None = None  # None: the configured AGENT_MODEL
    url: str | None = None
    token_secret: str | None = None
    token_file: Path | None = None
    cache_mode: CacheMode = "off"
    cache_file: Path | None = None  # None: evals/cache/<model>.jsonl
    prune_cache: bool = False  # keep only the entries this run used (when refreshing a baseline)
    responder: Responder | None = None  # the scripted model's policy (tests plant faults here)
    settings: Settings | None = None  # base settings; default: the environment's
    deepeval: bool = True  # also score deepeval's strict ToolCorrectnessMetric

    def validate(self) -> None:
        if self.url and (self.prompt is not None or self.model is not None):
            raise ValueError("--prompt and --model apply to the in-process backend; a deployed --url runs what it runs")
        if self.url and self.cache_mode != "off":
            raise ValueError("record/replay wraps the in-process model client; it cannot apply to --url")
        if self.url and not (self.token_secret or self.token_file):
            raise ValueError("--url needs --token-secret (HS256) or --tokens FILE")
        if self.trials < 1 or self.concurrency < 1 or self.workers < 1:
            raise ValueError("--trials, --concurrency and --workers must be at least 1")


def default_cache_file(settings: Settings) -> Path:
    return CACHE_DIR / f"{model_name(settings)}.jsonl"


def _scripted_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"agent_model": SCRIPTED_MODEL, "openai_base_url": "http://scripted.model/v1", "openai_api_key": "none"}
    )


def build_model_transport(
    config: EvalConfig, settings: Settings, cache: ResponseCache | None, *, max_in_flight: int | None = None
) -> RecordReplayTransport:
    """The agent's model client transport: scripted in-process, the local llama.cpp server, or a hosted endpoint."""
    before_live: Callable[[], Any] | None = None
    inner: httpx.AsyncBaseTransport | None = None  # None: real HTTP to the configured endpoint
    if settings.agent_model == SCRIPTED_MODEL:
        from evals.reference_agent import reference_responder

        inner = httpx.ASGITransport(app=create_scripted_app(config.responder or reference_responder))
    elif settings.is_local_model:
        # Started on the first live call: a full replay never needs the model (nor its 2 GB of RAM).
        async def start_local_model() -> None:
            from backend.llm.local_server import ensure_local_model_server

            await asyncio.to_thread(ensure_local_model_server, settings)

        before_live = start_local_model
    return RecordReplayTransport(
        inner, cache, config.cache_mode, before_live_call=before_live, max_in_flight=max_in_flight
    )


def select(config: EvalConfig) -> Dataset:
    holdout = wants_holdout(config.dataset, config.tags)
    return load_dataset(config.dataset, holdout=holdout).select(tags=config.tags, ids=config.ids)


@dataclass
class LocalRun:
    """What one process's share of a run produced (see `evals.parallel` for several processes)."""

    outcomes: list[TrialOutcome]
    target: dict[str, Any]
    startup_seconds: float
    cache: ResponseCache | None
    run_seconds: float = 0.0  # from the first case's start to the last trial's result


async def run_here(
    config: EvalConfig,
    dataset: Dataset,
    *,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[TrialOutcome], None] | None = None,
    next_job: NextJob | None = None,
) -> LocalRun:
    """Run `dataset` in this process: build the target, run every case and trial (or the jobs `next_job` hands
    out), close the target."""
    started = time.perf_counter()
    cache: ResponseCache | None = None
    target: Target
    if config.url:
        target = RemoteTarget(
            config.url, token_secret=config.token_secret, token_file=config.token_file, timeout=config.turn_timeout
        )
    else:
        settings = in_process_settings(config.settings or get_settings(), prompt=config.prompt, model=config.model)
        if settings.agent_model == SCRIPTED_MODEL:
            settings = _scripted_settings(settings)
        if config.cache_mode != "off":
            cache = ResponseCache.load(config.cache_file or default_cache_file(settings))
        transport = build_model_transport(config, settings, cache, max_in_flight=config.concurrency)
        target = InProcessTarget(settings, transport, slots=open_cases(config.concurrency))
    options = RunOptions(
        trials=config.trials,
        concurrency=config.concurrency,
        turn_timeout=config.turn_timeout,
        limit_turns=bool(config.url),
    )
    await target.start()
    # Everything alive now (the imported backend, the app) lives as long as the run: move it out of the collector's
    # reach. A full collection otherwise walks all of it, ~200 ms with every other coroutine stopped, once or twice
    # a run. Given back afterwards: a long-lived process (the playground, a test session) runs many evals, and what
    # stayed frozen, garbage included, would never be collected.
    gc.freeze()
    startup = time.perf_counter() - started
    try:
        if on_start is not None:
            on_start(len(dataset) * config.trials)
        began = time.perf_counter()
        outcomes = await run_suite(list(dataset.cases), target, options, on_result=on_result, next_job=next_job)
        run_seconds = time.perf_counter() - began
    finally:
        gc.unfreeze()
        await target.close()
    return LocalRun(outcomes, target.describe(), startup, cache, run_seconds)


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
        from evals.parallel import run_in_workers

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
