"""What one eval run asks for (`EvalConfig`), and the choices made from it: the cases, the workers, the cache file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from backend.llm.provider import model_name
from backend.settings import Settings
from evals.cache import CacheMode
from evals.dataset import DEFAULT_DATASET, PROJECT_ROOT, Dataset, load_dataset, wants_holdout
from evals.scripted_model import Responder

SCRIPTED_MODEL = "scripted"  # `--model scripted`: the rule-based reference agent, in-process
CACHE_DIR = PROJECT_ROOT / "evals" / "cache"


SLOTS_PER_WORKER = 8


def auto_workers(concurrency: int, *, in_process: bool = True) -> int:
    """`--workers auto`: a process per 8 concurrent model requests, up to the CPU count. The backend's own work runs
    in the runner and is Python: one process fills a core at about 16 concurrent 200 ms model calls. A deployed
    backend (`--url`) does that work itself, so its runner is one process."""
    if not in_process:
        return 1
    return max(1, min(os.cpu_count() or 1, concurrency // SLOTS_PER_WORKER))


@dataclass
class EvalConfig:
    dataset: Path = DEFAULT_DATASET
    tags: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    trials: int = 1
    concurrency: int = 4  # model requests at once (with --url: chat turns), over all workers
    workers: int = 1  # processes (in-process runs): the runner is CPU-bound Python, one process fills one core
    turn_timeout: float = 120.0
    prompt: Path | None = None
    model: str | None = None  # None: the configured AGENT_MODEL
    url: str | None = None
    token_secret: str | None = None
    token_file: Path | None = None
    cache_mode: CacheMode = "off"
    cache_file: Path | None = None  # None: evals/cache/<model>.jsonl
    prune_cache: bool = False  # keep only the entries this run used (when refreshing a baseline)
    responder: Responder | None = None  # the scripted model's policy (tests plant faults here)
    settings: Settings | None = None  # base settings; default: the environment's
    deepeval: bool = True  # also score deepeval's strict ToolCorrectnessMetric

    @property
    def speed_aids(self) -> bool:
        """What `--workers` turns on besides the processes: the heap frozen for the run (`local_run`)."""
        return self.workers > 1

    def validate(self) -> None:
        if self.url and (self.prompt is not None or self.model is not None):
            raise ValueError("--prompt and --model apply to the in-process backend; a deployed --url runs what it runs")
        if self.url and self.cache_mode != "off":
            raise ValueError("record/replay wraps the in-process model client; it cannot apply to --url")
        if self.url and not (self.token_secret or self.token_file):
            raise ValueError("--url needs --token-secret (HS256) or --tokens FILE")
        if self.trials < 1 or self.concurrency < 1 or self.workers < 1:
            raise ValueError("--trials, --concurrency and --workers must be at least 1")


def default_cache_file(settings: Settings) -> Path:
    return CACHE_DIR / f"{model_name(settings)}.jsonl"


def select(config: EvalConfig) -> Dataset:
    holdout = wants_holdout(config.dataset, config.tags)
    return load_dataset(config.dataset, holdout=holdout).select(tags=config.tags, ids=config.ids)
