"""The verdict on one trial of one case: a pure function from (case, transcript) to a score with its evidence.

Per turn: the calls (`evals.scoring.calls`), the reply checks, the task list when the case gives one
(`evals.scoring.state`), false claims judged from the task lists (`evals.scoring.claims`) and unrequested changes
(`evals.scoring.changes`). Per case: every turn, the final task list (strict by default: a task that should still be
there and is not always fails) and the other user's tasks untouched.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from evals.dataset import Case, Turn
from evals.matchers import MatchContext
from evals.scoring.calls import CallScore, match_calls
from evals.scoring.changes import unrequested_changes
from evals.scoring.claims import false_claims
from evals.scoring.failures import Failure
from evals.scoring.replies import check_reply
from evals.scoring.state import check_task_list, expectation_view, seed_view
from evals.scoring.tallies import Tallies
from evals.transcript import Transcript, TurnRecord, task_view


class TurnScore(BaseModel):
    index: int
    passed: bool
    calls: list[CallScore] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)
    reply_ok: bool | None = None
    state_ok: bool | None = None


class TrialScore(BaseModel):
    case_id: str
    trial: int
    passed: bool
    # The trial says nothing about the agent: its setup or a turn failed for want of an answer (a timeout, a 5xx,
    # a transport failure, a rate limit). Such a trial is neither a pass nor a failure; the runner retries it.
    errored: bool = False
    failures: list[Failure] = Field(default_factory=list)
    turns: list[TurnScore] = Field(default_factory=list)
    final_state_ok: bool | None = None
    tallies: Tallies = Field(default_factory=Tallies)

    @property
    def failure_kinds(self) -> list[str]:
        return sorted({f.kind for f in self.failures})


def _turn_ok(record: TurnRecord) -> bool:
    return record.status == 200 and record.error is None


# Statuses that say the backend could not answer now (try again), not that the agent did something wrong.
_UNAVAILABLE = frozenset({408, 409, 425, 429})


def turn_errored(record: TurnRecord) -> bool:
    """Whether a turn ended without an answer for reasons of infrastructure: no response at all (a timeout or a
    transport failure), a 5xx, or a status that means "not now" (a lease conflict, a rate limit)."""
    if _turn_ok(record):
        return False
    return record.status is None or record.status >= 500 or record.status in _UNAVAILABLE


def call_tallies(turn: Turn, record: TurnRecord, calls: list[CallScore]) -> Tallies:
    if turn.no_tool_calls:
        slots = max(1, len(record.tool_calls))
        return Tallies(name_slots=slots, name_correct=0 if record.tool_calls else 1)
    tallies = Tallies()
    for call in calls:
        if call.outcome in ("matched", "bad_args"):
            tallies += Tallies(name_slots=1, name_correct=1, args_checked=1, args_correct=call.outcome == "matched")
        elif call.outcome in ("wrong_tool", "missing", "extra"):
            tallies += Tallies(name_slots=1)
    return tallies


def score_turn(
    turn: Turn, record: TurnRecord, case: Case, ctx: MatchContext, before: list[dict[str, Any]] | None
) -> tuple[TurnScore, Tallies]:
    """Score one turn; `before` is the task list before it (for the checks that compare the two)."""
    calls, failures = match_calls(turn, record.tool_calls, ctx, record.index)
    tallies = call_tallies(turn, record, calls)
    reply_ok = None
    if turn.reply is not None:
        problems = check_reply(turn.reply, record.response)
        reply_ok = not problems
        if problems:
            failures.append(
                Failure(
                    kind="reply_mismatch",
                    turn=record.index,
                    message="reply " + "; ".join(problems),
                    expected=turn.reply.model_dump(exclude_defaults=True),
                    actual=record.response,
                )
            )
    after = [task_view(t) for t in record.tasks_after] if record.tasks_after is not None else None
    if before is not None and after is not None:
        for evidence in false_claims(record.response, before, after, record.user):
            failures.append(
                Failure(kind="false_claim", turn=record.index, message=f"the reply says {evidence}", actual=after)
            )
    for task, call in unrequested_changes(turn, record.user, record.tool_calls, ctx):
        failures.append(
            Failure(
                kind="unrequested_change",
                turn=record.index,
                message=f"{call['name']} changed task {task.get('id')} ({task.get('title')!r}), which the user did not "
                "refer to",
                expected="no change to that task",
                actual={"task": task, "call": call},
            )
        )
    state_ok = None
    if turn.tasks_after is not None and record.tasks_after is not None:
        problems = check_task_list(turn.tasks_after, record.tasks_after, case.tasks, ctx)
        state_ok = not problems
        tallies += Tallies(state_checks=1, state_correct=state_ok)
        if problems:
            failures.append(
                Failure(
                    kind="state_mismatch",
                    turn=record.index,
                    message="; ".join(problems),
                    expected=expectation_view(turn.tasks_after),
                    actual=after,
                )
            )
    score = TurnScore(
        index=record.index, passed=not failures, calls=calls, failures=failures, reply_ok=reply_ok, state_ok=state_ok
    )
    return score, tallies


def score_trial(case: Case, transcript: Transcript) -> TrialScore:
    """The verdict on one trial of one case, with every failure's evidence."""
    result = TrialScore(case_id=case.id, trial=transcript.trial, passed=False)
    if transcript.setup_error is not None:
        result.failures.append(Failure(kind="error", message=f"setup failed: {transcript.setup_error}"))
        result.errored = True
        return result
    last_tasks: list[dict[str, Any]] | None = [task_view(t) for t in transcript.tasks_before]
    for index, turn in enumerate(case.turns):
        if index >= len(transcript.turns):
            result.failures.append(
                Failure(kind="error", turn=index, message="turn did not run (an earlier turn failed)")
            )
            continue
        record = transcript.turns[index]
        ctx = MatchContext(transcript.ids, transcript.missing_id, tuple(last_tasks or ()))
        if not _turn_ok(record):
            # The contract answers an error without the calls that ran; the state checks still see their effects.
            failure = Failure(
                kind="error",
                turn=index,
                message=f"turn failed: {record.error or f'HTTP {record.status}'}",
                actual={"status": record.status, "error": record.error},
            )
            result.turns.append(TurnScore(index=index, passed=False, failures=[failure]))
            result.failures.append(failure)
            result.errored = result.errored or turn_errored(record)
        else:
            score, tallies = score_turn(turn, record, case, ctx, last_tasks)
            result.turns.append(score)
            result.failures += score.failures
            result.tallies += tallies
        if record.tasks_after is not None:
            last_tasks = [task_view(t) for t in record.tasks_after]
    _score_final(case, transcript, result, last_tasks)
    result.passed = not result.failures
    return result


