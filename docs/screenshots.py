"""Regenerate the README's screenshots (docs/playground-*.png): the playground on the scripted model, driven by
headless Chromium over the DevTools protocol (a chat turn, a prompt edit, a smoke eval run in progress and done, the
saved runs side by side). `make screenshots` runs it (Debian's chromium, installed with apt when missing).

    python docs/screenshots.py [--out docs]

Deterministic and offline: the rule-based scripted model answers, the database is a throwaway SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import websockets

from backend import db
from backend.llm.provider import build_model
from backend.main import create_app
from backend.settings import Settings
from evals.reference_agent import reference_responder
from evals.scripted_model import Reply, asgi_http_client, create_scripted_app, last_user_text
from evals.runs import RunStore
from evals.suite import EvalConfig, run_evals
from playground.context import PlaygroundContext
from playground.door import launch

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--hide-scrollbars",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Page:
    """The few DevTools calls the screenshots need."""

    def __init__(self, socket_: Any) -> None:
        self.socket = socket_
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.socket.recv())
            if reply.get("id") == self.next_id:
                result: dict[str, Any] = reply.get("result", {})
                return result

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not await self.js(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:g}s for {expression}")
            await asyncio.sleep(0.3)

    async def click(self, element_expression: str) -> None:
        """A real mouse click in the middle of the element (some widgets ignore synthetic click events)."""
        box = await self.js(f"(() => {{ const e = ({element_expression}); e.scrollIntoView({{block: 'center'}}); "
                            "const r = e.getBoundingClientRect(); "
                            "return [r.x + r.width / 2, r.y + r.height / 2]; })()")  # fmt: skip
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    async def screenshot(self, path: Path, height: int) -> None:
        await self.call(
            "Emulation.setDeviceMetricsOverride", width=1400, height=height, deviceScaleFactor=1, mobile=False
        )
        await asyncio.sleep(1.0)
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {path}")


TYPE_AND_SEND = """(() => {
  const box = document.querySelector('#chat-input textarea');
  box.value = %s; box.dispatchEvent(new Event('input', {bubbles: true}));
  document.querySelector('#send').click(); return true; })()"""


EDIT_PROMPT = """(() => {
  const [before, after] = %s;
  const view = document.querySelector('#prompt-editor .cm-content').cmView.view;  // CodeMirror 6's editor view
  const at = view.state.doc.toString().indexOf(before);
  view.dispatch({changes: {from: at, to: at + before.length, insert: after}}); return true; })()"""


async def _drive(url: str, out: Path, debug_port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(60):
            try:
                targets = (await client.get(f"http://127.0.0.1:{debug_port}/json/list")).json()
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.5)
    target = next(t for t in targets if t.get("type") == "page")
    async with websockets.connect(target["webSocketDebuggerUrl"], max_size=50_000_000) as ws:
        page = Page(ws)
        await page.call(
            "Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False
        )
        await page.call("Page.navigate", url=url)
        await page.wait_for("!!document.querySelector('#chat-input textarea')")
        await page.wait_for("document.body.innerText.includes('acting as')")  # the page's load event has run
        for message in ("Add a task to buy groceries", "Add a task to call mom", "Mark task 1 as complete",
                        "Delete task 7"):  # fmt: skip
            count = await page.js("document.querySelectorAll('#chatbot .message-row, #chatbot .message').length")
            await page.js(TYPE_AND_SEND % json.dumps(message))
            await page.wait_for(
                f"document.querySelectorAll('#chatbot .message-row, #chatbot .message').length > {count}"
            )
            await asyncio.sleep(1.5)
        # Open the failed tool call and the raw JSON of the turn.
        await page.click("[...document.querySelectorAll('#chatbot button, #chatbot .title, #chatbot span')]"
                         ".filter(e => e.innerText && e.innerText.includes('delete_task')).pop()")  # fmt: skip
        await page.click("[...document.querySelectorAll('button, span')]"
                         ".find(e => e.innerText && e.innerText.trim() === 'Last turn (raw JSON)')")  # fmt: skip
        await asyncio.sleep(1.5)
        await page.screenshot(out / "playground-chat.png", 1000)

        await page.js("document.querySelector('#tab-prompt-button').click(), true")
        await page.wait_for("!!document.querySelector('#prompt-editor .cm-content')")
        await page.js(EDIT_PROMPT % json.dumps(["in one short, friendly sentence", "in at most eight words"]))
        await asyncio.sleep(2.0)
        await page.screenshot(out / "playground-prompt.png", 1100)

        await page.js("document.querySelector('#tab-evals-button').click(), true")
        await page.wait_for("[...document.querySelectorAll('button')].some(b => b.innerText.startsWith('Run evals'))")
        await page.js(
            "[...document.querySelectorAll('button')].find(b => b.innerText.startsWith('Run evals')).click(), true"
        )
        # Mid-run: the model answers slowly (see `_slowed`), so the panel shows counts, the cases running, an ETA.
        await page.wait_for("/left · running/.test(document.querySelector('#eval-progress').innerText)", timeout=60)
        await page.screenshot(out / "playground-progress.png", 560)
        await page.wait_for("/· done/.test(document.querySelector('#eval-progress').innerText)", timeout=180)
        await page.wait_for("document.querySelectorAll('#eval-results [role=gridcell]').length > 0", timeout=30)
        await asyncio.sleep(1.0)
        await page.click("""[...document.querySelectorAll('#eval-results [role=gridcell]')]
            .find(c => c.innerText.trim() === 'ref-add-groceries')""")
        await page.wait_for("!document.body.innerText.includes('Pick a case in the table.')", timeout=20)
        await asyncio.sleep(2.5)
        await page.screenshot(out / "playground-evals.png", 1900)

        # The Runs tab: both saved runs, then side by side (the first picked is the reference).
        await page.js("document.querySelector('#tab-runs-button').click(), true")
        await page.wait_for("document.querySelectorAll('#runs-list [role=gridcell]').length >= 2", timeout=30)
        for label in ("fumbled", "system_v2"):
            await page.click("document.querySelector('#run-pick input')")
            await page.wait_for("document.querySelectorAll('ul[role=listbox] li').length > 0")
            await page.click(
                f"[...document.querySelectorAll('ul[role=listbox] li')].find(li => li.innerText.includes({label!r}))"
            )
            await asyncio.sleep(1.0)
        await page.wait_for("document.querySelectorAll('#runs-matrix [role=gridcell]').length >= 10", timeout=30)
        await page.click("document.querySelector('#runs-list')")  # close the dropdown
        await page.click("""[...document.querySelectorAll('#runs-matrix [role=gridcell]')]
            .find(c => c.innerText.trim() === 'ref-add-groceries')""")
        await page.wait_for("!document.body.innerText.includes('Pick a case and a run.')", timeout=20)
        await asyncio.sleep(2.0)
        await page.screenshot(out / "playground-runs.png", 2100)


async def _baseline_with_a_failure(settings: Settings, path: Path) -> None:
    """A smoke baseline where the reference agent fumbled one case, so the screenshot shows a change."""

    def responder(request: dict[str, Any]) -> Reply:
        if "groceries" in last_user_text(request).lower() and not any(
            m.get("role") == "tool" for m in request.get("messages", [])
        ):
            return Reply(text="Sure, groceries noted!")  # claims it, calls nothing
        return reference_responder(request)

    config = EvalConfig(tags=["smoke"], settings=settings, responder=responder, deepeval=False)
    result = await run_evals(config, label="fumbled")
    result.save(path)
    RunStore.default(settings).save(result)  # also a saved run, for the Runs tab


def _slowed(request: dict[str, Any]) -> Reply:
    """The reference agent at a hosted model's pace: the progress panel has time to show a run in flight."""
    return replace(reference_responder(request), delay=1.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="playground-shots-"))
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=root, database_url=f"sqlite:///{root / 'shots.db'}", agent_model="scripted",
        openai_base_url="http://scripted.test/v1", openai_api_key="none", playground_enabled=True,
    )  # fmt: skip
    model = build_model(settings, http_client=asgi_http_client(create_scripted_app(reference_responder)))
    app = create_app(settings, model=model, migrate=False)
    db.upgrade(app.state.engine)
    baseline = root / "baseline.json"
    asyncio.run(_baseline_with_a_failure(settings, baseline))
    context = PlaygroundContext(settings, app.state.chat, baseline=baseline, eval_responder=_slowed)
    blocks = launch(settings, port=_free_port(), block=False, context=context)
    debug_port = _free_port()
    browser = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={root / 'profile'}", f"--remote-debugging-port={debug_port}",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        asyncio.run(_drive(blocks.local_url + "?tab=chat", args.out, debug_port))
    finally:
        browser.terminate()
        browser.wait(timeout=10)
        blocks.close()
        app.state.engine.dispose()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
