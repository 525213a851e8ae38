"""The analysis notebooks: committed without outputs, and every cell runs headlessly (nbclient) against fresh eval
runs of the scripted model — a failing cell fails the test. CI runs the same notebooks with `jupyter execute`."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from backend.settings import DEFAULT_PROMPT_FILE
from evals.dataset import PROJECT_ROOT
from evals.suite import run_evals
from tests.evals_support import delete_instead_of_complete, scripted_config

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
TAGS = ["complete", "smoke"]  # small: the runs take about a second each


def test_the_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"eval_analysis.ipynb", "prompt_comparison.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        i
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing"


@pytest.fixture(scope="module")
async def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Run A: the reference agent with the default prompt; run B: another prompt and a planted regression."""
    tmp = tmp_path_factory.mktemp("notebook-runs")
    prompt = tmp / "system_v2.md"
    prompt.write_text(DEFAULT_PROMPT_FILE.read_text(encoding="utf-8") + "\nBe brief.\n", encoding="utf-8")
    a = await run_evals(scripted_config(tmp / "a", tags=TAGS, trials=2))
    b = await run_evals(scripted_config(tmp / "b", delete_instead_of_complete(), tags=TAGS, trials=2, prompt=prompt))
    paths = tmp / "a" / "results.json", tmp / "b" / "results.json"
    a.save(paths[0])
    b.save(paths[1])
    return paths


def execute(path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    return notebook


def _text(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(
        str(output.get("data", {}).get("text/plain", output.get("text", "")))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def _images(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def test_eval_analysis_runs_end_to_end(
    two_runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figure = tmp_path / "eval-analysis.png"
    monkeypatch.setenv("EVAL_BASELINE", str(two_runs[0]))
    monkeypatch.setenv("EVAL_RESULTS", str(two_runs[1]))
    monkeypatch.setenv("EVAL_FIGURE", str(figure))
    monkeypatch.setenv("EVAL_EXTRA", "evals/baselines/local.json")  # relative: from the project root
    notebook = execute(PROJECT_ROOT / "notebooks" / "eval_analysis.ipynb")
    text = _text(notebook)
    assert "ref-complete-by-id" in text and "regression" in text  # the planted regression is listed
    assert "extra 1" in text and "qwen2.5" in text  # a third run, named relative to the project root
    assert _images(notebook) >= 3
    assert figure.stat().st_size > 10_000


def test_prompt_comparison_runs_end_to_end(two_runs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVAL_PROMPT_A", str(two_runs[0]))
    monkeypatch.setenv("EVAL_PROMPT_B", str(two_runs[1]))
    notebook = execute(PROJECT_ROOT / "notebooks" / "prompt_comparison.ipynb")
    text = _text(notebook)
    assert "'two prompts'" in text
    assert "worse" in text and "ref-complete-by-id" in text
    assert _images(notebook) >= 1


def test_a_failing_cell_fails_the_run(tmp_path: Path) -> None:
    broken = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('boom')")])
    path = tmp_path / "broken.ipynb"
    nbformat.write(broken, path)
    with pytest.raises(CellExecutionError, match="boom"):
        execute(path)
