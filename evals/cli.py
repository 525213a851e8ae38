"""`todo-agent eval ...`: run the suite, compare runs, update the baseline, publish the dataset schema.

Exit codes of `run` (and `compare`, `baseline`):
  0  passed: no regression against --baseline, pass rate at least --min-pass
  1  a regression: a case that passed in every baseline trial fails in every candidate trial
  2  usage error (bad or conflicting options)
  3  no regression, but the case pass rate is below --min-pass
  4  the dataset, baseline or results file is invalid (the message names file, case and field)
  5  the run could not complete: backend unreachable, or a cache miss in strict `--cache replay` mode
  6  inconclusive: no regression, but some cases only errored (timeouts, 5xx), retries included
Flaky cases (passing in some trials, failing in others) are reported, never fail the gate; errors are never
regressions. The last line of every gate says `GATE PASSED|FAILED|INCONCLUSIVE: ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from evals.cache import CACHE_MODES
from evals.capture import PERSONAL_DATA_WARNING, CaptureError, capture_case, case_yaml, disliked_conversations
from evals.compare import Comparison, ExitCode, GateResult, compare, gate, with_reason
from evals.dataset import (
    DEFAULT_DATASET,
    PROJECT_ROOT,
    SCHEMA_FILE,
    Case,
    Dataset,
    DatasetError,
    json_schema_text,
    load_dataset,
)
from evals.matrix import cells, render_matrix_markdown
from evals.reports import render_html, render_junit, render_markdown, render_summary
from evals.results import RunResult
from evals.runner import TrialOutcome, first_error
from evals.runs import RunStore, UnknownRun, resolve_results
from evals.selfcheck import check_dataset
from evals.suite import (
    EvalConfig,
    MergeError,
    auto_workers,
    merge_runs,
    rescore,
    run_evals,
    select,
    with_more_trials,
)

os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
os.environ.setdefault("DEEPEVAL_DISABLE_DOTENV", "1")
# The backend runs in-process: its per-turn log lines would interleave with the run's own progress and report.
logging.getLogger("todo_agent").setLevel(logging.ERROR)

app = typer.Typer(
    help="Eval suite: replay scripted conversations through the chat contract, score the agent, gate on a baseline.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: readable at 80 columns, with real metavars
)
console = Console(stderr=True, soft_wrap=True)
DEFAULT_BASELINE = PROJECT_ROOT / "evals" / "baselines" / "local.json"

# ---------------------------------------------------------------- shared options

DatasetOpt = Annotated[
    Path,
    typer.Option(
        "--dataset", metavar="PATH", show_default="datasets/", help="A dataset file or folder of .yaml files."
    ),
]
TagsOpt = Annotated[
    list[str] | None,
    typer.Option("--tags", metavar="TAGS", help="Only cases with any of these tags (comma-separated or repeated)."),
]
IdsOpt = Annotated[
    list[str] | None,
    typer.Option("--ids", metavar="IDS", help="Only these case ids (comma-separated or repeated)."),
]
TrialsOpt = Annotated[int, typer.Option("--trials", min=1, metavar="N", help="Trials per case (pass^k over them).")]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        min=1,
        metavar="N",
        show_default="what the model answers at once",
        help="Model requests at once (with --url: chat turns). By default the target's capacity: the local "
        "model's slots (LOCAL_MODEL_SLOTS, 1), 8 for 'scripted', a --url backend's reported capacity, else 4 for "
        "a hosted endpoint. Waiting for a slot counts against no timeout.",
    ),
]
WorkersOpt = Annotated[
    str,
    typer.Option(
        "--workers",
        metavar="N|auto",
        help="The speed aids, off by default: processes to spread in-process cases over (forked, the heap frozen), "
        "or 'auto': one per 8 of --concurrency, up to the CPU count. Worth it only past ~16 concurrent model calls.",
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--turn-timeout", metavar="SECONDS", help="Seconds one turn may take, slot waits excluded.")
]
RetriesOpt = Annotated[
    int,
    typer.Option(
        "--retries",
        min=0,
        metavar="N",
        help="Run a trial that errored (a timeout, a 5xx, no answer) again up to N times; one that still errors is "
        "inconclusive, never a regression.",
    ),
]
PromptOpt = Annotated[
    Path | None,
    typer.Option(
        "--prompt", metavar="FILE", help="System prompt file to use instead of the configured one (in-process only)."
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        metavar="NAME",
        help="AGENT_MODEL to run: 'local', 'scripted' (rule-based, no model) or a hosted model name (in-process only).",
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", metavar="URL", help="Evaluate a deployed backend at this base URL instead of in-process."),
]
SecretOpt = Annotated[
    str | None,
    typer.Option(
        "--token-secret",
        envvar="EVAL_TOKEN_SECRET",
        metavar="SECRET",
        help="HS256 secret of the deployed backend: mint a token per fresh user.",
    ),
]
TokensOpt = Annotated[
    Path | None,
    typer.Option(
        "--tokens",
        metavar="FILE",
        help="JSON file {user_id: token} of users to run as (their tasks are cleared per case).",
    ),
]
CacheOpt = Annotated[
    str, typer.Option("--cache", metavar="MODE", help=f"Model response cache: {', '.join(CACHE_MODES)}.")
]
CacheFileOpt = Annotated[
    Path | None,
    typer.Option("--cache-file", metavar="FILE", help="Cache file (default evals/cache/<model>.jsonl)."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        metavar="DIR",
        help="Where to write results.json, report.md, report.html, junit.xml (default evals/out/<run-id>).",
    ),
]
DeepevalOpt = Annotated[
    bool, typer.Option("--deepeval/--no-deepeval", help="Also score deepeval's strict ToolCorrectnessMetric.")
]
BaselineOpt = Annotated[
    Path | None,
    typer.Option("--baseline", metavar="FILE", help="Fail (exit 1) on any regression against this results file."),
]
MinPassOpt = Annotated[
    float | None,
    typer.Option(
        "--min-pass", min=0.0, max=1.0, metavar="RATE", help="Fail (exit 3) when the case pass rate is below this."
    ),
]
SummaryOpt = Annotated[
    Path | None,
    typer.Option(
        "--summary",
        metavar="FILE",
        help="Also write the short Markdown verdict here (a CI step summary, e.g. $GITHUB_STEP_SUMMARY, or a PR "
        "comment); appended to if it exists.",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="Do not print the Markdown report.")]


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    index, _, count = value.partition("/")
    if not (index.isdecimal() and count.isdecimal()) or not 1 <= int(index) <= int(count):
        raise typer.BadParameter(f"--shard must be i/n with 1 <= i <= n, not {value!r}")
    return int(index), int(count)


def _config(
    dataset: Path, tags: list[str] | None, ids: list[str] | None, trials: int, concurrency: int | None,
    turn_timeout: float, prompt: Path | None, model: str | None, url: str | None, token_secret: str | None,
    tokens: Path | None, cache: str, cache_file: Path | None, deepeval: bool, prune_cache: bool = False,
    workers: str = "1", retries: int = 2, shard: str | None = None,
) -> EvalConfig:  # fmt: skip
    if cache not in CACHE_MODES:
        raise typer.BadParameter(f"--cache must be one of {', '.join(CACHE_MODES)}")
    if workers != "auto" and not (workers.isdecimal() and int(workers) >= 1):
        raise typer.BadParameter(f"--workers must be a number of at least 1 or 'auto', not {workers!r}")
    config = EvalConfig(
        dataset=dataset, tags=_split(tags), ids=_split(ids), trials=trials, concurrency=concurrency,
        turn_timeout=turn_timeout, prompt=prompt, model=model, url=url, token_secret=token_secret, token_file=tokens,
        cache_mode=cache, cache_file=cache_file, prune_cache=prune_cache, deepeval=deepeval,  # type: ignore[arg-type]
        retries=retries, shard=_shard(shard),
    )  # fmt: skip
    try:
        config.validate()
        config = config.settled()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    processes = auto_workers(config.concurrency or 1, in_process=url is None) if workers == "auto" else int(workers)
    return replace(config, workers=processes)


def _run(config: EvalConfig, what: str = "eval", label: str | None = None) -> RunResult:
    try:
        dataset = select(config)
    except DatasetError as exc:
        typer.echo(f"dataset invalid\n{exc}", err=True)
        raise typer.Exit(ExitCode.DATASET_INVALID) from exc
    if not len(dataset):
        console.print("[red]no case matches --tags/--ids[/red]")
        raise typer.Exit(ExitCode.USAGE)
    # Redrawn on each event, not by a refresh thread: with no thread running, `--workers` can fork (evals/parallel.py).
    progress = Progress(
        TextColumn(f"[bold]{what}[/bold] {{task.description}}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.fields[running]}"),
        console=console, transient=False, auto_refresh=False,
    )  # fmt: skip
    counts = {"passed": 0, "failed": 0, "errored": 0}
    task_id = progress.add_task("starting", total=None, running="")

    def on_start(total: int) -> None:
        progress.update(task_id, total=total, description="running", refresh=True)

    def on_result(outcome: TrialOutcome) -> None:
        score, trial = outcome.score, outcome.transcript.trial
        counts["errored" if score.errored else "passed" if score.passed else "failed"] += 1
        progress.update(task_id, advance=1, description=f"[green]{counts['passed']} passed[/green] "
                        f"[red]{counts['failed']} failed[/red]"
                        + (f" [yellow]{counts['errored']} errored[/yellow]" if counts["errored"] else ""),
                        refresh=True)  # fmt: skip
        retried = len(outcome.transcript.retried)
        again = f" (after {retried} retr{'y' if retried == 1 else 'ies'})" if retried else ""
        if score.errored:
            progress.console.print(f"  [yellow]![/yellow] {outcome.case.id} (trial {trial}) errored{again}: "
                                   f"{first_error(score)}")  # fmt: skip
        elif not score.passed:
            kinds = ", ".join(score.failure_kinds)
            progress.console.print(f"  [red]✗[/red] {outcome.case.id} (trial {trial}): {kinds}{again}")

    running: dict[tuple[str, int], None] = {}

    def on_begin(case: Case, trial: int) -> None:
        running[(case.id, trial)] = None
        progress.update(task_id, refresh=True, running=_running_text(running))

    def finished(outcome: TrialOutcome) -> None:
        running.pop((outcome.case.id, outcome.transcript.trial), None)
        progress.update(task_id, running=_running_text(running))
        on_result(outcome)

    async def main() -> RunResult:
        # Ctrl-C stops the run at once and keeps what finished, marked cancelled; a second one interrupts outright.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def interrupted() -> None:
            stop.set()
            progress.console.print("[yellow]stopping: the finished trials are kept, the run marked cancelled[/yellow]")
            loop.remove_signal_handler(signal.SIGINT)

        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread (tests)
            loop.add_signal_handler(signal.SIGINT, interrupted)
        try:
            return await run_evals(
                config,
                dataset=dataset,
                on_start=on_start,
                on_result=finished,
                on_begin=on_begin,
                stop=stop,
                label=label,
            )
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    try:
        with progress:
            return asyncio.run(main())
    except (OSError, RuntimeError) as exc:
        console.print(f"[red]the run could not complete:[/red] {escape(str(exc))}")
        raise typer.Exit(ExitCode.RUN_FAILED) from exc


def _running_text(running: dict[tuple[str, int], None]) -> str:
    names = [case for case, _ in running]
    return ("running " + ", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")) if names else ""


def _load_results(path: Path | str) -> RunResult:
    """A results file by path, folder or saved run id (`eval runs` lists them)."""
    try:
        return RunResult.load(resolve_results(path))
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(ExitCode.DATASET_INVALID) from exc


def _write_reports(result: RunResult, out: Path, comparison: Comparison | None, verdict: GateResult | None) -> str:
    """results.json and the three reports in `out`; returns the Markdown report."""
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != RunStore.default().folder(result.info.run_id).resolve():
        result.save(out / "results.json")
    markdown = render_markdown(result, comparison=comparison, gate=verdict)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    (out / "report.html").write_text(render_html(result, comparison=comparison, gate=verdict), encoding="utf-8")
    (out / "junit.xml").write_text(render_junit(result, comparison=comparison), encoding="utf-8")
    return markdown


def _strict_replay_missed(result: RunResult) -> int:
    cache = result.info.cache or {}
    return int(cache.get("misses") or 0) if cache.get("mode") == "replay" else 0


# ---------------------------------------------------------------- commands


def confirm_regressions(config: EvalConfig, base: RunResult, result: RunResult, confirm: int) -> RunResult:
    """`result` with `confirm` more trials of each case that regressed: a regression must fail every time; a case
    that passes in any of them is a flip (flaky), which a busy machine or a sampled token can cause."""
    regressed = [c.case_id for c in compare(base, result).regressions]
    if not regressed or confirm < 1:
        return result
    console.print(f"[yellow]{len(regressed)} suspected regression(s): {confirm} more trial(s) each[/yellow]")
    again = replace(config, ids=regressed, tags=[], shard=None, trials=confirm, first_trial=config.trials + 1)
    return with_more_trials(result, _run(again, "confirming"), select(again) if config.deepeval else None)


def _finish(
    result: RunResult, comparison: Comparison | None, verdict: GateResult, out: Path, summary: Path | None, quiet: bool
) -> None:
    """Save the run under RUNS_DIR, write the reports (and the summary), print them, and end with the verdict line
    and its exit code."""
    saved = RunStore.default().save(result)
    markdown = _write_reports(result, out, comparison, verdict)
    if summary is not None:
        summary.parent.mkdir(parents=True, exist_ok=True)
        with summary.open("a", encoding="utf-8") as handle:
            handle.write(render_summary(result, comparison=comparison, gate=verdict) + "\n")
    if not quiet:
        typer.echo(markdown)
    console.print(f"results and reports in {out}; saved as run {result.info.run_id} ({saved.parent})")
    colour = "yellow" if verdict.exit_code == ExitCode.INCONCLUSIVE else "red"
    for reason in verdict.reasons:
        console.print(f"[{colour}]{escape(reason)}[/{colour}]")
    typer.echo(verdict.line)
    raise typer.Exit(int(verdict.exit_code))


def _verdict(result: RunResult, comparison: Comparison | None, min_pass: float | None) -> GateResult:
    verdict = gate(result, comparison, min_pass=min_pass)
    missed = _strict_replay_missed(result)
    if missed and verdict.exit_code in (ExitCode.OK, ExitCode.INCONCLUSIVE):
        verdict = with_reason(verdict, ExitCode.RUN_FAILED, f"{missed} model request(s) missed the replay cache")
    return verdict


@app.command("run")
def run_command(
    dataset: DatasetOpt = DEFAULT_DATASET,
    tags: TagsOpt = None,
    ids: IdsOpt = None,
    trials: TrialsOpt = 1,
    concurrency: ConcurrencyOpt = None,
    workers: WorkersOpt = "1",
    turn_timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 2,
    prompt: PromptOpt = None,
    model: ModelOpt = None,
    url: UrlOpt = None,
    token_secret: SecretOpt = None,
    tokens: TokensOpt = None,
    baseline: BaselineOpt = None,
    confirm: Annotated[
        int,
        typer.Option(
            "--confirm",
            min=0,
            metavar="N",
            help="With --baseline: run each case that regressed N more times; one that passes in any is flaky, not "
            "a regression.",
        ),
    ] = 2,
    min_pass: MinPassOpt = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Run only shard I of N (cases dealt by expected cost); `eval merge` joins the shards' results.",
        ),
    ] = None,
    out: OutOpt = None,
    summary: SummaryOpt = None,
    cache: CacheOpt = "off",
    cache_file: CacheFileOpt = None,
    deepeval: DeepevalOpt = True,
    quiet: QuietOpt = False,
) -> None:
    """Run the suite and write results.json, report.md, report.html and junit.xml.

    Exit codes: 0 passed; 1 regression against --baseline; 2 usage error; 3 pass
    rate below --min-pass; 4 invalid dataset/baseline; 5 run could not complete
    (or a miss in strict --cache replay); 6 inconclusive (cases that only
    errored). The last line printed is the verdict.
    """
    config = _config(dataset, tags, ids, trials, concurrency, turn_timeout, prompt, model, url, token_secret, tokens,
                     cache, cache_file, deepeval, workers=workers, retries=retries, shard=shard)  # fmt: skip
    base = _load_results(baseline) if baseline else None
    result = _run(config)
    if base is not None:
        result = confirm_regressions(config, base, result, confirm)
    comparison = compare(base, result) if base else None
    _finish(result, comparison, _verdict(result, comparison, min_pass), out or RunStore.default().folder(result.info.run_id),
            summary, quiet)  # fmt: skip


@app.command("matrix")
def matrix_command(
    prompts: Annotated[
        list[Path] | None,
        typer.Option("--prompt", metavar="FILE", help="A prompt draft (repeat for more); none: the configured one."),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option("--model", metavar="NAME", help="A model: local, scripted or a hosted name (repeat for more)."),
    ] = None,
    dataset: DatasetOpt = DEFAULT_DATASET,
    tags: TagsOpt = None,
    ids: IdsOpt = None,
    trials: TrialsOpt = 1,
    concurrency: ConcurrencyOpt = None,
    turn_timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 2,
    cache: CacheOpt = "off",
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Where to write a results file per cell and matrix.md."),
    ] = None,
) -> None:
    """Run every --prompt with every --model on the same cases: one saved run and
    results file per cell, and one report (matrix.md) comparing each with the
    first cell per case and per tag. Exit 5 if a cell was stopped."""
    chosen = cells([str(p) for p in prompts or []], list(models or []))
    if len(chosen) < 2:
        raise typer.BadParameter("a matrix needs at least two cells: give two --prompt or two --model")
    folder = out or RunStore.default().root / ("matrix-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
    runs: dict[str, RunResult] = {}
    for number, cell in enumerate(chosen, start=1):
        config = _config(dataset, tags, ids, trials, concurrency, turn_timeout,
                         Path(cell.prompt) if cell.prompt else None, cell.model, None, None, None, cache, None,
                         False, retries=retries)  # fmt: skip
        result = _run(config, f"{number}/{len(chosen)} {cell.label}", label=cell.label)
        RunStore.default().save(result)
        result.save(folder / f"cell-{number}" / "results.json")
        runs[cell.label] = result
        if result.info.status != "complete":
            break  # stopped: the cells after it are not run
    report = render_matrix_markdown(runs)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "matrix.md").write_text(report, encoding="utf-8")
    typer.echo(report)
    console.print(f"matrix report in {folder / 'matrix.md'}; each cell saved as a run (`eval runs`)")
    if len(runs) < len(chosen) or any(r.info.status != "complete" for r in runs.values()):
        raise typer.Exit(ExitCode.RUN_FAILED)


@app.command("merge")
def merge_command(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="The shards' results.json files.")],
    dataset: DatasetOpt = DEFAULT_DATASET,
    baseline: BaselineOpt = None,
    min_pass: MinPassOpt = None,
    out: OutOpt = None,
    summary: SummaryOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Join the results of a run's shards (`eval run --shard I/N`, each once) into
    the results, reports and gate one run of the whole suite gives."""
    runs = [_load_results(path) for path in results]
    try:
        loaded: Dataset | None = load_dataset(dataset, holdout=True)
    except DatasetError:
        loaded = None  # no dataset at hand: trials keep the shards' order, and no deepeval summary
    try:
        merged = merge_runs(runs, loaded)
    except MergeError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(ExitCode.DATASET_INVALID) from exc
    base = _load_results(baseline) if baseline else None
    comparison = compare(base, merged) if base else None
    _finish(merged, comparison, _verdict(merged, comparison, min_pass), out or RunStore.default().folder(merged.info.run_id),
            summary, quiet)  # fmt: skip


