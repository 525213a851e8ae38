"""The scorer: a pure function from (case, transcript) to a score that carries its evidence.

Per call: right tool, arguments checked one by one. Per turn: missing, wrong and extra calls (read-only lookups the
case allows are free), the reply, the task list when the case gives one. Per case: every turn, the final task list
(strict by default: a task that should still be there and is not always fails) and the other user's tasks untouched.
Every failure is typed (`FailureKind`) and carries what was expected and what happened.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from evals.dataset import Case, ExpectedCall, ExpectedTask, ReplyCheck, SeedTask, TaskListExpectation, Turn
from evals.matchers import ABSENT, MatchContext, describe, is_blank, match_value, normalise_reply
from evals.transcript import ObservedCall, Transcript, TurnRecord, task_view

FailureKind = Literal[
    "wrong_tool", "missing_call", "extra_call", "bad_args", "state_mismatch", "reply_mismatch", "error"
]
FAILURE_KINDS: tuple[str, ...] = (
    "wrong_tool", "missing_call", "extra_call", "bad_args", "state_mismatch", "reply_mismatch", "error",
)  # fmt: skip
CallOutcome = Literal["matched", "bad_args", "wrong_tool", "missing", "skipped_optional", "extra", "allowed_extra"]


class Failure(BaseModel):
    kind: FailureKind
    turn: int | None = None  # None: the case as a whole (final state, setup)
    message: str
    expected: Any = None
    actual: Any = None


class ArgCheck(BaseModel):
    name: str
    expected: str
    actual: Any = None
    ok: bool
    reason: str = ""


class CallScore(BaseModel):
    outcome: CallOutcome
    expected_index: int | None = None
    expected_tool: str | None = None
    actual_index: int | None = None
    actual_tool: str | None = None
    actual_arguments: dict[str, Any] | None = None
    args: list[ArgCheck] = Field(default_factory=list)


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
    failures: list[Failure] = Field(default_factory=list)
    turns: list[TurnScore] = Field(default_factory=list)
    final_state_ok: bool | None = None
    # Counters behind the suite metrics (see evals.metrics).
    name_slots: int = 0
    name_correct: int = 0
    args_checked: int = 0
    args_correct: int = 0
    state_checks: int = 0
    state_correct: int = 0

    @property
    def failure_kinds(self) -> list[str]:
        return sorted({f.kind for f in self.failures})


# ---------------------------------------------------------------- calls


def check_args(expected: ExpectedCall, actual: ObservedCall, ctx: MatchContext) -> list[ArgCheck]:
    checks = []
    for name, spec in expected.args.items():
        value = actual.arguments.get(name, ABSENT)
        result = match_value(spec, value, ctx)
        shown = None if value is ABSENT else value
        checks.append(ArgCheck(name=name, expected=describe(spec), actual=shown, ok=result.ok, reason=result.reason))
    if expected.extra_args == "forbid":
        for name, value in actual.arguments.items():
            if name not in expected.args and not is_blank(value):
                checks.append(
                    ArgCheck(
                        name=name, expected="absent", actual=value, ok=False, reason=f"unexpected argument {name!r}"
                    )
                )
    return checks


def _full_match(expected: ExpectedCall, actual: ObservedCall, ctx: MatchContext) -> bool:
    return expected.tool == actual.name and all(c.ok for c in check_args(expected, actual, ctx))


def match_calls(
    turn: Turn, actual: Sequence[ObservedCall], ctx: MatchContext, index: int
) -> tuple[list[CallScore], list[Failure]]:
    """Pair expected with actual calls; what is left over is missing, wrong or extra."""
    pairs: dict[int, int] = {}  # expected index -> actual index
    used: set[int] = set()
    expected = list(turn.calls)
    if turn.order == "strict":
        cursor = 0
        for e_index, call in enumerate(expected):
            hit = next((k for k in range(cursor, len(actual)) if _full_match(call, actual[k], ctx)), None)
            if hit is None:
                hit = next((k for k in range(cursor, len(actual)) if actual[k].name == call.tool), None)
            if hit is not None:
                pairs[e_index] = hit
                used.add(hit)
                cursor = hit + 1
    else:
        for e_index, call in enumerate(expected):
            hit = next((k for k in range(len(actual)) if k not in used and _full_match(call, actual[k], ctx)), None)
            if hit is not None:
                pairs[e_index] = hit
                used.add(hit)
        for e_index, call in enumerate(expected):
            if e_index in pairs:
                continue
            hit = next((k for k in range(len(actual)) if k not in used and actual[k].name == call.tool), None)
            if hit is not None:
                pairs[e_index] = hit
                used.add(hit)

    allowed = set() if turn.no_tool_calls else set(turn.allow_extra)
    leftovers = [k for k in range(len(actual)) if k not in used and actual[k].name not in allowed]
    scores: list[CallScore] = []
    failures: list[Failure] = []
    for e_index, call in enumerate(expected):
        if e_index in pairs:
            k = pairs[e_index]
            checks = check_args(call, actual[k], ctx)
            ok = all(c.ok for c in checks)
            scores.append(
                CallScore(
                    outcome="matched" if ok else "bad_args",
                    expected_index=e_index,
                    expected_tool=call.tool,
                    actual_index=k,
                    actual_tool=actual[k].name,
                    actual_arguments=actual[k].arguments,
                    args=checks,
                )
            )
            if not ok:
                bad = [c for c in checks if not c.ok]
                failures.append(
                    Failure(
                        kind="bad_args",
                        turn=index,
                        message=f"{call.tool}: " + "; ".join(f"{c.name}: {c.reason}" for c in bad),
                        expected={c.name: c.expected for c in bad},
                        actual=actual[k].arguments,
                    )
                )
            continue
        if call.optional:
            scores.append(CallScore(outcome="skipped_optional", expected_index=e_index, expected_tool=call.tool))
            continue
        if leftovers:  # something else was called where this call was expected
            k = leftovers.pop(0)
            scores.append(
                CallScore(
                    outcome="wrong_tool",
                    expected_index=e_index,
                    expected_tool=call.tool,
                    actual_index=k,
                    actual_tool=actual[k].name,
                    actual_arguments=actual[k].arguments,
                )
            )
            failures.append(
                Failure(
                    kind="wrong_tool",
                    turn=index,
                    message=f"expected {call.tool}, got {actual[k].name}",
                    expected=_expected_view(call),
                    actual=_call_view(actual[k]),
                )
            )
            continue
        scores.append(CallScore(outcome="missing", expected_index=e_index, expected_tool=call.tool))
        failures.append(
            Failure(
                kind="missing_call",
                turn=index,
                message=f"{call.tool} was not called",
                expected=_expected_view(call),
                actual=[_call_view(c) for c in actual],
            )
        )
    for k in range(len(actual)):
        if k in used:
            continue
        if k in leftovers:
            scores.append(
                CallScore(
                    outcome="extra", actual_index=k, actual_tool=actual[k].name, actual_arguments=actual[k].arguments
                )
            )
            why = "no tool call was expected" if turn.no_tool_calls else "not expected"
            failures.append(
                Failure(
                    kind="extra_call",
                    turn=index,
                    message=f"extra call {actual[k].name}({_args_text(actual[k].arguments)}): {why}",
                    expected=[_expected_view(c) for c in expected],
                    actual=_call_view(actual[k]),
                )
            )
        elif k not in {s.actual_index for s in scores}:
            scores.append(
                CallScore(
                    outcome="allowed_extra",
                    actual_index=k,
                    actual_tool=actual[k].name,
                    actual_arguments=actual[k].arguments,
                )
            )
    scores.sort(key=lambda s: (s.actual_index if s.actual_index is not None else 10_000, s.expected_index or 0))
    return scores, failures


def _expected_view(call: ExpectedCall) -> dict[str, Any]:
    return {"name": call.tool, "arguments": {k: describe(v) for k, v in call.args.items()}}


def _call_view(call: ObservedCall) -> dict[str, Any]:
    return {"name": call.name, "arguments": call.arguments, "result": call.result}


def _args_text(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())


# ---------------------------------------------------------------- replies


def check_reply(check: ReplyCheck, text: str | None) -> list[str]:
    reply = normalise_reply(text or "")
    problems = []
    missing = [s for s in check.contains_all if normalise_reply(s) not in reply]
    if missing:
        problems.append(f"does not mention {missing}")
    if check.contains_any and not any(normalise_reply(s) in reply for s in check.contains_any):
        problems.append(f"mentions none of {check.contains_any}")
    present = [s for s in check.not_contains if normalise_reply(s) in reply]
    if present:
        problems.append(f"mentions {present}, which it must not")
    if check.regex is not None and re.search(check.regex, text or "", re.IGNORECASE) is None:
        problems.append(f"does not match /{check.regex}/")
    return problems


# ---------------------------------------------------------------- task lists


def _seed_view(seed: SeedTask, task_id: int) -> dict[str, Any]:
    return {"id": task_id, "title": seed.title, "description": seed.description, "completed": seed.completed}


def _same_text(a: Any, b: Any) -> bool:
    return (is_blank(a) and is_blank(b)) or a == b


def _task_problem(
    expected: ExpectedTask, task: dict[str, Any], seeds: dict[str, SeedTask], ctx: MatchContext
) -> str | None:
    """None when `task` satisfies `expected`, else what differs."""
    fields = expected.model_fields_set
    if expected.ref is not None:
        seed = seeds[expected.ref]
        if task.get("id") != ctx.ids.get(expected.ref):
            return "another task"
        problems = []
        if "title" in fields:
            result = match_value(expected.title, task.get("title", ABSENT), ctx)
            if not result.ok:
                problems.append(f"title {result.reason}")
        elif task.get("title") != seed.title:
            problems.append(f"title changed from {seed.title!r} to {task.get('title')!r}")
        if "description" in fields:
            result = match_value(expected.description, task.get("description", ABSENT), ctx)
            if not result.ok:
                problems.append(f"description {result.reason}")
        elif not _same_text(task.get("description"), seed.description):
            problems.append(f"description changed from {seed.description!r} to {task.get('description')!r}")
        completed = expected.completed if expected.completed is not None else seed.completed
        if bool(task.get("completed")) != completed:
            problems.append(f"completed is {task.get('completed')}, expected {completed}")
        return "; ".join(problems) or None
    if task.get("id") in set(ctx.ids.values()):
        return "a seeded task, not a new one"
    problems = []
    result = match_value(expected.title, task.get("title", ABSENT), ctx)
    if not result.ok:
        problems.append(f"title {result.reason}")
    if "description" in fields:
        result = match_value(expected.description, task.get("description", ABSENT), ctx)
        if not result.ok:
            problems.append(f"description {result.reason}")
    completed = expected.completed if expected.completed is not None else False
    if bool(task.get("completed")) != completed:
        problems.append(f"completed is {task.get('completed')}, expected {completed}")
    return "; ".join(problems) or None


def _bipartite(n_left: int, n_right: int, ok: list[list[bool]]) -> dict[int, int]:
    """Maximum matching (Kuhn's algorithm; task lists are small)."""
    right_of: dict[int, int] = {}

    def augment(left: int, seen: set[int]) -> bool:
        for right in range(n_right):
            if ok[left][right] and right not in seen:
                seen.add(right)
                if right not in right_of or augment(right_of[right], seen):
                    right_of[right] = left
                    return True
        return False

    for left in range(n_left):
        augment(left, set())
    return {left: right for right, left in right_of.items()}


def check_task_list(
    expectation: TaskListExpectation, actual: Sequence[dict[str, Any]], seeds: Sequence[SeedTask], ctx: MatchContext
) -> list[str]:
    """Problems with the task list (empty when it is as expected); an unwanted delete is named as such."""
    expected = [ExpectedTask(ref=s.ref) for s in seeds] if expectation == "unchanged" else list(expectation)
    by_ref = {s.ref: s for s in seeds}
    tasks = [task_view(t) for t in actual]
    verdicts = [[_task_problem(e, t, by_ref, ctx) for t in tasks] for e in expected]
    pairs = _bipartite(len(expected), len(tasks), [[v is None for v in row] for row in verdicts])
    problems: list[str] = []
    present_ids = {t.get("id") for t in tasks}
    explained: set[int] = set()  # tasks already named in a problem: not "unexpected" as well
    for e_index, exp in enumerate(expected):
        if e_index in pairs:
            continue
        if exp.ref is not None:
            task_id = ctx.ids[exp.ref]
            if task_id not in present_ids:
                problems.append(f"task {by_ref[exp.ref].title!r} (id {task_id}) was deleted")
                continue
            t_index = next(i for i, t in enumerate(tasks) if t.get("id") == task_id)
            if t_index not in set(pairs.values()):
                explained.add(t_index)
            problems.append(f"task {by_ref[exp.ref].title!r} (id {task_id}): {verdicts[e_index][t_index]}")
        else:
            closest = [v for v in verdicts[e_index] if v and v != "a seeded task, not a new one"]
            detail = f" (closest: {closest[0]})" if closest else ""
            problems.append(f"no new task with title {describe(exp.title)}{detail}")
    matched = set(pairs.values())
    for t_index, task in enumerate(tasks):
        if t_index not in matched and t_index not in explained:
            problems.append(
                f"unexpected task {task.get('title')!r} (id {task.get('id')}, completed {task.get('completed')})"
            )
    return problems


# ---------------------------------------------------------------- the whole case


COUNTERS = ("name_slots", "name_correct", "args_checked", "args_correct", "state_checks", "state_correct")


def _turn_ok(record: TurnRecord) -> bool:
    return record.status == 200 and record.error is None


def score_turn(turn: Turn, record: TurnRecord, case: Case, ctx: MatchContext) -> tuple[TurnScore, TrialScore]:
    """Score one turn; the second value carries the metric counters of this turn."""
    counters = TrialScore(case_id=case.id, trial=0, passed=True)
    failures: list[Failure] = []
    calls, call_failures = match_calls(turn, record.tool_calls, ctx, record.index)
    failures += call_failures
    if turn.no_tool_calls:
        counters.name_slots += max(1, len(record.tool_calls))
        counters.name_correct += 0 if record.tool_calls else 1
    else:
        for call in calls:
            if call.outcome in ("matched", "bad_args"):
                counters.name_slots += 1
                counters.name_correct += 1
                counters.args_checked += 1
                counters.args_correct += call.outcome == "matched"
            elif call.outcome in ("wrong_tool", "missing", "extra"):
                counters.name_slots += 1
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
    state_ok = None
    if turn.tasks_after is not None and record.tasks_after is not None:
        problems = check_task_list(turn.tasks_after, record.tasks_after, case.tasks, ctx)
        state_ok = not problems
        counters.state_checks += 1
        counters.state_correct += state_ok
        if problems:
            failures.append(
                Failure(
                    kind="state_mismatch",
                    turn=record.index,
                    message="; ".join(problems),
                    expected=_expectation_view(turn.tasks_after),
                    actual=[task_view(t) for t in record.tasks_after],
                )
            )
    score = TurnScore(
        index=record.index, passed=not failures, calls=calls, failures=failures, reply_ok=reply_ok, state_ok=state_ok
    )
    return score, counters


def _expectation_view(expectation: TaskListExpectation) -> Any:
    if expectation == "unchanged":
        return "unchanged"
    return [
        {
            k: (describe(v) if k in ("title", "description") else v)
            for k, v in e.model_dump().items()
            if k in e.model_fields_set
        }
        for e in expectation
    ]


def score_trial(case: Case, transcript: Transcript) -> TrialScore:
    """The verdict on one trial of one case, with every failure's evidence."""
    result = TrialScore(case_id=case.id, trial=transcript.trial, passed=False)
    if transcript.setup_error is not None:
        result.failures.append(Failure(kind="error", message=f"setup failed: {transcript.setup_error}"))
        return result
    before: list[dict[str, Any]] = [task_view(t) for t in transcript.tasks_before]
    last_tasks: list[dict[str, Any]] | None = before
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
        else:
            score, counters = score_turn(turn, record, case, ctx)
            result.turns.append(score)
            result.failures += score.failures
            for name in COUNTERS:
                setattr(result, name, getattr(result, name) + getattr(counters, name))
        if record.tasks_after is not None:
            last_tasks = [task_view(t) for t in record.tasks_after]

    final_ctx = MatchContext(transcript.ids, transcript.missing_id, tuple(last_tasks or ()))
    final_record = transcript.turns[-1] if transcript.turns else None
    if final_record is not None and final_record.tasks_after is not None:
        problems = check_task_list(case.final_tasks, final_record.tasks_after, case.tasks, final_ctx)
        result.final_state_ok = not problems
        result.state_checks += 1
        result.state_correct += not problems
        if problems:
            result.failures.append(
                Failure(
                    kind="state_mismatch",
                    message="final task list: " + "; ".join(problems),
                    expected=_expectation_view(case.final_tasks),
                    actual=[task_view(t) for t in final_record.tasks_after],
                )
            )
    if case.other_user_tasks and final_record is not None and final_record.other_tasks_after is not None:
        other_ids = {s.ref: transcript.ids[s.ref] for s in case.other_user_tasks}
        other_ctx = MatchContext(other_ids, transcript.missing_id)
        problems = check_task_list("unchanged", final_record.other_tasks_after, case.other_user_tasks, other_ctx)
        result.state_checks += 1
        result.state_correct += not problems
        if problems:
            result.final_state_ok = False
            result.failures.append(
                Failure(
                    kind="state_mismatch",
                    message="another user's tasks changed: " + "; ".join(problems),
                    expected=[_seed_view(s, other_ids[s.ref]) for s in case.other_user_tasks],
                    actual=[task_view(t) for t in final_record.other_tasks_after],
                )
            )
    result.passed = not result.failures
    return result


def explain(score: TrialScore) -> str:
    """One line per failure, for terminals and JUnit messages."""
    if score.passed:
        return "passed"
    return "\n".join(
        f"[{f.kind}]{'' if f.turn is None else f' turn {f.turn + 1}'}: {f.message}" for f in score.failures
    )
