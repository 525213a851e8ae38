"""Schemathesis over the app's own OpenAPI schema, in-process through the ASGI app, with the scripted model.

Shared by `tests/test_fuzz_schemathesis.py` (CI: asserts no 5xx and no schema violation) and `bench/fuzz.py` (prints
the counts). Each API operation gets `max_examples` generated requests per generation mode (valid data, and data
that breaks the schema); every request carries a valid Bearer token for the user its path names, and requests that
name a task or a conversation are pointed at a user who owns some, so they reach the handlers and not only the 404.
Hypothesis runs derandomized: the same requests on every run, so a CI failure reproduces.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.python import asgi as schemathesis_asgi

from backend import conversation_changes, crud, db
from backend.auth import mint_token
from backend.db import session_scope
from backend.llm.provider import build_model
from backend.main import create_app
from backend.models import TaskCreate
from backend.settings import Settings
from evals.reference_agent import reference_responder
from evals.scripted_model import asgi_http_client, create_scripted_app

SEEDED_USER = "fuzz-owner"
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # "METHOD path -> status"
    violations: list[str] = field(default_factory=list)  # failed schema checks, one line each

    @property
    def server_error_count(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


@dataclass
class FuzzTarget:
    """The app under fuzzing and a user with real rows."""

    app: FastAPI
    settings: Settings
    task_ids: list[int] = field(default_factory=list)
    conversation_ids: list[int] = field(default_factory=list)

    def auth_for(self, case: schemathesis.Case) -> dict[str, str]:
        """Point the case at real data where it names some, and sign a token for the user its path names.

        Only components generated as valid are touched: a case whose path or headers were generated to break the
        schema keeps them (its Authorization header may be the part that is missing or malformed).
        """
        components = case.meta.components if case.meta is not None else {}
        negative = {location.value for location, info in components.items() if not info.mode.is_positive}
        params = case.path_parameters if case.path_parameters is not None else {}
        if "path" not in negative and "user_id" in params:
            for name, ids in (("task_id", self.task_ids), ("conversation_id", self.conversation_ids)):
                value = params.get(name)
                if isinstance(value, int | str) and str(value).lstrip("-").isdigit() and ids:
                    params["user_id"] = SEEDED_USER
                    params[name] = ids[int(value) % len(ids)]
        if "header" in negative:
            return {}
        # Path parameters arrive percent-encoded: the user the server sees is the decoded string.
        user = unquote(str(params.get("user_id", SEEDED_USER)))
        return {"Authorization": f"Bearer {mint_token(self.settings, user or SEEDED_USER)}"}

    def close(self) -> None:
        schemathesis_asgi.shutdown_lifespans()
        self.app.state.engine.dispose()


def build_target(settings: Settings) -> FuzzTarget:
    """The app on `settings` with the rule-based scripted model, migrated and seeded."""
    model_app = create_scripted_app(reference_responder)
    model = build_model(settings, http_client=asgi_http_client(model_app))

    async def model_ok() -> bool:
        return True

    app = create_app(settings, model=model, model_check=model_ok, migrate=True)
    target = FuzzTarget(app, settings)
    engine = app.state.engine
    db.upgrade(engine)
    with session_scope(engine) as session:
        for index in range(5):
            task = crud.create_task(session, user_id=SEEDED_USER, task_in=TaskCreate(title=f"seeded {index}"))
            assert task.id is not None
            target.task_ids.append(task.id)
        for index in range(3):
            conversation = conversation_changes.create_conversation(session, user_id=SEEDED_USER, title=f"chat {index}")
            assert conversation.id is not None
            conversation_changes.add_message(
                session, user_id=SEEDED_USER, conversation_id=conversation.id, role="user", content="hi"
            )
            conversation_changes.add_message(
                session,
                user_id=SEEDED_USER,
                conversation_id=conversation.id,
                role="assistant",
                content="hello",
                tool_calls=[{"name": "list_tasks", "arguments": {"status": "all"}, "result": []}],
            )
            target.conversation_ids.append(conversation.id)
    return target


def _describe(failure: Failure) -> str:
    return f"{failure.title}: {' '.join(str(failure.message).split())}"[:500]


def run_fuzz(target: FuzzTarget, *, max_examples: int = 30, modes: tuple[GenerationMode, ...] = MODES) -> FuzzReport:
    """Generate and send the requests; collect (not raise) 5xx answers and schema violations."""
    report = FuzzReport()
    api = schemathesis.openapi.from_asgi("/openapi.json", target.app)
    for result in api.get_all_operations():
        if isinstance(result, Err):  # a part of the schema schemathesis cannot read is a finding too
            raise result.err()
        operation = result.ok()
        for mode in modes:
            try:
                fuzz_operation(target, operation, mode, max_examples, report)
            except Unsatisfiable:  # nothing to break in an operation without inputs (negative mode)
                continue
    return report


def fuzz_operation(
    target: FuzzTarget, operation: APIOperation, mode: GenerationMode, max_examples: int, report: FuzzReport
) -> None:
    # The ChatKit body is the SDK's protocol (a union of request types), which the schema leaves undescribed: a body
    # generated from nothing is rightly refused with the protocol's 400. tests/test_chatkit.py drives that door.
    excluded = [positive_data_acceptance] if operation.path == "/chatkit" else []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def send(case: schemathesis.Case) -> None:
        headers = target.auth_for(case)
        response = case.call(headers=headers)
        report.requests += 1
        report.statuses[response.status_code] += 1
        where = f"{case.method} {case.formatted_path} [{mode.value}] -> {response.status_code}"
        if response.status_code >= 500:
            report.server_errors.append(f"{where}: {response.text[:200]}")
        try:
            case.validate_response(response, headers=headers, excluded_checks=excluded)
        except FailureGroup as group:  # failed checks: record them and go on generating
            report.violations.extend(f"{where}: {_describe(failure)}" for failure in group.exceptions)
        except Failure as failure:
            report.violations.append(f"{where}: {_describe(failure)}")

    send()


def unique(lines: list[str], limit: int = 20) -> list[str]:
    """The distinct findings, for an assertion message that stays readable."""
    return list(dict.fromkeys(lines))[:limit]


def summary(report: FuzzReport) -> dict[str, Any]:
    return {
        "requests": report.requests,
        "5xx": report.server_error_count,
        "violations": len(report.violations),
        "statuses": dict(sorted(report.statuses.items())),
    }
