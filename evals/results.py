"""The results file: everything a run observed and concluded, in one JSON document.

It holds every trial's transcript (turns, calls, replies, task lists) and score, the suite metrics, and what was
measured: target, model, prompt hash, dataset fingerprint, options, cache statistics and package versions. A
baseline is just a results file that was committed on purpose.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from evals.scoring import TrialScore
from evals.transcript import Transcript

# 2: a trial score's metric counters sit in `tallies` (version 1 files are read and upgraded).
RESULTS_SCHEMA_VERSION = 2
# `cancelled`: stopped before every selected case ran (the trials that finished are kept); a gate never trusts it.
RunStatus = Literal["complete", "cancelled"]
_TALLY_FIELDS = ("name_slots", "name_correct", "args_checked", "args_correct", "state_checks", "state_correct")
_PACKAGES = ("todo-agent", "openai-agents", "openai", "deepeval", "fastapi", "pydantic", "xllamacpp")


class TrialResult(BaseModel):
    case_id: str
    trial: int
    tags: list[str]
    case_fingerprint: str
    transcript: Transcript
    score: TrialScore

    @property
    def passed(self) -> bool:
        return self.score.passed


class RunInfo(BaseModel):
    run_id: str
    started_at: str
    finished_at: str | None = None
    wall_seconds: float | None = None
    startup_seconds: float | None = None  # worker processes, the app, databases: before the first case
    run_seconds: float | None = None  # the cases themselves: wall time less startup and teardown
    target: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    cache: dict[str, Any] | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)
    status: RunStatus = "complete"
    label: str | None = None  # a name given to the run (a matrix cell: "prompt × model")
    prompt_text: str | None = None  # the system prompt the agent ran with (in-process runs)


class RunResult(BaseModel):
    schema_version: int = RESULTS_SCHEMA_VERSION
    info: RunInfo
    metrics: dict[str, Any] = Field(default_factory=dict)
    deepeval: dict[str, Any] | None = None
    trials: list[TrialResult] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Read a version 1 file: its counters lived on the score itself."""
        if isinstance(data, dict) and data.get("schema_version", 1) == 1:
            for trial in data.get("trials") or []:
                score = trial.get("score") if isinstance(trial, dict) else None
                if isinstance(score, dict) and "tallies" not in score:
                    score["tallies"] = {name: score.pop(name, 0) for name in _TALLY_FIELDS}
            data["schema_version"] = RESULTS_SCHEMA_VERSION
        return data

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> RunResult:
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"{path}: cannot be read: {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"{path}: not a results file: {exc}") from exc

    def incomplete(self) -> str | None:
        """Why this run cannot stand for its selection (cancelled, or cases with no trial), or None."""
        if self.info.status != "complete":
            return f"run {self.info.run_id} was {self.info.status}"
        selected = self.info.dataset.get("cases")
        ran = len(self.by_case())
        if isinstance(selected, int) and ran < selected:
            return f"run {self.info.run_id} is partial: {ran} of its {selected} cases ran"
        return None

    def by_case(self) -> dict[str, list[TrialResult]]:
        grouped: dict[str, list[TrialResult]] = {}
        for trial in self.trials:
            grouped.setdefault(trial.case_id, []).append(trial)
        return grouped


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
