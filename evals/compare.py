"""Baseline versus candidate: regressions, newly passing and flaky cases, and the CI gate.

A regression is a case that passed in every baseline trial and fails in every candidate trial. A case that passes in
some trials and fails in others (on either side) is flaky: reported, never a gate failure. Cases only in the
candidate are new; cases only in the baseline were not run (a `--tags` subset, say).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from evals.results import RunResult, TrialResult

CaseStatus = Literal["regression", "fixed", "flaky", "still_passing", "still_failing", "new", "not_run"]


class ExitCode(IntEnum):
    """`todo-agent eval run` / `compare` exit codes (documented in the CLI help and README)."""

    OK = 0
    REGRESSION = 1  # a case passed in every baseline trial and fails in every candidate trial
    USAGE = 2  # bad options (click's own code for usage errors)
    BELOW_MIN_PASS = 3  # no regression, but the pass rate is below --min-pass
    DATASET_INVALID = 4  # a dataset (or baseline/results file) could not be read or validated
    RUN_FAILED = 5  # the run could not be completed: backend unreachable, or a miss in strict replay mode


@dataclass
class CaseComparison:
    case_id: str
    status: CaseStatus
    baseline_passed: int = 0
    baseline_trials: int = 0
    candidate_passed: int = 0
    candidate_trials: int = 0
    definition_changed: bool = False
    baseline_evidence: TrialResult | None = None
    candidate_evidence: TrialResult | None = None

    @property
    def tags(self) -> list[str]:
        evidence = self.candidate_evidence or self.baseline_evidence
        return list(evidence.tags) if evidence else []


@dataclass
class Comparison:
    baseline: RunResult
    candidate: RunResult
    cases: list[CaseComparison] = field(default_factory=list)

    def with_status(self, *statuses: CaseStatus) -> list[CaseComparison]:
        return [c for c in self.cases if c.status in statuses]

    @property
    def regressions(self) -> list[CaseComparison]:
        return self.with_status("regression")

    @property
    def fixed(self) -> list[CaseComparison]:
        return self.with_status("fixed")

    @property
    def flaky(self) -> list[CaseComparison]:
        return self.with_status("flaky")

    def metric_deltas(self) -> dict[str, tuple[float | None, float | None]]:
        keys = ("case_pass_rate", "tool_name_accuracy", "argument_accuracy", "state_accuracy", "latency_p50_ms",
                "latency_p95_ms")  # fmt: skip
        return {k: (self.baseline.metrics.get(k), self.candidate.metrics.get(k)) for k in keys}


def _pick(trials: Sequence[TrialResult], passed: bool) -> TrialResult | None:
    return next((t for t in trials if t.passed == passed), trials[0] if trials else None)


def compare(baseline: RunResult, candidate: RunResult) -> Comparison:
    base = baseline.by_case()
    cand = candidate.by_case()
    result = Comparison(baseline, candidate)
    for case_id in list(cand) + [c for c in base if c not in cand]:
        b = base.get(case_id, [])
        c = cand.get(case_id, [])
        bp, bn = sum(t.passed for t in b), len(b)
        cp, cn = sum(t.passed for t in c), len(c)
        if not b:
            status: CaseStatus = "new"
        elif not c:
            status = "not_run"
        elif bp == bn and cp == 0:
            status = "regression"
        elif bp == 0 and cp == cn:
            status = "fixed"
        elif bp == bn and cp == cn:
            status = "still_passing"
        elif bp == 0 and cp == 0:
            status = "still_failing"
        else:
            status = "flaky"
        changed = bool(b and c and b[0].case_fingerprint != c[0].case_fingerprint)
        result.cases.append(
            CaseComparison(
                case_id=case_id,
                status=status,
                baseline_passed=bp,
                baseline_trials=bn,
                candidate_passed=cp,
                candidate_trials=cn,
                definition_changed=changed,
                baseline_evidence=_pick(b, passed=True) if b else None,
                candidate_evidence=_pick(c, passed=status != "regression") if c else None,
            )
        )
    return result


@dataclass(frozen=True)
class GateResult:
    exit_code: ExitCode
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.exit_code == ExitCode.OK


def gate(candidate: RunResult, comparison: Comparison | None, *, min_pass: float | None) -> GateResult:
    """The CI verdict: regressions first (exit 1), then the pass-rate floor (exit 3)."""
    reasons: list[str] = []
    code = ExitCode.OK
    if comparison is not None and comparison.regressions:
        code = ExitCode.REGRESSION
        names = ", ".join(c.case_id for c in comparison.regressions)
        reasons.append(f"{len(comparison.regressions)} regression(s) against the baseline: {names}")
    rate = candidate.metrics.get("case_pass_rate")
    if min_pass is not None and (rate is None or rate < min_pass):
        if code == ExitCode.OK:
            code = ExitCode.BELOW_MIN_PASS
        reasons.append(f"pass rate {rate if rate is not None else 'n/a'} is below --min-pass {min_pass}")
    return GateResult(code, tuple(reasons))
