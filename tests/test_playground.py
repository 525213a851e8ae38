"""The Gradio playground: its handlers on the scripted model, the launched app through gradio_client, the mount and
its login, one headless-Chromium load that finds the chat and eval tabs, and the saved runs: a run outlives the page
and the process, any runs go side by side, a run in progress shows its progress and can be cancelled."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
import yaml
from gradio_client import Client
from sqlmodel import Session

from backend import crud, db
from backend.agent import AgentFailure, FinalReply, TextDelta, ToolCallFinished, ToolCallRecord, ToolCallStarted
from backend.llm.provider import build_model
from backend.settings import DEFAULT_PROMPT_FILE
from evals.dataset import DEFAULT_DATASET, load_dataset
from evals.matrix import case_matrix
from evals.reference_agent import reference_responder
from evals.results import RunResult
from evals.runner import TrialOutcome
from evals.scripted_model import Reply, asgi_http_client, create_scripted_app, last_user_text, script
from playground import capture_handlers, chat_handlers, eval_handlers, prompt_handlers, run_handlers
from playground.app import initial_session
from playground.context import PlaygroundContext
from playground.door import launch, playground_auth
from playground.session import ModelChoice, PlaygroundSession
from tests.conftest import TEST_SECRET, Harness, ThreadHold, make_settings
from todo_agent.app import create_app

# ---------------------------------------------------------------- fixtures


@dataclass
class Playground:
    harness: Harness
    ctx: PlaygroundContext

    def session(self, user: str = "alice") -> PlaygroundSession:
        session = initial_session(self.ctx)
        session.user_id = user
        return session


def _context(settings: Any, chat: Any, root: Path, dataset: Path = DEFAULT_DATASET) -> PlaygroundContext:
    """A context whose prompts folder and baseline live under `root`, so nothing is written into the repo."""
    prompts = root / "prompts"
    prompts.mkdir(exist_ok=True)
    baseline_prompt = prompts / DEFAULT_PROMPT_FILE.name
    shutil.copyfile(DEFAULT_PROMPT_FILE, baseline_prompt)
    settings = settings.model_copy(update={"system_prompt_file": baseline_prompt})
    return PlaygroundContext(settings, chat, prompts_dir=prompts, dataset=dataset, baseline=root / "baseline.json")


@pytest.fixture
async def make_playground(make_harness: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    async def build(responder: Any = reference_responder, dataset: Path = DEFAULT_DATASET) -> Playground:
        harness: Harness = await make_harness(responder)
        return Playground(harness, _context(harness.settings, harness.app.state.chat, tmp_path, dataset))

    return build


@pytest.fixture
async def pg(make_playground: Callable[..., Any]) -> Playground:
    built: Playground = await make_playground()
    return built


async def turn(pg: Playground, session: PlaygroundSession, text: str) -> list[list[gr.ChatMessage]]:
    """Run one turn; every streamed snapshot of the chat, in order."""
    snapshots = []
    async for updated in chat_handlers.send(pg.ctx, session, text):
        snapshots.append(list(updated.messages))
    return snapshots


async def drain(stream: AsyncIterator[PlaygroundSession]) -> list[list[gr.ChatMessage]]:
    return [list(s.messages) async for s in stream]


def titles(messages: list[gr.ChatMessage]) -> list[str | None]:
    return [(m.metadata or {}).get("title") for m in messages]


# ---------------------------------------------------------------- rendering events


def test_renderer_turns_events_into_collapsible_tool_messages() -> None:
    renderer = chat_handlers.TurnRenderer([gr.ChatMessage(role="user", content="add milk")])
    renderer.apply(ToolCallStarted("c1", "add_task", {"title": "Milk"}))
    pending = renderer.messages[-1]
    assert pending.metadata == {"title": "⚙ add_task", "status": "pending", "id": "c1"}
    ok = ToolCallRecord("add_task", {"title": "Milk"}, {"task_id": 1, "status": "created", "title": "Milk"}, 12.5)
    renderer.apply(ToolCallFinished("c1", ok))
    done = renderer.messages[1]
    assert done.metadata["status"] == "done" and done.metadata["duration"] == 0.013
    assert '"title": "Milk"' in str(done.content) and '"task_id": 1' in str(done.content)
    bad = ToolCallRecord("delete_task", {"task_id": 9}, {"error": {"code": "not_found", "message": "no task 9"}}, 3.0)
    renderer.apply(ToolCallStarted("c2", "delete_task", {"task_id": 9}))
    renderer.apply(ToolCallFinished("c2", bad))
    assert renderer.messages[2].metadata["title"] == "⚙ delete_task — ✗ not_found"
    assert renderer.messages[2].metadata["log"] == "error"
    for piece in ("Added ", "Milk."):
        renderer.apply(TextDelta(piece))
    renderer.apply(FinalReply("Added Milk.", [ok, bad]))
    assert [m.content for m in renderer.messages[3:]] == ["Added Milk."]  # streamed once, not repeated at the end
    renderer.apply(AgentFailure("model_timeout", "too slow"))
    assert renderer.messages[-1].metadata["title"] == "⚠ model_timeout"


def test_a_reply_that_never_streamed_is_shown_from_the_final_event() -> None:
    renderer = chat_handlers.TurnRenderer([])
    renderer.apply(FinalReply("Done.", []))
    assert [m.content for m in renderer.messages] == ["Done."]


def test_user_is_chosen_in_development_and_the_login_elsewhere(tmp_path: Path) -> None:
    dev = make_settings(tmp_path)
    assert chat_handlers.resolve_user(dev, "bob", None) == "bob"
    assert chat_handlers.resolve_user(dev, "", None) == "playground"
    prod = make_settings(tmp_path, environment="production", playground_enabled=True,
                         playground_username="pe", playground_password="pw" * 8)  # fmt: skip
    assert chat_handlers.resolve_user(prod, "bob", "pe") == "playground-pe"  # asking for bob changes nothing
    with pytest.raises(PermissionError):
        chat_handlers.resolve_user(prod, "bob", None)


# ---------------------------------------------------------------- chat handlers


async def test_a_turn_streams_tool_calls_then_the_reply_and_refreshes_the_task_list(pg: Playground) -> None:
    session = pg.session()
    snapshots = await turn(pg, session, "Add a task to buy groceries")
    first_tool = next(i for i, shot in enumerate(snapshots) if chat_handlers.tool_call_messages(shot))
    assert first_tool < len(snapshots) - 1, "the tool call shows before the turn ends"
    final = snapshots[-1]
    assert [m.role for m in final] == ["user", "assistant", "assistant"]
    assert final[1].metadata["title"] == "⚙ add_task" and final[1].metadata["status"] == "done"
    assert "duration" in final[1].metadata
    assert "Buy groceries" in str(final[2].content)
    raw = session.last_turn
    assert raw["conversation_id"] == session.conversation_id
    assert raw["tool_calls"][0]["name"] == "add_task" and raw["tool_calls"][0]["is_error"] is False
    assert raw["timing"]["first_tool_call_ms"] <= raw["timing"]["total_ms"]
    table = chat_handlers.task_table(pg.ctx, "alice")
    assert table["title"].tolist() == ["Buy groceries"]
    assert chat_handlers.task_table(pg.ctx, "bob").empty  # another user's list is not this one
    # The same conversation continues on the next message.
    await turn(pg, session, "Show me all my tasks")
    assert session.last_turn["conversation_id"] == raw["conversation_id"]


async def test_a_tool_error_is_marked_on_its_message(pg: Playground) -> None:
    session = pg.session()
    final = (await turn(pg, session, "Mark task 99 as complete"))[-1]
    assert final[1].metadata["title"].startswith("⚙ complete_task — ✗")
    assert session.last_turn["tool_calls"][0]["is_error"] is True


async def test_a_model_failure_is_shown_and_the_conversation_survives(make_playground: Callable[..., Any]) -> None:
    pg = await make_playground(script([Reply(status=400)], then=reference_responder))
    session = pg.session()
    final = (await turn(pg, session, "Add a task to buy milk"))[-1]
    assert final[-1].metadata["title"] == "⚠ model_error"
    assert session.last_turn["error"]["code"] == "model_error"
    await turn(pg, session, "Add a task to buy milk")  # the conversation is not left locked
    assert session.last_turn["response"]


async def test_edited_prompt_and_temperature_reach_the_model_without_restart(pg: Playground) -> None:
    session = pg.session()
    prompt_handlers.edit(pg.ctx, session, "You are a terse todo bot. EDITED-MARKER")
    session.model = ModelChoice(temperature=0.7)
    await turn(pg, session, "Add a task to buy milk")
    request = pg.harness.model_requests[0]
    assert "EDITED-MARKER" in request["messages"][0]["content"]
    assert request["temperature"] == 0.7
    # The server's own agent is untouched: another session still runs the configured prompt.
    other = pg.session("bob")
    await turn(pg, other, "Add a task to buy bread")
    assert "EDITED-MARKER" not in pg.harness.model_requests[-1]["messages"][0]["content"]


def test_model_choices_map_onto_settings(pg: Playground) -> None:
    hosted = pg.ctx.model_settings(ModelChoice("openai", "http://127.0.0.1:8001/v1", "gpt-x", "k", 0.2))
    assert (hosted.agent_model, hosted.openai_base_url, hosted.openai_api_key, hosted.temperature) == (
        "gpt-x", "http://127.0.0.1:8001/v1", "k", 0.2,
    )  # fmt: skip
    with pytest.raises(ValueError, match="PLAYGROUND_MODEL_HOSTS"):
        pg.ctx.model_settings(ModelChoice("openai", "http://llm.internal/v1", "gpt-x", "k"))
    assert pg.ctx.model_settings(ModelChoice("local")).is_local_model
    with pytest.raises(ValueError, match="base URL"):
        pg.ctx.model_settings(ModelChoice("openai", "", "gpt-x"))


async def test_retry_reruns_the_last_message_and_undo_removes_it(pg: Playground) -> None:
    session = pg.session()
    await turn(pg, session, "Add a task to buy milk")
    await turn(pg, session, "Show me all my tasks")
    before = len(session.messages)
    snapshots = await drain(chat_handlers.retry(pg.ctx, session))
    assert len(snapshots[-1]) == before  # the last exchange, run again, replaces itself
    assert chat_handlers.tool_call_messages(snapshots[-1])[-1].metadata["title"] == "⚙ list_tasks"
    session, text = await chat_handlers.undo(pg.ctx, session)
    assert text == "Show me all my tasks"
    assert [m.content for m in session.messages if m.role == "user"] == ["Add a task to buy milk"]
    resumed = chat_handlers.resume(pg.ctx, pg.session(), session.conversation_id)
    assert [m.role for m in resumed.messages] == ["user", "assistant", "assistant"]  # the store agrees


async def test_new_conversation_and_resume_with_stored_tool_calls(pg: Playground) -> None:
    session = pg.session()
    await turn(pg, session, "Add a task to buy milk")
    first = session.conversation_id
    chat_handlers.new_conversation(session)
    assert session.conversation_id is None and session.messages == []
    await turn(pg, session, "What's pending?")
    assert session.conversation_id != first
    choices = chat_handlers.conversation_choices(pg.ctx, "alice")
    assert {value for _, value in choices} == {first, session.conversation_id}
    chat_handlers.resume(pg.ctx, session, first)
    assert titles(session.messages)[1] == "⚙ add_task"
    with pytest.raises(Exception, match="not found"):
        chat_handlers.resume(pg.ctx, pg.session("mallory"), first)  # not theirs


# ---------------------------------------------------------------- prompt editor


def test_prompt_load_edit_save_and_diff(pg: Playground) -> None:
    session = pg.session()
    ctx = pg.ctx
    assert prompt_handlers.diff_text(ctx, session.prompt_text) == ""
    edited = session.prompt_text + "- Always answer in one sentence.\n"
    prompt_handlers.edit(ctx, session, edited)
    assert session.prompt_name == ""
    diff = prompt_handlers.diff_text(ctx, edited)
    assert "+- Always answer in one sentence." in diff
    assert "#e6ffec" in prompt_handlers.diff_html(ctx, edited)
    path = prompt_handlers.save_version(ctx, session, "system_edit1", edited)
    assert path == ctx.prompts_dir / "system_edit1.md" and path.read_text() == edited
    assert session.prompt_name == "system_edit1" and "system_edit1" in prompt_handlers.prompt_files(ctx)
    with pytest.raises(FileExistsError):
        prompt_handlers.save_version(ctx, session, "system_edit1", "other text")
    with pytest.raises(ValueError):
        prompt_handlers.save_version(ctx, session, "../escape", edited)
    prompt_handlers.load(ctx, session, "system_v2")
    assert session.prompt_text == DEFAULT_PROMPT_FILE.read_text() and session.prompt_name == "system_v2"


def test_the_diff_leaves_an_untouched_last_line_alone(pg: Playground) -> None:
    """A prompt file without a final newline, a line appended in the editor: only the new line is a change."""
    baseline = pg.ctx.baseline_prompt_file
    baseline.write_text(baseline.read_text().rstrip("\n"), encoding="utf-8")
    last = baseline.read_text().splitlines()[-1]
    diff = prompt_handlers.diff_text(pg.ctx, baseline.read_text() + "\n- Answer in one sentence.\n")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["+- Answer in one sentence."], diff
    assert f" {last}" in diff.splitlines()


async def test_the_raw_request_shows_the_temperature_in_use(pg: Playground) -> None:
    session = pg.session()
    await turn(pg, session, "Add a task to buy milk")
    assert session.last_turn["request"]["temperature"] == pg.ctx.settings.temperature  # not null: the slider's 0
    assert pg.harness.model_requests[0]["temperature"] == pg.ctx.settings.temperature


def test_the_prompt_and_case_editors_wrap_long_lines(pg: Playground) -> None:
    from playground.app import build_blocks

    blocks = build_blocks(pg.ctx)
    editors = {b.elem_id: b for b in blocks.blocks.values() if isinstance(b, gr.Code)}
    assert editors["prompt-editor"].wrap_lines and editors["case-editor"].wrap_lines


# ---------------------------------------------------------------- a conversation becomes a case


async def test_disliked_conversations_are_listed_per_user_outside_development(pg: Playground) -> None:
    session = pg.session("alice")
    await turn(pg, session, "Add a task to buy milk")
    assert session.conversation_id is not None
    with Session(pg.ctx.engine) as s:
        reply = next(m for m in crud.list_messages(s, conversation_id=session.conversation_id) if m.role == "assistant")
    assert reply.id is not None
    await pg.ctx.chat.give_feedback(
        user_id="alice", conversation_id=session.conversation_id, message_ids=[reply.id], feedback="negative"
    )
    assert [value for _, value in capture_handlers.disliked_choices(pg.ctx, pg.session("bob"))] == [
        f"alice:{session.conversation_id}"
    ]  # development: every user's
    pg.ctx.settings = pg.ctx.settings.model_copy(update={"environment": "production"})
    assert capture_handlers.disliked_choices(pg.ctx, pg.session("bob")) == []  # elsewhere: only one's own
    assert len(capture_handlers.disliked_choices(pg.ctx, pg.session("alice"))) == 1


async def test_a_case_that_no_agent_could_pass_is_refused_and_nothing_is_saved(pg: Playground) -> None:
    session = pg.session()
    await turn(pg, session, "Add a task to buy milk")
    text = capture_handlers.capture(pg.ctx, session, "captured-milk", redact=False)
    impossible = text.replace("title: Buy milk", "title: Buy bread", 1)  # the final list still says milk
    assert impossible != text
    with pytest.raises(ValueError, match="no agent could pass"):
        await capture_handlers.save_and_replay(pg.ctx, session, impossible)
    with pytest.raises(ValueError, match=r"not valid YAML|cases"):
        await capture_handlers.save_and_replay(pg.ctx, session, "cases: [")
    saved = capture_handlers.captured_dir(pg.ctx)
    assert not saved.exists() or list(saved.iterdir()) == []
    with pytest.raises(ValueError, match="case id"):
        capture_handlers.capture(pg.ctx, session, "../escape", redact=False)


# ---------------------------------------------------------------- eval tab


async def test_eval_run_compare_filter_chart_case_and_promote(
    tmp_path: Path, make_playground: Callable[..., Any]
) -> None:
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    shutil.copyfile(DEFAULT_DATASET / "reference.yaml", dataset / "reference.yaml")
    pg = await make_playground(dataset=dataset)
    session = pg.session()
    seen: list[str] = []
    await eval_handlers.run(pg.ctx, session, ["smoke"], on_result=lambda o: seen.append(o.case.id))
    assert session.candidate is not None and session.comparison is None  # no baseline yet
    assert len(seen) == 5 and set(seen) == set(session.candidate.by_case())
    table = eval_handlers.results_frame(session)
    assert list(table.columns) == eval_handlers.RESULT_COLUMNS and len(table) == 5
    assert "no baseline" in eval_handlers.summary_markdown(session)

    # A subset cannot become the baseline; the whole suite, with a saved prompt, can.
    with pytest.raises(ValueError, match="whole suite"):
        eval_handlers.promote(pg.ctx, session)
    await eval_handlers.run(pg.ctx, session, ["reference"])
    note = eval_handlers.promote(pg.ctx, session)
    assert pg.ctx.baseline.exists() and "commit it" in note
    baseline = RunResult.load(pg.ctx.baseline)

    # A candidate where a case that passed in the baseline fails: each filter finds what it should.
    candidate = baseline.model_copy(deep=True)
    broken = next(t for t in candidate.trials if t.case_id == "ref-add-groceries")
    broken.score.passed = False
    session.candidate = candidate
    session.comparison = eval_handlers.compare(baseline, candidate)
    assert eval_handlers.results_frame(session, "regressions")["case"].tolist() == ["ref-add-groceries"]
    failing_before = {t.case_id for t in baseline.trials if not t.passed}
    assert set(eval_handlers.results_frame(session, "failures")["case"]) == failing_before | {"ref-add-groceries"}
    assert eval_handlers.results_frame(session, "changed")["case"].tolist() == ["ref-add-groceries"]
    assert len(eval_handlers.results_frame(session, "all")) == len(baseline.by_case())

    add = eval_handlers.pass_rates(session).loc["add"]
    assert add["candidate"] == add["baseline"] - 0.5  # one of the two add cases broke
    figure = eval_handlers.pass_rate_figure(session)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["baseline", "candidate"]

    detail = eval_handlers.case_detail_html(pg.ctx, session, "ref-add-groceries")
    for expected in ("expected", "candidate", "baseline", "add_task(title one of", 'add_task(title=&quot;Buy groceries&quot;)',
                     "final tasks", "Buy groceries", "title one of &#x27;Buy groceries&#x27;"):  # fmt: skip
        assert expected in detail
    assert "&#x27;exact&#x27;: None" not in detail  # an expected task reads as written, not as a matcher's dump


async def test_promotion_needs_a_saved_prompt(tmp_path: Path, make_playground: Callable[..., Any]) -> None:
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    shutil.copyfile(DEFAULT_DATASET / "list.yaml", dataset / "list.yaml")
    pg = await make_playground(dataset=dataset)
    session = pg.session()
    prompt_handlers.edit(pg.ctx, session, session.prompt_text + "\n- Be brief.\n")
    await eval_handlers.run(pg.ctx, session, eval_handlers.available_tags(pg.ctx))
    assert session.candidate is not None
    assert Path(session.prompt_file or "").parent == pg.ctx.settings.data_dir / "playground"  # a scratch copy
    with pytest.raises(ValueError, match="save the prompt"):
        eval_handlers.promote(pg.ctx, session)


# ---------------------------------------------------------------- the two doors


def _mounted_app(tmp_path: Path, **overrides: Any) -> Any:
    settings = make_settings(tmp_path, **overrides)
    model = build_model(settings, http_client=asgi_http_client(create_scripted_app(reference_responder)))
    return create_app(settings, model=model, migrate=False)


async def test_mounted_in_development_and_off_in_production_unless_enabled(tmp_path: Path) -> None:
    dev = _mounted_app(tmp_path, playground_enabled=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dev), base_url="http://127.0.0.1") as client:
        assert (await client.get("/playground/config")).status_code == 200
    prod = _mounted_app(tmp_path, environment="production", playground_enabled=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=prod), base_url="http://127.0.0.1") as client:
        assert (await client.get("/playground/config")).status_code == 404
        assert (await client.get("/health/live")).status_code == 200


async def test_enabled_in_production_it_sits_behind_its_own_login(tmp_path: Path) -> None:
    app = _mounted_app(tmp_path, environment="production", playground_enabled=True, better_auth_secret=TEST_SECRET,
                       playground_username="prompt-eng", playground_password="a-long-password")  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        assert (await client.get("/playground/config")).status_code == 401
        wrong = await client.post("/playground/login", data={"username": "prompt-eng", "password": "nope"})
        assert wrong.status_code == 400
        right = await client.post("/playground/login", data={"username": "prompt-eng", "password": "a-long-password"})
        assert right.status_code == 200
        assert (await client.get("/playground/config")).status_code == 200
    check = playground_auth(app.state.settings)
    assert check is not None and check("prompt-eng", "a-long-password") and not check("prompt-eng", "a-long-passwor")


def test_launch_refuses_when_the_playground_is_off(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="off in production"):
        launch(make_settings(tmp_path, environment="production"), block=False)


# ---------------------------------------------------------------- the launched app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """The standalone door (`launch`) on a scripted model, on a free loopback port."""
    root = Path(tempfile.mkdtemp(prefix="playground-test-"))
    settings = make_settings(root, playground_enabled=True)
    model = build_model(settings, http_client=asgi_http_client(create_scripted_app(reference_responder)))
    app = create_app(settings, model=model, migrate=False)
    db.upgrade(app.state.engine)
    ctx = _context(settings, app.state.chat, root)
    blocks = launch(settings, port=_free_port(), block=False, context=ctx)
    try:
        yield blocks.local_url
    finally:
        blocks.close()
        app.state.engine.dispose()
        shutil.rmtree(root, ignore_errors=True)


def test_client_chat_turn_streams_tool_call_messages(served: str) -> None:
    client = Client(served, verbose=False)
    job = client.submit("Add a task to buy milk", api_name="/chat")
    streamed = [output for output in job]
    messages, cleared, tasks, raw, _ = job.result()
    assert cleared == ""
    tool_messages = chat_handlers.tool_call_messages(messages)
    assert [m["metadata"]["title"] for m in tool_messages] == ["⚙ add_task"]
    assert tool_messages[0]["metadata"]["status"] == "done"
    assert any(chat_handlers.tool_call_messages(out[0]) for out in streamed[:-1]), "tool call streamed early"
    assert [row[1] for row in tasks["data"]] == ["Buy milk"]
    assert raw["tool_calls"][0]["arguments"] == {"title": "Buy milk"}
    # Sessions are separate: a second client starts with an empty conversation of its own.
    other = Client(served, verbose=False)
    other_messages, *_ = other.predict("What's pending?", api_name="/chat")
    assert [m["role"] for m in other_messages] == ["user", "assistant", "assistant"]  # only its own turn


def test_client_eval_run_returns_a_table(served: str) -> None:
    client = Client(served, verbose=False)
    _progress, summary, table, _chart, _cases, _detail = client.predict(["smoke"], "All cases", api_name="/run_evals")
    smoke = [c.id for c in load_dataset().cases if "smoke" in c.tags]
    passing = sum("pass" in row[2] for row in table["data"])
    assert f"{passing}/{len(smoke)} cases pass" in summary
    assert table["headers"] == eval_handlers.RESULT_COLUMNS
    assert sorted(row[0] for row in table["data"]) == sorted(smoke)
    failures = client.predict("Failures", api_name="/filter_results")
    assert len(failures["data"]) == sum(1 for row in table["data"] if "pass" not in row[2])
    detail = client.predict(table["data"][0][0], api_name="/case_detail")
    assert "expected" in detail and "candidate" in detail


def test_client_prompt_save_as_names_the_new_version_in_the_header(served: str) -> None:
    client = Client(served, verbose=False)
    text = DEFAULT_PROMPT_FILE.read_text() + "\n- Keep replies short.\n"
    _status, _diff, header = client.predict(text, api_name="/edit_prompt")
    assert "unsaved edit" in header
    _versions, cleared, status, _diff, header = client.predict("system_header_check", text, api_name="/save_prompt")
    assert cleared == "" and "system_header_check" in status and "prompt `system_header_check`" in header


def test_client_a_conversation_is_captured_saved_as_a_case_and_replays_passing(served: str) -> None:
    client = Client(served, verbose=False)
    client.predict("Add a task to buy milk", api_name="/chat")
    client.predict("Show me all my tasks", api_name="/chat")
    text, note = client.predict("captured-from-chat", False, api_name="/capture_case")
    assert "personal data" in note
    case = yaml.safe_load(text)["cases"][0]
    assert case["id"] == "captured-from-chat"
    assert [turn["user"] for turn in case["turns"]] == ["Add a task to buy milk", "Show me all my tasks"]
    assert [c["tool"] for c in case["turns"][0]["calls"]] == ["add_task"]
    replayed = client.predict(text, api_name="/save_case")
    assert "passes" in replayed and "captured-from-chat.yaml" in replayed
    saved = next(Path(line) for line in replayed.split("`") if line.endswith("captured-from-chat.yaml"))
    assert yaml.safe_load(saved.read_text())["cases"][0]["id"] == "captured-from-chat"
    with pytest.raises(Exception, match="conversation"):
        Client(served, verbose=False).predict("captured-none", False, api_name="/capture_case")  # no conversation yet


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--virtual-time-budget=15000",
]  # fmt: skip


def test_headless_chromium_finds_the_chat_and_eval_tabs(served: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    profile = tmp_path / "profile"
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", f"{served}?tab=evals"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    dom = result.stdout
    assert 'id="tab-chat-button"' in dom and 'id="tab-evals-button"' in dom, result.stderr[-2000:]
    assert 'aria-selected="true" aria-controls="tab-evals"' in dom  # the ?tab=evals deep link selected it
    assert 'id="eval-results"' in dom


async def test_without_a_dataset_the_playground_still_builds_and_says_why(
    make_playground: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-editable install carries no dataset: the playground must still come up (chat, prompt editor), its
    eval tab empty, one log line saying why; before, building it raised and took `todo-agent serve` down."""
    from playground.app import build_blocks

    pg = await make_playground(dataset=tmp_path / "no-such-dataset")
    with caplog.at_level("WARNING", logger="todo_agent"):
        blocks = build_blocks(pg.ctx)
    assert isinstance(blocks, gr.Blocks)
    assert [r.message for r in caplog.records if "playground evals off" in r.message]


