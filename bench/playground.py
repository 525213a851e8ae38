"""The playground's two figures with the local model (AGENT_MODEL=local), measured as a browser would see them:

1. time from clicking send to the first tool-call message in the chat (gradio_client submits to the same `/chat`
   event the Send button triggers and watches the streamed chat for the first tool-call message);
2. time from clicking Run on the eval tab (`/run_evals`, the Run button's event) to the results table's last row,
   for the cases of the tags given (default `smoke`; `--tags update` is a 10-case run), with the progress panel's
   last live line.

    python bench/playground.py [--turns 5] [--tags smoke] [--no-evals]

The playground is launched standalone (`playground.launch`, what `todo-agent playground` runs) on a free loopback
port with a throwaway SQLite database; the local model server is reused when one is up, started otherwise
(`ensure_local_model_server`, once per machine) and left running.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as `python bench/playground.py`, this folder comes first on sys.path and this file would shadow the
# `playground` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from gradio_client import Client  # noqa: E402

from backend.llm.local_server import ensure_local_model_server  # noqa: E402
from backend.settings import LOCAL_MODEL, Settings  # noqa: E402
from playground import launch  # noqa: E402
from playground.chat_handlers import tool_call_messages  # noqa: E402

MESSAGES = [
    "Add a task to buy groceries",
    "Show me all my tasks",
    "Mark task 1 as complete",
    "What's pending?",
    "I need to remember to pay bills",
    "Change task 2 to 'Call mom tonight'",
    "What have I completed?",
    "Delete task 1",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def send_to_first_tool_call(client: Client, message: str) -> tuple[float | None, float, list[str]]:
    """Seconds from submit to the first streamed chat holding a tool-call message, to the end, and the tools
    (or, when the model called none, what it did instead)."""
    started = time.perf_counter()
    first: float | None = None
    job = client.submit(message, api_name="/chat")
    for output in job:
        if first is None and tool_call_messages(output[0]):
            first = time.perf_counter() - started
    messages, _, _, raw, _ = job.result()
    total = time.perf_counter() - started
    tools = [m["metadata"]["title"] for m in tool_call_messages(messages)]
    if not tools:
        error = raw.get("error")
        tools = [f"error {error['code']}: {error['message']}" if error else f"replied {raw.get('response', '')[:60]!r}"]
    return first, total, tools


def click_to_last_row(client: Client, tags: list[str]) -> None:
    """Print the seconds from clicking Run to the streamed update that fills the results table, the first live
    progress update, and the last progress line shown before the table arrived."""
    started = time.perf_counter()
    first_progress: float | None = None
    last_progress = ""
    job = client.submit(tags, "All cases", api_name="/run_evals")
    for output in job:
        progress = output[0]
        if first_progress is None and progress:
            first_progress = time.perf_counter() - started
        if isinstance(progress, str) and progress and not _filled(output):
            last_progress = progress
    outputs: Any = job.result()
    seconds = time.perf_counter() - started
    rows = len(outputs[2]["data"]) if _filled(outputs) else 0
    first = f"{first_progress:.1f} s" if first_progress is not None else "never"
    print(f"eval tab, tags {tags}: click → last row {seconds:.1f} s for {rows} cases (first progress {first})")
    print(f"  last live progress: {' '.join(last_progress.split())[:300]}")
    print(f"  summary: {' '.join(str(outputs[1]).split())[:300]}")


def _filled(output: Any) -> bool:
    """Whether a streamed update carries the results table (the live updates leave it unchanged)."""
    table = output[2] if len(output) > 2 else None
    return isinstance(table, dict) and bool(table.get("data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=5, help="chat turns to time (each in a new conversation)")
    parser.add_argument("--tags", default="smoke", help="comma-separated tags the eval run selects")
    parser.add_argument("--no-evals", action="store_true", help="skip the eval run")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="playground-bench-"))
    settings = Settings(  # type: ignore[call-arg]
        agent_model=LOCAL_MODEL, database_url=f"sqlite:///{workdir / 'bench.db'}", playground_enabled=True
    )
    started = time.perf_counter()
    ensure_local_model_server(settings)
    print(f"local model ready in {time.perf_counter() - started:.1f} s at {settings.local_model_base_url}")
    blocks = launch(settings, port=_free_port(), block=False)
    try:
        client = Client(blocks.local_url, verbose=False)
        firsts: list[float] = []
        totals: list[float] = []
        for index in range(args.turns):
            message = MESSAGES[index % len(MESSAGES)]
            client.predict(api_name="/new_conversation")
            first, total, tools = send_to_first_tool_call(client, message)
            shown = f"{first:.2f} s" if first is not None else "no tool call"
            print(f"  send → first tool-call message {shown:>12} | whole turn {total:5.2f} s | {message!r}: {tools}")
            if first is not None:
                firsts.append(first)
            totals.append(total)
        if firsts:
            print(
                f"send → first tool-call message (local model): median {statistics.median(firsts):.2f} s, "
                f"min {min(firsts):.2f} s, max {max(firsts):.2f} s over {len(firsts)} turn(s); "
                f"whole turn median {statistics.median(totals):.2f} s"
            )
        if not args.no_evals:
            click_to_last_row(client, [t.strip() for t in args.tags.split(",") if t.strip()])
    finally:
        blocks.close()


if __name__ == "__main__":
    main()
