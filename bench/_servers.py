"""Start the backend and a scripted model server under uvicorn on loopback, for benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BENCH_SECRET = "bench-secret-" + "b" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


@contextlib.contextmanager
def uvicorn_process(app: str, port: int, env: dict[str, str] | None = None, workers: int = 1) -> Iterator[None]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(command, env={**os.environ, **(env or {})})
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def backend_with_scripted_model(
    data_dir: Path,
    *,
    model_app: str = "evals.reference_agent:reference_app",
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield the backend's base URL and its environment (DATABASE_URL etc.)."""
    model_port, api_port = free_port(), free_port()
    env = {
        "ENVIRONMENT": "development",
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'bench.db'}",
        "AGENT_MODEL": "scripted",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{model_port}/v1",
        "OPENAI_API_KEY": "bench",
        "BETTER_AUTH_SECRET": BENCH_SECRET,
        "RATE_LIMIT_PER_MINUTE": "1000000",  # measuring the turn, not the limiter
        **(extra_env or {}),
    }
    with uvicorn_process(model_app, model_port):
        wait_until_up(f"http://127.0.0.1:{model_port}/v1/models")
        with uvicorn_process("todo_agent.app:create_app", api_port, env, workers=workers):
            wait_until_up(f"http://127.0.0.1:{api_port}/health/live")
            yield f"http://127.0.0.1:{api_port}", env
