"""OpenTelemetry (the `otel` extra): a turn is a span with a child per model call and per tool call, exported here
to an in-memory exporter; no message text on any span."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backend import tracing
from evals.scripted_model import Reply, script
from tests.conftest import Harness, new_user


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    try:
        yield exporter
    finally:
        tracing.configure(None)


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_turn_is_a_span_with_its_model_and_tool_calls(
    make_harness: Callable[..., Any], spans: InMemorySpanExporter, streamed: bool
) -> None:
    secret = "buy the secret milk"
    harness: Harness = await make_harness(script([Reply(calls=[("add_task", {"title": secret})]), "Added it."]))
    user = new_user()
    headers = {**harness.auth(user), **({"Accept": "text/event-stream"} if streamed else {})}
    response = await harness.client.post(f"/api/{user}/chat", json={"message": f"add {secret}"}, headers=headers)
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    (turn,) = [s for s in finished if s.name == "todo_agent.turn"]
    models = [s for s in finished if s.name == "todo_agent.model_call"]
    tools = [s for s in finished if s.name == "todo_agent.tool_call"]
    assert turn.attributes is not None and turn.attributes["outcome"] == "ok" and turn.attributes["tool_calls"] == 1
    assert len(models) == 2 and len(tools) == 1
    assert tools[0].attributes is not None and dict(tools[0].attributes) == {"tool": "add_task", "outcome": "ok"}
    for child in [*models, *tools]:  # one trace: every call is the turn's child
        assert child.context.trace_id == turn.context.trace_id
        assert child.parent is not None and child.parent.span_id == turn.context.span_id
    assert not [s for s in finished if secret in str(dict(s.attributes or {}))]  # no user text in any span


def test_tracing_is_a_no_op_when_off() -> None:
    tracing.configure(None)
    with tracing.span("tool_call", tool="add_task") as current:
        assert current is None
    assert tracing.start("turn") is None
