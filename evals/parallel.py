"""Split an in-process run across worker processes (`--workers N`).

The runner drives the real backend in-process, so its per-case cost (HTTP, FastAPI, the Agents SDK, SQLite) is Python
on one core; past a few concurrent cases a single process is CPU-bound while the model sits idle. Each worker is a
process of its own (forked when it is safe, see `_start_method`) with its own app and databases; `concurrency` (model
requests at once) is split between the workers, and every worker takes its next case from one shared queue (longest
first), so no worker idles while another has a backlog. Results do not depend on which worker ran a case: each case
starts on an emptied database. A worker streams each finished trial back, so progress and `on_result` work as in one
process, and hands back what it recorded so the parent writes the cache file once.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue as queue_module
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from evals.cache import ResponseCache
from evals.config import EvalConfig, default_cache_file
from evals.dataset import Case, Dataset
from evals.local_run import LocalRun, run_here
from evals.runner import Job, TrialOutcome, jobs_in_order, open_cases
from evals.scoring import TrialScore
from evals.target import in_process_settings
from evals.transcript import Transcript


def _worker(config: EvalConfig, cases: list[dict[str, Any]], jobs: Any, messages: Any, go: Any) -> None:
    """A child process: run jobs from the shared queue until it hands out None, report each trial, then what the
    cache learned."""
    try:
        dataset = Dataset(tuple(Case.model_validate(c) for c in cases))
        by_id = {case.id: case for case in dataset.cases}

        def on_start(total: int) -> None:
            messages.put(("started", total))
            # Start together: a worker that ran while another was still importing would share its core with that.
            go.wait()

        def on_result(outcome: TrialOutcome) -> None:
            messages.put(
                ("result", outcome.case.id, outcome.transcript.model_dump_json(), outcome.score.model_dump_json())
            )

        async def next_job() -> Job | None:
            job = await asyncio.to_thread(jobs.get)
            return None if job is None else (by_id[job[0]], job[1])

        run = _event_loop_runner()(run_here(config, dataset, on_start=on_start, on_result=on_result, next_job=next_job))
        cache = run.cache
        learned = (
            {
                "new": {k: cache.entries[k] for k in cache.new},
                "used": sorted(cache.used),
                "hits": cache.hits,
                "misses": cache.misses,
            }
            if cache is not None
            else None
        )
        messages.put(("done", run.target, run.startup_seconds, learned))
    except BaseException as exc:  # reported to the parent, which raises it
        messages.put(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    # Everything is reported and the target closed: leave without the interpreter's teardown of every module
    # (which the parent would wait for), once the queue's feeder thread has flushed what was put.
    messages.close()
    messages.join_thread()
    os._exit(0)


async def run_in_workers(
    config: EvalConfig,
    dataset: Dataset,
    *,
    on_start: Any = None,
    on_result: Any = None,
) -> LocalRun:
    config = config.settled()
    workers = max(1, min(config.workers, config.in_flight, len(dataset) * config.trials))
    all_cases = [c.model_dump(mode="json", exclude_unset=True) for c in dataset.cases]
    # The parent writes the cache file once, from what the workers learned.
    per_worker = replace(config, workers=1, deepeval=False, prune_cache=False)
    began = time.perf_counter()
    startup = last_result = 0.0
    context: Any = multiprocessing.get_context(_start_method())  # typeshed: BaseContext has no Process
    messages = context.Queue()
    go = context.Event()
    jobs = context.Queue()
    slots = [config.in_flight // workers + (1 if i < config.in_flight % workers else 0) for i in range(workers)]
    processes = [
        context.Process(
            target=_worker, args=(replace(per_worker, concurrency=n), all_cases, jobs, messages, go), daemon=True
        )
        for n in slots
    ]
    for process in processes:
        process.start()
    # One queue of jobs, longest first, shared by every worker; then one None per case a worker keeps open to stop it.
    # Filled once the workers exist: a put starts the queue's feeder thread, and a fork must not race a thread.
    for case, trial in jobs_in_order(dataset.cases, config.trials, config.first_trial):
        jobs.put((case.id, trial))
    for _ in range(sum(open_cases(n) for n in slots)):
        jobs.put(None)
    cases = {c.id: c for c in dataset.cases}
    outcomes: list[TrialOutcome] = []
    targets: list[dict[str, Any]] = []
    learned: list[dict[str, Any]] = []
    started = 0
    done = 0
    try:
        while done < workers:
            try:
                message = await asyncio.to_thread(messages.get, True, 1.0)
            except queue_module.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"an eval worker exited with code {dead[0].exitcode}") from None
                continue
            kind = message[0]
            if kind == "started":
                started += 1
                if started == workers:
                    startup = time.perf_counter() - began  # interpreters spawned, apps built: the run begins
                    go.set()
                    last_result = time.perf_counter()
                    if on_start is not None:
                        on_start(len(dataset) * config.trials)
            elif kind == "result":
                _, case_id, transcript, score = message
                outcome = TrialOutcome(
                    cases[case_id], Transcript.model_validate_json(transcript), TrialScore.model_validate_json(score)
                )
                outcomes.append(outcome)
                last_result = time.perf_counter()
                if on_result is not None:
                    on_result(outcome)
            elif kind == "done":
                _, target, _child_startup, cache_part = message
                targets.append(target)
                if cache_part is not None:
                    learned.append(cache_part)
                done += 1
            elif kind == "failed":
                raise RuntimeError(f"an eval worker failed: {message[1]}")
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        with contextlib.suppress(Exception):
            messages.close()
            jobs.close()
    position = {case.id: index for index, case in enumerate(dataset.cases)}
    outcomes.sort(key=lambda o: (position[o.case.id], o.transcript.trial))
    run_seconds = last_result - began - startup
    return LocalRun(outcomes, targets[0], startup, _merged_cache(config, learned), run_seconds, config.in_flight)


def _merged_cache(config: EvalConfig, learned: list[dict[str, Any]]) -> ResponseCache | None:
    if config.cache_mode == "off":
        return None
    settings = in_process_settings(config.settings or _default_settings(), prompt=config.prompt, model=config.model)
    cache = ResponseCache.load(config.cache_file or default_cache_file(settings))
    for part in learned:
        for key, entry in part["new"].items():
            cache.entries[key] = entry
            cache.new.add(key)
            cache.recorded += 1
        cache.used.update(part["used"])
        cache.hits += part["hits"]
        cache.misses += part["misses"]
    return cache


def _default_settings() -> Any:
    from backend.settings import get_settings

    return get_settings()


def _start_method() -> str:
    """fork on Linux when nothing else runs in this process, else spawn.

    A forked worker starts with every module already imported; a spawned one imports the backend again, which costs
    seconds of CPU per worker (the Agents SDK alone is most of it), more than a short run itself.
    With another thread running, a fork could copy a lock that thread holds, and the child would wait on it forever;
    on macOS, system libraries are not fork-safe at all (Python spawns there by default).
    """
    if sys.platform == "linux" and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _event_loop_runner() -> Any:
    """uvloop when installed (it comes with uvicorn[standard]): its loop does the same work with less CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
