"""Benchmark the local model server: load time, first and warm request latency, peak RSS, and whether the
reference requests get the right first tool call.

    python bench/local_model.py [--port 8183] [--keep]

It spawns its own server (on a port of its own, so a dev server is not disturbed) exactly as the backend does,
through `ensure_local_model_server`, and stops it afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from backend.llm.local_server import (
    ensure_local_model_server,
    local_model_health,
    stop_local_model_server,
)
from backend.settings import Settings
from backend.tools import chat_completions_tools

SYSTEM_PROMPT = (
    "You are a friendly todo-list assistant. When the user asks to add, list, complete, delete or change "
    "tasks, call the matching tool. A task's number is its task_id. For greetings or anything else, reply "
    "briefly in plain text without calling a tool."
)


TOOLS = chat_completions_tools()  # the schemas the agent really sends

Check = Callable[[str, dict[str, Any]], bool]


def _status(args: dict[str, Any]) -> str:
    return str(args.get("status") or "all")


# The design's reference set; "Delete the meeting task" has no id in context, so looking it up comes first.
REFERENCE: list[tuple[str, Check]] = [
    (
        "Add a task to buy groceries",
        lambda n, a: n == "add_task" and "groceries" in str(a.get("title")).lower(),
    ),
    ("Show me all my tasks", lambda n, a: n == "list_tasks" and _status(a) == "all"),
    ("What's pending?", lambda n, a: n == "list_tasks" and _status(a) == "pending"),
    ("Mark task 3 as complete", lambda n, a: n == "complete_task" and str(a.get("task_id")) == "3"),
    ("Delete the meeting task", lambda n, a: n == "list_tasks"),
    (
        "Change task 1 to 'Call mom tonight'",
        lambda n, a: (
            n == "update_task"
            and str(a.get("task_id")) == "1"
            and str(a.get("title")).strip("'\"").lower() == "call mom tonight"
        ),
    ),
    (
        "I need to remember to pay bills",
        lambda n, a: n == "add_task" and "bills" in str(a.get("title")).lower(),
    ),
    ("What have I completed?", lambda n, a: n == "list_tasks" and _status(a) == "completed"),
]


class PeakRss:
    """Samples a process's RSS in the background; also reads the kernel's high-water mark where it exists."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        status = Path(f"/proc/{self.process.pid}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak = max(self.peak, int(line.split()[1]) * 1024)
        return self.peak


def ask(client: httpx.Client, text: str) -> tuple[float, str | None, dict[str, Any], str]:
    """One chat request; returns latency, first tool call (name, args) and any text."""
    body = {
        "model": "local",
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}],
        "tools": TOOLS,
    }
    started = time.perf_counter()
    response = client.post("/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    message = response.json()["choices"][0]["message"]
    calls = message.get("tool_calls") or []
    if not calls:
        return elapsed, None, {}, message.get("content") or ""
    function = calls[0]["function"]
    return elapsed, function["name"], json.loads(function["arguments"]), message.get("content") or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8183)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the server running")
    options = parser.parse_args()
    settings = Settings(data_dir=options.data_dir, local_model_port=options.port)

    already_up = local_model_health(settings) is not None
    started = time.perf_counter()
    base_url = ensure_local_model_server(settings, timeout=300)
    spawn_to_healthy = time.perf_counter() - started
    health = local_model_health(settings) or {}
    rss = PeakRss(int(health["pid"]))
    if already_up:
        print("server was already running: load time not measured")
    else:
        print(f"load: {spawn_to_healthy:.2f}s spawn→healthy (model load inside: {health.get('load_seconds')}s)")

    try:
        with httpx.Client(base_url=base_url, timeout=300) as client:
            results = [(text, check, *ask(client, text)) for text, check in REFERENCE]
            first = results[0][2]
            warm = [ask(client, text)[0] for text, _ in REFERENCE[1 : 1 + options.warm_runs]]
            hello = ask(client, "Hello!")
    finally:
        peak = rss.stop()
        if not already_up and not options.keep:
            stop_local_model_server(settings)

    print(f"first request: {first:.2f}s")
    print(f"warm requests: p50 {statistics.median(warm):.2f}s (n={len(warm)}, max {max(warm):.2f}s)")
    print(f"peak RSS of the server: {peak / 2**30:.2f} GiB")
    correct = 0
    for text, check, elapsed, name, args, content in results:
        ok = name is not None and check(name, args)
        correct += ok
        shown = f"{name}({json.dumps(args)})" if name else f"text: {content[:60]!r}"
        print(f"  {'ok ' if ok else 'BAD'} {elapsed:5.2f}s  {text!r} -> {shown}")
    print(f"reference requests with the right first tool call: {correct}/{len(results)}")
    print(f"'Hello!' -> {'tool call ' + str(hello[1]) if hello[1] else 'text ' + repr(hello[3][:60])}")


if __name__ == "__main__":
    main()
