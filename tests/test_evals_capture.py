"""A real conversation becomes an eval case: captured from the backend's database with its true starting tasks,
written as YAML, validated, checked with its own expectations, and replayed by the eval runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlmodel import Session
from typer.testing import CliRunner

from backend import crud
from evals.capture import capture_case, disliked_conversations
from evals.compare import ExitCode
from evals.dataset import load_dataset
from evals.selfcheck import check_case
from evals.suite import EvalConfig, run_evals
from tests.conftest import Harness, new_user
from todo_agent.cli import app


async def _conversation(harness: Harness, user: str) -> int:
    ids = []
    for title in ("Water the plants", "Call the dentist"):
        created = await harness.client.post(f"/api/{user}/tasks", json={"title": title}, headers=harness.auth(user))
        assert created.status_code == 201
        ids.append(created.json()["id"])
    first = await harness.chat(user, "Add a task to buy milk")
    assert first.status_code == 200, first.text
    conversation = first.json()["conversation_id"]
    second = await harness.chat(user, f"Mark task {ids[0]} as done", conversation)
    assert second.status_code == 200 and second.json()["tool_calls"][0]["name"] == "complete_task"
    return int(conversation)


async def test_each_turn_keeps_the_task_list_before_and_after_it(harness: Harness) -> None:
    user = new_user()
    conversation = await _conversation(harness, user)
    with Session(harness.app.state.engine) as session:
        messages = list(crud.list_messages(session, conversation_id=conversation))
    assert [m.role for m in messages] == ["user", "assistant"] * 2
    assert [t["title"] for t in messages[0].tasks or []] == ["Water the plants", "Call the dentist"]
    assert [t["title"] for t in messages[1].tasks or []] == ["Water the plants", "Call the dentist", "Buy milk"]
    assert (messages[2].tasks or [])[0]["completed"] is False and (messages[3].tasks or [])[0]["completed"] is True


async def test_a_captured_conversation_validates_checks_and_replays(harness: Harness, tmp_path: Path) -> None:
    user = new_user()
    conversation = await _conversation(harness, user)
    case = capture_case(harness.app.state.engine, user_id=user, conversation_id=conversation, case_id="captured-one")
    assert [s.title for s in case.tasks] == ["Water the plants", "Call the dentist"]
    assert case.turns[1].user == "Mark task {t1} as done"
    assert case.turns[1].calls[0].args["task_id"].task == "t1"  # type: ignore[union-attr]
    assert check_case(case).ok, check_case(case).reasons()
    path = tmp_path / "captured.yaml"
    from evals.capture import case_yaml

    path.write_text(case_yaml(case), encoding="utf-8")
    loaded = load_dataset(path)
    assert [c.id for c in loaded.cases] == ["captured-one"]
    result = await run_evals(EvalConfig(dataset=path, model="scripted", deepeval=False))
    assert result.trials and all(t.passed for t in result.trials), [t.score.failures for t in result.trials]


async def test_redaction_replaces_every_title_and_another_users_conversation_is_not_found(harness: Harness) -> None:
    user = new_user()
    conversation = await _conversation(harness, user)
    case = capture_case(harness.app.state.engine, user_id=user, conversation_id=conversation, case_id="c", redact=True)
    text = yaml.safe_dump(case.model_dump(mode="json"))
    for title in ("Water the plants", "Call the dentist", "milk"):
        assert title.lower() not in text.lower()
    assert check_case(case).ok, check_case(case).reasons()
    with pytest.raises(ValueError, match="no conversation"):
        capture_case(harness.app.state.engine, user_id=new_user(), conversation_id=conversation, case_id="c")


async def test_the_cli_lists_disliked_conversations_and_writes_the_case(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.settings import get_settings

    user = new_user()
    conversation = await _conversation(harness, user)
    with Session(harness.app.state.engine) as session:
        reply = next(m for m in crud.list_messages(session, conversation_id=conversation) if m.role == "assistant")
        reply.feedback = "negative"
        session.add(reply)
        session.commit()
    assert [(u, c) for u, c, _ in disliked_conversations(harness.app.state.engine)] == [(user, conversation)]
    monkeypatch.setenv("DATABASE_URL", harness.settings.resolved_database_url)
    monkeypatch.setenv("BETTER_AUTH_SECRET", "x" * 48)
    get_settings.cache_clear()
    runner = CliRunner()
    listed = runner.invoke(app, ["eval", "capture", "--feedback", "negative"])
    assert listed.exit_code == 0 and f"conversation {conversation}" in listed.output and user in listed.output
    out = tmp_path / "case.yaml"
    written = runner.invoke(app, ["eval", "capture", "--user", user, "--conversation", str(conversation), "--out",
                                  str(out)])  # fmt: skip
    assert written.exit_code == 0, written.output
    assert "personal data" in written.output
    checked = runner.invoke(app, ["eval", "check", str(out)])
    assert checked.exit_code == 0, checked.output
    missing = runner.invoke(app, ["eval", "capture", "--user", user, "--conversation", "999999", "--out", str(out)])
    assert missing.exit_code == ExitCode.DATASET_INVALID
