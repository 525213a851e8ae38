"""Baseline versus candidate: regressions, newly passing and flaky cases, and the CI gate.

A regression is a case that passed in every baseline trial and fails in every candidate trial. A case that passes in
some trials and fails in others (on either side) is flaky: reported, never a gate failure. Cases only in the
candidate are new; cases only in the baseline were not run (a `--tags` subset, say). Trials that errored (a timeout,
a 5xx: `TrialScore.errored`) are left out of every count; a case with no other trial on either side is
inconclusive: neither a regression nor a pass, and a gate with one says INCONCLUSIVE, not PASSED.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from evals.metrics import summarise
from evals.results import RunResult, TrialResult

CaseStatus = Literal["regression", "fixed", "flaky", "still_passing", "still_failing", "new", "not_run", "inconclusive"]
Verdict = Literal["PASSED", "FAILED", "INCONCLUSIVE"]


class ExitCode(IntEnum):
    """`todo-agent eval run` / `compare` exit codes (documented in the CLI help and README)."""

    OK = 0
    REGRESSION = 1  # a case passed in every baseline trial and fails in every candidate trial
    USAGE = 2  # bad options (click's own code for usage errors)
    BELOW_MIN_PASS = 3  # no regression, but the pass rate is below --min-pass
    DATASET_INVALID = 4  # a dataset (or baseline/results file) could not be read or validated
    RUN_FAILED = 5  # the run could not be completed: backend unreachable, or a miss in strict replay mode
    INCONCLUSIVE = 6  # no regression, but some cases only errored (timeouts, 5xx): the run cannot vouch for them


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

    @functools.cached_property
    def baseline_same_cases(self) -> RunResult:
        """The baseline restricted to the cases the candidate ran: what its figures are compared with (a `--tags`
        run set beside a whole-suite baseline compares like with like)."""
        ran = {t.case_id for t in self.candidate.trials}
        trials = [t for t in self.baseline.trials if t.case_id in ran]
        return self.baseline.model_copy(update={"trials": trials, "metrics": summarise(trials)})

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

    @property
    def inconclusive(self) -> list[CaseComparison]:
        return self.with_status("inconclusive")

    def metric_deltas(self) -> dict[str, tuple[float | None, float | None]]:
        keys = ("case_pass_rate", "tool_name_accuracy", "argument_accuracy", "state_accuracy", "latency_p50_ms",
                "latency_p95_ms")  # fmt: skip
        base = self.baseline_same_cases.metrics
        return {k: (base.get(k), self.candidate.metrics.get(k)) for k in keys}


def _pick(trials: Sequence[TrialResult], passed: bool) -> TrialResult | None:
    return next((t for t in trials if t.passed == passed), trials[0] if trials else None)


def conclusive(trials: Sequence[TrialResult]) -> list[TrialResult]:
    """The trials that say something about the agent: those that did not error."""
    return [t for t in trials if not t.score.errored]


def compare(baseline: RunResult, candidate: RunResult) -> Comparison:
    base = baseline.by_case()
    cand = candidate.by_case()
    result = Comparison(baseline, candidate)
    for case_id in list(cand) + [c for c in base if c not in cand]:
        b_all, c_all = base.get(case_id, []), cand.get(case_id, [])
        b, c = conclusive(b_all), conclusive(c_all)
        bp, bn = sum(t.passed for t in b), len(b)
        cp, cn = sum(t.passed for t in c), len(c)
        if not c_all:
            status: CaseStatus = "not_run"
        elif not c:
            status = "inconclusive"  # every candidate trial errored
        elif not b_all:
            status = "new"
        elif not b:
            status = "inconclusive"  # the baseline never got an answer for it: nothing to hold the candidate to
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
                baseline_evidence=_pick(b or b_all, passed=True) if b_all else None,
                candidate_evidence=_pick(c or c_all, passed=status != "regression") if c_all else None,
            )
        )
    return result


@dataclass(frozen=True)
class GateResult:
    exit_code: ExitCode
    reasons: tuple[str, ...] = ()
    line: str = ""  # the closing verdict line (`verdict_line`)

    @property
    def passed(self) -> bool:
        return self.exit_code == ExitCode.OK

    @property
    def verdict(self) -> Verdict:
        if self.exit_code == ExitCode.OK:
            return "PASSED"
        return "INCONCLUSIVE" if self.exit_code == ExitCode.INCONCLUSIVE else "FAILED"


def inconclusive_cases(candidate: RunResult, comparison: Comparison | None) -> list[str]:
    """Cases the run cannot vouch for: every trial errored (or, against a baseline, the baseline's did)."""
    if comparison is not None:
        return [c.case_id for c in comparison.inconclusive]
    return [case for case, trials in candidate.by_case().items() if not conclusive(trials)]


def gate(candidate: RunResult, comparison: Comparison | None, *, min_pass: float | None) -> GateResult:
    """The CI verdict: regressions first (exit 1), then inconclusive cases (exit 6), then the pass-rate floor
    (exit 3). An error is never a regression and never a pass."""
    reasons: list[str] = []
    code = ExitCode.OK
    incomplete = candidate.incomplete()
    if incomplete is not None:
        code = ExitCode.RUN_FAILED
        reasons.append(f"{incomplete}: a gate judges whole runs only")
    if comparison is not None and comparison.regressions:
        code = ExitCode.REGRESSION if code == ExitCode.OK else code
        names = ", ".join(c.case_id for c in comparison.regressions)
        reasons.append(f"{len(comparison.regressions)} regression(s) against the baseline: {names}")
    unsure = inconclusive_cases(candidate, comparison)
    if unsure:
        if code == ExitCode.OK:
            code = ExitCode.INCONCLUSIVE
        reasons.append(
            f"{len(unsure)} case(s) inconclusive (every trial errored, retries included): {', '.join(unsure)}"
        )
    rate = candidate.metrics.get("case_pass_rate")
    if min_pass is not None and (rate is None or rate < min_pass):
        if code in (ExitCode.OK, ExitCode.INCONCLUSIVE):
            code = ExitCode.BELOW_MIN_PASS
        reasons.append(f"pass rate {rate if rate is not None else 'n/a'} is below --min-pass {min_pass}")
    result = GateResult(code, tuple(reasons))
    return GateResult(code, result.reasons, verdict_line(result, candidate, comparison, len(unsure)))


def verdict_line(result: GateResult, candidate: RunResult, comparison: Comparison | None, unsure: int) -> str:
    """`GATE PASSED|FAILED|INCONCLUSIVE: N regressions, M flaky, K inconclusive, pass rate x (baseline y)`."""
    regressions = len(comparison.regressions) if comparison else 0
    flaky = len(comparison.flaky) if comparison else 0
    rate = _rate(candidate.metrics.get("case_pass_rate"))
    base = f" (baseline {_rate(comparison.baseline_same_cases.metrics.get('case_pass_rate'))})" if comparison else ""
    return (
        f"GATE {result.verdict}: {regressions} regression{'s' * (regressions != 1)}, {flaky} flaky, "
        f"{unsure} inconclusive, pass rate {rate}{base}"
    )


def _rate(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float | int) else "n/a"


def with_reason(result: GateResult, code: ExitCode, reason: str) -> GateResult:
    """The same verdict with one more failing reason (e.g. strict replay misses), its line re-headed."""
    verdict = "INCONCLUSIVE" if code == ExitCode.INCONCLUSIVE else "FAILED"
    line = result.line.replace(f"GATE {result.verdict}", f"GATE {verdict}", 1)
    return GateResult(code, (*result.reasons, reason), line)
