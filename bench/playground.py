"""The playground's two figures with the local model (AGENT_MODEL=local), measured as a browser would see them:

1. time from clicking send to the first tool-call message in the chat (gradio_client submits to the same `/chat`
   event the Send button triggers and watches the streamed chat for the first tool-call message);
2. time to run the `smoke` tag from the eval tab (`/run_evals`, the Run button's event).

    python bench/playground.py [--turns 5] [--no-evals]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=5, help="chat turns to time (each in a new conversation)")
    parser.add_argument("--no-evals", action="store_true", help="skip the smoke-tag eval run")
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
            started = time.perf_counter()
            result: Any = client.predict(["smoke"], "All cases", api_name="/run_evals")
            seconds = time.perf_counter() - started
            summary, table = result[0], result[1]
            print(f"eval tab, smoke tag ({len(table['data'])} cases, local model): {seconds:.1f} s — {summary}")
    finally:
        blocks.close()


if __name__ == "__main__":
    main()
