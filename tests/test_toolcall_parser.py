"""The adapter that turns tool calls a small model wrote as text into real calls, and leaves replies alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from unittest.mock import patch

import pytest
from fastapi.testclient import TestClient

from backend.llm import local_server
from backend.llm.local_server import _model_body, answer
from backend.llm.toolcall_parser import extract_tool_calls, looks_like_tool_call

TOOLS = {"add_task", "list_tasks", "complete_task", "delete_task", "update_task"}


# --- shapes the model really produces -----------------------------------------------------------------------


def test_fenced_json_block_as_qwen_writes_it() -> None:
    text = '```json\n{\n  "name": "add_task",\n  "arguments": {\n    "title": "Buy groceries"\n  }\n}\n```'
    assert extract_tool_calls(text, TOOLS) == [("add_task", {"title": "Buy groceries"})]


def test_fence_without_language_tag() -> None:
    text = '```\n{"name": "list_tasks", "arguments": {"status": "pending"}}\n```'
    assert extract_tool_calls(text, TOOLS) == [("list_tasks", {"status": "pending"})]


def test_tool_call_tags() -> None:
    text = '<tool_call>\n{"name": "complete_task", "arguments": {"task_id": 3}}\n</tool_call>'
    assert extract_tool_calls(text, TOOLS) == [("complete_task", {"task_id": 3})]


def test_unclosed_tool_call_tag() -> None:
    text = '<tool_call>\n{"name": "delete_task", "arguments": {"task_id": 2}}'
    assert extract_tool_calls(text, TOOLS) == [("delete_task", {"task_id": 2})]


def test_several_tool_call_tags_keep_order() -> None:
    text = (
        '<tool_call>\n{"name": "add_task", "arguments": {"title": "A"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "add_task", "arguments": {"title": "B"}}\n</tool_call>'
    )
    assert extract_tool_calls(text, TOOLS) == [("add_task", {"title": "A"}), ("add_task", {"title": "B"})]


def test_bare_json_object() -> None:
    text = '{"name": "update_task", "arguments": {"task_id": 1, "title": "Call mom tonight"}}'
    assert extract_tool_calls(text, TOOLS) == [("update_task", {"task_id": 1, "title": "Call mom tonight"})]


def test_doubled_braces_copied_from_the_chat_template() -> None:
    text = '{{"name": "add_task", "arguments": {"title": "Pay bills", "description": "Remember to pay bills."}}}'
    assert extract_tool_calls(text, TOOLS) == [
        ("add_task", {"title": "Pay bills", "description": "Remember to pay bills."})
    ]


def test_list_of_calls() -> None:
    text = json.dumps(
        [
            {"name": "complete_task", "arguments": {"task_id": 1}},
            {"name": "delete_task", "arguments": {"task_id": 2}},
        ]
    )
    assert extract_tool_calls(text, TOOLS) == [
        ("complete_task", {"task_id": 1}),
        ("delete_task", {"task_id": 2}),
    ]


def test_objects_one_after_another() -> None:
    text = '{"name": "add_task", "arguments": {"title": "A"}}\n{"name": "add_task", "arguments": {"title": "B"}}'
    assert extract_tool_calls(text, TOOLS) == [("add_task", {"title": "A"}), ("add_task", {"title": "B"})]


# --- argument forms -----------------------------------------------------------------------------------------


def test_arguments_as_json_string() -> None:
    text = json.dumps({"name": "list_tasks", "arguments": json.dumps({"status": "completed"})})
    assert extract_tool_calls(text, TOOLS) == [("list_tasks", {"status": "completed"})]


def test_parameters_key_instead_of_arguments() -> None:
    text = '{"name": "add_task", "parameters": {"title": "Walk the dog"}}'
    assert extract_tool_calls(text, TOOLS) == [("add_task", {"title": "Walk the dog"})]


def test_missing_or_null_or_empty_arguments_mean_no_arguments() -> None:
    assert extract_tool_calls('{"name": "list_tasks"}', TOOLS) == [("list_tasks", {})]
    assert extract_tool_calls('{"name": "list_tasks", "arguments": null}', TOOLS) == [("list_tasks", {})]
    assert extract_tool_calls('{"name": "list_tasks", "arguments": ""}', TOOLS) == [("list_tasks", {})]


def test_flattened_arguments() -> None:
    assert extract_tool_calls('{"name": "add_task", "title": "Buy milk"}', TOOLS) == [
        ("add_task", {"title": "Buy milk"})
    ]


def test_openai_wire_shape() -> None:
    text = json.dumps({"type": "function", "function": {"name": "delete_task", "arguments": '{"task_id": 4}'}})
    assert extract_tool_calls(text, TOOLS) == [("delete_task", {"task_id": 4})]


def test_unicode_arguments_survive() -> None:
    text = '{"name": "add_task", "arguments": {"title": "Acheter du café ☕"}}'
    assert extract_tool_calls(text, TOOLS) == [("add_task", {"title": "Acheter du café ☕"})]


# --- a short preamble or trailer is tolerated ---------------------------------------------------------------


def test_short_preamble_before_fenced_block() -> None:
    text = 'Sure:\n```json\n{"name": "list_tasks", "arguments": {"status": "all"}}\n```'
    assert extract_tool_calls(text, TOOLS) == [("list_tasks", {"status": "all"})]


def test_short_trailer_after_bare_json() -> None:
    text = '{"name": "list_tasks", "arguments": {}}\nHere are your tasks.'
    assert extract_tool_calls(text, TOOLS) == [("list_tasks", {})]


# --- normal replies stay replies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Hello! How can I assist you today?",
        "I added the task using add_task.",
        "You can call list_tasks to see everything you have.",
        "Your set of tasks is {buy milk, call mom}.",
        "Use the syntax {name} to refer to a task.",
        'The task "add_task" was created, with {"id": 3}.',
        "Here is a dict: {'name': 'add_task'}",  # python repr, not JSON
        "```python\nprint('hello')\n```",
        "Done! ✅ Task 3 is complete.",
    ],
)
def test_prose_is_not_a_call(text: str) -> None:
    assert extract_tool_calls(text, TOOLS) is None


def test_unknown_tool_name_is_not_a_call() -> None:
    assert extract_tool_calls('{"name": "greet", "arguments": {"message": "Hello!"}}', TOOLS) is None
    assert extract_tool_calls('```json\n{"name": "rm_rf", "arguments": {}}\n```', TOOLS) is None


def test_tool_names_are_exact() -> None:
    assert extract_tool_calls('{"name": "Add_Task", "arguments": {"title": "x"}}', TOOLS) is None
    assert extract_tool_calls('{"name": "add_task", "arguments": {"title": "x"}}', set()) is None


def test_a_list_with_one_unknown_call_is_rejected_whole() -> None:
    text = json.dumps([{"name": "add_task", "arguments": {"title": "x"}}, {"name": "hack", "arguments": {}}])
    assert extract_tool_calls(text, TOOLS) is None


def test_json_data_that_is_not_a_call() -> None:
    assert extract_tool_calls('{"id": 1, "title": "Buy groceries", "completed": false}', TOOLS) is None
    assert extract_tool_calls("[1, 2, 3]", TOOLS) is None
    assert extract_tool_calls("[]", TOOLS) is None
    assert extract_tool_calls('"add_task"', TOOLS) is None


def test_object_with_a_tool_name_and_extra_fields_is_data() -> None:
    text = '{"name": "add_task", "arguments": {"title": "x"}, "result": {"task_id": 1}}'
    assert extract_tool_calls(text, TOOLS) is None


def test_arguments_that_are_not_an_object_are_rejected() -> None:
    assert extract_tool_calls('{"name": "add_task", "arguments": ["x"]}', TOOLS) is None
    assert extract_tool_calls('{"name": "add_task", "arguments": "not json"}', TOOLS) is None


def test_a_call_buried_in_a_long_explanation_is_not_executed() -> None:
    text = (
        "To add a task you would normally send something like the following to the server, but I will not do "
        "that until you confirm which list you mean:\n"
        '```json\n{"name": "add_task", "arguments": {"title": "x"}}\n```'
    )
    assert extract_tool_calls(text, TOOLS) is None


def test_bare_json_followed_by_a_long_reply_is_not_a_call() -> None:
    text = '{"name": "list_tasks", "arguments": {}}\n' + "This is a long explanation of what I did. " * 5
    assert extract_tool_calls(text, TOOLS) is None


def test_one_bad_block_rejects_all_blocks() -> None:
    text = '```json\n{"name": "add_task", "arguments": {"title": "x"}}\n```\n```json\n{"broken": \n```'
    assert extract_tool_calls(text, TOOLS) is None


def test_malformed_json_is_not_a_call() -> None:
    assert extract_tool_calls('{"name": "add_task", "arguments": {"title": "x"', TOOLS) is None
    assert extract_tool_calls("<tool_call>\nnot json\n</tool_call>", TOOLS) is None


# --- the retry trigger --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "add_task", "arguments": {"title": "x"',
        "<tool_call>\n{broken",
        '[{"name": "add_task"',
        '```json\n{"name": "add_task", "arguments": {\n```',
    ],
)
def test_malformed_calls_look_like_calls(text: str) -> None:
    assert looks_like_tool_call(text)
    assert extract_tool_calls(text, TOOLS) is None


@pytest.mark.parametrize(
    "text",
    ["Hello!", "Sure, I can help with that.", "```python\nprint(1)\n```", "[x] done", "Task {3} is done"],
)
def test_prose_does_not_look_like_a_call(text: str) -> None:
    assert not looks_like_tool_call(text)


# --- the adapter as the local model server applies it (a fake engine stands in for llama.cpp) --------------------


class FakeEngine:
    """Answers with a scripted assistant message, and re-asks with a scripted constrained decision; records what
    the server asked of it."""

    def __init__(self, message: dict[str, Any], decision: str | None = None) -> None:
        self.message = message
        self.decision = decision
        self.bodies: list[dict[str, Any]] = []
        self.slots = 1
        self.grammars: list[str] = []
        self.seed = 42
        self.lock = asyncio.Lock()

    @property
    def retries(self) -> int:
        return len(self.grammars)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        timings = {"prompt_n": 5, "cache_n": 100, "predicted_n": 3, "prompt_ms": 80.0, "predicted_ms": 150.0}
        return {"choices": [{"message": {"role": "assistant", **self.message}}], "timings": timings}

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        return "<|im_start|>...rendered prompt"

    def complete(self, prompt: str, *, grammar: str, sampling: dict[str, Any]) -> local_server.Completed:
        self.grammars.append(grammar)
        return local_server.Completed(self.decision or "", {"prompt_n": 0, "cache_n": 105, "predicted_n": 20})


WIRE_TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in sorted(TOOLS)]


def _answer(
    engine: FakeEngine, tools: list[dict[str, Any]] | None = None, messages: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body = _model_body({"messages": messages or [{"role": "user", "content": "hi"}], "tools": tools or WIRE_TOOLS}, 42)
    with patch(
        "backend.llm.local_server.decision_grammar",
        lambda tools, kind, max_calls=None, reply_chars=None: f"grammar:{kind}",
    ):
        return answer(cast(Any, engine), body)


def test_server_turns_text_calls_into_tool_calls() -> None:
    done = _answer(FakeEngine({"content": '```json\n{"name": "add_task", "arguments": {"title": "x"}}\n```'}))
    choice = done["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "add_task", "arguments": '{"title": "x"}'}
    assert done["usage"] == {"prompt_tokens": 105, "completion_tokens": 3, "total_tokens": 108}
    assert done["todo_agent"]["prompt_n"] == 5 and done["todo_agent"]["reasked"] == []


def test_server_turns_a_tools_wrapper_with_several_calls_into_calls_in_order() -> None:
    wrapped = '<tools>{"name": "add_task", "arguments": {"title": "Milk"}}{"name": "add_task", "arguments": {"title": "Eggs"}}</tools>'
    calls = _answer(FakeEngine({"content": wrapped}))["choices"][0]["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"])["title"] for c in calls] == ["Milk", "Eggs"]


def test_server_leaves_prose_alone_asking_only_a_second_opinion() -> None:
    engine = FakeEngine({"content": "Hello! How can I help?"}, '{"reply": "Hi."}')
    done = _answer(engine)
    choice = done["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello! How can I help?"}
    assert choice["finish_reason"] == "stop"
    assert engine.grammars == ["grammar:any"] and done["todo_agent"]["reasked"] == ["second_opinion"]


def test_unparseable_markup_is_never_shown_it_is_asked_again_then_apologised_for() -> None:
    only_list = [{"type": "function", "function": {"name": "list_tasks"}}]
    engine = FakeEngine({"content": '{"name": "delete_task", "arguments": {"task_id": 1}}'}, decision="not json")
    done = _answer(engine, only_list)
    message = done["choices"][0]["message"]
    assert "tool_calls" not in message
    assert message["content"] == local_server.APOLOGY and "delete_task" not in message["content"]
    assert engine.grammars == ["grammar:none"]  # asked once more, for calls only
    assert done["todo_agent"]["unparsed_call"] == 1 and done["todo_agent"]["reasked"] == ["markup"]


def test_server_retries_a_malformed_call_with_constrained_output() -> None:
    engine = FakeEngine(
        {"content": '{"name": "complete_task", "arguments": {"task_id": 3'},
        '{"calls": [{"name": "complete_task", "arguments": {"task_id": 3}}]}',
    )
    [call] = _answer(engine)["choices"][0]["message"]["tool_calls"]
    assert engine.retries == 1
    assert call["function"] == {"name": "complete_task", "arguments": '{"task_id": 3}'}


def test_server_keeps_native_tool_calls() -> None:
    native = [{"id": "call_7", "type": "function", "function": {"name": "list_tasks", "arguments": "{}"}}]
    engine = FakeEngine({"content": "", "tool_calls": native})
    [call] = _answer(engine)["choices"][0]["message"]["tool_calls"]
    assert call["function"] == native[0]["function"]


MARK_IT_DONE = [
    {"role": "user", "content": "Add a task to buy eggs"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "add_task", "arguments": '{"title": "Buy eggs"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": '{"task_id": 4, "status": "created", "title": "Buy eggs"}'},
    {"role": "assistant", "content": "Added 'Buy eggs'."},
    {"role": "user", "content": "Mark it done"},
]  # fmt: skip


def test_a_claim_no_call_backs_is_asked_again_for_calls() -> None:
    engine = FakeEngine(
        {"content": "The task 'Buy eggs' has been marked as completed."},
        '{"calls": [{"name": "complete_task", "arguments": {"task_id": 4}}]}',
    )
    done = _answer(engine, messages=MARK_IT_DONE)
    [call] = done["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "complete_task"
    assert engine.grammars == ["grammar:none"]
    assert done["todo_agent"]["reasked"] == ["claim"] and done["todo_agent"]["model_calls"] == 2


def test_a_claim_the_turns_call_backs_is_left_alone() -> None:
    ran = [
        *MARK_IT_DONE,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "complete_task", "arguments": '{"task_id": 4}'}}]},
        {"role": "tool", "tool_call_id": "c2", "content": '{"task_id": 4, "status": "completed", "title": "Buy eggs"}'},
    ]  # fmt: skip
    engine = FakeEngine({"content": "Done! 'Buy eggs' is now marked as completed."})
    done = _answer(engine, messages=ran)
    assert done["choices"][0]["message"]["content"] == "Done! 'Buy eggs' is now marked as completed."
    assert engine.retries == 0


def test_a_recap_of_an_earlier_turns_call_is_left_alone() -> None:
    engine = FakeEngine({"content": "You're welcome! 'Buy eggs' was added earlier."}, '{"reply": "ok"}')
    done = _answer(engine, messages=[*MARK_IT_DONE[:4], {"role": "user", "content": "thanks"}])
    assert done["choices"][0]["message"]["content"].startswith("You're welcome")
    assert "claim" not in done["todo_agent"]["reasked"]


def test_model_body_is_deterministic_unless_the_client_says_otherwise() -> None:
    body = _model_body({"messages": [{"role": "user", "content": "x"}], "stream": True, "max_tokens": 50}, 7)
    assert body["temperature"] == 0.0 and body["seed"] == 7 and body["max_tokens"] == 50
    assert "stream" not in body
    chosen = _model_body({"messages": [], "temperature": 0.7, "seed": 1}, 7)
    assert chosen["temperature"] == 0.7 and chosen["seed"] == 1
    assert chosen["max_tokens"] > 0  # always capped


def test_model_body_flattens_text_parts() -> None:
    parts = [{"type": "text", "text": "Add "}, {"type": "text", "text": "milk"}]
    body = _model_body({"messages": [{"role": "user", "content": parts}]}, 42)
    assert body["messages"] == [{"role": "user", "content": "Add milk"}]


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[TestClient]:
    engine = FakeEngine({"content": '{"name": "add_task", "arguments": {"title": "Buy groceries"}}'})
    monkeypatch.setattr(local_server, "_Engine", lambda *args, **kwargs: engine)
    with TestClient(local_server.create_local_model_app(tmp_path / "model.gguf")) as client:
        yield client


def test_app_health_models_and_completion(fake_app: TestClient) -> None:
    assert fake_app.get("/health").json()["status"] == "ok"
    assert fake_app.get("/v1/models").json()["data"][0]["id"] == local_server.MODEL_ID
    body = {"model": "local", "messages": [{"role": "user", "content": "add"}], "tools": WIRE_TOOLS}
    done = fake_app.post("/v1/chat/completions", json=body).json()
    assert done["object"] == "chat.completion"
    assert done["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "add_task"


def test_app_streams_the_same_answer_as_chunks(fake_app: TestClient) -> None:
    body = {"messages": [{"role": "user", "content": "add"}], "tools": WIRE_TOOLS, "stream": True}
    response = fake_app.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    calls = [d for c in chunks for ch in c["choices"] for d in ch["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "add_task"
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]] == ["tool_calls"]


def test_app_rejects_a_body_without_messages(fake_app: TestClient) -> None:
    response = fake_app.post("/v1/chat/completions", json={"messages": []})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


ADD_TOOL = [
    {
        "type": "function",
        "function": {
            "name": "add_task",
            "parameters": {
                "type": "object",
                "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
                "required": ["title"],
            },
        },
    }
]


def test_a_made_up_description_is_asked_for_again_without_it() -> None:
    invented = {"content": '{"name": "add_task", "arguments": {"title": "Water the plants", '
                '"description": "Make sure the plants are well watered and healthy."}}'}  # fmt: skip
    engine = FakeEngine(invented, '{"calls": [{"name": "add_task", "arguments": {"title": "Water the plants"}}]}')
    with patch(
        "backend.llm.local_server.decision_grammar",
        lambda tools, kind, max_calls=None, reply_chars=None: json.dumps(tools),
    ):
        body = _model_body(
            {"messages": [{"role": "user", "content": "Add a task to water the plants"}], "tools": ADD_TOOL}, 42
        )
        done = answer(cast(Any, engine), body)
    [call] = done["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"title": "Water the plants"}
    [grammar_tools] = [json.loads(g) for g in engine.grammars]
    assert set(grammar_tools[0]["function"]["parameters"]["properties"]) == {"title"}  # asked without it
    assert done["todo_agent"]["reasked"] == ["ungrounded"]


def test_a_description_the_user_gave_is_kept_without_a_second_ask() -> None:
    given = {"content": '{"name": "add_task", "arguments": {"title": "Call the plumber", '
             '"description": "Ask about the kitchen sink leak"}}'}  # fmt: skip
    engine = FakeEngine(given)
    said = "Add a task to call the plumber, details: ask about the kitchen sink leak"
    body = _model_body({"messages": [{"role": "user", "content": said}], "tools": ADD_TOOL}, 42)
    done = answer(cast(Any, engine), body)
    [call] = done["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"])["description"] == "Ask about the kitchen sink leak"
    assert engine.retries == 0


@pytest.mark.parametrize(
    "reply, why",
    [("Mark task 1 as done and delete task 2", "echo"), ('Use list_tasks with status "pending".', "tool_name")],
)
def test_a_reply_that_repeats_the_request_or_names_a_tool_is_asked_again(reply: str, why: str) -> None:
    engine = FakeEngine({"content": reply}, '{"calls": [{"name": "complete_task", "arguments": {"task_id": 1}}]}')
    done = _answer(engine, messages=[{"role": "user", "content": "Mark task 1 as done and delete task 2"}])
    assert done["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "complete_task"
    assert done["todo_agent"]["reasked"] == [why]
