"""Unrequested changes: a call completed, deleted or edited a task the user did not refer to.

A task is referred to when one of the turn's expected calls names it (`task: a`, `task_titled: milk`, an id), or when
the user's message names it (its id, or a word of its title). A successful write on any other task is a failure of
its own kind, separate from an ordinary wrong state: it is the one a user never sees coming ("add a task" that
completes an unrelated one).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

from evals.dataset import Matcher, MatcherSpec, Turn
from evals.matchers import MISSING_REF, MatchContext, normalise
from evals.transcript import ObservedCall

_WRITES_ON_A_TASK = ("complete_task", "delete_task", "update_task")
_ID_IN_TEXT = re.compile(r"(?:\btasks?\s*#?|#|نمبر\s*)(\d+(?:\s*(?:,|&|and|aur|or|اور)\s*#?\d+)*)", re.IGNORECASE)
_FILLER = {"the", "task", "tasks", "one", "about", "and", "for", "with", "that", "this", "کام", "والا", "wala", "kaam"}


def _ids(spec: MatcherSpec, ctx: MatchContext) -> Iterator[int] | None:
    """The task ids a `task_id` matcher accepts; None when it accepts ids it does not name (`any`, a regex)."""
    if isinstance(spec, bool) or spec is None:
        return None
    if isinstance(spec, int):
        return iter([spec])
    if isinstance(spec, str):
        return iter([int(spec)]) if spec.strip().isdigit() else None
    if not isinstance(spec, Matcher):  # pragma: no cover - the schema admits nothing else
        return None
    kind = spec.kind
    if kind == "task":
        ref = spec.task or ""
        found = ctx.missing_id if ref == MISSING_REF else ctx.ids.get(ref)
        return iter([found] if found is not None else [])
    if kind == "task_titled":
        wanted = normalise(spec.task_titled or "")
        return iter([int(t["id"]) for t in ctx.tasks_before if wanted in normalise(str(t.get("title", "")))])
    if kind in ("one_of", "optional"):
        options = spec.one_of if kind == "one_of" else [spec.optional]
        collected: list[int] = []
        for option in options or []:
            ids = _ids(option, ctx)
            if ids is None:
                return None
            collected += list(ids)
        return iter(collected)
    if kind in ("equals", "exact"):
        return _ids(getattr(spec, kind), ctx)
    return None


def _words(text: str) -> set[str]:
    text = unicodedata.normalize("NFKC", text).casefold()
    return {w for w in re.findall(r"\w+", text) if len(w) >= 3 and w not in _FILLER}


def referred_ids(turn: Turn, user_text: str, ctx: MatchContext) -> set[int] | None:
    """The tasks this turn refers to; None when an expected call accepts ids it does not name (nothing to judge)."""
    referred: set[int] = set()
    for call in turn.calls:
        if "task_id" in call.args:
            ids = _ids(call.args["task_id"], ctx)
            if ids is None:
                return None
            referred |= set(ids)
    referred |= {int(n) for run in _ID_IN_TEXT.findall(user_text) for n in re.findall(r"\d+", run)}
    said = _words(user_text)
    referred |= {int(t["id"]) for t in ctx.tasks_before if _words(str(t.get("title", ""))) & said}
    return referred


def unrequested_changes(
    turn: Turn, user_text: str, calls: Sequence[ObservedCall], ctx: MatchContext
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(task, call) for each successful write on a task the turn did not refer to."""
    referred = referred_ids(turn, user_text, ctx)
    if referred is None:
        return []
    titles = {int(t["id"]): t for t in ctx.tasks_before if isinstance(t.get("id"), int)}
    found = []
    for call in calls:
        result = call.result
        if call.name not in _WRITES_ON_A_TASK or not isinstance(result, dict) or "error" in result:
            continue
        task_id = result.get("task_id", call.arguments.get("task_id"))
        if isinstance(task_id, str) and task_id.strip().isdigit():
            task_id = int(task_id)
        if isinstance(task_id, int) and task_id not in referred:
            task = titles.get(task_id, {"id": task_id})
            found.append((task, {"name": call.name, "arguments": call.arguments}))
    return found
