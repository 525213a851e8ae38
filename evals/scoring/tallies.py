"""The counters behind the suite's accuracy metrics, summed over turns and trials (see `evals.metrics`)."""

from __future__ import annotations

from pydantic import BaseModel


class Tallies(BaseModel):
    name_slots: int = 0  # call slots: an expected call, an unexpected call, or a turn that should have had none
    name_correct: int = 0
    args_checked: int = 0  # calls with the right tool, whose arguments were checked
    args_correct: int = 0
    state_checks: int = 0  # task-list checks: per turn where given, final, the other user's list
    state_correct: int = 0

    def __add__(self, other: Tallies) -> Tallies:
        return Tallies(**{name: getattr(self, name) + getattr(other, name) for name in Tallies.model_fields})
