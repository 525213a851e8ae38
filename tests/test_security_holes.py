"""The holes an adversarial review found, attacked again as the attacker did: each test starts from what the code
assumed and breaks that assumption, through the real HTTP stack (httpx on the ASGI app, or a live uvicorn where
sockets, threads or the app's lifespan matter). `pytest -m hole` runs exactly these; `hole("P2")` names the finding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import text, update
from sqlmodel import Session

from backend import db
from backend.llm.provider import build_model
from backend.models import Conversation, utcnow
from backend.settings import Settings
from evals.reference_agent import reference_responder
from evals.scripted_model import Reply, asgi_http_client, create_scripted_app, last_user_text
from tests.conftest import PG_URL, TEST_SECRET, Harness, Hold, make_settings, new_user, reached
from tests.live_server import serve
from tests.test_chatkit import add_body, create_body, delete_body, list_body, update_body
from tests.test_mcp import mcp_client, payload
from todo_agent.app import create_app

REAL_SECRET = "a-real-production-secret-" + "q" * 24
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def hs256(user: object, secret: str = TEST_SECRET, **claims: Any) -> str:
    return jwt.encode({"sub": user, "exp": int(utcnow().timestamp()) + 600, **claims}, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def held_first_then_echo(holds: list[Hold]) -> Callable[[dict[str, Any]], Reply]:
    """Each user message containing "hold" waits on the next Hold; everything else echoes at once."""

    def respond(request: dict[str, Any]) -> Reply:
        text = last_user_text(request)
        if "hold" in text and not any(m.get("role") == "tool" for m in request.get("messages", [])):
            return Reply(text=f"echo: {text}", wait=holds.pop(0))
        return Reply(text=f"echo: {text}")

    return respond


async def playground_turn(ctx: Any, session: Any, text: str) -> None:
    from playground import chat_handlers

    async for _ in chat_handlers.send(ctx, session, text):
        pass


# ---------------------------------------------------------------- the doors an authenticated user reaches


async def mcp_list(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    """One stateless MCP request (tools/list) as JSON-RPC over HTTP."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    mcp_headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    return await client.post("/mcp", json=body, headers={**headers, **mcp_headers})


def door_requests(user: str) -> list[tuple[str, str, str, Any]]:
    """(name, method, path, json body) for every door that acts for the token's user."""
    return [
        ("tasks", "GET", f"/api/{user}/tasks", None),
        ("chat", "POST", f"/api/{user}/chat", {"message": "Show me all my tasks"}),
        ("chat as token user", "POST", "/api/chat", {"message": "hello"}),
        ("conversations", "GET", f"/api/{user}/conversations", None),
        ("info", "GET", "/api/info", None),
        ("chatkit", "POST", "/chatkit", list_body()),
    ]


async def status_on_every_door(client: httpx.AsyncClient, user: str, headers: dict[str, str]) -> dict[str, int]:
    statuses = {}
    for name, method, path, body in door_requests(user):
        response = await client.request(method, path, json=body, headers=headers)
        statuses[name] = response.status_code
    statuses["mcp"] = (await mcp_list(client, headers)).status_code
    return statuses


# ---------------------------------------------------------------- P1: HS256 beside JWKS


@pytest.mark.hole("P1")
def test_production_refuses_a_placeholder_secret_whatever_else_is_set() -> None:
    for secret in ("changeme", "short", "x" * 31):
        with pytest.raises(ValueError, match="BETTER_AUTH_SECRET"):
            Settings(  # type: ignore[call-arg]
                _env_file=None,
                environment="production",
                jwks_url="https://auth.example/jwks",
                better_auth_secret=secret,
            )
    with pytest.raises(ValueError, match="JWT_ACCEPT_HS256"):
        Settings(  # type: ignore[call-arg]
            _env_file=None, environment="production", jwks_url="https://auth.example/jwks", jwt_accept_hs256=True
        )


