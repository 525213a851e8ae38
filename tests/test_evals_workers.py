"""`--workers`: a run split across processes gives the same verdicts, and records one merged cache."""

from __future__ import annotations

from pathlib import Path

from evals.suite import run_evals
from tests.evals_support import scripted_config

IDS = ["ref-add-groceries", "ref-complete-by-id", "multi-add-two", "follow-add-then-complete", "chat-hello"]


async def test_workers_match_a_single_process_and_merge_the_cache(tmp_path: Path) -> None:
    single = await run_evals(scripted_config(tmp_path / "one", ids=IDS))
    cache = tmp_path / "cache.jsonl"
    split = await run_evals(
        scripted_config(tmp_path / "two", ids=IDS, workers=2, cache_mode="record", cache_file=cache)
    )
    assert [(t.case_id, t.passed) for t in split.trials] == [(t.case_id, t.passed) for t in single.trials]
    assert split.info.options["workers"] == 2
    assert split.info.cache is not None and split.info.cache["recorded"] == single.metrics["model_calls"]
    replayed = await run_evals(scripted_config(tmp_path / "three", ids=IDS, cache_mode="replay", cache_file=cache))
    assert replayed.info.cache is not None and replayed.info.cache["misses"] == 0
