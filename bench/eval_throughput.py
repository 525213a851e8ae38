"""Issue 4 figures: how fast the eval runner drives a model, how fast it scores, how long the suite takes.

1. Runner throughput: a fake OpenAI-compatible model (the rule-based reference agent behind uvicorn on loopback, in
   its own process) answers every request after 200 ms; 100 cases (the suite's cases, cycled) at --concurrency 16:
   in-process with 1 and 2 runner processes, and with --url against the backend deployed under uvicorn (2 workers).
   Run time (first case start to last result) and whole wall time against the ideal, total model latency / 16
   (target: within 1.25x), and the most requests the model was answering at once (--concurrency bounds it).
2. Scoring throughput: the deterministic scorer alone over the transcripts of (1), cases per second.
3. The full suite replayed from the committed cache of the local model's answers (what CI's gate runs), and the
   wall time of the live local-model run recorded in the committed baseline.

    python bench/eval_throughput.py [--cases 100] [--concurrency 16] [--delay 0.2] [--workers 1 2]
                                    [--url-backend-workers 2] [--skip-replay]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
os.environ.setdefault("DEEPEVAL_DISABLE_DOTENV", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402

from backend.settings import Settings  # noqa: E402
from bench._servers import BENCH_SECRET, backend_with_scripted_model, free_port, uvicorn_process, wait_until_up  # noqa: E402
from evals.dataset import Dataset, load_dataset  # noqa: E402
from evals.metrics import summarise  # noqa: E402
from evals.reference_agent import reference_responder  # noqa: E402
from evals.results import RunResult  # noqa: E402
from evals.scoring import score_trial  # noqa: E402
from evals.scripted_model import Reply, create_scripted_app  # noqa: E402
from evals.suite import EvalConfig, run_evals  # noqa: E402

BASELINE = ROOT / "evals" / "baselines" / "local.json"
CACHE = ROOT / "evals" / "cache" / "qwen2.5-coder-1.5b-instruct.jsonl"


def fake_model_app() -> FastAPI:
    """uvicorn factory: the reference agent, answering after FAKE_MODEL_DELAY seconds."""
    delay = float(os.environ.get("FAKE_MODEL_DELAY", "0.2"))

    def respond(request: dict[str, Any]) -> Reply:
        reply = reference_responder(request)
        reply.delay = delay
        return reply

    app = create_scripted_app(respond, model_name="fake")
    in_flight = {"now": 0, "most": 0}

    @app.middleware("http")
    async def count_in_flight(request: Request, call_next: Any) -> Any:
        if not request.url.path.endswith("/chat/completions"):
            return await call_next(request)
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        try:
            return await call_next(request)
        finally:
            in_flight["now"] -= 1

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        """How many completions it served (with a deployed backend, the runner cannot see the model calls), and the
        most it was answering at once (what --concurrency bounds)."""
        return {"requests": len(app.state.requests), "most_in_flight": in_flight["most"]}

    return app


def cycled(dataset: Dataset, n: int) -> Dataset:
    cases = [
        dataset.cases[i % len(dataset)].model_copy(update={"id": f"{dataset.cases[i % len(dataset)].id}-{i}"})
        for i in range(n)
    ]
    return Dataset(tuple(cases))


async def runner_throughput(cases: int, concurrency: int, delay: float, workers: int) -> RunResult:
    """In-process (the default): the backend runs inside the runner's process(es)."""
    port = free_port()
    env = {"FAKE_MODEL_DELAY": str(delay), "PYTHONPATH": str(ROOT)}
    with uvicorn_process("bench.eval_throughput:fake_model_app", port, env=env):
        wait_until_up(f"http://127.0.0.1:{port}/v1/models")
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None, data_dir=Path(tmp), agent_model="fake", openai_base_url=f"http://127.0.0.1:{port}/v1",
                openai_api_key="none", model_timeout=30.0,
            )  # fmt: skip
            dataset = cycled(load_dataset(), cases)
            if workers == 1:
                # Warm up lazy imports, the connection pool and the server (not measured). Not before a split run:
                # its threads would outlive it, and a process with threads spawns its workers instead of forking.
                await run_evals(
                    EvalConfig(settings=settings, concurrency=2, deepeval=False), dataset=cycled(dataset, 2)
                )
            config = EvalConfig(settings=settings, concurrency=concurrency, workers=workers, deepeval=False)
            result = await run_evals(config, dataset=dataset)
        most = httpx.get(f"http://127.0.0.1:{port}/stats").json()["most_in_flight"]
    return report(result, f"in-process, --workers {workers}", cases, concurrency, delay, most_in_flight=most)


async def runner_throughput_url(cases: int, concurrency: int, delay: float, backend_workers: int) -> RunResult:
    """`--url`: the backend is deployed (uvicorn, its own processes) and the runner is only its client."""
    os.environ["FAKE_MODEL_DELAY"] = str(delay)  # read by the fake model server started below
    os.environ["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory() as tmp, backend_with_scripted_model(
        Path(tmp), model_app="bench.eval_throughput:fake_model_app", workers=backend_workers,
        extra_env={"AGENT_MODEL": "fake"},
    ) as (base, _env):  # fmt: skip
        wait_until_up(f"{base}/health/ready")
        dataset = cycled(load_dataset(), cases)
        config = EvalConfig(url=base, token_secret=BENCH_SECRET, concurrency=concurrency, deepeval=False)
        await run_evals(replace(config, concurrency=2), dataset=cycled(dataset, 4))  # warm-up, not measured
        model_base = _env["OPENAI_BASE_URL"].removesuffix("/v1")
        before = httpx.get(f"{model_base}/stats").json()["requests"]
        result = await run_evals(config, dataset=dataset)
        stats = httpx.get(f"{model_base}/stats").json()
        calls = stats["requests"] - before
    # The runner sees no model calls here; the ideal counts each one the fake server served at exactly its delay.
    how = f"--url, backend under uvicorn --workers {backend_workers}"
    return report(result, how, cases, concurrency, delay, server_calls=calls, most_in_flight=stats["most_in_flight"])


