"""What one eval run asks for (`EvalConfig`), and the choices made from it: the cases, the workers, the cache file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from backend.llm.provider import model_capacity, model_name
from backend.settings import Settings, get_settings
from evals.cache import CacheMode
from evals.dataset import DEFAULT_DATASET, PROJECT_ROOT, Dataset, load_dataset, wants_holdout
from evals.runner import expected_model_calls
from evals.scripted_model import Responder

SCRIPTED_MODEL = "scripted"  # `--model scripted`: the rule-based reference agent, in-process
CACHE_DIR = PROJECT_ROOT / "evals" / "cache"


SLOTS_PER_WORKER = 8
# Default concurrency where the target does not say what it can take: a hosted endpoint (documented in the README),
# and the scripted model, which answers at once.
HOSTED_CONCURRENCY = 4
SCRIPTED_CONCURRENCY = 8


def target_capacity(settings: Settings, model: str | None = None) -> int:
    """The default `--concurrency` of an in-process run: what its model answers at once without queueing (the
    bundled model's slots), so no request waits on another inside the model server where nothing can see it."""
    chosen = settings.model_copy(update={"agent_model": model}) if model else settings
    if chosen.agent_model == SCRIPTED_MODEL:
        return SCRIPTED_CONCURRENCY
    return model_capacity(chosen) or HOSTED_CONCURRENCY


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
    # Model requests at once (with --url: chat turns), over all workers; None: the target's capacity
    # (`target_capacity`; with --url, what its /api/info says, else HOSTED_CONCURRENCY).
    concurrency: int | None = None
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
    shard: tuple[int, int] | None = None  # (i, n): run only the i-th of n shards of the selected cases (1-based)
    retries: int = 2  # more attempts for a trial that errored (a timeout, a 5xx): an error is not a verdict
    first_trial: int = 1  # the number of the first trial (more trials of a run continue its numbering)

    def settled(self) -> EvalConfig:
        """This config with an in-process run's default concurrency filled in (a --url run learns it at start)."""
        if self.concurrency is not None or self.url:
            return self
        return replace(self, concurrency=target_capacity(self.settings or get_settings(), self.model))

    @property
    def in_flight(self) -> int:
        """The concurrency of a settled config (`settled`, or a --url run once its target answered)."""
        if self.concurrency is None:
            raise ValueError("the concurrency is not settled yet")
        return self.concurrency

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
        if self.shard is not None and not 1 <= self.shard[0] <= self.shard[1]:
            raise ValueError("--shard must be i/n with 1 <= i <= n")
        if self.trials < 1 or (self.concurrency is not None and self.concurrency < 1) or self.workers < 1:
            raise ValueError("--trials, --concurrency and --workers must be at least 1")


def default_cache_file(settings: Settings) -> Path:
    return CACHE_DIR / f"{model_name(settings)}.jsonl"


def select(config: EvalConfig) -> Dataset:
    """The cases a run runs: the dataset filtered by tags and ids, then its shard (`shard`) if it is one."""
    holdout = wants_holdout(config.dataset, config.tags)
    chosen = load_dataset(config.dataset, holdout=holdout).select(tags=config.tags, ids=config.ids)
    return shard_of(chosen, *config.shard) if config.shard else chosen


def shard_of(dataset: Dataset, index: int, count: int) -> Dataset:
    """The `index`-th of `count` shards (1-based): the cases dealt round robin in order of expected cost, most
    expensive first, so every shard gets a like share of the work; each case in exactly one shard, whatever the
    machine. Within a shard the cases keep the dataset's order."""
    by_cost = sorted(dataset.cases, key=lambda c: (-expected_model_calls(c), -len(c.turns), c.id))
    mine = {c.id for c in by_cost[index - 1 :: count]}
    picked = tuple(c for c in dataset.cases if c.id in mine)
    return Dataset(picked, dataset.files, {c.id: dataset.sources[c.id] for c in picked if c.id in dataset.sources})