# ---------------------------------------------------------------- saved runs, side by side, progress and cancel


def _small_dataset(tmp_path: Path) -> Path:
    dataset = tmp_path / "dataset"
    dataset.mkdir(exist_ok=True)
    shutil.copyfile(DEFAULT_DATASET / "reference.yaml", dataset / "reference.yaml")
    return dataset


async def test_a_run_is_saved_and_reopened_after_a_restart_then_deleted(
    tmp_path: Path, make_playground: Callable[..., Any]
) -> None:
    pg: Playground = await make_playground(dataset=_small_dataset(tmp_path))
    session = pg.session()
    await eval_handlers.run(pg.ctx, session, ["smoke"])
    assert session.candidate is not None
    run_id = session.candidate.info.run_id

    # A new process: a fresh context on the same settings finds the run on disk.
    restarted = PlaygroundContext(pg.ctx.settings, pg.ctx.chat, dataset=pg.ctx.dataset, baseline=pg.ctx.baseline)
    frame = run_handlers.runs_frame(restarted)
    assert frame["run"].tolist() == [run_id] and frame.loc[0, "status"] == "complete"
    fresh = pg.session()
    run_handlers.reopen(restarted, fresh, run_id)
    assert fresh.candidate is not None and fresh.candidate.info.run_id == run_id
    assert eval_handlers.results_frame(fresh)["case"].tolist() == list(session.candidate.by_case())

    with pytest.raises(ValueError, match="not a run id"):
        run_handlers.delete(restarted, "../dataset")
    assert pg.ctx.dataset.is_dir()
    run_handlers.delete(restarted, run_id)
    assert run_handlers.run_choices(restarted) == []


