"""`--workers`: a run split across processes gives the same verdicts, and records one merged cache."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from typer.testing import CliRunner

from backend.agent import AgentConfig, TodoAgent, turn_deadline
from backend.llm.provider import build_model
from backend.settings import Settings
from backend.tools import ToolRunContext
from evals.cache import TURN_STATS, ModelCallStats, RecordReplayTransport
from evals.dataset import load_dataset
from evals.local_run import run_here
from evals.parallel import _start_method
from evals.results import RunResult
from evals.runner import Job, expected_model_calls, jobs_in_order, open_cases
from evals.scripted_model import Reply, create_scripted_app
from evals.suite import auto_workers, run_evals
from tests.conftest import Hold
from tests.evals_support import InFlight, scripted_config
from todo_agent.cli import app

IDS = ["ref-add-groceries", "ref-complete-by-id", "multi-add-two", "follow-add-then-complete", "chat-hello"]


async def test_workers_match_a_single_process_and_merge_the_cache(tmp_path: Path) -> None:
    single = await run_evals(scripted_config(tmp_path / "one", ids=IDS))
    cache = tmp_path / "cache.jsonl"
    split = await run_evals(
        scripted_config(tmp_path / "two", ids=IDS, workers=2, cache_mode="record", cache_file=cache)
    )
    assert [(t.case_id, t.passed) for t in split.trials] == [(t.case_id, t.passed) for t in single.trials]
    assert split.info.options["workers"] == 2
    assert split.info.cache is not None and split.info.cache["recorded"] == single.metrics["model_calls"]
    replayed = await run_evals(scripted_config(tmp_path / "three", ids=IDS, cache_mode="replay", cache_file=cache))
    assert replayed.info.cache is not None and replayed.info.cache["misses"] == 0


async def test_workers_share_one_queue_every_job_runs_exactly_once(tmp_path: Path) -> None:
    # 3 slots over 2 workers (2 + 1), 2 trials each: every (case, trial) once, whichever worker took it.
    run = await run_evals(scripted_config(tmp_path, ids=IDS, workers=2, concurrency=3, trials=2))
    assert sorted((t.case_id, t.trial) for t in run.trials) == sorted((i, k) for i in IDS for k in (1, 2))
    in_dataset_order = [c.id for c in load_dataset().select(ids=IDS).cases]
    assert [t.case_id for t in run.trials] == [i for i in in_dataset_order for _ in (1, 2)]  # (case, trial) order
    assert all(t.passed for t in run.trials)


def test_jobs_start_longest_first() -> None:
    dataset = load_dataset().select(ids=IDS)
    jobs = jobs_in_order(list(dataset.cases), trials=2)
    costs = [expected_model_calls(case) for case, _ in jobs]
    assert costs == sorted(costs, reverse=True) and len(jobs) == 2 * len(IDS)


async def test_a_run_takes_only_the_jobs_it_is_handed(tmp_path: Path) -> None:
    dataset = load_dataset().select(ids=IDS)
    handed = [(dataset.cases[0], 1), (dataset.cases[2], 3)]
    expected = list(handed)

    async def next_job() -> Job | None:
        return handed.pop(0) if handed else None

    config = scripted_config(tmp_path, concurrency=2)
    run = await run_here(config, dataset, next_job=next_job)
    assert [(o.case.id, o.transcript.trial) for o in run.outcomes] == [(c.id, k) for c, k in expected]


def test_workers_fork_from_a_quiet_process_and_spawn_beside_a_thread(tmp_path: Path) -> None:
    """The CLI runs no thread of its own (its progress bar is redrawn per event), so `--workers` forks: a worker
    starts with every module imported instead of importing the backend again. The run is the real CLI in a fresh
    interpreter, as a user starts it."""
    probe = "import evals.parallel as p, evals.cli; print(p._start_method())"
    forked = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert forked.stdout.strip() == "fork"
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "BETTER_AUTH_SECRET": "x" * 48}
    out = tmp_path / "out"
    run = subprocess.run(
        [str(Path(sys.executable).parent / "todo-agent"), "eval", "run", "--model", "scripted", "--ids", ",".join(IDS),
         "--workers", "2", "--concurrency", "4", "--out", str(out), "--quiet", "--no-deepeval"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["info"]["options"]["workers"] == 2
    assert sorted(t["case_id"] for t in results["trials"]) == sorted(IDS)

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert _start_method() == "spawn"
    finally:
        stop.set()
        thread.join()


def test_auto_workers_is_a_process_per_8_concurrent_cases_up_to_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert [auto_workers(n) for n in (1, 4, 15, 16, 64)] == [1, 1, 1, 2, 2]
    assert auto_workers(64, in_process=False) == 1  # a deployed backend does the work itself
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert auto_workers(40) == 5


def test_workers_must_be_a_number_or_auto() -> None:
    for bad in ("two", "0"):
        result = CliRunner().invoke(app, ["eval", "run", "--model", "scripted", "--workers", bad, "--no-deepeval"])
        assert result.exit_code == 2 and "--workers" in result.output, result.output


@pytest.mark.parametrize(
    ("case_id", "model_calls"),
    [
        ("multi-add-three", 2),  # three adds share one response, then the reply
        ("complete-by-title", 3),  # the lookup, the completion, the reply
        ("ambiguous-delete", 2),  # no call expected, a lookup allowed: it may well be made
        ("chat-capabilities", 1),  # no call at all: the reply
        ("follow-add-then-complete", 4),  # two turns of one write each
    ],
)
def test_a_case_is_estimated_in_rounds_of_model_calls(case_id: str, model_calls: int) -> None:
    (case,) = load_dataset().select(ids=[case_id]).cases
    assert expected_model_calls(case) == model_calls


async def test_cases_running_at_once_on_one_app_each_see_their_own_database(tmp_path: Path) -> None:
    """One app serves every slot; each case's connections open its own SQLite file, emptied before the case. So ids
    start from 1 in every case, whatever runs beside it, and six at once observe exactly what one at a time does."""
    cases = [c for c in load_dataset().cases if len(c.tasks) >= 2][:12]
    ids = [c.id for c in cases]
    together = await run_evals(scripted_config(tmp_path / "six", ids=ids, concurrency=6))
    alone = await run_evals(scripted_config(tmp_path / "one", ids=ids, concurrency=1))
    by_id = {c.id: c for c in cases}
    assert len(together.trials) == len(cases)
    for trial in together.trials:
        transcript = trial.transcript
        assert transcript.setup_error is None
        assert sorted(transcript.ids.values()) == list(range(1, len(transcript.ids) + 1)), trial.case_id
        assert [t["title"] for t in transcript.tasks_before] == [t.title for t in by_id[trial.case_id].tasks]

    def observed(run: RunResult) -> list[Any]:
        return [
            (t.case_id, [(c.name, c.arguments) for turn in t.transcript.turns for c in turn.tool_calls],
             [[(task["id"], task["title"], task["completed"]) for task in turn.tasks_after]
              for turn in t.transcript.turns])
            for t in run.trials
        ]  # fmt: skip

    assert observed(together) == observed(alone)


async def test_concurrency_bounds_the_model_requests_in_flight_not_the_cases(tmp_path: Path) -> None:
    """`--concurrency 3`: never more than 3 requests at the model, and always 3 while there is work, though more
    cases than that are open (their setup, tools and task-list reads overlap the others' model calls)."""
    model = InFlight(delay=0.05)
    ids = [c.id for c in load_dataset().cases[:12]]
    run = await run_evals(scripted_config(tmp_path, model, ids=ids, concurrency=3))
    assert model.most_at_once == 3
    assert len(run.trials) == 12 and all(t.transcript.setup_error is None for t in run.trials)
    assert open_cases(3) > 3


class HeldModel(httpx.AsyncBaseTransport):
    """A model endpoint whose answers wait until the test releases them, each on its own Hold."""

    def __init__(self) -> None:
        self.holds: list[Hold] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        hold = Hold()
        self.holds.append(hold)
        await hold()
        return httpx.Response(200, json={"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})


async def test_a_wait_for_the_model_slot_is_queued_time_not_latency_and_moves_the_turn_deadline() -> None:
    """One model slot, two requests: the second waits for the first. That wait is the run's scheduling: it is counted
    as queued time, pushes the turn's timeout back by as much, and is not model latency. (A clock of the test's own
    stands for time passing: nothing here depends on how fast the machine is.)"""
    now = [1000.0]
    model = HeldModel()
    transport = RecordReplayTransport(model, max_in_flight=1, clock=lambda: now[0])
    request = httpx.Request("POST", "http://model/v1/chat/completions", json={"messages": []})

    async def turn() -> tuple[ModelCallStats, float | None]:
        stats = ModelCallStats()
        TURN_STATS.set(stats)
        async with asyncio.timeout(3600) as deadline:
            stats.deadline = deadline
            before = deadline.when()
            await transport.handle_async_request(request)
            moved = (deadline.when() or 0) - (before or 0)
        return stats, moved

    first = asyncio.create_task(turn())
    while not model.holds:  # the first request holds the one slot
        await asyncio.sleep(0)
    second = asyncio.create_task(turn())
    await asyncio.sleep(0)  # the second is now waiting for the slot
    now[0] += 7.0  # seven seconds pass while it waits
    model.holds[0].release.set()
    (first_stats, first_moved) = await first
    while len(model.holds) < 2:
        await asyncio.sleep(0)
    now[0] += 2.0  # the second's own model call takes two
    model.holds[1].release.set()
    second_stats, second_moved = await second
    assert (first_stats.queued_s, first_moved) == (0.0, 0.0)
    assert second_stats.queued_s == 7.0 and second_moved == 7.0
    assert second_stats.latency_s == 2.0 and first_stats.latency_s == 7.0


async def test_a_run_gives_the_heap_back_to_the_collector(tmp_path: Path) -> None:
    """With the speed aids (`--workers`), a worker's share freezes what is alive once its target is up (no full
    collection walks the backend mid-run), and unfreezes it at the end: in a process that runs many evals, frozen
    garbage would never be collected. Without them (the default) nothing is frozen."""
    frozen_during: list[int] = []
    config = replace(scripted_config(tmp_path, ids=IDS[:2]), workers=2)
    dataset = load_dataset().select(ids=IDS[:2])
    run = await run_here(config, dataset, on_result=lambda _outcome: frozen_during.append(gc.get_freeze_count()))
    assert len(run.outcomes) == 2 and min(frozen_during) > 0
    assert gc.get_freeze_count() == 0
    plain: list[int] = []
    await run_evals(
        scripted_config(tmp_path, ids=IDS[:1]), on_result=lambda _outcome: plain.append(gc.get_freeze_count())
    )
    assert plain == [0]


async def test_in_process_a_wait_for_the_model_slot_moves_the_backends_turn_deadline_too() -> None:
    """In-process, the runner's wait for a model slot happens inside the backend's turn: the backend's per-turn
    timeout must not count it either, or a queue of cases on one local slot would time out as "the model did not
    answer". Two real agent turns share one slot; the second waits seven seconds (of the test's clock) for it, and
    the deadline its model call runs under is seven seconds later than the first's."""
    now = [1000.0]
    deadlines: list[float | None] = []
    first_may_answer = asyncio.Event()

    async def hold_first() -> None:
        await first_may_answer.wait()

    def respond(_request: dict[str, Any]) -> Reply:
        deadlines.append(turn_deadline())
        return Reply(text="done", wait=hold_first if len(deadlines) == 1 else None)

    readings = [0]

    def clock() -> float:
        readings[0] += 1
        return now[0]

    transport = RecordReplayTransport(
        httpx.ASGITransport(app=create_scripted_app(respond)), max_in_flight=1, clock=clock
    )
    settings = Settings(agent_model="scripted", openai_base_url="http://scripted.model/v1", openai_api_key="none")
    model = build_model(settings, http_client=httpx.AsyncClient(transport=transport))
    agent = TodoAgent(model, AgentConfig(instructions="You manage tasks.", timeout=60.0))
    context = ToolRunContext(user_id="u1", engine=cast(Any, None))

    async def turn() -> list[object]:
        return [event async for event in agent.stream(context=context, history=[], message="hi", stream_tokens=False)]

    first = asyncio.create_task(turn())
    while not deadlines:  # the first request holds the one slot
        await asyncio.sleep(0)
    second = asyncio.create_task(turn())
    while readings[0] < 3:  # the first read the clock twice (queued, started); the second's read: it waits now
        await asyncio.sleep(0)
    now[0] += 7.0
    first_may_answer.set()
    await first
    await second
    assert len(deadlines) == 2 and deadlines[0] is not None and deadlines[1] is not None
    assert deadlines[1] - deadlines[0] >= 7.0