@app.command("compare")
def compare_command(
    baseline: Annotated[str, typer.Argument(metavar="BASELINE", help="The baseline: a results file or a run id.")],
    candidate: Annotated[str, typer.Argument(metavar="CANDIDATE", help="The candidate: a results file or a run id.")],
    out: Annotated[
        Path | None, typer.Option("--out", metavar="DIR", help="Also write report.md/report.html/junit.xml here.")
    ] = None,
    short: Annotated[
        bool, typer.Option("--short", help="Print the short verdict (as --summary writes it), not the full report.")
    ] = False,
    summary: SummaryOpt = None,
) -> None:
    """Print newly failing (regressions) and newly passing cases with the
    evidence side by side; exit 1 on a regression, 6 if only inconclusive."""
    base, cand = _load_results(baseline), _load_results(candidate)
    comparison = compare(base, cand)
    verdict = gate(cand, comparison, min_pass=None)
    if out is not None:
        _write_reports(cand, out, comparison, verdict)
    if summary is not None:
        with summary.open("a", encoding="utf-8") as handle:
            handle.write(render_summary(cand, comparison=comparison, gate=verdict) + "\n")
    render = render_summary if short else render_markdown
    typer.echo(render(cand, comparison=comparison, gate=verdict))
    typer.echo(verdict.line)
    raise typer.Exit(int(verdict.exit_code))


