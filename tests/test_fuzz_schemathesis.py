"""Fuzzing: schemathesis against the app's own OpenAPI schema, through the ASGI app, with the scripted model.

No request may get a 5xx, and every response (status code, content type, headers, body) must conform to the schema.
The generation is bounded (`MAX_EXAMPLES` per operation and mode) so the file runs well under two minutes; see
`tests/schema_fuzz.py` for how requests are authenticated and pointed at real rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.schema_fuzz import FuzzTarget, build_target, run_fuzz, summary, unique

MAX_EXAMPLES = 25


@pytest.fixture
def fuzz_target(database_url: str, tmp_path: Path) -> Iterator[FuzzTarget]:
    # The limiter is not under test here: one user sends every chat request.
    target = build_target(make_settings(tmp_path, database_url, rate_limit_per_minute=1_000_000))
    yield target
    target.close()


def test_generated_requests_get_no_5xx_and_schema_conforming_answers(fuzz_target: FuzzTarget) -> None:
    report = run_fuzz(fuzz_target, max_examples=MAX_EXAMPLES)
    print("fuzz:", summary(report))
    assert report.requests >= 300, summary(report)
    assert not report.server_errors, unique(report.server_errors)
    assert not report.violations, "\n".join(unique(report.violations))