def _score_final(case: Case, transcript: Transcript, result: TrialScore, last: list[dict[str, Any]] | None) -> None:
    final_ctx = MatchContext(transcript.ids, transcript.missing_id, tuple(last or ()))
    final = transcript.turns[-1] if transcript.turns else None
    if final is not None and final.tasks_after is not None:
        problems = check_task_list(case.final_tasks, final.tasks_after, case.tasks, final_ctx)
        result.final_state_ok = not problems
        result.tallies += Tallies(state_checks=1, state_correct=not problems)
        if problems:
            result.failures.append(
                Failure(
                    kind="state_mismatch",
                    message="final task list: " + "; ".join(problems),
                    expected=expectation_view(case.final_tasks),
                    actual=[task_view(t) for t in final.tasks_after],
                )
            )
    if case.other_user_tasks and final is not None and final.other_tasks_after is not None:
        other_ids = {s.ref: transcript.ids[s.ref] for s in case.other_user_tasks}
        other_ctx = MatchContext(other_ids, transcript.missing_id)
        problems = check_task_list("unchanged", final.other_tasks_after, case.other_user_tasks, other_ctx)
        result.tallies += Tallies(state_checks=1, state_correct=not problems)
        if problems:
            result.final_state_ok = False
            result.failures.append(
                Failure(
                    kind="state_mismatch",
                    message="another user's tasks changed: " + "; ".join(problems),
                    expected=[seed_view(s, other_ids[s.ref]) for s in case.other_user_tasks],
                    actual=[task_view(t) for t in final.other_tasks_after],
                )
            )


def explain(score: TrialScore) -> str:
    """One line per failure, for terminals and JUnit messages."""
    if score.passed:
        return "passed"
    return "\n".join(
        f"[{f.kind}]{'' if f.turn is None else f' turn {f.turn + 1}'}: {f.message}" for f in score.failures
    )
