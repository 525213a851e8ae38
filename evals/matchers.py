"""Argument and text matching: pure functions that say whether a value matches and, when not, why."""

from __future__ import annotations

import re
import re._parser as re_parser  # the stdlib's own regex parser: a regex's witness is built from its tree
import unicodedata
from dataclasses import dataclass
from typing import Any

from evals.dataset import MISSING_REF, Matcher, MatcherSpec

_QUOTES = "\"'`“”‘’«»"
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Case, Unicode form, inner whitespace, surrounding quotes and end punctuation do not matter."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _SPACES.sub(" ", text).strip()
    text = text.strip(_QUOTES).strip()
    text = text.rstrip(".!?۔؟,;:").strip()
    return text.strip(_QUOTES).strip()


def normalise_reply(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def is_blank(value: Any) -> bool:
    """What the tools read as "leave unchanged": absent, null or an empty string."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none"))


@dataclass(frozen=True)
class MatchContext:
    """What a matcher may refer to: the seeded ids, and the task list before the turn (for `task_titled`)."""

    ids: dict[str, int]
    missing_id: int
    tasks_before: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Match:
    ok: bool
    reason: str = ""


ABSENT = object()  # the argument was not sent at all


def describe(spec: MatcherSpec) -> str:
    """A matcher as a person writes it (for evidence): `'Buy milk'`, `contains 'plumber'`, `one of 'a', 'b'`."""
    if not isinstance(spec, Matcher):
        return "absent" if spec is None else repr(spec)
    kind = spec.kind
    value = getattr(spec, kind)
    if kind == "one_of":
        return "one of " + ", ".join(describe(v) for v in value)
    if kind == "optional":
        return f"optional {describe(value)}"
    if kind in ("any", "absent"):
        return kind
    if kind == "task":
        return f"id of task {value!r}"
    if kind == "task_titled":
        return f"id of the task titled ~{value!r}"
    return f"{kind} {value!r}"


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _equals(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float):
        number = _as_number(actual)
        return number is not None and number == float(expected)
    if isinstance(expected, str):
        return isinstance(actual, str) and normalise(actual) == normalise(expected)
    return bool(expected == actual)


def _id_matches(expected: int, actual: Any) -> bool:
    number = _as_number(actual)
    return number is not None and number == float(expected)


def match_value(spec: MatcherSpec, actual: Any, ctx: MatchContext) -> Match:
    """Whether `actual` (ABSENT when the argument was not sent) satisfies `spec`."""
    if not isinstance(spec, Matcher):
        if spec is None:
            return (
                Match(True)
                if actual is ABSENT or is_blank(actual)
                else Match(False, f"expected absent, got {actual!r}")
            )
        if actual is ABSENT:
            return Match(False, f"missing (expected {spec!r})")
        return Match(True) if _equals(spec, actual) else Match(False, f"expected {spec!r}, got {actual!r}")

    kind = spec.kind
    if kind == "absent":
        return Match(True) if actual is ABSENT or is_blank(actual) else Match(False, f"expected absent, got {actual!r}")
    if kind == "optional":
        if actual is ABSENT or is_blank(actual):
            return Match(True)
        return match_value(spec.optional, actual, ctx)
    if kind == "one_of":
        reasons = []
        for alternative in spec.one_of or []:
            result = match_value(alternative, actual, ctx)
            if result.ok:
                return result
            reasons.append(result.reason)
        return Match(False, f"matched none of {describe(spec)}: got {_show(actual)}")
    if actual is ABSENT:
        return Match(False, f"missing (expected {describe(spec)})")
    if kind == "any":
        return Match(True) if not is_blank(actual) else Match(False, f"expected a value, got {actual!r}")
    if kind == "exact":
        same = type(actual) is type(spec.exact) and actual == spec.exact
        return Match(True) if same else Match(False, f"expected exactly {spec.exact!r}, got {actual!r}")
    if kind == "equals":
        return (
            match_value(spec.equals, actual, ctx)
            if spec.equals is None
            else (
                Match(True)
                if _equals(spec.equals, actual)
                else Match(False, f"expected {spec.equals!r}, got {actual!r}")
            )
        )
    if kind == "normalized":
        ok = isinstance(actual, str) and normalise(actual) == normalise(spec.normalized or "")
        return Match(True) if ok else Match(False, f"expected ~{spec.normalized!r}, got {actual!r}")
    if kind == "contains":
        ok = isinstance(actual, str) and normalise(spec.contains or "") in normalise(actual)
        return Match(True) if ok else Match(False, f"expected to contain {spec.contains!r}, got {actual!r}")
    if kind == "regex":
        ok = isinstance(actual, str) and re.search(spec.regex or "", actual, re.IGNORECASE) is not None
        return Match(True) if ok else Match(False, f"expected to match /{spec.regex}/, got {actual!r}")
    if kind == "task":
        ref = spec.task or ""
        expected_id = ctx.missing_id if ref == MISSING_REF else ctx.ids.get(ref)
        if expected_id is None:
            return Match(False, f"task ref {ref!r} was not seeded")
        if _id_matches(expected_id, actual):
            return Match(True)
        return Match(False, f"expected the id of task {ref!r} ({expected_id}), got {actual!r}")
    if kind == "task_titled":
        wanted = normalise(spec.task_titled or "")
        candidates = [t for t in ctx.tasks_before if wanted in normalise(str(t.get("title", "")))]
        if len(candidates) != 1:
            return Match(False, f"{len(candidates)} tasks titled ~{spec.task_titled!r} before this turn")
        expected_id = candidates[0]["id"]
        if _id_matches(expected_id, actual):
            return Match(True)
        return Match(False, f"expected the id of {candidates[0]['title']!r} ({expected_id}), got {actual!r}")
    raise AssertionError(f"unhandled matcher kind {kind}")  # pragma: no cover - the schema forbids it


def _show(value: Any) -> str:
    return "nothing" if value is ABSENT else repr(value)


def resolve_example(spec: MatcherSpec, ctx: MatchContext) -> tuple[bool, Any]:
    """A concrete value that satisfies `spec`, when one is evident (deepeval's `expected_tools` need values)."""
    if not isinstance(spec, Matcher):
        return (spec is not None), spec
    kind = spec.kind
    if kind in ("equals", "exact", "normalized"):
        return True, getattr(spec, kind)
    if kind == "one_of":
        for alternative in spec.one_of or []:
            found, value = resolve_example(alternative, ctx)
            if found:
                return True, value
        return False, None
    if kind == "task":
        ref = spec.task or ""
        value = ctx.missing_id if ref == MISSING_REF else ctx.ids.get(ref)
        return value is not None, value
    if kind == "task_titled":
        wanted = normalise(spec.task_titled or "")
        candidates = [t for t in ctx.tasks_before if wanted in normalise(str(t.get("title", "")))]
        return (True, candidates[0]["id"]) if len(candidates) == 1 else (False, None)
    if kind == "optional":
        return resolve_example(spec.optional, ctx)
    return False, None


# ---------------------------------------------------------------- witnesses (`eval check`)

_CATEGORY_WITNESS = {"CATEGORY_DIGIT": "0", "CATEGORY_SPACE": " ", "CATEGORY_WORD": "a"}


def regex_instance(pattern: str) -> str | None:
    """A short string the (case-insensitive) regex finds, built from its parse tree: the first branch of every
    alternation, the fewest repeats (a gap `.*` as one space). None for what this cannot build (look-arounds,
    back-references, negated classes): such a case's matcher carries an `example:`."""
    try:
        tree = re_parser.parse(pattern, re.IGNORECASE)
    except re.error:
        return None

    def build(items: Any) -> str | None:
        out = []
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(arg))
            elif name == "ANY":
                out.append(" ")
            elif name == "AT":
                continue  # anchors and word boundaries: satisfied by the text around (checked below)
            elif name == "IN":
                first = next(((str(o), a) for o, a in arg if str(o) in ("LITERAL", "RANGE", "CATEGORY")), None)
                if first is None or any(str(o) == "NEGATE" for o, _ in arg):
                    return None
                kind, value = first
                char = (
                    chr(value)
                    if kind == "LITERAL"
                    else chr(value[0])
                    if kind == "RANGE"
                    else _CATEGORY_WITNESS.get(str(value))
                )
                if char is None:
                    return None
                out.append(char)
            elif name == "CATEGORY":
                char = _CATEGORY_WITNESS.get(str(arg))
                if char is None:
                    return None
                out.append(char)
            elif name == "BRANCH":
                part = build(arg[1][0])
                if part is None:
                    return None
                out.append(part)
            elif name == "SUBPATTERN":
                part = build(arg[-1])
                if part is None:
                    return None
                out.append(part)
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, _high, inner = arg
                part = build(inner)
                if part is None:
                    return None
                gap = low == 0 and part == " "  # `.*` between words: one space keeps them words
                out.append(part * (1 if gap else low))
            else:
                return None
        return "".join(out)

    text = build(tree)
    if text is None:
        return None
    text = text.strip() or text
    return text if re.search(pattern, text, re.IGNORECASE) else None


def witness(spec: MatcherSpec, ctx: MatchContext) -> Any:
    """A concrete value `spec` accepts, to send as a call's argument when replaying a case without a model:
    ABSENT when the argument is best left out, None when no value can be found (the case needs an `example:`)."""
    if spec is None:
        return ABSENT
    if not isinstance(spec, Matcher):
        return spec
    if spec.example is not None:
        return spec.example
    kind = spec.kind
    if kind in ("absent", "optional"):
        return ABSENT
    if kind == "contains":
        return spec.contains
    if kind == "regex":
        return regex_instance(spec.regex or "")
    if kind == "one_of":
        for alternative in spec.one_of or []:
            value = witness(alternative, ctx)
            if value is not None:
                return value
        return None
    found, value = resolve_example(spec, ctx)
    return value if found else None
