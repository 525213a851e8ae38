"""The Gradio Blocks: four tabs (chat, prompt, evals, saved runs) wired to the handler modules.

Everything a browser session changes lives in its `gr.State` (a `PlaygroundSession`); the context (chat service,
settings, paths) is shared and holds no per-session data.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import gradio as gr
import pandas as pd

import playground.capture_handlers as capture_handlers
import playground.chat_handlers as chat_handlers  # the module, not via the package (its door builds this app)
import playground.eval_handlers as eval_handlers
import playground.prompt_handlers as prompt_handlers
import playground.run_handlers as run_handlers
from backend.errors import ApiError
from backend.prompts import load_prompt
from evals.dataset import Case
from evals.matrix import case_matrix
from evals.runner import TrialOutcome
from playground.context import PlaygroundContext
from playground.session import MODEL_KINDS, ModelChoice, PlaygroundSession

log = logging.getLogger("todo_agent.playground")
F = TypeVar("F", bound=Callable[..., Any])
THEME = gr.themes.Soft()
CSS = "#chat-column .message-wrap { font-size: 14px } footer { display: none !important }"
TAB_IDS = ("chat", "prompt", "evals", "runs")


def initial_session(ctx: PlaygroundContext) -> PlaygroundSession:
    baseline = ctx.baseline_prompt_file
    return PlaygroundSession(prompt_name=baseline.stem, prompt_text=load_prompt(baseline))


def _ensure_user(ctx: PlaygroundContext, session: PlaygroundSession, request: gr.Request | None) -> None:
    """Every handler re-derives the user: outside development a session can only act as its login."""
    login = getattr(request, "username", None) if request is not None else None
    requested = session.user_id if ctx.settings.environment == "development" else None
    try:
        session.user_id = chat_handlers.resolve_user(ctx.settings, requested, login)
    except PermissionError as exc:
        raise user_error(str(exc)) from exc


def _raw(session: PlaygroundSession) -> dict[str, Any]:
    return session.last_turn or {}


def user_error(message: str) -> gr.Error:
    """An error the page shows; never printed with a traceback (its text may quote what the user typed)."""
    return gr.Error(message, print_exception=False)


def _unexpected(fn: Callable[..., Any], exc: Exception) -> gr.Error:
    log.warning("playground: %s failed: %s", fn.__name__, type(exc).__name__)  # the type only: never user data
    return user_error("Something went wrong on our side; the server log has the error type.")


def guarded(fn: F) -> F:
    """Every handler: a gr.Error goes to the page as it is, anything else becomes a generic one and a log line with
    its type. Gradio would otherwise print the traceback, with the user's text in it, to the server's log stream."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            except gr.Error as exc:
                exc.print_exception = False
                raise
            except Exception as exc:
                raise _unexpected(fn, exc) from None

        return cast(F, stream)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except gr.Error as exc:
                exc.print_exception = False
                raise
            except Exception as exc:
                raise _unexpected(fn, exc) from None

        return cast(F, call)

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:
            exc.print_exception = False
            raise
        except Exception as exc:
            raise _unexpected(fn, exc) from None

    return cast(F, plain)


def picked_case(table: pd.DataFrame, event: gr.SelectData) -> Any:
    """A click on a table row whose first column is a case id picks that case."""
    index = event.index[0] if isinstance(event.index, list | tuple) else event.index
    if table is None or not isinstance(index, int) or index >= len(table):
        return gr.skip()
    return gr.update(value=str(table.iloc[index, 0]))


