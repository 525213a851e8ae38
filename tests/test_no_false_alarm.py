"""The gate never cries wolf: the unchanged agent, rerun live on the local model with the default options against the
committed baseline while other processes load both cores, is never reported as a regression. Flips are flaky and
errors inconclusive; a FAILED verdict here would be a false alarm.

Slow (the real local model, three live runs of the smoke tag): marked `llm`, run by `make test-llm`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.settings import Settings
from evals.results import RunResult

pytestmark = pytest.mark.llm

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "evals" / "baselines" / "local.json"
RUNS = 3


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """A process per core spinning at the same priority as the run: the model and the runner get about half of
    the machine each, as on a shared CI runner."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_the_unchanged_agent_passes_its_baseline_on_a_busy_machine(
    local_model_settings: Settings, busy_machine: None, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATA_DIR": str(local_model_settings.data_dir.resolve()),
        "LOCAL_MODEL_PORT": str(local_model_settings.local_model_port),
    }
    env.pop("AGENT_MODEL", None)  # the default agent: the local model and the default prompt
    env.pop("SYSTEM_PROMPT_FILE", None)
    verdicts = []
    for run in range(1, RUNS + 1):
        out = tmp_path / f"run{run}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "todo_agent",
                "eval",
                "run",
                "--tags",
                "smoke",
                "--baseline",
                str(BASELINE),
                "--out",
                str(out),
                "--quiet",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=1800,
        )
        line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        verdicts.append(line)
        print(f"run {run}: exit {done.returncode}: {line}")  # the figures the note quotes (pytest -s)
        assert line.startswith("GATE "), done.stdout[-2000:] + done.stderr[-2000:]
        assert not line.startswith("GATE FAILED"), f"a false alarm: {line}\n{done.stderr[-3000:]}"
        assert done.returncode in (0, 6)
        result = RunResult.load(out / "results.json")
        assert result.info.options["concurrency"] == local_model_settings.local_model_slots  # the default fits it
    assert len(verdicts) == RUNS