async def test_two_prompt_drafts_side_by_side_per_case_per_tag_and_any_cell(
    tmp_path: Path, make_playground: Callable[..., Any]
) -> None:
    pg: Playground = await make_playground(dataset=_small_dataset(tmp_path))
    session = pg.session()
    await eval_handlers.run(pg.ctx, session, ["reference"])
    assert session.candidate is not None
    first = session.candidate.info.run_id
    prompt_handlers.edit(pg.ctx, session, session.prompt_text + "\n- Be brief.\n")
    await eval_handlers.run(pg.ctx, session, ["reference"])
    second = session.candidate.info.run_id
    assert session.candidate.info.prompt_text is not None and "Be brief" in session.candidate.info.prompt_text

    runs = run_handlers.side_by_side(pg.ctx, [first, second])
    frame = case_matrix(runs)
    assert list(frame.columns)[2:] == list(runs)
    assert sorted(frame["case"]) == sorted(c.id for c in load_dataset(pg.ctx.dataset).cases)
    assert "Reference" in run_handlers.matrix_summary(runs)
    chart = run_handlers.matrix_figure(runs)
    assert len(chart.axes[0].get_legend().get_texts()) == 2
    case = frame["case"].iloc[0]
    detail = run_handlers.cell_detail_html(pg.ctx, [first, second], case, second)
    assert case in detail and "baseline" in detail  # the reference stands where the baseline does