@app.command("baseline")
def baseline_command(
    from_results: Annotated[
        str | None,
        typer.Option("--from", metavar="FILE|RUN", help="Promote this results file (or saved run) instead of running."),
    ] = None,
    rescore_results: Annotated[
        bool,
        typer.Option(
            "--rescore",
            help="With --from: score its transcripts again against the current dataset (expectations changed, "
            "the model's answers did not).",
        ),
    ] = False,
    to: Annotated[Path, typer.Option("--to", metavar="FILE", help="The baseline file to write.")] = DEFAULT_BASELINE,
    dataset: DatasetOpt = DEFAULT_DATASET,
    trials: TrialsOpt = 1,
    concurrency: ConcurrencyOpt = None,
    workers: WorkersOpt = "1",
    turn_timeout: TimeoutOpt = 180.0,
    prompt: PromptOpt = None,
    model: ModelOpt = None,
    cache: CacheOpt = "replay-or-record",
    cache_file: CacheFileOpt = None,
    deepeval: DeepevalOpt = True,
) -> None:
    """Deliberately update the committed baseline: run the full suite (replaying what the cache already has,
    recording the rest, pruning entries nobody uses) or promote --from a results file; shows what changes."""
    if from_results is not None:
        result = _load_results(from_results)
        if rescore_results:
            try:
                result = rescore(result, load_dataset(dataset))
            except DatasetError as exc:
                typer.echo(f"dataset invalid\n{exc}", err=True)
                raise typer.Exit(ExitCode.DATASET_INVALID) from exc
    else:
        config = _config(dataset, None, None, trials, concurrency, turn_timeout, prompt, model, None, None, None,
                         cache, cache_file, deepeval, prune_cache=True, workers=workers)  # fmt: skip
        result = _run(config)
        RunStore.default().save(result)
        _write_reports(result, RunStore.default().folder(result.info.run_id), None, None)
    incomplete = result.incomplete()
    if incomplete is not None:
        console.print(f"[red]{escape(incomplete)}: a baseline must be a whole run[/red]")
        raise typer.Exit(ExitCode.RUN_FAILED)
    if to.exists():
        previous = _load_results(to)
        comparison = compare(previous, result)
        typer.echo(render_markdown(result, comparison=comparison))
        console.print(
            f"vs the previous baseline: {len(comparison.regressions)} newly failing, {len(comparison.fixed)} newly "
            f"passing, {len(comparison.flaky)} flaky"
        )
    else:
        typer.echo(render_markdown(result))
    result.save(to)
    console.print(
        f"[green]baseline written[/green] to {to}: {result.metrics.get('cases_passing_all_trials')}/"
        f"{result.metrics.get('cases')} cases passing; commit it (and the cache file) deliberately"
    )


