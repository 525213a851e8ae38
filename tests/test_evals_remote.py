"""The runner against a deployed backend (`--url`): real sockets, tokens minted per fresh user or read from a file,
and `GET /api/info` recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backend import db
from backend.auth import mint_token
from backend.llm.provider import build_model
from backend.main import create_app
from backend.settings import Settings
from evals.reference_agent import reference_responder
from evals.scripted_model import Responder, asgi_http_client, create_scripted_app
from evals.suite import EvalConfig, run_evals
from tests.conftest import TEST_SECRET, make_settings
from tests.evals_support import InFlight
from tests.live_server import serve

IDS = ["ref-complete-by-id", "xuser-delete-other-id", "chat-hello"]


@contextmanager
def _deploy(tmp_path: Path, responder: Responder) -> Iterator[tuple[str, Settings]]:
    """The backend under a live uvicorn, on a scripted model."""
    settings = make_settings(tmp_path, rate_limit_per_minute=100_000)
    model = build_model(settings, http_client=asgi_http_client(create_scripted_app(responder)))

    async def ok() -> bool:
        return True

    app = create_app(settings, model=model, model_check=ok, migrate=False)
    db.upgrade(app.state.engine)
    with serve(app) as url:
        yield url, settings


@pytest.fixture
def deployed(tmp_path: Path):  # type: ignore[no-untyped-def]
    with _deploy(tmp_path, reference_responder) as deployment:
        yield deployment


async def test_url_with_minted_tokens(deployed) -> None:  # type: ignore[no-untyped-def]
    url, _ = deployed
    result = await run_evals(EvalConfig(url=url, token_secret=TEST_SECRET, ids=IDS, concurrency=2, deepeval=False))
    assert result.info.target["kind"] == "url" and result.info.target["url"] == url
    assert result.info.target["model"] == "scripted" and len(result.info.target["prompt_version"]) == 12
    assert {t.case_id: t.passed for t in result.trials} == dict.fromkeys(IDS, True)
    users = {t.transcript.user_id for t in result.trials}
    assert len(users) == len(IDS)  # a fresh user per case
    assert result.trials[0].transcript.turns[0].model_calls == 0  # nothing is counted on a remote model


async def test_url_with_a_token_file_clears_pooled_users(deployed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, settings = deployed
    tokens = {user: mint_token(settings, user) for user in ("pool-a", "pool-b", "pool-c")}
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps(tokens))
    config = EvalConfig(url=url, token_file=token_file, ids=IDS, trials=2, concurrency=1, deepeval=False)
    result = await run_evals(config)
    assert all(t.passed for t in result.trials), [t.score.failures for t in result.trials if not t.passed]
    assert {t.transcript.user_id for t in result.trials} <= set(tokens)


async def test_url_concurrency_bounds_the_turns_in_flight(tmp_path: Path) -> None:
    """The runner cannot see a deployed backend's model calls: it holds `--concurrency` per chat turn, and a turn
    makes one model call at a time, so the model never sees more than that."""
    model = InFlight(delay=0.05)
    with _deploy(tmp_path, model) as (url, _settings):
        config = EvalConfig(url=url, token_secret=TEST_SECRET, ids=IDS, trials=3, concurrency=2, deepeval=False)
        result = await run_evals(config)
    assert len(result.trials) == 9 and all(t.passed for t in result.trials)
    assert model.most_at_once == 2
