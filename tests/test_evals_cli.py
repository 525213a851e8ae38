"""`todo-agent eval ...` end to end with the scripted model: files written, exit codes as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.settings import get_settings
from evals.compare import ExitCode
from evals.results import RunResult
from todo_agent.cli import app


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BETTER_AUTH_SECRET", "x" * 48)
    monkeypatch.chdir(tmp_path)  # no .env here
    get_settings.cache_clear()


runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["eval", *args])
    return result.exit_code, result.output


def test_run_writes_results_and_reports_and_passes_against_its_own_baseline(tmp_path: Path) -> None:
    out = tmp_path / "first"
    code, output = invoke("run", "--model", "scripted", "--tags", "smoke", "--out", str(out), "--no-deepeval")
    assert code == ExitCode.OK, output
    assert {p.name for p in out.iterdir()} == {"results.json", "report.md", "report.html", "junit.xml"}
    assert "## Metrics" in output
    code, output = invoke("run", "--model", "scripted", "--tags", "smoke", "--baseline", str(out / "results.json"),
                          "--min-pass", "0.9", "--out", str(tmp_path / "second"), "--quiet", "--no-deepeval")  # fmt: skip
    assert code == ExitCode.OK, output
    code, output = invoke("compare", str(out / "results.json"), str(tmp_path / "second" / "results.json"))
    assert code == ExitCode.OK and "### Regressions (0)" in output


def test_compare_exits_1_on_a_regression_and_names_it(tmp_path: Path) -> None:
    code, _ = invoke("run", "--model", "scripted", "--ids", "ref-complete-by-id,chat-hello", "--out", str(tmp_path / "a"),
                     "--quiet", "--no-deepeval")  # fmt: skip
    assert code == ExitCode.OK
    broken = RunResult.load(tmp_path / "a" / "results.json")
    trial = next(t for t in broken.trials if t.case_id == "ref-complete-by-id")
    trial.score.passed = False
    broken.save(tmp_path / "b.json")
    code, output = invoke("compare", str(tmp_path / "a" / "results.json"), str(tmp_path / "b.json"))
    assert code == ExitCode.REGRESSION
    assert "#### `ref-complete-by-id`" in output and "**FAILED** (exit 1)" in output


def test_min_pass_exit_code(tmp_path: Path) -> None:
    code, output = invoke("run", "--model", "scripted", "--ids", "ambiguous-then-clarified", "--min-pass", "0.5",
                          "--out", str(tmp_path), "--quiet", "--no-deepeval")  # fmt: skip
    assert code == ExitCode.BELOW_MIN_PASS, output


def test_strict_replay_miss_exits_5(tmp_path: Path) -> None:
    code, output = invoke("run", "--model", "scripted", "--ids", "chat-hello", "--cache", "replay", "--cache-file",
                          str(tmp_path / "empty.jsonl"), "--out", str(tmp_path), "--quiet", "--no-deepeval")  # fmt: skip
    assert code == ExitCode.RUN_FAILED, output


@pytest.mark.parametrize(
    "args",
    [
        ["--url", "http://localhost:1", "--prompt", "x.md", "--token-secret", "s"],  # refused with --url
        ["--url", "http://localhost:1", "--model", "local", "--token-secret", "s"],
        ["--url", "http://localhost:1"],  # no way to authenticate
        ["--cache", "sometimes"],
    ],
)
def test_refused_option_combinations_exit_2(args: list[str]) -> None:
    code, _ = invoke("run", *args)
    assert code == ExitCode.USAGE


def test_invalid_dataset_exits_4_naming_the_case(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ncases:\n  - id: oops\n    tags: [x]\n    turns: [{user: hi, calls: [{tool: nope}]}]\n")
    code, output = invoke("run", "--model", "scripted", "--dataset", str(bad))
    assert code == ExitCode.DATASET_INVALID
    assert "case 'oops'" in output and "turns[0].calls[0].tool" in output
    code, output = invoke("validate", str(bad))
    assert code == ExitCode.DATASET_INVALID


def test_schema_check_and_baseline_promotion(tmp_path: Path) -> None:
    code, _ = invoke("schema", "--check")
    assert code == 0
    code, _ = invoke("run", "--model", "scripted", "--ids", "chat-hello", "--out", str(tmp_path / "r"), "--quiet",
                     "--no-deepeval")  # fmt: skip
    target = tmp_path / "baselines" / "local.json"
    code, _ = invoke("baseline", "--from", str(tmp_path / "r" / "results.json"), "--to", str(target))
    assert code == 0 and json.loads(target.read_text())["trials"][0]["case_id"] == "chat-hello"