@dataclass
class Jwks:
    """A JWKS endpoint on a real socket: keys can be removed, the endpoint can fail, and a fetch can be held open."""

    keys: dict[str, ed25519.Ed25519PrivateKey]
    url: str = ""
    fetches: int = 0
    failing: bool = False
    hold: threading.Event | None = None  # set: fetches wait until it is cleared... see `held`
    holding: threading.Event = field(default_factory=threading.Event)  # a fetch is being held right now

    def document(self) -> bytes:
        published = [
            {**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "EdDSA"}
            for kid, key in self.keys.items()
        ]
        return json.dumps({"keys": published}).encode()

    def token(self, kid: str, user: str = "jwks-user", key: ed25519.Ed25519PrivateKey | None = None) -> str:
        claims = {"sub": user, "exp": int(utcnow().timestamp()) + 600}
        return jwt.encode(claims, key or self.keys[kid], algorithm="EdDSA", headers={"kid": kid})


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    endpoint = Jwks({"k1": ed25519.Ed25519PrivateKey.generate(), "k2": ed25519.Ed25519PrivateKey.generate()})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            endpoint.fetches += 1
            if endpoint.hold is not None:
                endpoint.holding.set()
                endpoint.hold.wait(timeout=60)
                endpoint.holding.clear()
            if endpoint.failing:
                self.send_response(500)
                self.end_headers()
                return
            body = endpoint.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint.url = f"http://127.0.0.1:{server.server_port}/api/auth/jwks"
    yield endpoint
    if endpoint.hold is not None:
        endpoint.hold.set()
    server.shutdown()


def jwks_app(tmp_path: Path, jwks: Jwks, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "environment": "production",
        "jwks_url": jwks.url,
        "better_auth_secret": REAL_SECRET,
        "rate_limit_per_minute": 100_000,
        **overrides,
    }
    settings = make_settings(tmp_path, **values)
    model = build_model(settings, http_client=asgi_http_client(create_scripted_app(reference_responder)))

    async def model_ok() -> bool:
        return True

    app = create_app(settings, model=model, model_check=model_ok, migrate=True)
    return app


@pytest.mark.hole("P1")
async def test_with_jwks_an_hs256_token_is_refused_on_every_door_unless_enabled(tmp_path: Path, jwks: Jwks) -> None:
    """The secret is real here; the assumption broken is "a secret in the environment is a way in"."""
    user = new_user()
    forged = bearer(hs256(user, REAL_SECRET))
    with serve(jwks_app(tmp_path, jwks)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            refused = await status_on_every_door(client, user, forged)
            allowed = await status_on_every_door(client, "jwks-user", bearer(jwks.token("k1")))
    assert set(refused.values()) == {401}, refused
    assert set(allowed.values()) == {200}, allowed
    with serve(jwks_app(tmp_path / "hs", jwks, jwt_accept_hs256=True)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            opted_in = await status_on_every_door(client, user, forged)
    assert set(opted_in.values()) == {200}, opted_in


# ---------------------------------------------------------------- P2: a reply in another user's conversation


async def message_texts(harness: Harness, user: str, conversation_id: int) -> list[str]:
    response = await harness.client.get(f"/api/{user}/conversations/{conversation_id}", headers=harness.auth(user))
    assert response.status_code == 200, response.text
    return [m["content"] for m in response.json()["messages"]]


@pytest.mark.hole("P2")
async def test_deleting_a_conversation_while_its_turn_runs_cannot_hand_the_reply_to_another_user(
    make_harness: Callable[..., Any], database_url: str
) -> None:
    holds = [Hold()]
    harness: Harness = await make_harness(held_first_then_echo(list(holds)), database_url=database_url)
    hold = holds[0]
    x, y = new_user(), new_user()
    first = await harness.chat(x, "first")
    conversation = first.json()["conversation_id"]
    turn = asyncio.create_task(harness.chat(x, "hold: my tasks, please", conversation))
    await reached(hold.entered)

    deleted = await harness.client.delete(f"/api/{x}/conversations/{conversation}", headers=harness.auth(x))
    other = await harness.chat(y, "Y's own conversation")
    hold.release.set()
    answered = await turn

    assert deleted.status_code == 409 and deleted.json()["error"]["code"] == "conflict"
    assert other.json()["conversation_id"] != conversation
    assert answered.status_code == 200
    assert await message_texts(harness, y, other.json()["conversation_id"]) == [
        "Y's own conversation",
        "echo: Y's own conversation",
    ]
    assert (
        await harness.client.delete(f"/api/{x}/conversations/{conversation}", headers=harness.auth(x))
    ).status_code == 204
    # The id is never handed out again, to anyone.
    after = await harness.chat(y, "another one")
    assert after.json()["conversation_id"] > other.json()["conversation_id"] > conversation


@pytest.mark.hole("P2")
async def test_ids_of_deleted_rows_are_never_reused(make_harness: Callable[..., Any], database_url: str) -> None:
    """ "task 2" in an old conversation must never name a newer task: the highest id deleted stays retired."""
    harness: Harness = await make_harness(database_url=database_url)
    user = new_user()
    task = (await harness.client.post(f"/api/{user}/tasks", json={"title": "old"}, headers=harness.auth(user))).json()
    await harness.client.delete(f"/api/{user}/tasks/{task['id']}", headers=harness.auth(user))
    again = (await harness.client.post(f"/api/{user}/tasks", json={"title": "new"}, headers=harness.auth(user))).json()
    conversation = (await harness.chat(user, "hello")).json()["conversation_id"]
    messages = (
        await harness.client.get(f"/api/{user}/conversations/{conversation}", headers=harness.auth(user))
    ).json()
    await harness.client.delete(f"/api/{user}/conversations/{conversation}", headers=harness.auth(user))
    next_conversation = (await harness.chat(user, "hello again")).json()["conversation_id"]
    next_messages = (
        await harness.client.get(f"/api/{user}/conversations/{next_conversation}", headers=harness.auth(user))
    ).json()
    assert again["id"] > task["id"]
    assert next_conversation > conversation
    assert min(m["id"] for m in next_messages["messages"]) > max(m["id"] for m in messages["messages"])


def expire_lease(harness: Harness, conversation_id: int) -> None:
    """What a turn that outlives its lease (a stuck worker) looks like to everyone else."""
    with Session(harness.app.state.engine) as session:
        session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)  # type: ignore[arg-type]
            .values(turn_lease_until=utcnow() - timedelta(seconds=1))
        )
        session.commit()


