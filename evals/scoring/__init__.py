"""Scoring: pure functions from (case, transcript) to a verdict that carries its evidence.

`calls` pairs expected with actual calls, `state` matches task lists, `replies` checks reply text, `claims` judges
what a reply says against the task lists, `changes` finds writes on tasks nobody referred to, `tallies` holds the
metric counters, and `trial` puts them together per turn and per case.
"""

from evals.scoring.calls import ArgCheck, CallScore, match_calls
from evals.scoring.failures import FAILURE_KINDS, Failure, FailureKind
from evals.scoring.state import check_task_list
from evals.scoring.tallies import Tallies
from evals.scoring.trial import TrialScore, TurnScore, explain, score_trial, score_turn

__all__ = [
    "FAILURE_KINDS",
    "ArgCheck",
    "CallScore",
    "Failure",
    "FailureKind",
    "Tallies",
    "TrialScore",
    "TurnScore",
    "check_task_list",
    "explain",
    "match_calls",
    "score_trial",
    "score_turn",
]
