"""`todo-agent`: serve the product, run the local model, mint a token, migrate the database, run evals.

The eval suite and the playground are subcommands when their extras are installed; `serve` starts the app of
`todo_agent.app`. Heavy imports (uvicorn, the eval stack, Gradio) happen inside the commands that need them.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from backend.settings import Settings, SettingsError
from backend.settings import get_settings as _get_settings

app = typer.Typer(
    help="todo-agent: chat backend, prompt playground and eval suite.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: readable at 80 columns
    pretty_exceptions_show_locals=False,  # a traceback's locals can hold secrets
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
model_app = typer.Typer(
    help="The local model server. It runs in a process of its own, started by the first command that needs it, "
    "and outlives that command (the API server, the playground and eval runs all share it, and loading it takes "
    "a while): `todo-agent model status` shows it, `todo-agent model stop` frees its memory (about 2 GB).",
)
app.add_typer(model_app, name="model")
console = Console(stderr=True, soft_wrap=True)  # a message is one line, whatever the width


def get_settings() -> Settings:
    """The environment's settings, or one clear line and exit 2 when the configuration is refused."""
    try:
        return _get_settings()
    except SettingsError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", markup=True, highlight=False)
        raise typer.Exit(2) from None


def _ensure_model() -> None:
    """Start the one local model server of this machine unless it is already up (or a hosted model is used)."""
    settings = get_settings()
    if not settings.is_local_model:
        return
    from backend.bundled_model import local_runtime_problem

    if problem := local_runtime_problem(settings.resolved_model_dir):
        console.print(
            escape(f"local model off: {problem}; turns answer 502 until AGENT_MODEL names a reachable model"),
            highlight=False,
        )
        return
    from backend.llm.local_server import ensure_local_model_server

    with console.status("Starting the local model (first start joins and verifies 1.1 GB of weights)..."):
        url = ensure_local_model_server(settings)
    console.print(f"[green]local model ready[/green] at {url}")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="Bind address (default HOST or 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(metavar="PORT", help="Port (default PORT or 8000)")] = None,
    workers: Annotated[int | None, typer.Option(metavar="N", help="uvicorn workers (default WORKERS or 1)")] = None,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development)")] = False,
) -> None:
    """Serve the API (and the playground in development), starting the local model if needed."""
    import uvicorn

    from backend import db
    from backend.metrics import MULTIPROC_ENV, prepare_multiprocess
    from backend.observability import logging_config

    settings = get_settings()
    engine = db.build_engine(settings)
    db.upgrade(engine)  # once, before the workers start
    engine.dispose()
    _ensure_model()
    address: str = host or settings.host
    number: int = port or settings.port
    processes = workers or settings.workers
    options: dict[str, Any] = {
        "factory": True,
        "host": address,
        "port": number,
        "workers": None if reload else processes,
        "reload": reload,
        "proxy_headers": True,
        "log_config": logging_config(),
    }
    if processes > 1 and not os.environ.get(MULTIPROC_ENV):  # /metrics sums the workers' counts
        prepare_multiprocess(settings.data_dir / "prometheus")
    if reload or processes > 1:  # uvicorn's supervisors run the servers: say where, before they start
        typer.echo(ready_lines(settings, address, number, starting=True))
        uvicorn.run("todo_agent.app:create_app", **options)
        return

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # the app started and the socket listens: every URL below answers now
                typer.echo(ready_lines(settings, address, number))

    AnnouncingServer(uvicorn.Config("todo_agent.app:create_app", **options)).run()