@pytest.mark.hole("P2")
async def test_a_turn_that_lost_its_lease_neither_stores_its_reply_nor_frees_the_new_holder(
    make_harness: Callable[..., Any], database_url: str
) -> None:
    holds = [Hold(), Hold()]
    harness: Harness = await make_harness(held_first_then_echo(list(holds)), database_url=database_url)
    user = new_user()
    conversation = (await harness.chat(user, "first")).json()["conversation_id"]
    stale = asyncio.create_task(harness.chat(user, "hold: the stale turn", conversation))
    await reached(holds[0].entered)
    expire_lease(harness, conversation)
    current = asyncio.create_task(harness.chat(user, "hold: the current turn", conversation))
    await reached(holds[1].entered)

    holds[0].release.set()
    stale_answer = await stale
    meanwhile = await harness.chat(user, "a third turn while the current one runs", conversation)
    holds[1].release.set()
    current_answer = await current

    assert stale_answer.status_code == 409 and "not stored" in stale_answer.json()["error"]["message"]
    assert meanwhile.status_code == 409  # the stale turn did not clear the current holder's lease
    assert current_answer.status_code == 200
    texts = await message_texts(harness, user, conversation)
    assert "echo: hold: the stale turn" not in texts
    assert texts[-1] == "echo: hold: the current turn"


@pytest.mark.hole("P2")
async def test_a_late_reply_to_a_deleted_conversation_is_dropped_without_a_5xx(
    make_harness: Callable[..., Any], database_url: str
) -> None:
    holds = [Hold()]
    harness: Harness = await make_harness(held_first_then_echo(list(holds)), database_url=database_url)
    user = new_user()
    conversation = (await harness.chat(user, "first")).json()["conversation_id"]
    late = asyncio.create_task(harness.chat(user, "hold: this one comes back late", conversation))
    await reached(holds[0].entered)
    expire_lease(harness, conversation)
    deleted = await harness.client.delete(f"/api/{user}/conversations/{conversation}", headers=harness.auth(user))
    holds[0].release.set()
    answer = await late
    assert deleted.status_code == 204
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "conflict"
    gone = await harness.client.get(f"/api/{user}/conversations/{conversation}", headers=harness.auth(user))
    assert gone.status_code == 404


