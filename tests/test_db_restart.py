"""Faults the service must ride out without a restart: the database going away and coming back (a throwaway cluster
this file creates with initdb, never the shared server), and the model endpoint dropping connections mid-request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from backend import crud, db
from backend.main import create_app
from evals.scripted_model import Reply, last_user_text
from tests.conftest import Harness, make_settings, new_user
from tests.pg_cluster import ThrowawayCluster, postgres_bin, throwaway_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    if postgres_bin() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not installed")
    with throwaway_cluster() as started:
        yield started


@pytest.fixture
def running_cluster(cluster: ThrowawayCluster) -> ThrowawayCluster:
    """The cluster, up (a failed test may have left it stopped)."""
    if not cluster.running():
        cluster.start()
    return cluster


def echo(request: dict[str, Any]) -> Reply:
    return Reply(text=f"echo: {last_user_text(request)}")


def stored(harness: Harness, conversation_id: int) -> list[tuple[str, str]]:
    with Session(harness.app.state.engine) as session:
        return [(m.role, m.content) for m in crud.list_messages(session, conversation_id=conversation_id)]


def assert_plain_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "error": {"code": "database_unavailable", "message": "The database is unavailable; try again shortly."}
    }
    assert "Traceback" not in response.text and "psycopg" not in response.text


async def test_database_outage_is_503_then_the_service_recovers_without_a_restart(
    make_harness: Callable[..., Any], running_cluster: ThrowawayCluster
) -> None:
    harness: Harness = await make_harness(echo, database_url=running_cluster.url)
    user = new_user()
    first = await harness.chat(user, "before the outage")
    assert first.status_code == 200
    conversation_id = first.json()["conversation_id"]
    created = await harness.client.post(f"/api/{user}/tasks", json={"title": "survive"}, headers=harness.auth(user))
    assert created.status_code == 201

    running_cluster.stop()
    try:
        assert_plain_503(await harness.chat(user, "during the outage", conversation_id))
        assert_plain_503(await harness.chat(user, "a new conversation"))
        assert_plain_503(await harness.client.get(f"/api/{user}/tasks", headers=harness.auth(user)))
        assert_plain_503(
            await harness.client.get(f"/api/{user}/conversations/{conversation_id}", headers=harness.auth(user))
        )
        ready = await harness.client.get("/health/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["error"]["code"] == "not_ready" and "database" in body["error"]["message"]
        assert body["error"]["details"]["checks"] == {"database": "unavailable", "model": "ok"}
        assert (await harness.client.get("/health/live")).status_code == 200  # the process is fine
        streamed = await harness.client.post(
            f"/api/{user}/chat",
            json={"message": "streamed during the outage", "conversation_id": conversation_id},
            headers={**harness.auth(user), "Accept": "text/event-stream"},
        )
        assert_plain_503(streamed)  # refused before the stream starts
    finally:
        running_cluster.start()

    # Same app, same engine: pool_pre_ping replaces the dead connections.
    assert (await harness.client.get("/health/ready")).status_code == 200
    tasks = await harness.client.get(f"/api/{user}/tasks", headers=harness.auth(user))
    assert tasks.status_code == 200 and [t["title"] for t in tasks.json()] == ["survive"]
    after = await harness.chat(user, "after the outage", conversation_id)
    assert after.status_code == 200, after.text
    assert stored(harness, conversation_id) == [
        ("user", "before the outage"),
        ("assistant", "echo: before the outage"),
        ("user", "after the outage"),
        ("assistant", "echo: after the outage"),
    ]


async def test_a_turn_survives_a_database_restart_while_the_model_thinks(
    make_harness: Callable[..., Any], running_cluster: ThrowawayCluster
) -> None:
    """The user message is stored, the database restarts during the model call, the reply is still stored."""
    thinking = asyncio.Event()

    def slow_echo(request: dict[str, Any]) -> Reply:
        thinking.set()
        return Reply(text=f"echo: {last_user_text(request)}", delay=3.0)

    harness: Harness = await make_harness(slow_echo, database_url=running_cluster.url)
    user = new_user()
    turn = asyncio.create_task(harness.chat(user, "restart under me"))
    await asyncio.wait_for(thinking.wait(), 10)
    await asyncio.to_thread(running_cluster.stop)
    await asyncio.to_thread(running_cluster.start)
    response = await turn
    assert response.status_code == 200, response.text
    conversation_id = response.json()["conversation_id"]
    assert stored(harness, conversation_id) == [("user", "restart under me"), ("assistant", "echo: restart under me")]
    # The lease was released: the next turn on the conversation runs.
    thinking.clear()
    assert (await harness.chat(user, "and again", conversation_id)).status_code == 200


async def test_database_down_when_the_reply_is_stored_is_503_and_the_user_message_is_kept(
    make_harness: Callable[..., Any], running_cluster: ThrowawayCluster
) -> None:
    thinking = asyncio.Event()

    def slow_echo(request: dict[str, Any]) -> Reply:
        thinking.set()
        return Reply(text="too late", delay=1.0)

    harness: Harness = await make_harness(slow_echo, database_url=running_cluster.url)
    user = new_user()
    turn = asyncio.create_task(harness.chat(user, "kept"))
    await asyncio.wait_for(thinking.wait(), 10)
    await asyncio.to_thread(running_cluster.stop)
    try:
        assert_plain_503(await turn)
    finally:
        running_cluster.start()
    with Session(harness.app.state.engine) as session:
        conversations = crud.list_conversations(session, user_id=user)
        assert len(conversations) == 1 and conversations[0].id is not None
        messages = crud.list_messages(session, conversation_id=conversations[0].id)
    assert [(m.role, m.content) for m in messages] == [("user", "kept")]


# ---------------------------------------------------------------- the model endpoint hanging up


class HangingUpModel:
    """An OpenAI-compatible address whose server reads the request and then closes the socket.

    `partial`: it first sends the status line and half a body, then closes (a proxy dying mid-response).
    """

    def __init__(self, *, partial: bool) -> None:
        self.partial = partial
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.partial:
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"id":')
                await writer.drain()
        writer.transport.abort()  # no FIN handshake niceties: the connection just dies

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("partial", [False, True], ids=["closed-before-answer", "closed-mid-answer"])
async def test_model_connection_dropped_mid_request_is_502_and_the_message_kept(
    tmp_path: Any, database_url: str, partial: bool
) -> None:
    async with HangingUpModel(partial=partial) as base_url:
        settings = make_settings(tmp_path, database_url, openai_base_url=base_url)

        async def model_ok() -> bool:
            return True

        app = create_app(settings, model_check=model_ok, migrate=False)  # the real OpenAI client, over a socket
        db.upgrade(app.state.engine)
        harness = Harness(
            app,
            app,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver"),
            settings,
        )
        try:
            user = new_user()
            response = await harness.chat(user, "are you there?")
            assert response.status_code == 502, response.text
            error = response.json()["error"]
            assert error["code"] == "model_error" and "Traceback" not in response.text
            conversation_id = error["details"]["conversation_id"]
            assert stored(harness, conversation_id) == [("user", "are you there?")]
            # The lease is released: the next turn is tried (and fails the same way), not refused with a 409.
            again = await harness.chat(user, "still there?", conversation_id)
            assert again.status_code == 502
            assert stored(harness, conversation_id) == [("user", "are you there?"), ("user", "still there?")]
        finally:
            await harness.client.aclose()
            app.state.engine.dispose()
