"""A failure: its kind, the turn it happened in and its evidence (what was expected, what happened)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel

FailureKind = Literal[
    "wrong_tool",
    "missing_call",
    "extra_call",
    "bad_args",
    "state_mismatch",
    "reply_mismatch",
    "false_claim",  # the reply says a task was changed; the task list after the turn says otherwise
    "unrequested_change",  # a call completed, deleted or edited a task the user did not refer to
    "error",
]
FAILURE_KINDS: tuple[str, ...] = get_args(FailureKind)


class Failure(BaseModel):
    kind: FailureKind
    turn: int | None = None  # None: the case as a whole (final state, setup)
    message: str
    expected: Any = None
    actual: Any = None
