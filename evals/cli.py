"""`todo-agent eval ...`: run the suite, compare runs, update the baseline."""

from __future__ import annotations

import typer

app = typer.Typer(help="Eval suite: replay scripted conversations and score the agent.", no_args_is_help=True)
