"""The solver: replay each case through the HTTP contract and record what happened.

For every (case, trial): take a fresh user (and another user when the case has one), seed the starting tasks through
the tasks API and map each ref to its real id, send each turn to `POST /api/{user}/chat` (one conversation per
trial, per-turn timeout), and read the task list back from the tasks API after every turn. Scoring is separate
(`evals.scoring`), so the runner's only job is to observe faithfully.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from backend.tools import read_only_tools
from evals.cache import TURN_STATS, ModelCallStats
from evals.dataset import MISSING_REF, Case, SeedTask, render_user_text
from evals.scoring import TrialScore, score_trial
from evals.target import CaseSession, Target
from evals.transcript import ObservedCall, Transcript, TurnRecord

MISSING_ID = 987  # `{missing}`: an id the case's user owns no task with (tools are per-user, so it is "not found")


@dataclass(frozen=True)
class RunOptions:
    trials: int = 1
    concurrency: int = 4  # requests to the model at once
    turn_timeout: float = 120.0
    # Hold `concurrency` per chat turn: for a deployed backend, whose model calls the runner cannot see (a turn makes
    # one model call at a time). In-process, the model client holds it per model call instead.
    limit_turns: bool = True
    retries: int = 2  # more attempts for a trial that errored (timeout, 5xx, transport): an error is not a verdict
    first_trial: int = 1


def open_cases(concurrency: int) -> int:
    """How many cases may be open at once for `concurrency` model requests in flight: a few more, so that while
    some cases are being set up, read their task lists or run their tools, others keep the model busy."""
    return concurrency + max(1, concurrency // 4)


@dataclass(frozen=True)
class TrialOutcome:
    case: Case
    transcript: Transcript
    score: TrialScore


class SetupError(RuntimeError):
    pass


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return f"HTTP {response.status_code}: {error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


async def _seed(session: CaseSession, user: str, tasks: Sequence[SeedTask]) -> tuple[dict[str, int], list[Any]]:
    """Create the tasks in order; their ids by ref, and the list as the tasks API answered for each one (in id
    order, as `GET /tasks` lists them: the user starts with none, so this is their whole task list)."""
    ids: dict[str, int] = {}
    created: list[Any] = []
    for task in tasks:
        response = await session.client.post(f"/api/{user}/tasks", json=task.creation(), headers=session.headers(user))
        if response.status_code != 201:
            raise SetupError(f"seeding {task.ref!r}: {_error_text(response)}")
        body = response.json()
        task_id = int(body["id"])
        if task.completed:
            done = await session.client.patch(
                f"/api/{user}/tasks/{task_id}", json={"completed": True}, headers=session.headers(user)
            )
            if done.status_code != 200:
                raise SetupError(f"completing {task.ref!r}: {_error_text(done)}")
            body = done.json()
        ids[task.ref] = task_id
        created.append(body)
    return ids, sorted(created, key=lambda t: int(t["id"]))


async def _tasks(session: CaseSession, user: str) -> list[dict[str, Any]]:
    response = await session.client.get(f"/api/{user}/tasks", params={"status": "all"}, headers=session.headers(user))
    if response.status_code != 200:
        raise SetupError(f"reading tasks: {_error_text(response)}")
    tasks: list[dict[str, Any]] = response.json()
    return tasks


async def run_trial(
    case: Case,
    trial: int,
    target: Target,
    options: RunOptions,
    *,
    ready: Callable[[], None] | None = None,
    turn_slots: asyncio.Semaphore | None = None,
) -> Transcript:
    """`ready` is called once the trial is set up and about to send its first turn (or has failed before that).
    Each turn holds one of `turn_slots` while it talks to the agent; the wait for it is not the case's time."""
    started = time.perf_counter()
    async with target.session(with_other_user=bool(case.other_user_tasks)) as session:
        transcript = Transcript(case_id=case.id, trial=trial, user_id=session.user, other_user_id=session.other_user)
        try:
            # The starting lists are what the tasks API answered while seeding (a fresh user has no other tasks):
            # reading them back would cost a request per user and trial for the same JSON.
            transcript.ids, transcript.tasks_before = await _seed(session, session.user, case.tasks)
            if case.other_user_tasks:
                assert session.other_user is not None
                other_ids, transcript.other_tasks_before = await _seed(
                    session, session.other_user, case.other_user_tasks
                )
                transcript.ids |= other_ids
            transcript.missing_id = MISSING_ID
            while transcript.missing_id in transcript.ids.values():
                transcript.missing_id += 1000
        except (SetupError, httpx.HTTPError) as exc:
            transcript.setup_error = str(exc) or type(exc).__name__
            return transcript
        finally:
            if ready is not None:
                ready()
        ids = {**transcript.ids, MISSING_REF: transcript.missing_id}
        for index, turn in enumerate(case.turns):
            text = render_user_text(turn.user, ids)
            record = await _run_turn(session, transcript, index, text, options, turn_slots)
            transcript.turns.append(record)
            if record.status != 200:
                break  # the conversation cannot go on meaningfully
        transcript.wall_ms = round((time.perf_counter() - started) * 1000 - (transcript.queued_ms or 0), 1)
        return transcript


