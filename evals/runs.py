"""Saved eval runs: every run, from the CLI or the playground, is a folder under `RUNS_DIR` (default
`DATA_DIR/runs`).

`<run-id>/results.json` is the whole results document (transcripts, scores, the prompt text, model, options, dataset
fingerprint); `<run-id>/summary.json` is its `info` and `metrics` alone, so a list of many runs reads kilobytes, not
every transcript. `eval compare`, `eval runs`, the notebooks and the playground all read these files.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.settings import Settings, get_settings
from evals.results import RunResult

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
RESULTS_FILE, SUMMARY_FILE = "results.json", "summary.json"


class UnknownRun(LookupError):
    """No saved run has this id (or the id is not one a run can have)."""


@dataclass(frozen=True)
class SavedRun:
    """One line of the runs list: what a run was, without its transcripts."""

    run_id: str
    started_at: str
    status: str
    label: str | None
    model: str | None
    prompt_version: str | None
    tags: list[str]
    cases: int | None
    passing: int | None
    pass_rate: float | None
    wall_seconds: float | None
    path: Path

    @classmethod
    def from_summary(cls, data: dict[str, Any], path: Path) -> SavedRun:
        info, metrics = data.get("info") or {}, data.get("metrics") or {}
        target, dataset = info.get("target") or {}, info.get("dataset") or {}
        return cls(
            run_id=str(info.get("run_id") or path.parent.name),
            started_at=str(info.get("started_at") or ""),
            status=str(info.get("status") or "complete"),
            label=info.get("label"),
            model=target.get("model"),
            prompt_version=target.get("prompt_version"),
            tags=list(dataset.get("tags") or []),
            cases=metrics.get("cases"),
            passing=metrics.get("cases_passing_all_trials"),
            pass_rate=metrics.get("case_pass_rate"),
            wall_seconds=info.get("wall_seconds"),
            path=path.parent / RESULTS_FILE,
        )


def runs_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).resolved_runs_dir


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def default(cls, settings: Settings | None = None) -> RunStore:
        return cls(runs_dir(settings))

    def folder(self, run_id: str) -> Path:
        """The run's folder; refuses anything that is not a run id (a path, `..`), so no id reaches outside."""
        if not RUN_ID.fullmatch(run_id) or run_id.strip(".") == "":
            raise UnknownRun(f"{run_id!r} is not a run id")
        return self.root / run_id

    def save(self, result: RunResult) -> Path:
        """Write the run (replacing an earlier save of the same id); returns its results file."""
        folder = self.folder(result.info.run_id)
        result.save(folder / RESULTS_FILE)
        summary = {"info": result.info.model_dump(mode="json"), "metrics": result.metrics}
        (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        return folder / RESULTS_FILE

    def list(self) -> list[SavedRun]:
        """Every saved run, newest first; a folder with an unreadable summary is skipped."""
        found = []
        for path in self.root.glob(f"*/{SUMMARY_FILE}") if self.root.is_dir() else []:
            try:
                found.append(SavedRun.from_summary(json.loads(path.read_text(encoding="utf-8")), path))
            except (OSError, ValueError):
                continue
        return sorted(found, key=lambda run: (run.started_at, run.run_id), reverse=True)

    def path(self, run_id: str) -> Path:
        path = self.folder(run_id) / RESULTS_FILE
        if not path.is_file():
            raise UnknownRun(f"no saved run {run_id!r} in {self.root}")
        return path

    def load(self, run_id: str) -> RunResult:
        return RunResult.load(self.path(run_id))

    def delete(self, run_id: str) -> None:
        self.path(run_id)  # refuses an id that is no saved run
        shutil.rmtree(self.folder(run_id))


def resolve_results(value: str | Path, store: RunStore | None = None) -> Path:
    """A results file named by its path, its folder, or a saved run's id."""
    path = Path(value)
    if path.is_file():
        return path
    if path.is_dir() and (path / RESULTS_FILE).is_file():
        return path / RESULTS_FILE
    try:
        return (store or RunStore.default()).path(str(value))
    except UnknownRun:
        return path  # not a run id either: the caller's load names the missing file
