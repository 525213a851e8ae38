"""One process's share of a run: build the target (the app in-process, or a deployed URL), run its cases, close it."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from backend.settings import Settings, get_settings
from evals.cache import RecordReplayTransport, ResponseCache
from evals.config import HOSTED_CONCURRENCY, SCRIPTED_MODEL, EvalConfig, default_cache_file
from evals.dataset import Case, Dataset
from evals.runner import NextJob, RunOptions, TrialOutcome, open_cases, run_suite
from evals.scripted_model import create_scripted_app
from evals.target import InProcessTarget, RemoteTarget, Target, in_process_settings


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


@dataclass
class LocalRun:
    """What one process's share of a run produced (see `evals.parallel` for several processes)."""

    outcomes: list[TrialOutcome]
    target: dict[str, Any]
    startup_seconds: float
    cache: ResponseCache | None
    run_seconds: float = 0.0  # from the first case's start to the last trial's result
    concurrency: int = 0  # what the run held model requests (with --url: turns) to


async def run_here(
    config: EvalConfig,
    dataset: Dataset,
    *,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[TrialOutcome], None] | None = None,
    next_job: NextJob | None = None,
    on_begin: Callable[[Case, int], None] | None = None,
    stop: asyncio.Event | None = None,
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
        config = config.settled()
        transport = build_model_transport(config, settings, cache, max_in_flight=config.in_flight)
        target = InProcessTarget(settings, transport, slots=open_cases(config.in_flight))
    await target.start()
    if config.concurrency is None and isinstance(target, RemoteTarget):
        config = replace(config, concurrency=target.capacity() or HOSTED_CONCURRENCY)
    options = RunOptions(
        trials=config.trials,
        concurrency=config.in_flight,
        turn_timeout=config.turn_timeout,
        limit_turns=bool(config.url),
        # A strict replay answers every request the same way each time: an error there is the cache's, and final.
        retries=0 if config.cache_mode == "replay" else config.retries,
        first_trial=config.first_trial,
    )
    # A speed aid of `--workers` runs: everything alive now (the imported backend, the app) lives as long as the run,
    # so move it out of the collector's reach (a full collection otherwise walks all of it, with every coroutine
    # stopped, once or twice a run). Given back afterwards: a long-lived process runs many evals, and what stayed
    # frozen, garbage included, would never be collected.
    if config.speed_aids:
        gc.freeze()
    startup = time.perf_counter() - started
    try:
        if on_start is not None:
            on_start(len(dataset) * config.trials)
        began = time.perf_counter()
        outcomes = await run_suite(
            list(dataset.cases), target, options, on_result=on_result, next_job=next_job, on_begin=on_begin, stop=stop
        )
        run_seconds = time.perf_counter() - began
    finally:
        if config.speed_aids:
            gc.unfreeze()
        await target.close()
    return LocalRun(outcomes, target.describe(), startup, cache, run_seconds, config.in_flight)