async def _send_turn(
    session: CaseSession,
    transcript: Transcript,
    record: TurnRecord,
    body: dict[str, Any],
    options: RunOptions,
    stats: ModelCallStats,
) -> None:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(options.turn_timeout) as deadline:
            stats.deadline = deadline
            response = await session.client.post(
                f"/api/{session.user}/chat", json=body, headers=session.headers(session.user)
            )
        record.status = response.status_code
        if response.status_code == 200:
            payload = response.json()
            transcript.conversation_id = payload.get("conversation_id")
            record.response = payload.get("response")
            record.tool_calls = [
                ObservedCall(name=c.get("name", ""), arguments=c.get("arguments") or {}, result=c.get("result"))
                for c in payload.get("tool_calls") or []
            ]
        else:
            record.error = _error_text(response)
            try:
                details = response.json().get("error", {}).get("details") or {}
                transcript.conversation_id = transcript.conversation_id or details.get("conversation_id")
            except (ValueError, AttributeError):
                pass
    except TimeoutError:
        record.error = f"timeout: no answer within {options.turn_timeout:g} s"
    except httpx.HTTPError as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.latency_ms = round((time.perf_counter() - started) * 1000, 1)


async def _run_turn(
    session: CaseSession,
    transcript: Transcript,
    index: int,
    text: str,
    options: RunOptions,
    turn_slots: asyncio.Semaphore | None,
) -> TurnRecord:
    record = TurnRecord(index=index, user=text)
    body: dict[str, Any] = {"message": text}
    if transcript.conversation_id is not None:
        body["conversation_id"] = transcript.conversation_id
    stats = ModelCallStats()
    waiting = time.perf_counter()
    async with turn_slots or contextlib.nullcontext():
        queued = time.perf_counter() - waiting
        token = TURN_STATS.set(stats)
        try:
            await _send_turn(session, transcript, record, body, options, stats)
        finally:
            TURN_STATS.reset(token)
    # Waits for a free model slot are the run's scheduling, not the agent's latency.
    queued += stats.queued_s
    record.latency_ms = round((record.latency_ms or 0) - stats.queued_s * 1000, 1)
    transcript.queued_ms = round((transcript.queued_ms or 0) + queued * 1000, 1)
    if stats.misses and record.status != 200 and record.error:
        # The contract reports a model failure generically; say that it was the replay cache that had no answer.
        record.error = f"replay cache miss ({stats.misses} model request(s) not in the cache): {record.error}"
    record.model_calls = stats.calls
    record.model_latency_ms = round(stats.latency_s * 1000, 1)
    record.cache_hits = stats.hits
    record.cache_misses = stats.misses
    record.input_tokens = stats.input_tokens
    record.output_tokens = stats.output_tokens
    if stats.prompt_n or stats.predicted_n:
        record.prompt_tokens_read, record.decoded_tokens = stats.prompt_n, stats.predicted_n
        record.prompt_ms, record.decode_ms = round(stats.prompt_ms, 1), round(stats.predicted_ms, 1)
    record.reasked = list(stats.reasked)
    record.unparsed_calls = stats.unparsed_calls
    try:
        record.tasks_after = await _tasks(session, session.user)
        if session.other_user:
            record.other_tasks_after = await _tasks(session, session.other_user)
    except (SetupError, httpx.HTTPError) as exc:
        record.error = record.error or f"reading tasks after the turn: {exc}"
    return record


def first_error(score: TrialScore) -> str:
    """What stopped an errored trial, in one line."""
    return next((f.message for f in score.failures if f.kind == "error"), "error")


def _once(action: Callable[[], None]) -> Callable[[], None]:
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return call


