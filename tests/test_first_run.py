"""What a newcomer meets first: `todo-agent serve` says where everything answers once it does, and the local model
server, which outlives the API server, can be seen and stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from backend.settings import get_settings
from tests.conftest import TEST_SECRET
from todo_agent.cli import app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "BETTER_AUTH_SECRET": TEST_SECRET,
        "AGENT_MODEL": "hosted-model",  # no local model to start: the server itself is what is tested
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENAI_API_KEY": "unused",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "todo_agent", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_prints_every_url_once_it_answers(served: tuple[subprocess.Popen[str], int]) -> None:
    process, port = served
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:  # blocks until the server prints; ends if it exits
        lines.append(line.rstrip())
        if line.startswith("todo-agent ready:"):
            break
    assert lines and lines[-1] == "todo-agent ready:", lines
    urls = {}
    for line in process.stdout:
        if not line.startswith("  "):
            break
        name, url = line.strip().rsplit(" ", 1)
        urls[name.strip()] = url
        if name.strip() == "MCP":
            break
    assert set(urls) == {"API", "API docs", "playground", "ChatKit", "MCP"}
    assert urls["API"] == f"http://127.0.0.1:{port}/api/{{user_id}}/chat"
    with httpx.Client(timeout=30) as client:  # printed once ready: each answers right away, no retry
        assert client.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
        for name in ("API docs", "playground", "ChatKit"):
            assert client.get(urls[name], follow_redirects=True).status_code == 200, name


FAKE_MODEL_SERVER = """
import http.server, json, os, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "model": "fake", "pid": os.getpid(), "slots": 1,
                           "load_seconds": 1.5}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health)
print("listening", flush=True)
server.serve_forever()
"""


def test_model_status_and_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model server is a process of its own that outlives the command that started it; `model status` finds it
    through its /health (which names its pid) and `model stop` ends it."""
    port = free_port()
    monkeypatch.setenv("LOCAL_MODEL_PORT", str(port))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BETTER_AUTH_SECRET", TEST_SECRET)
    get_settings.cache_clear()
    runner = CliRunner()
    down = runner.invoke(app, ["model", "status"])
    assert down.exit_code == 1 and f"no local model server answers on 127.0.0.1:{port}" in down.output
    fake = subprocess.Popen([sys.executable, "-c", FAKE_MODEL_SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "listening"
        up = runner.invoke(app, ["model", "status"])
        assert up.exit_code == 0 and f"pid {fake.pid}" in up.output and "MiB resident" in up.output, up.output
        stopped = runner.invoke(app, ["model", "stop"])
        assert stopped.exit_code == 0 and "stopped the local model server" in stopped.output
        assert fake.wait(timeout=15) is not None
        again = runner.invoke(app, ["model", "stop"])
        assert again.exit_code == 0 and "no local model server was running" in again.output
    finally:
        if fake.poll() is None:
            fake.kill()


def test_the_tests_find_the_machines_postgresql_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import LOCAL_PG_URL, postgres_url_for_tests

    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    assert postgres_url_for_tests() == LOCAL_PG_URL  # this machine kind runs PostgreSQL on 127.0.0.1:5432
    assert postgres_url_for_tests(f"postgresql://postgres@127.0.0.1:{free_port()}/test") is None  # nothing there
    monkeypatch.setenv("TEST_DATABASE_URL", "")
    assert postgres_url_for_tests() is None  # explicitly SQLite only
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://elsewhere/db")
    assert postgres_url_for_tests() == "postgresql://elsewhere/db"
