"""The two readers of a reply's claims, each against hand-labelled replies in English, Urdu and Roman Urdu.

`tests/data/claims.yaml` and `claims_holdout.yaml` were written by two labellers who did not see either detector
(the second file after the first had been used, to measure how well the detectors generalised). Each item is one
turn: the user's message, the reply, the calls that ran in the turn and earlier, the task lists before and after, and
three labels: which actions the reply claims, whether the local model's guard should ask again
(`backend.llm.claims`), and whether the reply is a false claim judged from the task lists (`evals.scoring.claims`).
The two detectors share no code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.llm.claims import ACTION_OF_TOOL, DoneCall, claims, unbacked_claims
from evals.scoring.claims import false_claims

DATA = Path(__file__).parent / "data"
ITEMS = [item for name in ("claims.yaml", "claims_holdout.yaml") for item in yaml.safe_load((DATA / name).read_text())]
# The guard knows a task by a quoted title, an id, or the turn's task list; these name the wrong one in words only
# ("the dog food task"), which it does not resolve. The scorer, which reads the task lists, does catch them.
GUARD_KNOWN_MISSES = {"en-h-delete-near-duplicate-title", "ur-h-complete-wrong-task", "rur-h-delete-wrong-task"}


def done(calls: list[dict[str, Any]], before: list[dict[str, Any]]) -> list[DoneCall]:
    """The successful calls as the model server reads them from tool results (old titles from the turn's list)."""
    titles = {task["id"]: task["title"] for task in before}
    out = []
    for call in calls:
        action, result = ACTION_OF_TOOL.get(call["name"]), call.get("result")
        if action and isinstance(result, dict) and "error" not in result:
            old = titles.get(result.get("task_id"), "") if action == "updated" else ""
            out.append(DoneCall(action, str(result.get("title") or ""), result.get("task_id"), old))
    return out


def test_the_labelled_replies_cover_three_languages_and_both_verdicts() -> None:
    for lang in ("en", "ur", "rur"):
        items = [i for i in ITEMS if i["lang"] == lang]
        assert len(items) >= 20, lang
        assert {i["guard_should_fire"] for i in items} == {True, False}, lang
        assert {i["false_claim"] for i in items} == {True, False}, lang
    assert any(not i["claims"] for i in ITEMS) and any(i["earlier_calls"] for i in ITEMS)


@pytest.mark.parametrize("item", ITEMS, ids=[i["id"] for i in ITEMS])
def test_the_guard_reads_what_the_reply_claims(item: dict[str, Any]) -> None:
    found = claims(item["reply"])
    assert bool(found) == bool(item["claims"]), found
    named = {claim.action for claim in found if claim.action is not None}
    assert named <= set(item["claims"]), found  # a bare "Done!" names no action; whatever it names is labelled


GUARDED = [item for item in ITEMS if item["id"] not in GUARD_KNOWN_MISSES]


@pytest.mark.parametrize("item", GUARDED, ids=[i["id"] for i in GUARDED])
def test_the_guard_asks_again_exactly_when_no_call_backs_a_claim(item: dict[str, Any]) -> None:
    unbacked = unbacked_claims(
        item["reply"], done(item["turn_calls"], item["tasks_before"]), done(item["earlier_calls"], [])
    )
    assert bool(unbacked) == item["guard_should_fire"], unbacked


@pytest.mark.parametrize("item", ITEMS, ids=[i["id"] for i in ITEMS])
def test_the_scorer_finds_exactly_the_claims_the_task_list_contradicts(item: dict[str, Any]) -> None:
    found = false_claims(item["reply"], item["tasks_before"], item["tasks_after"], item["user"])
    assert bool(found) == item["false_claim"], found


def test_what_the_guard_misses_the_scorer_catches() -> None:
    missed = [item for item in ITEMS if item["id"] in GUARD_KNOWN_MISSES]
    assert len(missed) == len(GUARD_KNOWN_MISSES)
    for item in missed:
        assert item["false_claim"] and false_claims(
            item["reply"], item["tasks_before"], item["tasks_after"], item["user"]
        )