@pytest.mark.hole("P2")
async def test_chatkit_and_the_playground_delete_through_the_lease_too(
    make_harness: Callable[..., Any], database_url: str, tmp_path: Path
) -> None:
    from playground import chat_handlers
    from playground.context import PlaygroundContext
    from playground.session import PlaygroundSession

    holds = [Hold(), Hold()]
    harness: Harness = await make_harness(held_first_then_echo(list(holds)), database_url=database_url)
    user = new_user()
    created = await harness.client.post("/chatkit", json=create_body("first"), headers=harness.auth(user))
    thread = next(
        json.loads(line[5:])["thread"]["id"] for line in created.text.splitlines() if '"thread.created"' in line
    )
    running = asyncio.create_task(
        harness.client.post("/chatkit", json=add_body(thread, "hold: running"), headers=harness.auth(user))
    )
    await reached(holds[0].entered)
    refused = await harness.client.post("/chatkit", json=delete_body(thread), headers=harness.auth(user))
    holds[0].release.set()
    await running

    ctx = PlaygroundContext(harness.settings, harness.app.state.chat)
    session = PlaygroundSession(user_id=user, conversation_id=int(thread.removeprefix("conv_")))
    in_playground = asyncio.create_task(playground_turn(ctx, session, "hold: from the playground"))
    await reached(holds[1].entered)
    other = PlaygroundSession(user_id=user, conversation_id=session.conversation_id)
    with pytest.raises(Exception, match="already running"):
        await chat_handlers.undo(ctx, other)
    holds[1].release.set()
    await in_playground

    assert refused.status_code == 409
    texts = await message_texts(harness, user, int(thread.removeprefix("conv_")))
    assert texts[-2:] == ["hold: from the playground", "echo: hold: from the playground"]
    done = await harness.client.post("/chatkit", json=delete_body(thread), headers=harness.auth(user))
    assert done.status_code == 200


