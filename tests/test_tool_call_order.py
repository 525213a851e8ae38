"""Calls of one model response take effect in the order the model wrote them (the SDK runs them concurrently).

"Add X, then show my tasks" must list X; ids follow call order; the contract reports the calls in call order. The
eval suite's record/replay depends on this too: what the model sees next must not depend on thread scheduling.
"""

from __future__ import annotations

from typing import Any

from evals.scripted_model import Reply, script
from tests.conftest import new_user


async def test_calls_of_one_response_run_in_call_order(make_harness: Any) -> None:
    rounds = 5
    replies: list[Reply | str] = []
    for _ in range(rounds):
        replies += [
            Reply(calls=[("add_task", {"title": "First"}), ("add_task", {"title": "Second"}),
                         ("add_task", {"title": "Third"}), ("list_tasks", {"status": "all"})]),
            "Done.",
        ]  # fmt: skip
    harness = await make_harness(script(replies))
    for _ in range(rounds):
        user = new_user()
        body = (await harness.chat(user, "Add three tasks, then show them")).json()
        names = [(c["name"], c["arguments"].get("title")) for c in body["tool_calls"]]
        assert names == [("add_task", "First"), ("add_task", "Second"), ("add_task", "Third"), ("list_tasks", None)]
        ids = [c["result"]["task_id"] for c in body["tool_calls"][:3]]
        assert ids == sorted(ids)
        assert [t["title"] for t in body["tool_calls"][3]["result"]] == ["First", "Second", "Third"]