def ready_lines(settings: Settings, host: str, port: int, *, starting: bool = False) -> str:
    """Where the product answers: the API, its docs, the playground and the ChatKit demo (those that are on)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    lines = [f"todo-agent {'starting' if starting else 'ready'}:", f"  API         {base}/api/{{user_id}}/chat"]
    if settings.docs_on:
        lines.append(f"  API docs    {base}/docs")
    if settings.playground_on and importlib.util.find_spec("gradio") is not None:
        lines.append(f"  playground  {base}/playground")
    if settings.chatkit_demo_on:
        lines.append(f"  ChatKit     {base}/chatkit/demo")
    lines.append(f"  MCP         {base}/mcp")
    return "\n".join(lines)


@app.command()
def playground(
    host: Annotated[str, typer.Option(envvar="PLAYGROUND_HOST", metavar="ADDRESS", help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PLAYGROUND_PORT", metavar="PORT", help="Port")] = 7860,
) -> None:
    """Run the prompt playground alone (chat, prompt editor, evals), starting the local model if needed."""
    _missing("playground", "gradio")
    from playground import launch

    settings = get_settings()
    if not settings.playground_on:
        console.print("[red]the playground is off in production unless PLAYGROUND_ENABLED=true[/red]")
        raise typer.Exit(2)
    _ensure_model()
    console.print(f"playground on http://{host}:{port}")
    launch(settings, host=host, port=port)


@model_app.callback(invoke_without_command=True)
def model(ctx: typer.Context) -> None:
    """With no command: run the local model server in the foreground (every
    worker and tool reuses it; Ctrl-C stops it)."""
    if ctx.invoked_subcommand is not None:
        return
    from backend.llm.local_server import run_local_model_server

    run_local_model_server(get_settings())


def _resident_mib(pid: int) -> str:
    """The process's resident memory, from /proc (Linux); empty elsewhere."""
    try:
        for line in open(f"/proc/{pid}/status", encoding="ascii"):  # noqa: SIM115
            if line.startswith("VmRSS:"):
                return f", {int(line.split()[1]) // 1024} MiB resident"
    except (OSError, ValueError):
        pass
    return ""


@model_app.command("status")
def model_status() -> None:
    """Say whether the local model server is up (exit 0) or not (exit 1)."""
    from backend.llm.local_server import local_model_health

    settings = get_settings()
    where = f"{settings.local_model_host}:{settings.local_model_port}"
    health = local_model_health(settings)
    if health is None:
        typer.echo(f"no local model server answers on {where}")
        raise typer.Exit(1)
    pid = health.get("pid")
    memory = _resident_mib(pid) if isinstance(pid, int) else ""
    typer.echo(
        f"local model {health.get('model')} up on {where}: pid {pid}, {health.get('slots', 1)} slot(s), "
        f"loaded in {health.get('load_seconds')} s{memory}"
    )


@model_app.command("stop")
def model_stop() -> None:
    """Stop the local model server running in the background (frees its memory)."""
    from backend.llm.local_server import stop_local_model_server

    settings = get_settings()
    if stop_local_model_server(settings):
        typer.echo(f"stopped the local model server on port {settings.local_model_port}")
    else:
        typer.echo(f"no local model server was running on port {settings.local_model_port}")


@app.command()
def token(
    user_id: Annotated[str, typer.Argument(help="The user the token names (its `sub` claim)")],
    ttl: Annotated[int, typer.Option(metavar="SECONDS", help="Lifetime in seconds")] = 86400,
) -> None:
    """Print a JWT that the running configuration accepts (HS256 with BETTER_AUTH_SECRET or the dev secret)."""
    from backend.auth import mint_token

    try:
        typer.echo(mint_token(get_settings(), user_id, ttl_seconds=ttl))
    except RuntimeError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from exc


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations to DATABASE_URL."""
    from backend import db

    engine = db.build_engine(get_settings())
    db.upgrade(engine, revision)
    console.print(f"[green]database at {revision}[/green]")


def _missing(extra: str, module: str) -> None:
    if importlib.util.find_spec(module) is None:
        console.print(f"[red]{escape(f'this needs the {extra} extra: pip install todo-agent[{extra}]')}[/red]")
        raise typer.Exit(2)


@app.command(
    "eval",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    help="The eval suite: run, compare, baseline, validate, schema (`todo-agent eval --help`).",
)
def eval_command(ctx: typer.Context) -> None:
    """Hands its arguments to the eval CLI, imported only now: `serve` never loads the eval stack."""
    _missing("evals", "pandas")
    # deepeval reads these when it is imported: set them before anything can import it.
    os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
    os.environ.setdefault("DEEPEVAL_DISABLE_DOTENV", "1")
    from evals.cli import app as eval_app

    eval_app(list(ctx.args), prog_name="todo-agent eval")
