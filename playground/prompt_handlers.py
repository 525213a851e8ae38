"""Prompt editor handlers: load a versioned prompt, save the edit as a new version (a file, so it lands in git),
and diff it against the baseline prompt (the one the server is configured with)."""

from __future__ import annotations

import difflib
import html
import re
from pathlib import Path

from backend.prompts import load_prompt, prompt_version
from playground.context import PlaygroundContext
from playground.session import PlaygroundSession

VERSION_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def prompt_files(ctx: PlaygroundContext) -> dict[str, Path]:
    """Every saved version by name; the baseline is listed even when it lives outside the prompts folder."""
    found = {path.stem: path for path in sorted(ctx.prompts_dir.glob("*.md"))}
    found.setdefault(ctx.baseline_prompt_file.stem, ctx.baseline_prompt_file)
    return found


def load(ctx: PlaygroundContext, session: PlaygroundSession, name: str) -> PlaygroundSession:
    files = prompt_files(ctx)
    if name not in files:
        raise ValueError(f"no prompt version named {name!r}")
    session.prompt_name = name
    session.prompt_text = load_prompt(files[name])
    return session


def edit(ctx: PlaygroundContext, session: PlaygroundSession, text: str) -> PlaygroundSession:
    """The editor's text is what the next turn and eval run use; it keeps its name only while unchanged."""
    if session.prompt_name:
        saved = prompt_files(ctx).get(session.prompt_name)
        if saved is None or load_prompt(saved) != text:
            session.prompt_name = ""
    session.prompt_text = text
    return session


def save_version(ctx: PlaygroundContext, session: PlaygroundSession, name: str, text: str) -> Path:
    """Write the text as `<prompts_dir>/<name>.md`; an existing version is never overwritten."""
    name = name.strip().removesuffix(".md")
    if not VERSION_NAME.match(name):
        raise ValueError("a version name is lowercase letters, digits, '_', '-' or '.', e.g. system_v2")
    if not text.strip():
        raise ValueError("the prompt is empty")
    path = ctx.prompts_dir / f"{name}.md"
    if path.exists():
        raise FileExistsError(f"{path.name} already exists: versions are immutable, pick a new name")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    session.prompt_name = name
    session.prompt_text = text
    return path


def saved_file_for(ctx: PlaygroundContext, text: str) -> Path | None:
    """The saved version whose bytes are exactly `text`, if any."""
    return next((path for path in prompt_files(ctx).values() if load_prompt(path) == text), None)


def diff_text(ctx: PlaygroundContext, text: str) -> str:
    baseline = load_prompt(ctx.baseline_prompt_file)
    lines = difflib.unified_diff(
        baseline.splitlines(),  # by content: a last line that only lost its newline in the editor is untouched
        text.splitlines(),
        fromfile=f"baseline: {ctx.baseline_prompt_file.name} ({prompt_version(baseline)})",
        tofile=f"edited ({prompt_version(text)})",
        lineterm="",
    )
    return "\n".join(lines)


def diff_html(ctx: PlaygroundContext, text: str) -> str:
    diff = diff_text(ctx, text)
    if not diff:
        return f"<p>Same as the baseline prompt <code>{html.escape(ctx.baseline_prompt_file.name)}</code>.</p>"
    colours = {"+": "#e6ffec", "-": "#ffebe9", "@": "#ddf4ff"}
    rows = []
    for line in diff.splitlines():
        colour = colours.get(line[:1], "transparent")
        if line.startswith(("+++", "---")):
            colour = "#f6f8fa"
        rows.append(f'<div style="background:{colour};white-space:pre-wrap">{html.escape(line) or "&nbsp;"}</div>')
    return '<div style="font-family:monospace;font-size:13px">' + "".join(rows) + "</div>"


def status_line(ctx: PlaygroundContext, session: PlaygroundSession) -> str:
    text = session.prompt_text
    name = session.prompt_name or "unsaved edit"
    same = text == load_prompt(ctx.baseline_prompt_file)
    return f"**{name}** · version `{prompt_version(text)}` · {'same as' if same else 'differs from'} the baseline"