async def test_progress_counts_the_trials_and_estimates_what_is_left(
    tmp_path: Path, make_playground: Callable[..., Any]
) -> None:
    pg: Playground = await make_playground(dataset=_small_dataset(tmp_path))
    tracker = run_handlers.RunProgress(started=0.0)
    assert "Starting" in tracker.markdown(now=3.0)
    seen: list[TrialOutcome] = []
    await eval_handlers.run(pg.ctx, pg.session(), ["smoke"], on_result=seen.append)
    tracker.total = len(seen)
    tracker.begin(seen[0].case.id)
    tracker.result(seen[0])
    text = tracker.markdown(now=10.0)
    assert f"1/{len(seen)} trials" in text and "10 s elapsed" in text
    assert f"about {10 * (len(seen) - 1)} s left" in text
    tracker.begin(seen[1].case.id)
    assert f"running `{seen[1].case.id}`" in tracker.markdown(now=11.0)


@pytest.fixture
def held_app() -> Iterator[tuple[str, ThreadHold]]:
    """The launched playground whose eval runs hold one case's model call open until it is cancelled."""
    hold = ThreadHold()
    root = Path(tempfile.mkdtemp(prefix="playground-runs-"))
    settings = make_settings(root, playground_enabled=True)
    model = build_model(settings, http_client=asgi_http_client(create_scripted_app(reference_responder)))
    app = create_app(settings, model=model, migrate=False)
    db.upgrade(app.state.engine)
    ctx = _context(settings, app.state.chat, root, _small_dataset(root))

    def respond(request: dict[str, Any]) -> Reply:
        if "pending" in last_user_text(request).lower():
            return Reply(text="never", wait=hold)
        return reference_responder(request)

    ctx.eval_responder = respond
    blocks = launch(settings, port=_free_port(), block=False, context=ctx)
    try:
        yield blocks.local_url, hold
    finally:
        hold.release.set()
        blocks.close()
        app.state.engine.dispose()
        shutil.rmtree(root, ignore_errors=True)


async def test_cancel_stops_a_run_in_progress_and_saves_it_marked_cancelled(held_app: tuple[str, ThreadHold]) -> None:
    url, hold = held_app
    client = Client(url, verbose=False)
    job = client.submit(["smoke"], "All cases", api_name="/run_evals")
    await hold.reached()
    assert client.predict(api_name="/cancel_evals") == "Stopping the run…"
    progress, *_ = job.result(timeout=60)
    assert "cancelled" in progress
    table, _choices = client.predict([], api_name="/list_runs")
    assert [row[6] for row in table["data"]] == ["cancelled"]
    with pytest.raises(Exception, match="cancelled"):
        client.predict(api_name="/promote")
    assert client.predict(api_name="/cancel_evals") == "No run in progress."