def build_blocks(ctx: PlaygroundContext) -> gr.Blocks:
    development = ctx.settings.environment == "development"
    settings = ctx.settings
    default_model_name = settings.agent_model if not settings.is_local_model else "local"

    with gr.Blocks(title="todo-agent playground") as blocks:
        state = gr.State(initial_session(ctx))
        header = gr.Markdown("## todo-agent playground")

        with gr.Tabs(elem_id="tabs") as tabs:
            # ------------------------------------------------------------ chat
            with gr.Tab("Chat", id="chat", elem_id="tab-chat"), gr.Row():
                with gr.Column(scale=3, elem_id="chat-column"):
                    chatbot = gr.Chatbot(
                        label="Conversation",
                        height=520,
                        elem_id="chatbot",
                        placeholder="Say what you need, e.g. *Add a task to buy groceries*.",
                        feedback_options=None,
                    )
                    with gr.Row():
                        message = gr.Textbox(
                            show_label=False, placeholder="Message the assistant…", scale=5, elem_id="chat-input"
                        )
                        send_button = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                    with gr.Row():
                        new_button = gr.Button("New conversation", size="sm")
                        conversations = gr.Dropdown(
                            label="Resume a conversation",
                            choices=[],
                            value=None,
                            interactive=True,
                            scale=3,
                            allow_custom_value=True,  # checked by the handler (Gradio's own check prints the value)
                        )
                    with gr.Accordion("Save this conversation as an eval case", open=False, elem_id="capture"):
                        gr.Markdown(capture_handlers.PERSONAL_DATA_WARNING.replace("--redact", "*redact*"))
                        with gr.Row():
                            disliked = gr.Dropdown(
                                label="Conversations users disliked (thumbs down)",
                                choices=[],
                                value=None,
                                interactive=True,
                                scale=4,
                                allow_custom_value=True,  # checked by the handler
                            )
                            disliked_button = gr.Button("Refresh", size="sm", scale=1)
                        with gr.Row():
                            case_name = gr.Textbox(label="Case id", placeholder="captured-groceries", scale=3)
                            redact = gr.Checkbox(label="Redact task titles", value=False, scale=1)
                            capture_button = gr.Button("Capture this conversation", scale=2)
                        case_editor = gr.Code(
                            value="",
                            language="yaml",
                            label="The case (fix the expected calls where the agent was wrong)",
                            lines=12,
                            interactive=True,
                            wrap_lines=True,
                            elem_id="case-editor",
                        )
                        save_case_button = gr.Button("Save as eval case and replay it", variant="primary")
                        case_note = gr.Markdown()
                with gr.Column(scale=2):
                    user_box = gr.Textbox(
                        label="Acting as user" + ("" if development else " (your login)"),
                        interactive=development,
                        placeholder="any user id",
                    )
                    tasks = gr.Dataframe(
                        value=pd.DataFrame(columns=chat_handlers.TASK_COLUMNS),
                        label="Their tasks (refreshed after each turn)",
                        interactive=False,
                        wrap=True,
                    )
                    with gr.Accordion("Model", open=False):
                        model_kind = gr.Radio(list(MODEL_KINDS), value="Server default", label="Model")
                        base_url = gr.Textbox(label="Base URL", value=settings.openai_base_url or "", visible=False)
                        model_name = gr.Textbox(
                            label="Model name",
                            value="" if settings.is_local_model else default_model_name,
                            visible=False,
                        )
                        api_key = gr.Textbox(
                            label="API key (empty: the configured one)", type="password", visible=False
                        )
                        temperature = gr.Slider(0.0, 1.5, value=settings.temperature, step=0.05, label="Temperature")
                        model_note = gr.Markdown(f"Server default: `{default_model_name}`")
                    with gr.Accordion("Last turn (raw JSON)", open=False):
                        raw_json = gr.JSON(label="last turn")

            # ------------------------------------------------------------ prompt
            with gr.Tab("Prompt", id="prompt", elem_id="tab-prompt"):
                with gr.Row():
                    versions = gr.Dropdown(
                        label="Prompt version",
                        choices=list(prompt_handlers.prompt_files(ctx)),
                        value=ctx.baseline_prompt_file.stem,
                        scale=3,
                    )
                    load_button = gr.Button("Load", scale=1)
                prompt_status = gr.Markdown()
                editor = gr.Code(
                    value=load_prompt(ctx.baseline_prompt_file),
                    language="markdown",
                    label="System prompt (used by the chat and the evals as you type)",
                    lines=16,
                    interactive=True,
                    wrap_lines=True,
                    elem_id="prompt-editor",
                )
                with gr.Row():
                    version_name = gr.Textbox(label="Save as new version", placeholder="system_v2", scale=3)
                    save_button = gr.Button("Save version", variant="primary", scale=1)
                gr.Markdown("### Diff against the baseline prompt")
                diff = gr.HTML()

            # ------------------------------------------------------------ evals
            with gr.Tab("Evals", id="evals", elem_id="tab-evals"):
                tag_counts = eval_handlers.tag_counts(ctx)
                tags_box = gr.CheckboxGroup(
                    [(f"{tag} ({count})", tag) for tag, count in tag_counts.items()],
                    value=[t for t in ("smoke",) if t in tag_counts],
                    label="Cases with any of these tags (cases per tag)",
                )
                with gr.Row():
                    run_button = gr.Button("Run evals with the current prompt and model", variant="primary")
                    cancel_button = gr.Button("Cancel the run", variant="stop", elem_id="cancel-run")
                    promote_button = gr.Button("Promote this run to baseline", variant="secondary")
                progress_panel = gr.Markdown("No run in progress.", elem_id="eval-progress")
                summary = gr.Markdown("No run yet.")
                view = gr.Radio(list(eval_handlers.RESULTS_VIEWS), value="All cases", label="Show")
                results = gr.Dataframe(
                    value=pd.DataFrame(columns=eval_handlers.RESULT_COLUMNS),
                    label="Results (click a row for its transcript)",
                    interactive=False,
                    wrap=True,
                    elem_id="eval-results",
                )
                chart = gr.Plot(label="Pass rate per tag, baseline vs candidate")
                case_pick = gr.Dropdown(label="Case", choices=[], value=None)
                case_detail = gr.HTML("<p>Pick a case in the table.</p>")
                promote_note = gr.Markdown()

            # ------------------------------------------------------------ saved runs, side by side
            with gr.Tab("Runs", id="runs", elem_id="tab-runs"):
                gr.Markdown(
                    "Every eval run is saved (`RUNS_DIR`; the CLI's `todo-agent eval runs` lists the same). Pick runs "
                    "to put them side by side: the first is the reference."
                )
                runs_table = gr.Dataframe(
                    value=pd.DataFrame(columns=run_handlers.RUN_COLUMNS),
                    label="Saved runs, newest first",
                    interactive=False,
                    wrap=True,
                    elem_id="runs-list",
                )
                with gr.Row():
                    run_pick = gr.Dropdown(
                        label="Runs", choices=[], value=[], multiselect=True, scale=4, elem_id="run-pick"
                    )
                    refresh_button = gr.Button("Refresh", scale=1)
                    open_button = gr.Button("Open the first in the Evals tab", scale=1)
                    delete_button = gr.Button("Delete the picked runs", variant="stop", scale=1)
                runs_note = gr.Markdown()
                matrix_note = gr.Markdown()
                matrix_table = gr.Dataframe(
                    value=pd.DataFrame(columns=["case", "tags"]),
                    label="Per case: each run against the reference",
                    interactive=False,
                    wrap=True,
                    elem_id="runs-matrix",
                )
                matrix_chart = gr.Plot(label="Pass rate per tag, run by run")
                with gr.Row():
                    cell_case = gr.Dropdown(label="Case", choices=[], value=None)
                    cell_run = gr.Dropdown(label="Run", choices=[], value=None)
                cell_detail = gr.HTML("<p>Pick a case and a run.</p>")

        # ------------------------------------------------------------ handlers: session and chat
        def refreshed(session: PlaygroundSession) -> tuple[pd.DataFrame, Any]:
            choices = chat_handlers.conversation_choices(ctx, session.user_id)
            return chat_handlers.task_table(ctx, session.user_id), gr.update(
                choices=choices, value=session.conversation_id
            )

        def header_text(session: PlaygroundSession) -> str:
            who = f"acting as **{session.user_id}**" + (" (development: any user)" if development else "")
            return f"## todo-agent playground\n{who} · prompt `{session.prompt_name or 'unsaved edit'}`"

        @guarded
        def on_load(session: PlaygroundSession, request: gr.Request) -> tuple[Any, ...]:
            _ensure_user(ctx, session, request)
            tab = request.query_params.get("tab") if request is not None else None  # deep links: ?tab=evals
            table, choices = refreshed(session)
            text = header_text(session)
            selected = gr.Tabs(selected=tab) if tab in TAB_IDS else gr.skip()
            return (session, session.user_id, table, choices, text, selected,
                    prompt_handlers.status_line(ctx, session), prompt_handlers.diff_html(ctx, session.prompt_text))  # fmt: skip

        blocks.load(
            on_load,
            inputs=[state],
            outputs=[state, user_box, tasks, conversations, header, tabs, prompt_status, diff],
            api_visibility="private",
        )

        @guarded
        def on_user(user: str, session: PlaygroundSession, request: gr.Request) -> tuple[Any, ...]:
            previous = session.user_id
            session.user_id = user
            _ensure_user(ctx, session, request)
            if session.user_id == previous:  # a blur without a change keeps the conversation
                return session, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            chat_handlers.new_conversation(session)
            table, choices = refreshed(session)
            return session, session.messages, table, choices, {}, header_text(session)

        user_outputs = [state, chatbot, tasks, conversations, raw_json, header]
        user_box.submit(on_user, [user_box, state], user_outputs, api_visibility="private")
        user_box.blur(on_user, [user_box, state], user_outputs, api_visibility="private")

        @guarded
        async def on_send(text: str, session: PlaygroundSession, request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
            _ensure_user(ctx, session, request)
            async for updated in chat_handlers.send(ctx, session, text):
                yield updated.messages, "", updated, gr.skip(), gr.skip(), gr.skip()
            table, choices = refreshed(session)
            yield session.messages, "", session, table, _raw(session), choices

        chat_outputs = [chatbot, message, state, tasks, raw_json, conversations]
        send_event = dict(fn=on_send, inputs=[message, state], outputs=chat_outputs, concurrency_limit=8)
        message.submit(**send_event, api_name="chat")  # type: ignore[arg-type]
        send_button.click(**send_event, api_visibility="private")  # type: ignore[arg-type]

        @guarded
        async def on_retry(session: PlaygroundSession, request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
            _ensure_user(ctx, session, request)
            async for updated in chat_handlers.retry(ctx, session):
                yield updated.messages, gr.skip(), updated, gr.skip(), gr.skip(), gr.skip()
            table, choices = refreshed(session)
            yield session.messages, gr.skip(), session, table, _raw(session), choices

        chatbot.retry(on_retry, [state], chat_outputs, api_name="retry", concurrency_limit=8)

        @guarded
        async def on_undo(session: PlaygroundSession, request: gr.Request) -> tuple[Any, ...]:
            _ensure_user(ctx, session, request)
            try:
                session, text = await chat_handlers.undo(ctx, session)
            except ApiError as exc:
                raise user_error(exc.message) from exc
            table, choices = refreshed(session)
            return session.messages, text, session, table, {}, choices

        chatbot.undo(on_undo, [state], chat_outputs, api_name="undo")

        @guarded
        def on_new(session: PlaygroundSession, request: gr.Request) -> tuple[Any, ...]:
            _ensure_user(ctx, session, request)
            chat_handlers.new_conversation(session)
            table, choices = refreshed(session)
            return session.messages, "", session, table, {}, choices

        new_button.click(on_new, [state], chat_outputs, api_name="new_conversation")

        @guarded
        def on_resume(conversation_id: int | None, session: PlaygroundSession, request: gr.Request) -> tuple[Any, ...]:
            _ensure_user(ctx, session, request)
            try:
                chat_handlers.resume(ctx, session, conversation_id)
            except ApiError as exc:
                raise user_error(exc.message) from exc
            table, choices = refreshed(session)
            return session.messages, gr.skip(), session, table, {}, choices

        conversations.input(on_resume, [conversations, state], chat_outputs, api_name="resume")

        # ------------------------------------------------------------ handlers: a conversation becomes a case
        @guarded
        def on_disliked(session: PlaygroundSession, request: gr.Request) -> tuple[Any, ...]:
            _ensure_user(ctx, session, request)
            choices = capture_handlers.disliked_choices(ctx, session)
            return session, gr.update(choices=choices, value=None)

        disliked_button.click(on_disliked, [state], [state, disliked], api_name="disliked")

        @guarded
        def on_open_disliked(value: str, session: PlaygroundSession, request: gr.Request) -> tuple[Any, ...]:
            """Open a disliked conversation in the chat; in development as its owner, elsewhere only one's own."""
            try:
                owner, conversation_id = capture_handlers.parse_choice(value)
            except ValueError as exc:
                raise user_error(str(exc)) from exc
            if development and owner != session.user_id:
                session.user_id = owner
                chat_handlers.new_conversation(session)
            _ensure_user(ctx, session, request)
            try:
                chat_handlers.resume(ctx, session, conversation_id)
            except ApiError as exc:
                raise user_error(exc.message) from exc
            table, choices = refreshed(session)
            return session.messages, gr.skip(), session, table, {}, choices, session.user_id, header_text(session)

        disliked.input(on_open_disliked, [disliked, state], [*chat_outputs, user_box, header], api_name="open_disliked")

        @guarded
        def on_capture(case_id: str, hide: bool, session: PlaygroundSession, request: gr.Request) -> tuple[Any, ...]:
            _ensure_user(ctx, session, request)
            try:
                text = capture_handlers.capture(ctx, session, case_id, redact=hide)
            except ValueError as exc:  # CaptureError too: not found, no user message, stored before snapshots
                raise user_error(str(exc)) from exc
            note = "Captured: edit the expectation, then save." + ("" if hide else " Check it for personal data.")
            return text, note

        capture_button.click(on_capture, [case_name, redact, state], [case_editor, case_note], api_name="capture_case")

        @guarded
        async def on_save_case(text: str, session: PlaygroundSession, request: gr.Request) -> str:
            _ensure_user(ctx, session, request)
            try:
                path, result = await capture_handlers.save_and_replay(ctx, session, text)
            except ValueError as exc:  # DatasetError: the YAML or the case does not validate, or no agent could pass
                raise user_error(str(exc)) from exc
            return capture_handlers.replay_markdown(path, result)

        save_case_button.click(
            on_save_case, [case_editor, state], [case_note], api_name="save_case", concurrency_limit=2
        )

        @guarded
        def on_model(
            kind_label: str, url: str, name: str, key: str, temp: float, session: PlaygroundSession
        ) -> tuple[Any, ...]:
            kind = MODEL_KINDS.get(kind_label, "default")
            session.model = ModelChoice(kind=kind, base_url=url, name=name, api_key=key, temperature=temp)
            hosted = kind == "openai"
            return (session, gr.update(visible=hosted), gr.update(visible=hosted), gr.update(visible=hosted),
                    f"Turns and eval runs use: **{session.model.describe()}**, temperature {temp}")  # fmt: skip

        model_inputs = [model_kind, base_url, model_name, api_key, temperature, state]
        model_outputs = [state, base_url, model_name, api_key, model_note]
        for control in (model_kind, base_url, model_name, api_key, temperature):
            control.change(on_model, model_inputs, model_outputs, api_visibility="private")

        # ------------------------------------------------------------ handlers: prompt
        def prompt_views(session: PlaygroundSession) -> tuple[str, str, str]:
            """The status line, the diff and the page header: all three name the prompt in use."""
            status = prompt_handlers.status_line(ctx, session)
            return status, prompt_handlers.diff_html(ctx, session.prompt_text), header_text(session)

        @guarded
        def on_load_prompt(name: str, session: PlaygroundSession) -> tuple[Any, ...]:
            try:
                prompt_handlers.load(ctx, session, name)
            except ValueError as exc:
                raise user_error(str(exc)) from exc
            return (session, session.prompt_text, *prompt_views(session))

        load_button.click(
            on_load_prompt, [versions, state], [state, editor, prompt_status, diff, header], api_name="load_prompt"
        )

        @guarded
        def on_edit(text: str, session: PlaygroundSession) -> tuple[Any, ...]:
            prompt_handlers.edit(ctx, session, text)
            return (session, *prompt_views(session))

        editor.change(on_edit, [editor, state], [state, prompt_status, diff, header], api_name="edit_prompt")

        @guarded
        def on_save(name: str, text: str, session: PlaygroundSession) -> tuple[Any, ...]:
            try:
                path = prompt_handlers.save_version(ctx, session, name, text)
            except (ValueError, FileExistsError) as exc:
                raise user_error(str(exc)) from exc
            gr.Info(f"saved {path.name}: commit it to keep it")
            choices = gr.update(choices=list(prompt_handlers.prompt_files(ctx)), value=session.prompt_name)
            return (session, choices, "", *prompt_views(session))

        save_button.click(
            on_save,
            [version_name, editor, state],
            [state, versions, version_name, prompt_status, diff, header],
            api_name="save_prompt",
        )

        # ------------------------------------------------------------ handlers: evals
        def eval_views(session: PlaygroundSession, view_label: str) -> tuple[Any, ...]:
            ids = eval_handlers.case_ids(session)
            return (
                eval_handlers.summary_markdown(session),
                eval_handlers.results_frame(session, eval_handlers.RESULTS_VIEWS.get(view_label, "all")),
                eval_handlers.pass_rate_figure(session),
                gr.update(choices=ids, value=None),
                "<p>Pick a case in the table.</p>",
            )

        @guarded
        async def on_run(
            tags: list[str], view_label: str, session: PlaygroundSession
        ) -> AsyncIterator[tuple[Any, ...]]:
            if not tags:
                raise user_error("pick at least one tag")
            tracker = run_handlers.RunProgress()
            changed = asyncio.Event()
            token = uuid.uuid4().hex
            stop = ctx.stops[token] = asyncio.Event()
            session.run_token = token

            def on_start(total: int) -> None:
                tracker.total = total
                changed.set()

            def on_begin(case: Case, _trial: int) -> None:
                tracker.begin(case.id)
                changed.set()

            def on_result(outcome: TrialOutcome) -> None:
                tracker.result(outcome)
                changed.set()

            running = asyncio.create_task(
                eval_handlers.run(ctx, session, tags, on_start=on_start, on_begin=on_begin, on_result=on_result,
                                  stop=stop)
            )  # fmt: skip
            unchanged = [gr.skip()] * len(eval_outputs)
            try:
                while not running.done():
                    yield (session, tracker.markdown(), *unchanged)
                    # Redrawn on each event, and each second for the clock.
                    waiter = asyncio.ensure_future(changed.wait())
                    await asyncio.wait([running, waiter], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    changed.clear()
                    tracker.stopping = stop.is_set()
                await running
            except (ValueError, OSError, RuntimeError) as exc:
                raise user_error(f"the run could not complete: {exc}") from exc
            finally:
                ctx.stops.pop(token, None)
                session.run_token = ""
                if not running.done():
                    running.cancel()  # the page went away: the run goes with it
            tracker.finished, tracker.stopping = True, stop.is_set()
            yield (session, tracker.markdown(), *eval_views(session, view_label))

        eval_outputs = [summary, results, chart, case_pick, case_detail]
        run_event = run_button.click(
            on_run,
            [tags_box, view, state],
            [state, progress_panel, *eval_outputs],
            api_name="run_evals",
            concurrency_limit=1,
            concurrency_id="evals",  # one run at a time on this machine: the model is the bottleneck
        )

        @guarded
        def on_cancel(session: PlaygroundSession) -> str:
            stop = ctx.stops.get(session.run_token)
            if stop is None:
                return "No run in progress."
            stop.set()  # the run stops within the model call it is in, and is saved as cancelled
            return "Stopping the run…"

        cancel_button.click(on_cancel, [state], [progress_panel], api_name="cancel_evals", concurrency_limit=None)

        @guarded
        def on_view(view_label: str, session: PlaygroundSession) -> pd.DataFrame:
            return eval_handlers.results_frame(session, eval_handlers.RESULTS_VIEWS.get(view_label, "all"))

        view.change(on_view, [view, state], [results], api_name="filter_results")

        @guarded
        def on_case(case_id: str | None, session: PlaygroundSession) -> str:
            return eval_handlers.case_detail_html(ctx, session, case_id)

        case_pick.change(on_case, [case_pick, state], [case_detail], api_name="case_detail")

        results.select(guarded(picked_case), [results], [case_pick], api_visibility="private")

        @guarded
        def on_promote(session: PlaygroundSession) -> tuple[Any, ...]:
            try:
                note = eval_handlers.promote(ctx, session)
            except ValueError as exc:
                raise user_error(str(exc)) from exc
            return session, note

        promote_button.click(on_promote, [state], [state, promote_note], api_name="promote")

        # ------------------------------------------------------------ handlers: saved runs
        def runs_views(chosen: list[str] | None = None) -> tuple[Any, ...]:
            choices = run_handlers.run_choices(ctx)
            kept = [run_id for run_id in chosen or [] if run_id in {value for _, value in choices}]
            return run_handlers.runs_frame(ctx), gr.update(choices=choices, value=kept)

        @guarded
        def on_refresh_runs(chosen: list[str] | None) -> tuple[Any, ...]:
            return runs_views(chosen)

        runs_outputs = [runs_table, run_pick]
        refresh_button.click(on_refresh_runs, [run_pick], runs_outputs, api_name="list_runs")
        blocks.load(on_refresh_runs, [run_pick], runs_outputs, api_visibility="private")
        run_event.then(on_refresh_runs, [run_pick], runs_outputs, api_visibility="private")

        @guarded
        def on_compare(chosen: list[str] | None) -> tuple[Any, ...]:
            try:
                runs = run_handlers.side_by_side(ctx, list(chosen or []))
            except ValueError as exc:
                raise user_error(str(exc)) from exc
            table = case_matrix(runs)
            return (
                run_handlers.matrix_summary(runs),
                table,
                run_handlers.matrix_figure(runs),
                gr.update(choices=list(table["case"]), value=None),
                gr.update(choices=list(chosen or []), value=chosen[-1] if chosen else None),
            )

        run_pick.change(on_compare, [run_pick], [matrix_note, matrix_table, matrix_chart, cell_case, cell_run],
                        api_name="compare_runs")  # fmt: skip

        @guarded
        def on_cell(chosen: list[str] | None, case_id: str | None, run_id: str | None) -> str:
            try:
                return run_handlers.cell_detail_html(ctx, list(chosen or []), case_id, run_id)
            except ValueError as exc:
                raise user_error(str(exc)) from exc

        cell_case.change(on_cell, [run_pick, cell_case, cell_run], [cell_detail], api_name="cell_detail")
        cell_run.change(on_cell, [run_pick, cell_case, cell_run], [cell_detail], api_visibility="private")

        matrix_table.select(guarded(picked_case), [matrix_table], [cell_case], api_visibility="private")

        @guarded
        def on_open(chosen: list[str] | None, view_label: str, session: PlaygroundSession) -> tuple[Any, ...]:
            if not chosen:
                raise user_error("pick a run to open")
            try:
                run_handlers.reopen(ctx, session, chosen[0])
            except ValueError as exc:
                raise user_error(str(exc)) from exc
            return (session, *eval_views(session, view_label), gr.Tabs(selected="evals"))

        open_button.click(on_open, [run_pick, view, state], [state, *eval_outputs, tabs], api_name="open_run")

        @guarded
        def on_delete(chosen: list[str] | None) -> tuple[Any, ...]:
            if not chosen:
                raise user_error("pick the runs to delete")
            try:
                notes = [run_handlers.delete(ctx, run_id) for run_id in chosen]
            except ValueError as exc:
                raise user_error(str(exc)) from exc
            return (" ".join(notes), *runs_views())

        delete_button.click(on_delete, [run_pick], [runs_note, *runs_outputs], api_name="delete_runs")

    blocks.queue(default_concurrency_limit=4)
    return blocks
