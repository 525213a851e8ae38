"""`todo-agent`: serve the product, run the local model, mint a token, migrate the database, run evals.

The eval suite and the playground are subcommands when their extras are installed; `serve` starts the app of
`todo_agent.app`. Heavy imports (uvicorn, the eval stack, Gradio) happen inside the commands that need them.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Annotated

import typer
from rich.console import Console

from backend.settings import Settings, SettingsError
from backend.settings import get_settings as _get_settings

app = typer.Typer(
    help="todo-agent: chat backend, prompt playground and eval suite.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a traceback's locals can hold secrets
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console(stderr=True)


def get_settings() -> Settings:
    """The environment's settings, or one clear line and exit 2 when the configuration is refused."""
    try:
        return _get_settings()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/red]", markup=True, highlight=False)
        raise typer.Exit(2) from None


def _ensure_model() -> None:
    """Start the one local model server of this machine unless it is already up (or a hosted model is used)."""
    settings = get_settings()
    if not settings.is_local_model:
        return
    from backend.llm.local_server import ensure_local_model_server

    with console.status("Starting the local model (first start joins and verifies 1.1 GB of weights)..."):
        url = ensure_local_model_server(settings)
    console.print(f"[green]local model ready[/green] at {url}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PORT or 8000)")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn workers (default WORKERS or 1)")] = None,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development)")] = False,
) -> None:
    """Serve the API (and the playground in development), starting the local model if needed."""
    import uvicorn

    from backend import db
    from backend.observability import logging_config

    settings = get_settings()
    engine = db.build_engine(settings)
    db.upgrade(engine)  # once, before the workers start
    engine.dispose()
    _ensure_model()
    host = host or settings.host
    port = port or settings.port
    console.print(f"serving on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    uvicorn.run(
        "todo_agent.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=None if reload else (workers or settings.workers),
        reload=reload,
        proxy_headers=True,
        log_config=logging_config(),
    )


@app.command()
def playground(
    host: Annotated[str, typer.Option(envvar="PLAYGROUND_HOST", help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PLAYGROUND_PORT", help="Port")] = 7860,
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


@app.command()
def model() -> None:
    """Run the local model server alone, in the foreground (every worker and tool reuses it)."""
    from backend.llm.local_server import run_local_model_server

    run_local_model_server(get_settings())


@app.command()
def token(
    user_id: Annotated[str, typer.Argument(help="The user the token names (its `sub` claim)")],
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds")] = 86400,
) -> None:
    """Print a JWT that the running configuration accepts (HS256 with BETTER_AUTH_SECRET or the dev secret)."""
    from backend.auth import mint_token

    try:
        typer.echo(mint_token(get_settings(), user_id, ttl_seconds=ttl))
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
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
        console.print(f"[red]this needs the {extra} extra: pip install 'todo-agent[{extra}]'[/red]")
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
