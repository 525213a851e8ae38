"""Reports render from a real (scripted) run: Markdown, self-contained HTML with a chart per tag, JUnit XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from evals.compare import compare, gate
from evals.reports import render_html, render_junit, render_markdown
from evals.results import RunResult
from evals.suite import run_evals
from tests.evals_support import delete_instead_of_complete, scripted_config


async def test_reports_render(tmp_path: Path) -> None:
    base = await run_evals(scripted_config(tmp_path / "a", tags=["smoke", "complete"]))
    cand = await run_evals(scripted_config(tmp_path / "b", delete_instead_of_complete(), tags=["smoke", "complete"]))
    comparison = compare(base, cand)
    verdict = gate(cand, comparison, min_pass=0.9)

    markdown = render_markdown(cand, comparison=comparison, gate=verdict)
    assert "| case pass rate |" in markdown and "## By tag" in markdown and "### Regressions (" in markdown
    assert "**wrong_tool**" in markdown and "delete_task" in markdown

    html = render_html(cand, comparison=comparison, gate=verdict)
    assert html.startswith("<!doctype html>")
    assert not re.search(r"""(src|href)=["']?https?:""", html), "must be self-contained"
    assert "<script" not in html
    tags = {tag for t in cand.trials for tag in t.tags}
    assert html.count('<div class="tag">') == len(tags)  # a chart per tag
    assert html.count("<svg") >= 2 * len(tags)
    assert "Failing transcripts" in html and "ref-complete-by-id" in html

    root = ET.fromstring(render_junit(cand, comparison=comparison))
    cases = root.findall(".//testsuite[1]/testcase")
    assert len(cases) == len(cand.trials)
    failing = {c.get("name") for c in root.iter("testcase") if c.find("failure") is not None}
    assert "ref-complete-by-id" in failing
    regression_suite = root.findall("testsuite")[1]
    assert regression_suite.get("failures") == str(len(comparison.regressions))


async def test_results_file_round_trips(tmp_path: Path) -> None:
    result = await run_evals(scripted_config(tmp_path, ids=["ref-add-groceries", "chat-hello"], deepeval=True))
    path = tmp_path / "results.json"
    result.save(path)
    loaded = RunResult.load(path)
    assert loaded == result
    info = loaded.info
    assert info.target["model"] == "scripted" and len(info.target["prompt_version"]) == 12
    assert info.target["prompt_sha256"] and info.dataset["fingerprint"] and info.versions["todo-agent"]
    turn = next(t for t in loaded.trials if t.case_id == "ref-add-groceries").transcript.turns[0]
    assert turn.tool_calls[0].name == "add_task" and turn.tasks_after and turn.model_calls == 2
    assert turn.input_tokens == 20  # the scripted model reports usage: 10 prompt tokens a call
    assert loaded.deepeval is not None and "tool_correctness_strict_mean" in loaded.deepeval


async def test_reports_speak_as_people_write(tmp_path: Path) -> None:
    """Expected values read as the dataset writes them, the starting task list reads as tasks, turns count from 1,
    and a replayed turn's milliseconds never sit in the live latency figure."""
    from evals.analysis import failures_frame, latency_frame, latency_summary
    from tests.evals_support import drop_description

    ids = ["add-with-description", "add-without-description"]
    cand = await run_evals(scripted_config(tmp_path, drop_description(), ids=ids))
    failing = next(t for t in cand.trials if t.case_id == "add-with-description")
    final = next(f for f in failing.score.failures if f.kind == "state_mismatch")
    assert final.expected == [{"title": "contains 'plumber'", "description": "contains 'sink'"}]
    assert "{'equals'" not in render_markdown(cand) and "{&#x27;equals" not in render_html(cand)
    broken = await run_evals(scripted_config(tmp_path / "d", delete_instead_of_complete(), ids=["ref-complete-by-id"]))
    first = broken.trials[0].transcript.tasks_before[0]
    line = f"#{first['id']} {first['title']}"
    html = render_html(broken)
    assert f"<li>{line}" in html and f"tasks before: {line}" in render_markdown(broken)
    before = html.split("tasks before the first turn")[1].split("</ul>")[0]
    assert "{&quot;" not in before and before.count("<li>") == len(broken.trials[0].transcript.tasks_before)
    assert set(failures_frame(cand)["turn"].dropna()) <= {1}  # every case here is one turn: turn 1, never 0

    replay = tmp_path / "cache.jsonl"
    live = await run_evals(scripted_config(tmp_path / "l", ids=ids, cache_mode="record", cache_file=replay))
    again = await run_evals(scripted_config(tmp_path / "r", ids=ids, cache_mode="replay", cache_file=replay))
    frame = latency_frame({"live": live, "replayed": again})
    assert set(frame[frame["run"] == "live"]["model"]) == {"live"}
    assert set(frame[frame["run"] == "replayed"]["model"]) == {"replayed"}
    assert again.metrics["latency_p50_ms"] is None and again.metrics["replayed_latency_p50_ms"] is not None
    summary = latency_summary({"live": live, "replayed": again})
    assert list(summary.index) == [("live", "live"), ("replayed", "replayed")]
    assert "turn latency p50, model live (ms) | n/a" in render_markdown(again)


async def test_html_shows_no_markdown_backticks(tmp_path: Path) -> None:
    run = await run_evals(scripted_config(tmp_path, ids=["chat-hello"]))
    html = render_html(run, comparison=compare(run, run), gate=gate(run, compare(run, run), min_pass=None))
    assert "`" not in html and "<code>scripted</code>" in html