# ---------------------------------------------------------------- P3 + P5: the signing-key cache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.hole("P3")
async def test_a_key_removed_from_the_jwks_stops_being_trusted_once_the_cache_expires(
    tmp_path: Path, jwks: Jwks
) -> None:
    app = jwks_app(tmp_path, jwks, jwks_cache_seconds=300, jwks_refresh_cooldown_seconds=10)
    clock = Clock()
    app.state.verifier.jwks.clock = clock
    revoked = jwks.token("k1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        before = await client.get("/api/info", headers=bearer(revoked))
        del jwks.keys["k1"]
        clock.now += 299
        still_cached = await client.get("/api/info", headers=bearer(revoked))
        clock.now += 2
        after = await client.get("/api/info", headers=bearer(revoked))
        other_key = await client.get("/api/info", headers=bearer(jwks.token("k2")))
    assert (before.status_code, still_cached.status_code, after.status_code) == (200, 200, 401)
    assert other_key.status_code == 200
    assert jwks.fetches == 2


@pytest.mark.hole("P3")
async def test_the_jwks_outage_rule_last_good_keys_then_503(tmp_path: Path, jwks: Jwks) -> None:
    app = jwks_app(tmp_path, jwks, jwks_cache_seconds=300, jwks_max_stale_seconds=600, jwks_refresh_cooldown_seconds=10)
    clock = Clock()
    app.state.verifier.jwks.clock = clock
    token = bearer(jwks.token("k1"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/api/info", headers=token)).status_code == 200
        jwks.failing = True
        clock.now += 300 + 599
        stale_but_usable = await client.get("/api/info", headers=token)
        clock.now += 2
        too_old = await client.get("/api/info", headers=token)
        jwks.failing = False
        clock.now += 10  # past the cooldown: the next request may fetch again
        recovered = await client.get("/api/info", headers=token)
    assert stale_but_usable.status_code == 200
    assert too_old.status_code == 503 and too_old.json()["error"]["code"] == "auth_unavailable"
    assert recovered.status_code == 200


@pytest.mark.hole("P5")
async def test_made_up_key_ids_cannot_stall_the_service_while_the_jwks_is_slow(tmp_path: Path, jwks: Jwks) -> None:
    """44 tokens with made-up kids while the JWKS endpoint hangs (a cold cache, as right after a deploy): one fetch
    in flight, no worker thread held, /health/live answers while the fetch still hangs, and once the endpoint
    answers, valid users get in and the made-up kids are refused without another fetch."""
    stranger = ed25519.Ed25519PrivateKey.generate()
    app = jwks_app(tmp_path, jwks, jwks_refresh_cooldown_seconds=3600)
    jwks.hold = threading.Event()
    with serve(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            attackers = [
                asyncio.create_task(client.get("/api/info", headers=bearer(jwks.token(f"made-up-{i}", key=stranger))))
                for i in range(44)
            ]
            assert await asyncio.to_thread(jwks.holding.wait, 30), "no fetch started"
            try:
                # Bounded only so that a regression fails instead of hanging: the stub holds the fetch until then.
                live = await asyncio.wait_for(client.get("/health/live"), timeout=20)
                held_while_live_answered = jwks.holding.is_set()
            except TimeoutError:
                pytest.fail("/health/live waited on the JWKS fetch")
            finally:
                jwks.hold.set()
            answers = await asyncio.gather(*attackers)
            valid = await client.get("/api/info", headers=bearer(jwks.token("k2")))
            later = await client.get("/api/info", headers=bearer(jwks.token("yet-another", key=stranger)))
    assert live.status_code == 200 and held_while_live_answered
    assert {a.status_code for a in answers} == {401}
    assert valid.status_code == 200
    assert later.status_code == 401
    assert jwks.fetches == 1  # single flight, then the negative cache until the cooldown ends


# ---------------------------------------------------------------- P4: the playground and the server's key


@pytest.mark.hole("P4")
async def test_the_playground_never_sends_the_servers_key_to_another_url(tmp_path: Path) -> None:
    from playground.context import PlaygroundContext
    from playground.session import ModelChoice, PlaygroundSession

    seen: list[str | None] = []
    model_app = create_scripted_app(lambda request: Reply(text="hello"))

    @model_app.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        seen.append(request.headers.get("authorization"))
        return await call_next(request)

    settings = make_settings(
        tmp_path, openai_base_url="https://api.openai.example/v1", openai_api_key="sk-server-secret-key"
    )
    app = create_app(settings, model=build_model(settings, http_client=asgi_http_client(model_app)), migrate=False)
    db.upgrade(app.state.engine)
    ctx = PlaygroundContext(settings, app.state.chat)
    with serve(model_app) as loopback:
        loopback_choice = ModelChoice(kind="openai", base_url=f"{loopback}/v1", name="m")
        session = PlaygroundSession(user_id=new_user(), model=loopback_choice)
        await playground_turn(ctx, session, "hi")
        elsewhere = PlaygroundSession(
            user_id=new_user(), model=ModelChoice(kind="openai", base_url="http://169.254.169.254/v1", name="m")
        )
        await playground_turn(ctx, elsewhere, "hi")
    assert seen and all(header == "Bearer none" for header in seen), seen
    assert "not OPENAI_BASE_URL" in str(elsewhere.last_turn["error"]["message"])


@pytest.mark.hole("P4")
async def test_playground_logins_are_throttled_per_client_and_per_username(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        environment="production",
        better_auth_secret=REAL_SECRET,
        playground_enabled=True,
        playground_username="prompt-eng",
        playground_password="the-right-password",
    )
    app = create_app(
        settings,
        model=build_model(settings, http_client=asgi_http_client(create_scripted_app(reference_responder))),
        migrate=True,
    )

    def client_from(address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 5000)), base_url="http://t")

    right = {"username": "prompt-eng", "password": "the-right-password"}
    async with client_from("10.0.0.1") as guesser:
        wrong = [
            (await guesser.post("/playground/login", data={"username": f"u{i}", "password": "x"})).status_code
            for i in range(5)
        ]
        blocked_client = await guesser.post("/playground/login", data=right)
    spread = []
    for i in range(6):
        async with client_from(f"10.0.1.{i}") as one_of_many:
            data = {"username": "prompt-eng", "password": "wrong"} if i < 5 else right
            spread.append((await one_of_many.post("/playground/login", data=data)).status_code)
    async with client_from("10.0.2.1") as honest:
        other_user_ok = await honest.post("/playground/login", data={"username": "someone", "password": "x"})
    assert wrong == [400] * 5
    assert blocked_client.status_code == 429 and "Retry-After" in blocked_client.headers
    assert spread == [400] * 5 + [429]  # the username is throttled whoever guesses it
    assert other_user_ok.status_code == 400  # a fresh client and username still get an answer


# ---------------------------------------------------------------- P6: bodies


class CountingBody:
    """A request body streamed in 64 KiB chunks that counts what the server pulled."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total = total
        self.chunk = chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            piece = b"x" * min(self.chunk, self.total - self.pulled)
            self.pulled += len(piece)
            yield piece


@pytest.mark.hole("P6")
async def test_bodies_are_capped_and_never_read_before_authentication(harness: Harness) -> None:
    user = new_user()
    limit = 1024 * 1024  # MAX_BODY_BYTES's default
    paths = [f"/api/{user}/chat", f"/api/{user}/tasks", "/api/chat", "/chatkit", "/mcp"]
    for path in paths:
        anonymous = CountingBody(97 * 1024 * 1024)
        refused = await harness.client.post(path, content=anonymous, headers={"Content-Type": "application/json"})
        assert refused.status_code == 401, (path, refused.status_code)
        assert anonymous.pulled <= 64 * 1024, (path, anonymous.pulled)
        garbled = await harness.client.post(path, content=b"not json" * 1000)
        assert garbled.status_code == 401, (path, garbled.status_code)
        big = CountingBody(20 * 1024 * 1024)
        too_large = await harness.client.post(
            path, content=big, headers={**harness.auth(user), "Content-Type": "application/json"}
        )
        assert too_large.status_code == 413, (path, too_large.status_code)
        assert too_large.json()["error"]["code"] == "payload_too_large"
        assert big.pulled <= limit + 64 * 1024, (path, big.pulled)
        declared = await harness.client.post(
            path, content=b"{}", headers={**harness.auth(user), "Content-Length": str(limit + 1)}
        )
        assert declared.status_code == 413, (path, declared.status_code)


# ---------------------------------------------------------------- P7: what MCP says about database errors


@pytest.fixture(params=["sqlite", "postgres"])
def private_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database this test alone uses (it breaks it on purpose)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'private.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests skipped: TEST_DATABASE_URL is not set")
    with db.temporary_database(PG_URL, prefix="todo_agent_hole") as url:
        yield url


@pytest.mark.hole("P7")
async def test_mcp_never_returns_the_text_of_a_database_error(
    make_harness: Callable[..., Any], private_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    harness: Harness = await make_harness(database_url=private_database_url)
    user = new_user()
    with Session(harness.app.state.engine) as session:
        session.execute(text("DROP TABLE task"))  # every write now fails inside the database
        session.commit()
    with serve(harness.app) as base:
        async with mcp_client(base + "/mcp", harness.token(user)) as client:
            with caplog.at_level(logging.WARNING, logger="todo_agent.mcp"):
                result = await client.call_tool("add_task", {"title": "SECRET-TITLE-42"})
    shown = json.dumps(result.model_dump(mode="json"))
    assert result.is_error
    assert payload(result) == {
        "error": {"code": "database_unavailable", "message": "The database is unavailable; try again shortly."}
    }
    assert "SECRET-TITLE-42" not in shown and "SQL" not in shown and "task" not in shown.replace("add_task", "")
    assert any("add_task failed" in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------- P8: a refused start prints no secret


@pytest.mark.hole("P8")
def test_a_refused_production_start_names_the_setting_never_its_value(tmp_path: Path) -> None:
    secret_tail = "TAIL-OF-A-SECRET-7f3a"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_", "JWKS_", "BETTER_"))}
    env |= {"ENVIRONMENT": "production", "DATA_DIR": str(tmp_path), "BETTER_AUTH_SECRET": f"changeme-{secret_tail}"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "todo-agent"), "serve", "--port", "0"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "BETTER_AUTH_SECRET" in output
    assert secret_tail not in output and "changeme-" not in output
    assert "Traceback" not in output and "╭" not in output  # one clear line, not a traceback with locals


# ---------------------------------------------------------------- P9: readiness asks upstream at most every 5 s


@pytest.mark.hole("P9")
async def test_readiness_asks_the_model_endpoint_at_most_once_per_five_seconds(tmp_path: Path) -> None:
    model_app = create_scripted_app(reference_responder)
    with serve(model_app) as model_url:
        settings = make_settings(tmp_path, openai_base_url=f"{model_url}/v1")
        app = create_app(settings, migrate=True)
        clock = Clock()
        app.state.model_check.clock = clock
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            burst = await asyncio.gather(*(client.get("/health/ready") for _ in range(20)))
            for _ in range(10):
                await client.get("/health/ready")
            calls_in_window = model_app.state.model_list_calls
            clock.now += 5
            await client.get("/health/ready")
    assert {r.status_code for r in burst} == {200}
    assert calls_in_window == 1
    assert model_app.state.model_list_calls == 2


# ---------------------------------------------------------------- P10: the development playground and DNS rebinding


@pytest.mark.hole("P10")
async def test_the_development_playground_answers_only_its_own_host_names(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, playground_enabled=None)
    app = create_app(
        settings,
        model=build_model(settings, http_client=asgi_http_client(create_scripted_app(reference_responder))),
        migrate=True,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as client:
        own = await client.get("/playground/config")
        named = await client.get("/playground/config", headers={"Host": "localhost:8000"})
        rebound = await client.get("/playground/config", headers={"Host": "attacker.example"})
        api = await client.get("/health/live", headers={"Host": "attacker.example"})
    assert own.status_code == 200 and named.status_code == 200
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "forbidden"
    assert api.status_code == 200  # the API is behind tokens; the check is the playground's


# ---------------------------------------------------------------- P11: logs and limits


@pytest.mark.hole("P11")
async def test_failed_streamed_and_chatkit_turns_log_their_outcome(
    make_harness: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    harness: Harness = await make_harness(lambda request: Reply(status=500))
    user = new_user()
    with caplog.at_level(logging.INFO, logger="todo_agent.turn"):
        sse = await harness.client.post(
            f"/api/{user}/chat", json={"message": "hi"}, headers={**harness.auth(user), "Accept": "text/event-stream"}
        )
        chatkit = await harness.client.post("/chatkit", json=create_body("hi"), headers=harness.auth(user))
    turns = [r for r in caplog.records if r.name == "todo_agent.turn"]
    outcomes = {(r.fields["door"], r.fields["outcome"], r.levelname) for r in turns}  # type: ignore[attr-defined]
    assert sse.status_code == 200 and chatkit.status_code == 200  # streams: the failure is inside them
    assert ("sse", "model_error", "WARNING") in outcomes
    assert ("chatkit", "model_error", "WARNING") in outcomes


@pytest.mark.hole("P11")
async def test_writes_are_rate_limited_on_every_door(make_harness: Callable[..., Any]) -> None:
    harness: Harness = await make_harness(write_rate_limit_per_minute=3)
    user = new_user()
    rest = [
        (
            await harness.client.post(f"/api/{user}/tasks", json={"title": f"t{i}"}, headers=harness.auth(user))
        ).status_code
        for i in range(4)
    ]
    other = new_user()
    with serve(harness.app) as base:
        async with mcp_client(base + "/mcp", harness.token(other)) as client:
            mcp = [payload(await client.call_tool("add_task", {"title": f"m{i}"})) for i in range(4)]
            reads = payload(await client.call_tool("list_tasks", {}))
    third = new_user()
    thread = f"conv_{(await harness.chat(third, 'hello')).json()['conversation_id']}"
    chatkit = [
        (await harness.client.post("/chatkit", json=update_body(thread, f"title {i}"), headers=harness.auth(third)))
        for i in range(4)
    ]
    assert rest[:3] == [201] * 3 and rest[3] == 429
    assert [r.status_code for r in chatkit] == [200, 200, 200, 429]
    assert all("task_id" in result for result in mcp[:3])
    assert mcp[3]["error"]["code"] == "rate_limited"
    assert len(reads) == 3  # reads are not writes


@pytest.mark.hole("P11")
async def test_playground_errors_never_print_what_the_user_typed(
    make_harness: Callable[..., Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from gradio_client import Client

    from playground.door import launch
    from tests.test_playground import _context, _free_port

    harness: Harness = await make_harness(playground_enabled=True)
    ctx = _context(harness.settings, harness.app.state.chat, tmp_path)
    blocks = launch(harness.settings, port=_free_port(), block=False, context=ctx)
    errors = []
    try:
        client = Client(blocks.local_url, verbose=False)
        await asyncio.to_thread(client.predict, "private-input-91", "a prompt", api_name="/save_prompt")
        for name, args in (("/save_prompt", ("private-input-91", "a prompt")), ("/resume", ("PRIVATE-INPUT-92",))):
            try:
                await asyncio.to_thread(client.predict, *args, api_name=name)
            except Exception as exc:  # the page shows the error: that is the user's own text, for the user
                errors.append(str(exc))
    finally:
        blocks.close()
    captured = capfd.readouterr()
    assert len(errors) == 2, errors
    assert "private-input-91" not in captured.out + captured.err
    assert "PRIVATE-INPUT-92" not in captured.out + captured.err


# ---------------------------------------------------------------- identities and text


@pytest.mark.hole("identity")
async def test_unusable_user_ids_in_tokens_are_401_on_every_door(harness: Harness) -> None:
    with serve(harness.app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for sub in (" ", "\t", "x" * 129, "a\u200bb", True):
                statuses = await status_on_every_door(client, "x", bearer(hs256(sub)))
                assert set(statuses.values()) == {401}, (sub, statuses)


@pytest.mark.hole("identity")
async def test_a_message_of_invisible_characters_is_blank_on_every_door(harness: Harness) -> None:
    user = new_user()
    invisible = "\u200b\u200c\u2060\ufeff"
    json_turn = await harness.chat(user, invisible)
    sse = await harness.client.post(
        f"/api/{user}/chat", json={"message": invisible}, headers={**harness.auth(user), "Accept": "text/event-stream"}
    )
    chatkit = await harness.client.post("/chatkit", json=create_body(invisible), headers=harness.auth(user))
    assert (json_turn.status_code, sse.status_code, chatkit.status_code) == (422, 422, 422)


# ---------------------------------------------------------------- a stuck lease after a database failure


@pytest.mark.hole("stuck-lease")
async def test_a_lease_left_by_a_database_failure_is_released_when_the_database_is_back(
    make_harness: Callable[..., Any],
) -> None:
    from tests.pg_cluster import postgres_bin, throwaway_cluster

    if postgres_bin() is None:
        pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are not installed: this test needs them")
    with throwaway_cluster() as cluster:
        holds = [Hold()]
        harness: Harness = await make_harness(held_first_then_echo(list(holds)), database_url=cluster.url)
        user = new_user()
        conversation = (await harness.chat(user, "first")).json()["conversation_id"]
        turn = asyncio.create_task(harness.chat(user, "hold: the database goes away now", conversation))
        await reached(holds[0].entered)
        await asyncio.to_thread(cluster.stop)
        holds[0].release.set()
        failed = await turn
        await asyncio.to_thread(cluster.start)
        await asyncio.gather(*harness.app.state.chat.recovering)
        after = await harness.chat(user, "the first turn after the recovery", conversation)
    assert failed.status_code == 503
    assert after.status_code == 200, after.text


# ---------------------------------------------------------------- what production serves


@pytest.mark.hole("docs")
async def test_docs_schema_and_demo_are_off_in_production_unless_enabled(tmp_path: Path) -> None:
    async def paths(**overrides: Any) -> list[int]:
        settings = make_settings(tmp_path, **overrides)
        app = create_app(settings, model_check=None, migrate=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return [(await client.get(p)).status_code for p in ("/docs", "/openapi.json", "/chatkit/demo")]

    production = {"environment": "production", "better_auth_secret": REAL_SECRET}
    assert await paths() == [200, 200, 200]
    assert await paths(**production) == [404, 404, 404]
    assert await paths(**production, docs_enabled=True, chatkit_demo_enabled=True) == [200, 200, 200]
