"""`pip install .` with no extras is the API server alone: a fresh venv of at most 200 MB, none of the playground,
eval or local-model stacks in it, and its `todo-agent serve` serves a turn against an OpenAI-compatible endpoint.

It builds the wheel and installs it into a new venv (packages from PyPI, through pip's cache): about a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from evals.reference_agent import reference_responder
from evals.scripted_model import create_scripted_app
from tests.conftest import TEST_SECRET
from tests.live_server import serve
from tests.test_first_run import free_port

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB = 200
HEAVY = ("gradio", "deepeval", "pandas", "matplotlib", "xllamacpp", "jupyter", "jupyterlab", "notebook", "ipykernel")


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


@pytest.fixture(scope="module")
def slim_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("slim") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    build = tmp_path_factory.mktemp("build")
    subprocess.run([*pip, "install", "-c", str(ROOT / "requirements.lock"), f"{ROOT}"], check=True, cwd=build,
                   env={**os.environ, "PIP_NO_INPUT": "1"}, timeout=900)  # fmt: skip
    return venv


def test_the_slim_install_is_the_api_alone(slim_venv: Path) -> None:
    listed = subprocess.run(
        [str(slim_venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, check=True,
    ).stdout.lower()  # fmt: skip
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert not [name for name in HEAVY if name in names], sorted(names)
    size = _size_mb(slim_venv)
    print(f"slim venv: {size:.0f} MB, {len(names)} packages")
    assert size <= LIMIT_MB, f"{size:.0f} MB"
    site = next((slim_venv / "lib").glob("python3*/site-packages"))
    assert not (site / "playground" / "screenshots.py").exists()  # tooling stays out of the wheel
    assert (site / "backend" / "prompts" / "system_v2.md").is_file()  # what the API needs ships as package data


def test_the_slim_install_serves_a_turn(slim_venv: Path, tmp_path: Path) -> None:
    port = free_port()
    with serve(create_scripted_app(reference_responder)) as model_url:
        env = {
            "PATH": f"{slim_venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "DATA_DIR": str(tmp_path / "data"),
            "BETTER_AUTH_SECRET": TEST_SECRET,
            "AGENT_MODEL": "scripted",  # any OpenAI-compatible model name
            "OPENAI_BASE_URL": f"{model_url}/v1",
            "OPENAI_API_KEY": "unused",
        }
        token = subprocess.run(
            [str(slim_venv / "bin" / "todo-agent"), "token", "alice"], env=env, capture_output=True, text=True,
            check=True, cwd=tmp_path,
        ).stdout.strip()  # fmt: skip
        server = subprocess.Popen(
            [str(slim_venv / "bin" / "todo-agent"), "serve", "--port", str(port)],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            seen: list[str] = []
            for line in server.stdout:
                seen.append(line.rstrip())
                if line.startswith("todo-agent ready:"):
                    break
            assert seen and seen[-1] == "todo-agent ready:", "\n".join(seen)
            assert any("playground off" in line for line in seen), "\n".join(seen)  # said once, in one line
            headers = {"Authorization": f"Bearer {token}"}
            reply = httpx.post(f"http://127.0.0.1:{port}/api/alice/chat", json={"message": "Add a task to buy milk"},
                               headers=headers, timeout=60)  # fmt: skip
            assert reply.status_code == 200, reply.text
            assert [call["name"] for call in reply.json()["tool_calls"]] == ["add_task"]
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert 'todo_agent_turns_total{door="json",outcome="ok"} 1.0' in metrics
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_without_the_local_extra_the_local_model_is_refused_in_one_line(slim_venv: Path, tmp_path: Path) -> None:
    """The default AGENT_MODEL is the bundled model: the slim install has neither its runtime nor its weights, so
    serve says so in one line and serves the API anyway; production refuses to start on it."""
    env = {"PATH": f"{slim_venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "DATA_DIR": str(tmp_path / "data"),
           "BETTER_AUTH_SECRET": TEST_SECRET}  # fmt: skip
    server = subprocess.Popen(
        [str(slim_venv / "bin" / "todo-agent"), "serve", "--port", str(free_port())],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        seen = []
        for line in server.stdout:
            seen.append(line.rstrip())
            if line.startswith("todo-agent ready:"):
                break
        refusals = [line for line in seen if line.startswith("local model off:")]
        assert len(refusals) == 1 and "pip install 'todo-agent[local]'" in refusals[0], "\n".join(seen)
    finally:
        server.terminate()
        server.wait(timeout=30)
    production = subprocess.run(
        [str(slim_venv / "bin" / "todo-agent"), "serve"], env={**env, "ENVIRONMENT": "production"}, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert production.returncode == 2 and "AGENT_MODEL=local in production" in production.stdout + production.stderr