def expected_model_calls(case: Case) -> int:
    """A case's rough cost, for scheduling: the model calls it should take. Per turn, calls come in rounds: a lookup,
    then the writes (the calls of one round share a model response), then the reply. A turn that expects no call but
    allows a lookup may well make one. Exact for 85 of the 90 cases with the reference agent and for 70 with the
    committed local-model baseline; on the bench's 100 cases, ordering by it packs 16 slots as tightly as the true
    costs would."""
    calls = 0
    for turn in case.turns:
        tools = {call.tool for call in turn.calls}
        lookups = read_only_tools()
        rounds = bool(tools & lookups) + bool(tools - lookups)
        if not rounds and turn.allow_extra and not turn.no_tool_calls:
            rounds = 1
        calls += rounds + 1
    return calls


Job = tuple[Case, int]  # a case and a trial number
NextJob = Callable[[], Awaitable[Job | None]]  # the next job to run, None when there are no more


def jobs_in_order(cases: Sequence[Case], trials: int, first_trial: int = 1) -> list[Job]:
    """Every case times every trial, longest cases first: with a fixed number of slots, a long case started last is
    what keeps a suite waiting (longest-processing-time-first scheduling)."""
    jobs = [(case, trial) for trial in range(first_trial, first_trial + trials) for case in cases]
    return sorted(jobs, key=lambda job: (-expected_model_calls(job[0]), -len(job[0].tasks)))


async def run_suite(
    cases: Sequence[Case],
    target: Target,
    options: RunOptions,
    *,
    on_result: Callable[[TrialOutcome], None] | None = None,
    next_job: NextJob | None = None,
    on_begin: Callable[[Case, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> list[TrialOutcome]:
    """Run jobs on `open_cases` cases at once until there are none left; results in (case, trial) order.

    `options.concurrency` bounds the requests to the model (see `RunOptions.limit_turns` for who holds it). A case
    also does work that needs no model: its setup, its task-list reads, the backend's own work between model calls.
    With a few more cases open than model slots, a freed slot has a request waiting instead of idling through that.
    By default the jobs are every case times every trial (`jobs_in_order`); `next_job` lets worker processes share
    one queue instead, so none of them sits idle while another still has a backlog.

    `on_begin(case, trial)` is called as a trial starts. Setting `stop` ends the run at once: no job starts, the
    trials in flight are cancelled mid-call (their turns' requests with them), and the finished ones are returned.
    """
    if next_job is None:
        pending = iter(jobs_in_order(cases, options.trials, options.first_trial))

        async def next_local() -> Job | None:
            return next(pending, None)

        next_job = next_local
    # Trials set up one at a time: a trial's setup (a fresh user, its seeded tasks) and the start of its
    # first turn are CPU work in this process. Started together, the trials would do that work in one burst,
    # send their model requests in one wave, get the answers in one wave, and stay in lock-step, each wave queueing
    # behind the others' CPU. Admitting the next trial once the previous one is set up spreads them out for good.
    setting_up = asyncio.Lock()
    turn_slots = asyncio.Semaphore(max(1, options.concurrency)) if options.limit_turns else None
    outcomes: list[TrialOutcome] = []

    async def attempt(case: Case, trial: int) -> TrialOutcome:
        await setting_up.acquire()
        ready = _once(setting_up.release)
        try:
            transcript = await run_trial(case, trial, target, options, ready=ready, turn_slots=turn_slots)
        finally:
            ready()  # also when the trial raised before it was set up: the next one must not wait forever
        return TrialOutcome(case, transcript, score_trial(case, transcript))

    async def case_slot() -> None:
        assert next_job is not None
        while not (stop is not None and stop.is_set()) and (job := await next_job()) is not None:
            case, trial = job
            if on_begin is not None:
                on_begin(case, trial)
            outcome = await attempt(case, trial)
            retried: list[str] = []
            while outcome.score.errored and len(retried) < options.retries:
                retried.append(first_error(outcome.score))
                outcome = await attempt(case, trial)
            outcome.transcript.retried = retried
            outcomes.append(outcome)
            if on_result is not None:
                on_result(outcome)

    slots: asyncio.Future[Any] = asyncio.gather(*(case_slot() for _ in range(open_cases(max(1, options.concurrency)))))
    if stop is None:
        await slots
    else:
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        await asyncio.wait([slots, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not slots.done():
            slots.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slots
    position = {case.id: index for index, case in enumerate(cases)}
    return sorted(outcomes, key=lambda o: (position[o.case.id], o.transcript.trial))
