"""`todo-agent eval check`: the dataset checked against itself, with no model.

Each case's expected calls are made, in order, with a concrete value every matcher accepts (its witness), against the
real tools on a fresh database; the reply is made of what the reply checks ask for. The transcript that gives is
scored by the real scorer. A case this perfect agent fails is one no agent can pass: an expected state the expected
calls contradict, a reference to a task that is not there, a call the scorer itself calls unrequested.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

from backend import crud
from backend import models as _models  # noqa: F401  (registers the tables on SQLModel.metadata)
from backend.models import TaskCreate, TaskUpdate
from backend.tools import ToolRunContext, invoke
from evals.dataset import MISSING_REF, Case, Dataset, Matcher, MatcherSpec, ReplyCheck, SeedTask, render_user_text
from evals.matchers import ABSENT, MatchContext, match_value, regex_instance, witness
from evals.runner import MISSING_ID
from evals.scoring import TrialScore, score_trial
from evals.scoring.replies import check_reply
from evals.transcript import ObservedCall, Transcript, TurnRecord

USER, OTHER_USER = "check-user", "check-other-user"


@dataclass
class CaseCheck:
    case_id: str
    problems: list[str] = field(default_factory=list)  # what stops the check itself (a matcher with no witness)
    score: TrialScore | None = None  # the scorer's verdict on the witness transcript

    @property
    def ok(self) -> bool:
        return not self.problems and self.score is not None and self.score.passed

    def reasons(self) -> list[str]:
        found = list(self.problems)
        if self.score is not None:
            found += [
                f"{'' if f.turn is None else f'turn {f.turn + 1}: '}[{f.kind}] {f.message}" for f in self.score.failures
            ]
        return found


@contextmanager
def _database() -> Iterator[Engine]:
    """A private in-memory database: ids start from 1 for every case, as in an eval run."""
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    SQLModel.metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _tasks(engine: Engine, user: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        return [task.model_dump(mode="json") for task in crud.list_tasks(session, user_id=user)]


def _seed(engine: Engine, user: str, seeds: list[SeedTask]) -> dict[str, int]:
    ids: dict[str, int] = {}
    with Session(engine, expire_on_commit=False) as session:
        for seed in seeds:
            task = crud.create_task(session, user_id=user, task_in=TaskCreate.model_validate(seed.creation()))
            if seed.completed:
                task = crud.update_task(session, task=task, task_in=TaskUpdate(completed=True))
            assert task.id is not None
            ids[seed.ref] = task.id
    return ids


def _example_problems(spec: MatcherSpec, ctx: MatchContext, where: str) -> Iterator[str]:
    """An `example:` the matcher itself rejects is a mistake in the case."""
    if not isinstance(spec, Matcher):
        return
    if spec.example is not None and not match_value(spec.model_copy(update={"example": None}), spec.example, ctx).ok:
        yield f"{where}: example {spec.example!r} does not match its own matcher"
    for inner in [*(spec.one_of or []), spec.optional]:
        yield from _example_problems(inner, ctx, where)


def witness_reply(check: ReplyCheck | None) -> str | None:
    """A reply with everything the checks ask for; None when a reply regex has no instance to write."""
    if check is None:
        return "OK."
    if check.example is not None:
        return check.example
    parts = [*check.contains_all, *check.contains_any[:1]]
    if check.regex is not None:
        instance = regex_instance(check.regex)
        if instance is None:
            return None
        parts.append(instance)
    return " ".join(parts) or "OK."


def check_case(case: Case) -> CaseCheck:
    """Replay `case`'s expectations with witnesses and score the result."""
    result = CaseCheck(case.id)
    with _database() as engine:
        ids = _seed(engine, USER, list(case.tasks))
        ids |= _seed(engine, OTHER_USER, list(case.other_user_tasks))
        transcript = Transcript(
            case_id=case.id,
            trial=1,
            user_id=USER,
            other_user_id=OTHER_USER if case.other_user_tasks else None,
            ids=ids,
            missing_id=MISSING_ID,
            tasks_before=_tasks(engine, USER),
            other_tasks_before=_tasks(engine, OTHER_USER),
        )
        tools = ToolRunContext(user_id=USER, engine=engine)
        before = transcript.tasks_before
        for index, turn in enumerate(case.turns):
            ctx = MatchContext(ids, MISSING_ID, tuple(before))
            where = f"turn {index + 1}"
            record = TurnRecord(index=index, user=render_user_text(turn.user, {**ids, MISSING_REF: MISSING_ID}))
            for number, call in enumerate(turn.calls, start=1):
                if call.optional:
                    continue
                arguments: dict[str, Any] = {}
                for name, spec in call.args.items():
                    result.problems += _example_problems(spec, ctx, f"{where}, call {number}, {name}")
                    value = witness(spec, ctx)
                    if value is None:
                        result.problems.append(
                            f"{where}, call {number} ({call.tool}), {name}: no value follows from the matcher; give "
                            "it an `example:`"
                        )
                    elif value is not ABSENT:
                        arguments[name] = value
                outcome = invoke(tools, call.tool, arguments)
                record.tool_calls.append(ObservedCall(name=call.tool, arguments=arguments, result=outcome))
            reply = witness_reply(turn.reply)
            if reply is None:
                result.problems.append(f"{where}: the reply regex has no instance to write; give it an `example:`")
            elif turn.reply is not None and turn.reply.example is not None and check_reply(turn.reply, reply):
                result.problems.append(f"{where}: the reply example {reply!r} fails its own checks")
            record.status, record.response = 200, reply or ""
            record.tasks_after = before = _tasks(engine, USER)
            record.other_tasks_after = _tasks(engine, OTHER_USER) if case.other_user_tasks else None
            transcript.turns.append(record)
        result.score = score_trial(case, transcript)
    return result


def check_dataset(dataset: Dataset) -> list[CaseCheck]:
    return [check_case(case) for case in dataset.cases]
