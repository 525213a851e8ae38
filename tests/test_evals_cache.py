"""Record/replay: keys cover what changes an answer, a replay reproduces the run without the model, a miss is
explicit (an error in strict replay)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from evals.cache import ModelCallStats, RecordReplayTransport, ResponseCache, request_key, usage_of
from evals.results import RunResult
from evals.scripted_model import Reply
from evals.suite import run_evals
from evals.transcript import task_view
from tests.evals_support import scripted_config

BODY: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "list_tasks", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "[]"},
    ],
    "tools": [{"type": "function", "function": {"name": "list_tasks", "parameters": {}}}],
    "temperature": 0.0,
    "seed": 42,
    "max_tokens": 512,
    "stream": True,
}  # fmt: skip


def key(body: dict[str, Any]) -> str:
    return request_key("POST", "/v1/chat/completions", json.dumps(body).encode())


def test_key_ignores_tool_call_ids_and_key_order() -> None:
    renamed = json.loads(json.dumps(BODY).replace("call_abc", "call_xyz"))
    assert key(renamed) == key(BODY)
    assert key(dict(reversed(list(BODY.items())))) == key(BODY)
    assert request_key("POST", "http://other-host:9/v1/chat/completions", json.dumps(BODY).encode()) == key(BODY)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "other"},
        {"temperature": 0.7},
        {"seed": 1},
        {"max_tokens": 64},
        {"stream": False},
        {"tools": []},
        {"messages": [{"role": "user", "content": "hello"}]},
        {"tool_choice": "required"},
    ],
)
def test_key_changes_with_everything_that_changes_the_answer(change: dict[str, Any]) -> None:
    assert key({**BODY, **change}) != key(BODY)


def test_usage_is_read_from_json_and_sse_bodies() -> None:
    assert usage_of('{"usage": {"prompt_tokens": 3, "completion_tokens": 1}}') == {
        "prompt_tokens": 3,
        "completion_tokens": 1,
    }
    sse = 'data: {"choices": []}\n\ndata: {"choices": [], "usage": {"prompt_tokens": 7}}\n\ndata: [DONE]\n\n'
    assert usage_of(sse) == {"prompt_tokens": 7}
    stats = ModelCallStats()
    stats.add_usage({"prompt_tokens": 7, "completion_tokens": 2})
    assert (stats.input_tokens, stats.output_tokens) == (7, 2)


def observed(result: RunResult) -> list[Any]:
    """What the agent did, without timings."""
    return [
        (t.case_id, t.passed, [(u.user, u.response, [(c.name, c.arguments, c.result) for c in u.tool_calls],
                                [task_view(x) for x in u.tasks_after or []]) for u in t.transcript.turns])
        for t in result.trials
    ]  # fmt: skip


def no_model(request: dict[str, Any]) -> Reply:
    raise AssertionError("a full replay must not call the model")


async def test_record_then_replay_reproduces_the_run_without_the_model(tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.jsonl"
    tags = ["smoke", "multi-step", "follow-up"]
    recorded = await run_evals(scripted_config(tmp_path, tags=tags, cache_mode="record", cache_file=cache_file))
    assert cache_file.exists() and recorded.info.cache is not None
    assert recorded.info.cache["recorded"] == recorded.metrics["model_calls"] > 0
    entry = json.loads(cache_file.read_text().splitlines()[0])
    assert {"key", "model", "user", "status", "content_type", "body"} <= set(entry)

    replayed = await run_evals(
        scripted_config(tmp_path, no_model, tags=tags, cache_mode="replay", cache_file=cache_file)
    )
    assert replayed.info.cache is not None
    assert replayed.info.cache["misses"] == 0 and replayed.info.cache["hits"] == recorded.metrics["model_calls"]
    assert observed(replayed) == observed(recorded)
    assert replayed.metrics["input_tokens"] == recorded.metrics["input_tokens"]  # usage replays too


async def test_strict_replay_miss_is_an_error_and_counted(tmp_path: Path) -> None:
    result = await run_evals(
        scripted_config(tmp_path, ids=["ref-add-groceries"], cache_mode="replay", cache_file=tmp_path / "empty.jsonl")
    )
    assert result.info.cache is not None and result.info.cache["misses"] == 1
    trial = result.trials[0]
    assert not trial.passed and trial.score.failures[0].kind == "error"
    assert "replay cache miss" in (trial.transcript.turns[0].error or "")
    assert trial.transcript.turns[0].cache_misses == 1


async def test_replay_or_record_fills_the_gaps_then_replays(tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.jsonl"
    first = await run_evals(
        scripted_config(tmp_path, ids=["ref-add-groceries"], cache_mode="replay-or-record", cache_file=cache_file)
    )
    assert first.info.cache is not None and first.info.cache["misses"] == 2 and first.info.cache["recorded"] == 2
    live: list[str] = []

    def counting(request: dict[str, Any]) -> Reply:
        live.append(request["messages"][-1]["content"])
        return Reply(text="Hello!")

    second = await run_evals(
        scripted_config(tmp_path, counting, ids=["ref-add-groceries", "chat-hello"], cache_mode="replay-or-record",
                        cache_file=cache_file)
    )  # fmt: skip
    assert second.info.cache is not None
    assert second.info.cache["hits"] == 2 and second.info.cache["misses"] == 1  # chat-hello was never recorded
    assert live == ["Hello!"]
    assert next(t for t in second.trials if t.case_id == "ref-add-groceries").passed


async def test_prune_keeps_only_what_the_run_used(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.jsonl")
    cache.put("a", {"body": "x"})
    cache.put("b", {"body": "y"})
    cache.save()
    loaded = ResponseCache.load(tmp_path / "c.jsonl")
    assert set(loaded.entries) == {"a", "b"}
    loaded.get("a")
    loaded.save(prune=True)
    assert set(ResponseCache.load(tmp_path / "c.jsonl").entries) == {"a"}


async def test_non_completion_requests_pass_through() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": []})

    transport = RecordReplayTransport(httpx.MockTransport(handler), ResponseCache(None), "replay")
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("http://model/v1/models")
    assert response.status_code == 200 and transport.cache.misses == 0
