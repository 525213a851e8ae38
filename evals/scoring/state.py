"""State matching: the user's task list against what a case expects, with every difference named.

A seeded task (`ref`) must be that very task (same id) with every field not given in the expectation unchanged; a
task without `ref` is a new one. Expected and actual tasks are paired by maximum bipartite matching, so a list is
judged as a set, and an unwanted delete is named as a delete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.models import TASK_FIELDS
from evals.dataset import ExpectedTask, SeedTask, TaskListExpectation
from evals.matchers import ABSENT, MatchContext, describe, is_blank, match_value
from evals.transcript import task_view


def seed_view(seed: SeedTask, task_id: int) -> dict[str, Any]:
    values = seed.model_dump()
    return {"id": task_id, **{name: values.get(name) for name in TASK_FIELDS}}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) is bool(b)
    return (is_blank(a) and is_blank(b)) or a == b


def _field_problems(
    expected: ExpectedTask, task: dict[str, Any], ctx: MatchContext, default: dict[str, Any]
) -> list[str]:
    """Differences in the task's fields (`TASK_FIELDS`); `default` holds what a field not given must still be."""
    given = expected.model_fields_set
    problems = []
    for name in TASK_FIELDS:
        if name in given:
            result = match_value(getattr(expected, name), task.get(name, ABSENT), ctx)
            if not result.ok:
                problems.append(f"{name} {result.reason}")
        elif name in default and not _same(task.get(name), default[name]):
            problems.append(f"{name} changed from {default[name]!r} to {task.get(name)!r}")
    return problems


def task_problem(
    expected: ExpectedTask, task: dict[str, Any], seeds: dict[str, SeedTask], ctx: MatchContext
) -> str | None:
    """None when `task` satisfies `expected`, else what differs."""
    if expected.ref is not None:
        if task.get("id") != ctx.ids.get(expected.ref):
            return "another task"
        seed = seeds[expected.ref].model_dump()
        return "; ".join(_field_problems(expected, task, ctx, {name: seed.get(name) for name in TASK_FIELDS})) or None
    if task.get("id") in set(ctx.ids.values()):
        return "a seeded task, not a new one"
    if "title" not in expected.model_fields_set:  # pragma: no cover - the schema requires a title for new tasks
        return "a new task needs a title matcher"
    return "; ".join(_field_problems(expected, task, ctx, {"completed": False})) or None


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
    verdicts = [[task_problem(e, t, by_ref, ctx) for t in tasks] for e in expected]
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


def expectation_view(expectation: TaskListExpectation) -> Any:
    if expectation == "unchanged":
        return "unchanged"
    return [
        {
            k: (describe(getattr(e, k)) if k in ("title", "description") else getattr(e, k))
            for k in type(e).model_fields
            if k in e.model_fields_set
        }
        for e in expectation
    ]
