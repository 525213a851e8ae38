"""A conversation from the chat becomes an eval case: captured from the database the chat writes (`evals.capture`,
as `todo-agent eval capture` does), edited in the page, then saved, self-checked and replayed on the session's prompt
and model. Conversations users disliked (ChatKit's thumbs down) are listed to start from."""

from __future__ import annotations

import re
from pathlib import Path

from evals.capture import PERSONAL_DATA_WARNING, capture_case, case_yaml, disliked_conversations
from evals.dataset import Case, DatasetError, load_text
from evals.results import RunResult
from evals.selfcheck import check_case
from evals.suite import run_evals
from playground.context import PlaygroundContext
from playground.eval_handlers import eval_config
from playground.session import PlaygroundSession

# Narrower than the dataset's id pattern: the id names the saved file (no dots, bounded length).
CASE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
__all__ = [
    "PERSONAL_DATA_WARNING", "capture", "captured_dir", "disliked_choices", "parse_choice", "replay_markdown",
    "save_and_replay",
]  # fmt: skip


def captured_dir(ctx: PlaygroundContext) -> Path:
    """Where saved cases go: under DATA_DIR (writable after any install), never into the committed dataset."""
    return ctx.settings.data_dir / "cases"


def disliked_choices(ctx: PlaygroundContext, session: PlaygroundSession) -> list[tuple[str, str]]:
    """(label, "user:conversation") for conversations with a disliked reply: every user's in development, else only
    the session's own (another user's conversations stay invisible)."""
    owner = None if ctx.settings.environment == "development" else session.user_id
    return [
        (f"{user} · #{conversation}: {reply[:60]}", f"{user}:{conversation}")
        for user, conversation, reply in disliked_conversations(ctx.engine, owner)
    ]


def parse_choice(value: str) -> tuple[str, int]:
    user, _, conversation = str(value).rpartition(":")
    if not user or not conversation.isdigit():
        raise ValueError("pick a conversation from the list")
    return user, int(conversation)


def capture(ctx: PlaygroundContext, session: PlaygroundSession, case_id: str, *, redact: bool) -> str:
    """The session's current conversation as the YAML of one case, for the page's editor."""
    case_id = case_id.strip() or f"captured-{session.conversation_id}"
    if not CASE_ID.match(case_id):
        raise ValueError("a case id is lowercase letters, digits, '_' or '-', e.g. captured-groceries")
    if session.conversation_id is None:
        raise ValueError("start or resume a conversation first")
    case = capture_case(
        ctx.engine, user_id=session.user_id, conversation_id=session.conversation_id, case_id=case_id, redact=redact
    )
    return case_yaml(case)


def _only_case(text: str) -> Case:
    source = Path("the edited case")
    cases = load_text(text, source).cases
    if len(cases) != 1:
        raise DatasetError(f"{source}: holds {len(cases)} cases; keep exactly one")
    case = cases[0]
    if not CASE_ID.match(case.id):
        raise DatasetError(f"{source}: case id {case.id!r}: lowercase letters, digits, '_' or '-'")
    return case


async def save_and_replay(ctx: PlaygroundContext, session: PlaygroundSession, text: str) -> tuple[Path, RunResult]:
    """Validate the edited YAML, check that some agent could pass it (its expected calls replayed on the real tools),
    save it as `<DATA_DIR>/cases/<id>.yaml`, then run it with the session's prompt and model."""
    case = _only_case(text)
    checked = check_case(case)
    if not checked.ok:
        raise DatasetError(f"no agent could pass case {case.id!r} as written: {'; '.join(checked.reasons())}")
    folder = captured_dir(ctx)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case.id}.yaml"
    path.write_text(text, encoding="utf-8")
    config = eval_config(ctx, session, [])
    config.dataset = path
    result = await run_evals(config, label=f"case {case.id}")
    ctx.runs.save(result)
    return path, result


def replay_markdown(path: Path, result: RunResult) -> str:
    trials = [t for cases in result.by_case().values() for t in cases]
    if not trials:
        return f"Saved `{path}`; the replay ran no trial."
    trial = trials[0]
    if trial.passed:
        verdict = "**✓ passes** on the current prompt and model"
    else:
        verdict = "**✗ fails** on the current prompt and model: " + ", ".join(trial.score.failure_kinds)
    return (
        f"Saved `{path}` · {verdict}. Put it in the dataset (`datasets/`) to make it a regression case; "
        f"`todo-agent eval check` validates it there."
    )