@app.command("capture")
def capture_command(
    user: Annotated[str | None, typer.Option("--user", metavar="USER", help="The conversation's owner.")] = None,
    conversation: Annotated[
        int | None, typer.Option("--conversation", metavar="ID", help="The conversation to turn into a case.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="The YAML file to write.")] = None,
    case_id: Annotated[str | None, typer.Option("--id", metavar="CASE", help="The case id.")] = None,
    redact: Annotated[bool, typer.Option("--redact", help="Replace every task title by a neutral one.")] = False,
    feedback: Annotated[
        str | None,
        typer.Option("--feedback", metavar="negative", help="List the conversations with a reply users disliked."),
    ] = None,
) -> None:
    """Turn a real conversation (from the backend's database) into an eval case:
    its starting tasks, the user's turns, the calls made as the expectation to
    edit, the final task list. --feedback negative lists candidates."""
    from backend.db import build_engine
    from backend.settings import get_settings

    engine = build_engine(get_settings())
    try:
        if feedback is not None:
            if feedback != "negative":
                raise typer.BadParameter("--feedback takes 'negative'")
            found = disliked_conversations(engine, user)
            for owner, conversation_id, reply in found:
                typer.echo(f"{owner}  conversation {conversation_id}: {reply[:80]!r}")
            if not found:
                typer.echo("no conversation has a reply users disliked")
            return
        if user is None or conversation is None or out is None:
            raise typer.BadParameter("capture needs --user, --conversation and --out (or --feedback negative)")
        try:
            case = capture_case(engine, user_id=user, conversation_id=conversation,
                                case_id=case_id or f"captured-{conversation}", redact=redact)  # fmt: skip
        except CaptureError as exc:
            console.print(f"[red]{escape(str(exc))}[/red]")
            raise typer.Exit(ExitCode.DATASET_INVALID) from exc
        except ValueError as exc:
            console.print(f"[red]the captured case does not validate: {escape(str(exc))}[/red]")
            raise typer.Exit(ExitCode.DATASET_INVALID) from exc
    finally:
        engine.dispose()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(case_yaml(case), encoding="utf-8")
    if not redact:
        console.print(f"[yellow]{PERSONAL_DATA_WARNING}[/yellow]")
    typer.echo(f"wrote case {case.id} to {out}: fix the expectation where the agent was wrong, then `eval check`")


@app.command("runs")
def runs_command(
    delete: Annotated[
        list[str] | None, typer.Option("--delete", metavar="RUN", help="Delete these saved runs (ids as listed).")
    ] = None,
) -> None:
    """List the saved runs (RUNS_DIR), newest first: id, status, model, prompt,
    cases passing. `eval compare` and `eval baseline --from` take these ids."""
    store = RunStore.default()
    for run_id in _split(delete):
        try:
            store.delete(run_id)
        except UnknownRun as exc:
            console.print(f"[red]{escape(str(exc))}[/red]")
            raise typer.Exit(ExitCode.USAGE) from exc
        typer.echo(f"deleted {run_id}")
    if delete:
        return
    runs = store.list()
    if not runs:
        typer.echo(f"no saved runs in {store.root}")
        return
    for run in runs:
        passing = f"{run.passing}/{run.cases}" if run.cases is not None else "?"
        flag = "" if run.status == "complete" else f" [{run.status}]"
        label = f" {run.label}" if run.label else ""
        typer.echo(f"{run.run_id}  {passing:>7}  {run.model or '?'}  prompt {run.prompt_version or '?'}"
                   f"  tags {','.join(run.tags) or 'all'}{label}{flag}")  # fmt: skip


@app.command("schema")
def schema_command(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if datasets/schema.json is not current.")] = False,
    path: Annotated[Path, typer.Option("--path", help="Where the schema lives.")] = SCHEMA_FILE,
) -> None:
    """Write (or check) the published JSON Schema of the dataset format, generated from the pydantic models."""
    text = json_schema_text()
    if check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            console.print(f"[red]{path} is out of date: run `todo-agent eval schema`[/red]")
            raise typer.Exit(1)
        console.print(f"{path} is current")
        return
    path.write_text(text, encoding="utf-8")
    console.print(f"wrote {path}")


@app.command("check")
def check_command(
    dataset: Annotated[Path, typer.Argument(help="Dataset file or folder (the holdout included).")] = DEFAULT_DATASET,
    tags: TagsOpt = None,
    ids: IdsOpt = None,
) -> None:
    """Replay every case's expected calls against the real tools, with no model,
    and score that: list the cases no agent could pass (exit 4 if any)."""
    try:
        loaded = load_dataset(dataset, holdout=True).select(tags=_split(tags), ids=_split(ids))
    except DatasetError as exc:
        typer.echo(f"dataset invalid\n{exc}", err=True)
        raise typer.Exit(ExitCode.DATASET_INVALID) from exc
    checks = check_dataset(loaded)
    impossible = [c for c in checks if not c.ok]
    for check in impossible:
        typer.echo(f"{check.case_id} ({loaded.sources.get(check.case_id, '?')}): no agent can pass it")
        for reason in check.reasons():
            typer.echo(f"  - {reason}")
    typer.echo(f"{len(checks) - len(impossible)}/{len(checks)} cases pass with their own expectations")
    if impossible:
        raise typer.Exit(ExitCode.DATASET_INVALID)


@app.command("validate")
def validate_command(
    dataset: Annotated[Path, typer.Argument(help="Dataset file or folder.")] = DEFAULT_DATASET,
) -> None:
    """Validate a dataset and print its cases per tag (exit 4 naming file, case and field when invalid)."""
    try:
        loaded = load_dataset(dataset)
    except DatasetError as exc:
        typer.echo(f"dataset invalid\n{exc}", err=True)
        raise typer.Exit(ExitCode.DATASET_INVALID) from exc
    counts = {tag: sum(tag in c.tags for c in loaded.cases) for tag in loaded.tags}
    typer.echo(f"{len(loaded)} cases in {len(loaded.files)} file(s); fingerprint {loaded.fingerprint()}")
    for tag, count in counts.items():
        typer.echo(f"  {tag}: {count}")
