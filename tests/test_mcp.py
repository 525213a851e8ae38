"""The MCP door: the official `mcp` client over streamable HTTP against the app under a live uvicorn (lifespan on)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from agents.mcp import MCPServerStreamableHttp
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from backend import tools
from backend.agent import SDK_TOOLS
from tests.conftest import TEST_SECRET, Harness, new_user
from tests.live_server import serve

# "legacy" is the 2025-11-25 initialize handshake over the stateless transport; "auto" negotiates 2026-07-28.
MODES = ["legacy", "auto"]


@pytest.fixture
async def app_harness(make_harness: Callable[..., Any], database_url: str) -> Harness:
    built: Harness = await make_harness(database_url=database_url)
    return built


@pytest.fixture
def mcp_url(app_harness: Harness) -> Iterator[str]:
    with serve(app_harness.app) as base:
        yield base + "/mcp"


@asynccontextmanager
async def mcp_client(url: str, token: str | None, *, mode: str = "legacy") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=15) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def payload(result: Any) -> Any:
    """A tool result as JSON, from the structured content (arrays come wrapped as `{"result": [...]}`)."""
    structured = result.structured_content
    return structured["result"] if isinstance(structured, dict) and set(structured) == {"result"} else structured


def text_payload(result: Any) -> Any:
    assert len(result.content) == 1 and result.content[0].type == "text"
    return json.loads(result.content[0].text)


@pytest.mark.parametrize("mode", MODES)
async def test_tools_are_the_agents_tools(app_harness: Harness, mcp_url: str, mode: str) -> None:
    async with mcp_client(mcp_url, app_harness.token(new_user()), mode=mode) as client:
        listed = (await client.list_tools()).tools
    assert [t.name for t in listed] == [t.name for t in tools.TOOLS] == [t.name for t in SDK_TOOLS]
    agent_tools = {t.name: t for t in SDK_TOOLS}
    for tool, definition in zip(listed, tools.TOOLS, strict=True):
        assert tool.description == definition.description == agent_tools[tool.name].description
        assert tool.input_schema == definition.parameters_schema() == agent_tools[tool.name].params_json_schema
        assert "user_id" not in tool.input_schema["properties"]


@pytest.mark.parametrize("mode", MODES)
async def test_each_tool_acts_for_the_token_user(app_harness: Harness, mcp_url: str, mode: str) -> None:
    user = new_user()
    async with mcp_client(mcp_url, app_harness.token(user), mode=mode) as client:
        added = await client.call_tool("add_task", {"title": "Buy groceries", "description": "milk"})
        assert not added.is_error
        created = payload(added)
        assert created == {"task_id": created["task_id"], "status": "created", "title": "Buy groceries"}
        assert text_payload(added) == created  # the JSON text the agent would see
        task_id = created["task_id"]
        other = payload(await client.call_tool("add_task", {"title": "Pay bills"}))

        listed = await client.call_tool("list_tasks", {"status": "pending"})
        assert not listed.is_error
        assert (
            payload(listed)
            == text_payload(listed)
            == [
                {"id": task_id, "title": "Buy groceries", "description": "milk", "completed": False},
                {"id": other["task_id"], "title": "Pay bills", "description": None, "completed": False},
            ]
        )

        updated = await client.call_tool("update_task", {"task_id": task_id, "title": "Buy food"})
        assert payload(updated) == {"task_id": task_id, "status": "updated", "title": "Buy food"}
        completed = await client.call_tool("complete_task", {"task_id": task_id})
        assert payload(completed) == {"task_id": task_id, "status": "completed", "title": "Buy food"}
        done = payload(await client.call_tool("list_tasks", {"status": "completed"}))
        assert [t["id"] for t in done] == [task_id]
        deleted = await client.call_tool("delete_task", {"task_id": other["task_id"]})
        assert payload(deleted) == {"task_id": other["task_id"], "status": "deleted", "title": "Pay bills"}
        everything = payload(await client.call_tool("list_tasks", {}))  # status defaults to all
        assert [(t["id"], t["completed"]) for t in everything] == [(task_id, True)]

        # Tool-level failures are results the model can read, flagged isError, not protocol errors.
        missing = await client.call_tool("complete_task", {"task_id": 999_999})
        assert missing.is_error and payload(missing)["error"]["code"] == "not_found"
        blank = await client.call_tool("add_task", {"title": ""})
        assert blank.is_error and payload(blank)["error"]["code"] == "invalid_arguments"

    # The same data through the contract's REST door, as the token's user.
    rest = await app_harness.client.get(f"/api/{user}/tasks", headers=app_harness.auth(user))
    assert [(t["id"], t["title"], t["completed"]) for t in rest.json()] == [(task_id, "Buy food", True)]


async def test_no_token_or_a_wrong_one_is_401(app_harness: Harness, mcp_url: str) -> None:
    list_request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {},
    }
    now = int(time.time())
    forged = jwt.encode({"sub": "someone", "exp": now + 600}, "not-the-secret-" + "y" * 40, algorithm="HS256")
    expired = jwt.encode({"sub": "someone", "exp": now - 600}, TEST_SECRET, "HS256")
    no_exp = jwt.encode({"sub": "someone"}, TEST_SECRET, algorithm="HS256")
    unsigned = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in ({"alg": "none", "typ": "JWT"}, {"sub": "someone", "exp": now + 600})
        )
        + "."
    )
    cases: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {no_exp}"},
        {"Authorization": f"Bearer {unsigned}"},
    ]
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=15) as http:
        for headers in cases:
            response = await http.post(mcp_url, json=list_request, headers={**accept, **headers})
            assert response.status_code == 401, headers
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        # A good token gets through to the MCP transport.
        ok = await http.post(
            mcp_url, json=list_request, headers={**accept, "Authorization": f"Bearer {app_harness.token('u')}"}
        )
        assert ok.status_code == 200
        assert [t["name"] for t in ok.json()["result"]["tools"]] == [t.name for t in tools.TOOLS]

    for token in (None, forged):
        with pytest.raises(Exception):  # noqa: B017 - the SDK surfaces the 401 as its own error type
            async with mcp_client(mcp_url, token) as client:
                await client.list_tools()


async def test_users_cannot_see_or_change_each_others_tasks(app_harness: Harness, mcp_url: str) -> None:
    alice, bob = new_user(), new_user()
    async with mcp_client(mcp_url, app_harness.token(alice)) as as_alice:
        secret = payload(await as_alice.call_tool("add_task", {"title": "Alice's secret"}))["task_id"]
    async with mcp_client(mcp_url, app_harness.token(bob), mode="auto") as as_bob:
        assert payload(await as_bob.call_tool("list_tasks", {"status": "all"})) == []
        for name, args in [
            ("complete_task", {"task_id": secret}),
            ("update_task", {"task_id": secret, "title": "pwned"}),
            ("delete_task", {"task_id": secret}),
        ]:
            result = await as_bob.call_tool(name, args)
            assert result.is_error and payload(result)["error"]["code"] == "not_found", name
        # The model-visible schema has no user_id; one smuggled into the arguments is ignored.
        smuggled = await as_bob.call_tool("list_tasks", {"status": "all", "user_id": alice})
        assert payload(smuggled) == []
    async with mcp_client(mcp_url, app_harness.token(alice)) as as_alice:
        mine = payload(await as_alice.call_tool("list_tasks", {}))
    assert mine == [{"id": secret, "title": "Alice's secret", "description": None, "completed": False}]


async def test_concurrent_callers_each_act_as_themselves(app_harness: Harness, mcp_url: str) -> None:
    """The user travels per request: many users at once never see each other's rows."""
    users = [new_user() for _ in range(8)]

    async def session(user: str) -> list[str]:
        async with mcp_client(mcp_url, app_harness.token(user)) as client:
            await asyncio.gather(*(client.call_tool("add_task", {"title": f"{user} #{i}"}) for i in range(3)))
            return [t["title"] for t in payload(await client.call_tool("list_tasks", {}))]

    results = await asyncio.gather(*(session(user) for user in users))
    for user, titles in zip(users, results, strict=True):
        assert sorted(titles) == [f"{user} #{i}" for i in range(3)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_openai_agents_sdk_client(app_harness: Harness, mcp_url: str) -> None:
    """What docs/mcp.md tells users to do: the Agents SDK's MCPServerStreamableHttp with an Authorization header."""
    user = new_user()
    params = {"url": mcp_url, "headers": {"Authorization": f"Bearer {app_harness.token(user)}"}}
    async with MCPServerStreamableHttp(params=params, cache_tools_list=True) as server:  # type: ignore[arg-type]
        assert [t.name for t in await server.list_tools()] == [t.name for t in tools.TOOLS]
        result = await server.call_tool("add_task", {"title": "From an agent"})
    assert payload(result)["status"] == "created"
    rest = await app_harness.client.get(f"/api/{user}/tasks", headers=app_harness.auth(user))
    assert [t["title"] for t in rest.json()] == ["From an agent"]
