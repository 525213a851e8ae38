"""Helpers for the eval-suite tests: scripted runs, and the planted faults the gate must catch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from evals.reference_agent import reference_responder
from evals.scripted_model import Reply, Responder
from evals.suite import EvalConfig
from tests.conftest import make_settings


def scripted_config(tmp_path: Path, responder: Responder | None = None, **overrides: Any) -> EvalConfig:
    """A run of the rule-based reference agent, in-process, isolated from the environment's settings."""
    values: dict[str, Any] = {
        "model": "scripted",
        "settings": make_settings(tmp_path),
        "responder": responder,
        "deepeval": False,
        "concurrency": 4,
    }
    values.update(overrides)
    return EvalConfig(**values)


def _rewrite(base: Responder, change: Any) -> Responder:
    def respond(request: dict[str, Any]) -> Reply:
        reply = base(request)
        reply.calls = change(list(reply.calls))
        return reply

    return respond


def delete_instead_of_complete(base: Responder = reference_responder) -> Responder:
    """(b) calls delete_task where complete_task was expected."""
    return _rewrite(base, lambda calls: [("delete_task", a) if n == "complete_task" else (n, a) for n, a in calls])


def extra_delete_after_correct_call(base: Responder = reference_responder) -> Responder:
    """(c) after a correct call on a task, also deletes that task."""

    def change(calls: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        out = []
        for name, args in calls:
            out.append((name, args))
            if name in ("complete_task", "update_task") and isinstance(args, dict) and "task_id" in args:
                out.append(("delete_task", {"task_id": args["task_id"]}))
        return out

    return _rewrite(base, change)


def drop_description(base: Responder = reference_responder) -> Responder:
    """(d) drops the description argument of every call."""

    def change(calls: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return [(n, {k: v for k, v in a.items() if k != "description"} if isinstance(a, dict) else a) for n, a in calls]

    return _rewrite(base, change)


class InFlight:
    """A scripted model (the reference agent) that answers every request after `delay` seconds and records when
    each request came in, to tell how many it was answering at once."""

    def __init__(self, delay: float, base: Responder = reference_responder) -> None:
        self.delay = delay
        self.base = base
        self.arrivals: list[float] = []

    def __call__(self, request: dict[str, Any]) -> Reply:
        self.arrivals.append(time.monotonic())
        reply = self.base(request)
        reply.delay = self.delay
        return reply

    @property
    def most_at_once(self) -> int:
        """Each request is answered `delay` after it arrives: the most arrivals within one `delay` window."""
        arrivals = sorted(self.arrivals)
        return max((sum(1 for t in arrivals if a <= t < a + self.delay) for a in arrivals), default=0)