def report(
    result: RunResult,
    how: str,
    cases: int,
    concurrency: int,
    delay: float,
    *,
    server_calls: int | None = None,
    most_in_flight: int,
) -> RunResult:
    turns = [turn for trial in result.trials for turn in trial.transcript.turns]
    total_model = sum(turn.model_latency_ms or 0.0 for turn in turns) / 1000
    calls = sum(turn.model_calls or 0 for turn in turns)
    if server_calls is not None:
        calls, total_model = server_calls, server_calls * delay
    ideal = total_model / concurrency
    wall = result.info.wall_seconds or 0.0
    startup = result.info.startup_seconds or 0.0
    run = result.info.run_seconds or (wall - startup)
    print(f"1. runner ({how}): {cases} cases at --concurrency {concurrency}, fake model answering after "
          f"{delay * 1000:.0f} ms")  # fmt: skip
    print(
        f"   model calls {calls}, total model latency {total_model:.2f} s (mean {total_model / max(calls, 1) * 1000:.0f} "
        f"ms); the model answered at most {most_in_flight} at once"
    )
    print(f"   ideal (total model latency / {concurrency}) {ideal:.2f} s; run (first case start to last result) "
          f"{run:.2f} s = {run / ideal:.2f}x (target <= 1.25x: {'OK' if run / ideal <= 1.25 else 'MISSED'}); "
          f"whole wall {wall:.2f} s = {wall / ideal:.2f}x (startup {startup:.2f} s: worker processes, the app, "
          f"databases; then teardown {max(wall - startup - run, 0):.2f} s)")  # fmt: skip
    print(f"   pass rate of the reference agent: {result.metrics['case_pass_rate']}")
    return result


def scoring_throughput(result: RunResult, repeat: int = 20) -> None:
    cases = {c.id: c for c in cycled(load_dataset(), len(result.trials)).cases}
    pairs = [(cases[t.case_id], t.transcript) for t in result.trials]
    started = time.perf_counter()
    for _ in range(repeat):
        for case, transcript in pairs:
            score_trial(case, transcript)
    elapsed = time.perf_counter() - started
    n = repeat * len(pairs)
    started = time.perf_counter()
    summarise(result.trials)
    aggregate = time.perf_counter() - started
    print(f"2. scoring: {n} trials in {elapsed:.2f} s = {n / elapsed:,.0f} cases/s (no model); "
          f"metrics over {len(result.trials)} trials {aggregate * 1000:.0f} ms")  # fmt: skip


async def replay_suite() -> None:
    if not CACHE.exists():
        print("3. replay: no committed cache yet (run `todo-agent eval baseline`)")
        return
    started = time.perf_counter()
    result = await run_evals(
        EvalConfig(model="local", cache_mode="replay", cache_file=CACHE, concurrency=4, deepeval=False)
    )
    wall = time.perf_counter() - started
    cache = result.info.cache or {}
    print(f"3. full suite replayed from the committed cache: {result.metrics['cases']} cases in {wall:.1f} s, "
          f"{cache.get('hits')} hits, {cache.get('misses')} misses, pass rate {result.metrics['case_pass_rate']}")  # fmt: skip
    if BASELINE.exists():
        base = RunResult.load(BASELINE)
        replayed = (base.info.cache or {}).get("hits", 0)
        how = f"replayed: {replayed} cached answers" if replayed else "live local model"
        print(f"   committed baseline ({how}, --concurrency {base.info.options.get('concurrency')}): "
              f"{base.metrics.get('cases')} cases, wall {base.info.wall_seconds} s, turn p50 "
              f"{base.metrics.get('latency_p50_ms')} ms / p95 {base.metrics.get('latency_p95_ms')} ms, pass rate "
              f"{base.metrics.get('case_pass_rate')}")  # fmt: skip


def machine_speed() -> None:
    """The runner is CPU-bound, so its ratio to the ideal depends on the machine: print a yardstick to compare
    figures taken on different machines by."""
    best = min(_timed(lambda: sum(i * i for i in range(10**6))) for _ in range(5))
    print(f"0. machine: {os.cpu_count()} cpus; pure-Python yardstick sum(i*i for i < 1e6) {best * 1000:.0f} ms")


def _timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[1, 2], help="in-process runs with this many runner processes"
    )
    parser.add_argument(
        "--url-backend-workers", type=int, nargs="*", default=[2],
        help="also measure --url against a deployed backend with this many uvicorn workers (none: skip)",
    )  # fmt: skip
    parser.add_argument("--skip-replay", action="store_true")
    args = parser.parse_args()
    machine_speed()
    results = []
    for workers in sorted(args.workers, reverse=True):  # split runs first, while this process has no threads
        results.append(await runner_throughput(args.cases, args.concurrency, args.delay, workers))
    for backend_workers in args.url_backend_workers:
        results.append(await runner_throughput_url(args.cases, args.concurrency, args.delay, backend_workers))
    if results:
        scoring_throughput(results[0])
    if not args.skip_replay:
        await replay_suite()


if __name__ == "__main__":
    asyncio.run(main())
