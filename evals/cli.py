"""`todo-agent eval ...`: run the suite, compare runs, update the baseline, publish the dataset schema.

Exit codes of `run` (and `compare`, `baseline`):
  0  passed: no regression against --baseline, pass rate at least --min-pass
  1  a regression: a case that passed in every baseline trial fails in every candidate trial
  2  usage error (bad or conflicting options)
  3  no regression, but the case pass rate is below --min-pass
  4  the dataset, baseline or results file is invalid (the message names file, case and field)
  5  the run could not complete: backend unreachable, or a cache miss in strict `--cache replay` mode
Flaky cases (passing in some trials, failing in others) are reported, never fail the gate.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evals.cache import CACHE_MODES
from evals.compare import Comparison, ExitCode, GateResult, compare, gate
from evals.dataset import DEFAULT_DATASET, PROJECT_ROOT, SCHEMA_FILE, DatasetError, json_schema_text, load_dataset
from evals.reports import render_html, render_junit, render_markdown
from evals.results import RunResult
from evals.runner import TrialOutcome
from evals.suite import EvalConfig, auto_workers, rescore, run_evals, select

os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
os.environ.setdefault("DEEPEVAL_DISABLE_DOTENV", "1")
# The backend runs in-process: its per-turn log lines would interleave with the run's own progress and report.
logging.getLogger("todo_agent").setLevel(logging.ERROR)

app = typer.Typer(
    help="Eval suite: replay scripted conversations through the chat contract, score the agent, gate on a baseline.",
    no_args_is_help=True,
)
console = Console(stderr=True, soft_wrap=True)
DEFAULT_BASELINE = PROJECT_ROOT / "evals" / "baselines" / "local.json"
DEFAULT_OUT = PROJECT_ROOT / "evals" / "out"

# ---------------------------------------------------------------- shared options

DatasetOpt = Annotated[Path, typer.Option("--dataset", help="A dataset file or folder of .yaml files.")]
TagsOpt = Annotated[
    list[str] | None, typer.Option("--tags", help="Only cases with any of these tags (comma-separated or repeated).")
]
IdsOpt = Annotated[list[str] | None, typer.Option("--ids", help="Only these case ids (comma-separated or repeated).")]
TrialsOpt = Annotated[int, typer.Option("--trials", min=1, help="Trials per case (pass^k over them).")]
ConcurrencyOpt = Annotated[
    int,
    typer.Option(
        "--concurrency",
        min=1,
        help="Requests to the model at once (with --url: chat turns at once); a few more cases than that are open. "
        "The local model serialises: use 1-2.",
    ),
]
WorkersOpt = Annotated[
    str,
    typer.Option(
        "--workers",
        help="The speed aids, off by default: processes to spread in-process cases over (forked, the heap frozen), "
        "or 'auto': one per 8 of --concurrency, up to the CPU count. Worth it only past ~16 concurrent model calls.",
    ),
]
TimeoutOpt = Annotated[float, typer.Option("--turn-timeout", help="Seconds one turn may take.")]
PromptOpt = Annotated[
    Path | None,
    typer.Option("--prompt", help="System prompt file to use instead of the configured one (in-process only)."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="AGENT_MODEL to run: 'local', 'scripted' (rule-based, no model) or a hosted model name (in-process only).",
    ),
]
UrlOpt = Annotated[
    str | None, typer.Option("--url", help="Evaluate a deployed backend at this base URL instead of in-process.")
]
SecretOpt = Annotated[
    str | None,
    typer.Option(
        "--token-secret",
        envvar="EVAL_TOKEN_SECRET",
        help="HS256 secret of the deployed backend: mint a token per fresh user.",
    ),
]
TokensOpt = Annotated[
    Path | None,
    typer.Option("--tokens", help="JSON file {user_id: token} of users to run as (their tasks are cleared per case)."),
]
CacheOpt = Annotated[str, typer.Option("--cache", help=f"Model response cache: {', '.join(CACHE_MODES)}.")]
CacheFileOpt = Annotated[
    Path | None, typer.Option("--cache-file", help="Cache file (default evals/cache/<model>.jsonl).")
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", help="Where to write results.json, report.md, report.html, junit.xml (default evals/out/<run-id>)."
    ),
]
DeepevalOpt = Annotated[
    bool, typer.Option("--deepeval/--no-deepeval", help="Also score deepeval's strict ToolCorrectnessMetric.")
]


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _config(
    dataset: Path, tags: list[str] | None, ids: list[str] | None, trials: int, concurrency: int, turn_timeout: float,
    prompt: Path | None, model: str | None, url: str | None, token_secret: str | None, tokens: Path | None,
    cache: str, cache_file: Path | None, deepeval: bool, prune_cache: bool = False, workers: str = "1",
) -> EvalConfig:  # fmt: skip
    if cache not in CACHE_MODES:
        raise typer.BadParameter(f"--cache must be one of {', '.join(CACHE_MODES)}")
    if workers == "auto":
        processes = auto_workers(concurrency, in_process=url is None)
    elif workers.isdecimal():
        processes = int(workers)
    else:
        raise typer.BadParameter(f"--workers must be a number or 'auto', not {workers!r}")
    config = EvalConfig(
        dataset=dataset, tags=_split(tags), ids=_split(ids), trials=trials, concurrency=concurrency,
        turn_timeout=turn_timeout, prompt=prompt, model=model, url=url, token_secret=token_secret, token_file=tokens,
        cache_mode=cache, cache_file=cache_file, prune_cache=prune_cache, deepeval=deepeval,  # type: ignore[arg-type]
        workers=processes,
    )  # fmt: skip
    try:
        config.validate()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return config


def _run(config: EvalConfig) -> RunResult:
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
        TextColumn("[bold]eval[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False, auto_refresh=False,
    )  # fmt: skip
    counts = {"passed": 0, "failed": 0}
    task_id = progress.add_task("starting", total=None)

    def on_start(total: int) -> None:
        progress.update(task_id, total=total, description="running", refresh=True)

    def on_result(outcome: TrialOutcome) -> None:
        counts["passed" if outcome.score.passed else "failed"] += 1
        progress.update(task_id, advance=1, description=f"[green]{counts['passed']} passed[/green] "
                        f"[red]{counts['failed']} failed[/red]", refresh=True)  # fmt: skip
        if not outcome.score.passed:
            kinds = ", ".join(outcome.score.failure_kinds)
            progress.console.print(f"  [red]✗[/red] {outcome.case.id} (trial {outcome.transcript.trial}): {kinds}")

    try:
        with progress:
            return asyncio.run(run_evals(config, dataset=dataset, on_start=on_start, on_result=on_result))
    except (OSError, RuntimeError) as exc:
        console.print(f"[red]the run could not complete:[/red] {exc}")
        raise typer.Exit(ExitCode.RUN_FAILED) from exc


def _load_results(path: Path) -> RunResult:
    try:
        return RunResult.load(path)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(ExitCode.DATASET_INVALID) from exc


def _write_reports(result: RunResult, out: Path, comparison: Comparison | None, verdict: GateResult | None) -> str:
    out.mkdir(parents=True, exist_ok=True)
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


@app.command("run")
def run_command(
    dataset: DatasetOpt = DEFAULT_DATASET,
    tags: TagsOpt = None,
    ids: IdsOpt = None,
    trials: TrialsOpt = 1,
    concurrency: ConcurrencyOpt = 4,
    workers: WorkersOpt = "1",
    turn_timeout: TimeoutOpt = 120.0,
    prompt: PromptOpt = None,
    model: ModelOpt = None,
    url: UrlOpt = None,
    token_secret: SecretOpt = None,
    tokens: TokensOpt = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Fail (exit 1) on any regression against this results file.")
    ] = None,
    min_pass: Annotated[
        float | None,
        typer.Option(
            "--min-pass", min=0.0, max=1.0, help="Fail (exit 3) when the case pass rate is below this fraction."
        ),
    ] = None,
    out: OutOpt = None,
    cache: CacheOpt = "off",
    cache_file: CacheFileOpt = None,
    deepeval: DeepevalOpt = True,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print the Markdown report.")] = False,
) -> None:
    """Run the suite and write results.json, report.md, report.html and junit.xml.

    Exit codes: 0 passed; 1 regression against --baseline; 2 usage error; 3 pass rate below --min-pass;
    4 invalid dataset/baseline; 5 run could not complete (or a miss in strict --cache replay).
    """
    config = _config(dataset, tags, ids, trials, concurrency, turn_timeout, prompt, model, url, token_secret, tokens,
                     cache, cache_file, deepeval, workers=workers)  # fmt: skip
    base = _load_results(baseline) if baseline else None
    result = _run(config)
    comparison = compare(base, result) if base else None
    verdict = gate(result, comparison, min_pass=min_pass)
    missed = _strict_replay_missed(result)
    if missed and verdict.exit_code == ExitCode.OK:
        verdict = GateResult(ExitCode.RUN_FAILED, (f"{missed} model request(s) missed the replay cache",))
    folder = out or DEFAULT_OUT / result.info.run_id
    markdown = _write_reports(result, folder, comparison, verdict)
    if not quiet:
        typer.echo(markdown)
    console.print(f"results and reports in {folder}")
    if comparison is not None and comparison.flaky:
        console.print(f"[yellow]{len(comparison.flaky)} flaky case(s) reported, not failed[/yellow]")
    if not verdict.passed:
        for reason in verdict.reasons:
            console.print(f"[red]{reason}[/red]")
    raise typer.Exit(int(verdict.exit_code))


@app.command("compare")
def compare_command(
    baseline: Annotated[Path, typer.Argument(help="The baseline results file.")],
    candidate: Annotated[Path, typer.Argument(help="The candidate results file.")],
    out: Annotated[Path | None, typer.Option("--out", help="Also write report.md/report.html/junit.xml here.")] = None,
) -> None:
    """Print newly failing (regressions) and newly passing cases with the evidence side by side; exit 1 on a
    regression."""
    base, cand = _load_results(baseline), _load_results(candidate)
    comparison = compare(base, cand)
    verdict = gate(cand, comparison, min_pass=None)
    markdown = render_markdown(cand, comparison=comparison, gate=verdict)
    if out is not None:
        _write_reports(cand, out, comparison, verdict)
    typer.echo(markdown)
    raise typer.Exit(int(verdict.exit_code))


@app.command("baseline")
def baseline_command(
    from_results: Annotated[
        Path | None, typer.Option("--from", help="Promote this results file instead of running the suite.")
    ] = None,
    rescore_results: Annotated[
        bool,
        typer.Option(
            "--rescore",
            help="With --from: score its transcripts again against the current dataset (expectations changed, "
            "the model's answers did not).",
        ),
    ] = False,
    to: Annotated[Path, typer.Option("--to", help="The baseline file to write.")] = DEFAULT_BASELINE,
    dataset: DatasetOpt = DEFAULT_DATASET,
    trials: TrialsOpt = 1,
    concurrency: ConcurrencyOpt = 2,
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
        _write_reports(result, DEFAULT_OUT / result.info.run_id, None, None)
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
