"""Call matching: pair a turn's expected calls with the calls that ran, then name what is missing, wrong or extra.

Pairing prefers a call that matches in full (tool and arguments), then one with the right tool; with `order:
strict` a pair must come after the previous pair, with `order: any` anywhere. Read-only calls the case allows
(`allow_extra`) are free; any other leftover is an extra call, or the wrong tool where an expected call went
unpaired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from evals.dataset import ExpectedCall, Turn
from evals.matchers import ABSENT, MatchContext, describe, is_blank, match_value
from evals.scoring.failures import Failure
from evals.transcript import ObservedCall

CallOutcome = Literal["matched", "bad_args", "wrong_tool", "missing", "skipped_optional", "extra", "allowed_extra"]


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


def pair_calls(turn: Turn, actual: Sequence[ObservedCall], ctx: MatchContext) -> dict[int, int]:
    """Expected index -> actual index, full matches first, then same-tool matches."""
    pairs: dict[int, int] = {}
    strict = turn.order == "strict"

    def fits(e_index: int, k: int) -> bool:
        if k in pairs.values():
            return False
        if not strict:
            return True
        before = [a for e, a in pairs.items() if e < e_index]
        after = [a for e, a in pairs.items() if e > e_index]
        return (not before or k > max(before)) and (not after or k < min(after))

    tests: list[Callable[[ExpectedCall, ObservedCall], bool]] = [
        lambda call, seen: _full_match(call, seen, ctx),
        lambda call, seen: seen.name == call.tool,
    ]
    for test in tests:
        for e_index, call in enumerate(turn.calls):
            if e_index in pairs:
                continue
            hit = next((k for k in range(len(actual)) if fits(e_index, k) and test(call, actual[k])), None)
            if hit is not None:
                pairs[e_index] = hit
    return pairs


def match_calls(
    turn: Turn, actual: Sequence[ObservedCall], ctx: MatchContext, index: int
) -> tuple[list[CallScore], list[Failure]]:
    """Score every expected and every actual call of a turn; failures carry both sides as evidence."""
    pairs = pair_calls(turn, actual, ctx)
    used = set(pairs.values())
    allowed = set() if turn.no_tool_calls else set(turn.allow_extra)
    leftovers = [k for k in range(len(actual)) if k not in used and actual[k].name not in allowed]
    scores: list[CallScore] = []
    failures: list[Failure] = []
    for e_index, call in enumerate(turn.calls):
        if e_index in pairs:
            k = pairs[e_index]
            checks = check_args(call, actual[k], ctx)
            ok = all(c.ok for c in checks)
            scores.append(_score("matched" if ok else "bad_args", e_index, call, k, actual[k], checks))
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
        elif call.optional:
            scores.append(CallScore(outcome="skipped_optional", expected_index=e_index, expected_tool=call.tool))
        elif leftovers:  # something else was called where this call was expected
            k = leftovers.pop(0)
            scores.append(_score("wrong_tool", e_index, call, k, actual[k]))
            failures.append(
                Failure(
                    kind="wrong_tool",
                    turn=index,
                    message=f"expected {call.tool}, got {actual[k].name}",
                    expected=expected_view(call),
                    actual=call_view(actual[k]),
                )
            )
        else:
            scores.append(CallScore(outcome="missing", expected_index=e_index, expected_tool=call.tool))
            failures.append(
                Failure(
                    kind="missing_call",
                    turn=index,
                    message=f"{call.tool} was not called",
                    expected=expected_view(call),
                    actual=[call_view(c) for c in actual],
                )
            )
    scored = {s.actual_index for s in scores}
    for k, seen in enumerate(actual):
        if k in scored:
            continue
        if k in leftovers:
            scores.append(_score("extra", None, None, k, seen))
            why = "no tool call was expected" if turn.no_tool_calls else "not expected"
            failures.append(
                Failure(
                    kind="extra_call",
                    turn=index,
                    message=f"extra call {seen.name}({_args_text(seen.arguments)}): {why}",
                    expected=[expected_view(c) for c in turn.calls],
                    actual=call_view(seen),
                )
            )
        else:
            scores.append(_score("allowed_extra", None, None, k, seen))
    scores.sort(key=lambda s: (s.actual_index if s.actual_index is not None else 10_000, s.expected_index or 0))
    return scores, failures


def _score(
    outcome: CallOutcome,
    e_index: int | None,
    expected: ExpectedCall | None,
    k: int,
    seen: ObservedCall,
    checks: list[ArgCheck] | None = None,
) -> CallScore:
    return CallScore(
        outcome=outcome,
        expected_index=e_index,
        expected_tool=expected.tool if expected else None,
        actual_index=k,
        actual_tool=seen.name,
        actual_arguments=seen.arguments,
        args=checks or [],
    )


def expected_view(call: ExpectedCall) -> dict[str, Any]:
    return {"name": call.tool, "arguments": {k: describe(v) for k, v in call.args.items()}}


def call_view(call: ObservedCall) -> dict[str, Any]:
    return {"name": call.name, "arguments": call.arguments, "result": call.result}


def _args_text(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())
