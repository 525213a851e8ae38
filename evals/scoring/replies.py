"""Reply checks: what a case says the reply must (or must not) contain."""

from __future__ import annotations

import re

from evals.dataset import ReplyCheck
from evals.matchers import normalise_reply


def check_reply(check: ReplyCheck, text: str | None) -> list[str]:
    reply = normalise_reply(text or "")
    problems = []
    missing = [s for s in check.contains_all if normalise_reply(s) not in reply]
    if missing:
        problems.append(f"does not mention {missing}")
    if check.contains_any and not any(normalise_reply(s) in reply for s in check.contains_any):
        problems.append(f"mentions none of {check.contains_any}")
    present = [s for s in check.not_contains if normalise_reply(s) in reply]
    if present:
        problems.append(f"mentions {present}, which it must not")
    if check.regex is not None and re.search(check.regex, text or "", re.IGNORECASE) is None:
        problems.append(f"does not match /{check.regex}/")
    return problems
