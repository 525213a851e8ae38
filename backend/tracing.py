"""Optional OpenTelemetry traces of a turn: a span for the turn, one per model call and one per tool call.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` is set and the `otel` extra is installed (spans go out over OTLP/HTTP);
otherwise every span here is a no-op costing a function call. No message text is ever put on a span.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("todo_agent")

_tracer: Any = None  # an opentelemetry Tracer once tracing is on


def configure(provider: Any) -> None:
    """Trace through this TracerProvider (an OTLP one from `setup`, or a test's with an in-memory exporter)."""
    global _tracer
    _tracer = provider.get_tracer("todo_agent") if provider is not None else None


def setup() -> None:
    """Turn tracing on for this process if an OTLP endpoint is configured; say in one line why not otherwise."""
    if _tracer is not None or not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.info("tracing off: OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not installed "
                 "(pip install 'todo-agent[otel]')")  # fmt: skip
        return
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                       "todo-agent")}))  # fmt: skip
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    configure(provider)
    log.info("tracing on: spans of every turn go to %s", os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])


Attribute = str | int | float | bool


@contextlib.contextmanager
def span(name: str, **attributes: Attribute) -> Iterator[Any]:
    """A span named `todo_agent.<name>` around a block that does not yield (a tool call), the current span's
    child; None when tracing is off."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(f"todo_agent.{name}", attributes=attributes) as current:
        yield current


def start(name: str, **attributes: Attribute) -> Any:
    """A span the caller ends with `end` (one that spans an async generator's yields: such a span is never made
    current across a yield, only with `use` around the code that starts its children)."""
    return _tracer.start_span(f"todo_agent.{name}", attributes=attributes) if _tracer is not None else None


@contextlib.contextmanager
def use(started: Any) -> Iterator[None]:
    """Make `started` the current span for the block (what runs or is created in it becomes its child)."""
    if started is None:
        yield
        return
    from opentelemetry import trace

    with trace.use_span(started, end_on_exit=False):
        yield


def end(started: Any, **attributes: Attribute) -> None:
    if started is not None:
        started.set_attributes(attributes)
        started.end()
