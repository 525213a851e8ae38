"""Whether a call that changes a task is aimed at a task the user referred to: the local model's target guard.

Asked "delete the buy milk task" with "Buy milk for home" and "Buy milk for the office" listed, the small model
deletes the first; asked to "complete the 'Renew car insurance' task" when no such task exists, it completes another
one; asked to add a task, it sometimes adds it, lists, then completes it. The guard compares each changing call's
task with what the user's message names — the task's id, or words of its title (misspelt or not) — and with what the
conversation points at ("mark it done" after an add). It never changes a call: the server refuses it and asks the
model again, for a question (`backend.llm.local_server`).

It judges only what words can tell. A message in another script than the titles (Urdu under English titles), a
message that names every task ("both", "all", "sab"), or one that names no task at all right after a turn that
touched it, is left to the model.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, Literal

from backend.tools import parse_task_lines

# Words that say "several tasks" or "every task" (English, Roman Urdu, Urdu): the user means more than one.
_QUANTIFIERS = {
    "all", "every", "each", "both", "everything", "them", "these", "those", "tasks", "sab", "saare", "sare", "sary",
    "saray", "dono", "donon", "tamam", "سب", "سارے", "ساری", "تمام", "دونوں",
}  # fmt: skip
# Words that name no task: the request's framing ("mark the ... task as done"), in the three languages.
_FRAMING = {
    "the", "and", "for", "with", "that", "this", "task", "todo", "item", "one", "please", "mark", "done", "complete",
    "completed", "finish", "finished", "delete", "remove", "rename", "change", "update", "edit", "set", "call", "it",
    "its", "my", "me", "as", "to", "a", "an", "of", "on", "in", "is", "wala", "wali", "wale", "ko", "kar", "karo",
    "kardo", "do", "de", "dein", "hai", "ka", "ki", "ke", "mera", "meri", "mere", "کام", "کو", "کا", "کی",
    "کے", "کریں", "کرو", "دیں", "ہے", "والا", "والی", "میرا", "میری",
}  # fmt: skip
_QUOTED = re.compile(r"(?<![\w])['\"“‘«]([^'\"“”‘’«»\n]{1,200}?)['\"”’»](?![\w])")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,9})(?![\w.])")


@dataclass(frozen=True)
class TargetProblem:
    """Why a changing call cannot stand: `ambiguous` (other tasks fit the user's words as well) or `unreferred`."""

    kind: Literal["ambiguous", "unreferred"]
    task_id: int
    title: str = ""
    others: tuple[tuple[int, str], ...] = ()
    none_named: bool = False  # the user's words fit no task at all (a task that does not exist)


@dataclass
class TaskContext:
    """What a turn's messages say about the user's tasks: titles by id, the ids the last turn touched, and the ids
    this turn created."""

    titles: dict[int, str]
    recent: set[int]
    created_now: set[int]


def _words(text: str) -> set[str]:
    text = unicodedata.normalize("NFKC", text).casefold()
    return {w for w in re.findall(r"\w+", text) if w not in _FRAMING and not w.isdigit()}


def _stem(word: str) -> str:
    """A crude stem, enough to match "bills" with "bill" and "watering" with "water"."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:5]


TYPO_RATIO = 0.82  # "expnse" / "expense" (0.92), "reprot" / "report" (0.83); not "bills" / "bells" (0.8)


def _misspelt(word: str, said: set[str]) -> bool:
    """The user wrote this word with a typo: a word of theirs as long, give or take a letter, with the same first
    letter and nearly the same letters (short words are left out: one letter changes their meaning)."""
    return len(word) >= 5 and any(
        len(other) >= 5
        and other[0] == word[0]
        and abs(len(other) - len(word)) <= 1
        and SequenceMatcher(None, word, other).ratio() >= TYPO_RATIO
        for other in said
    )


def _overlap(said: set[str], title: str) -> tuple[int, float]:
    """How many of the title's words the user said (by stem, or misspelt), and the share of the title that is."""
    words = _words(title)
    if not words:
        return 0, 0.0
    stems = {_stem(w) for w in said}
    hits = sum(_stem(w) in stems or _misspelt(w, said) for w in words)
    return hits, hits / len(words)


def _latin(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) / len(letters) >= 0.8


def tool_results(messages: list[dict[str, Any]]) -> Iterable[tuple[int, str, Any]]:
    """(index, tool name, parsed result) for every tool result message."""
    names: dict[str, str] = {}
    for index, message in enumerate(messages):
        for call in message.get("tool_calls") or []:
            names[str(call.get("id"))] = str((call.get("function") or {}).get("name", ""))
        if message.get("role") == "tool":
            try:
                result = json.loads(message.get("content") or "null")
            except (TypeError, ValueError):
                continue
            yield index, names.get(str(message.get("tool_call_id")), ""), result


def task_context(messages: list[dict[str, Any]], creating_tools: set[str]) -> TaskContext:
    """The tasks a turn's messages show (turn context lines and tool results) and which ones the turns touched."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    last_user = users[-1] if users else -1
    previous_user = users[-2] if len(users) > 1 else -1
    titles: dict[int, str] = {}
    for message in messages:
        if message.get("role") == "system":
            titles.update(parse_task_lines(str(message.get("content") or "")))
    recent: set[int] = set()
    created_now: set[int] = set()
    for index, name, result in tool_results(messages):
        items = result if isinstance(result, list) else [result]
        for item in items:
            if not isinstance(item, dict):
                continue
            task_id = item.get("task_id", item.get("id"))
            if not isinstance(task_id, int) or "error" in item:
                continue
            if isinstance(item.get("title"), str):
                titles[task_id] = item["title"]
            if previous_user < index < last_user:
                recent.add(task_id)
            if index > last_user and name in creating_tools:
                created_now.add(task_id)
    return TaskContext(titles, recent, created_now)


def _without_quoted(user_text: str, values: Iterable[str]) -> str:
    """The message minus quoted text a call copies as a new value ("rename X to 'Y'": 'Y' names no task)."""
    skip = {v.strip().casefold() for v in values}
    return _QUOTED.sub(lambda m: " " if m.group(1).strip().casefold() in skip else m.group(0), user_text)


def check_target(task_id: int, arguments: dict[str, Any], user_text: str, context: TaskContext) -> TargetProblem | None:
    """The problem with a call that changes task `task_id`, if the user's message and the conversation show one."""
    title = context.titles.get(task_id, "")
    if task_id in context.created_now:
        return TargetProblem("unreferred", task_id, title)  # added by this very turn: the user asked to add it
    if any(int(n) == task_id for n in _NUMBER.findall(unicodedata.normalize("NFKC", user_text))):
        return None  # named by its id
    text = _without_quoted(user_text, (v for v in arguments.values() if isinstance(v, str)))
    said = _words(text)
    # A quantifier inside quotes is a value ("add 'delete all tasks'"), not the user asking for every task.
    if not _latin(text) or _words(_QUOTED.sub(" ", text)) & _QUANTIFIERS:
        return None
    scores = {other: _overlap(said, other_title) for other, other_title in context.titles.items()}
    best = max((hits for hits, _ in scores.values()), default=0)
    if best == 0:
        # No task named by its words: "mark it done" right after a turn that touched it is a follow-up.
        if task_id in context.recent or not context.titles:
            return None
        return TargetProblem("unreferred", task_id, title, none_named=True)
    hits, share = scores.get(task_id, (0, 0.0))
    if hits < best:
        return TargetProblem("unreferred", task_id, title)
    rivals = tuple(
        (other, context.titles[other])
        for other, (other_hits, other_share) in scores.items()
        if other != task_id and other_hits == hits and other_share >= share
    )
    if rivals and not (share == 1.0 and all(scores[other][1] < 1.0 for other, _ in rivals)):
        return TargetProblem("ambiguous", task_id, title, rivals)
    return None


def feedback(problem: TargetProblem) -> str:
    """The note the re-ask adds for the model, naming the tasks (as data) so it can ask about them."""
    named = f"task {problem.task_id} {json.dumps(problem.title, ensure_ascii=False)}"
    if problem.kind == "ambiguous":
        others = ", ".join(f"task {i} {json.dumps(t, ensure_ascii=False)}" for i, t in problem.others)
        return (
            f"Several tasks fit what the user said: {named}, {others}. Do not change any of them: ask the user "
            "which one they mean."
        )
    if problem.none_named:
        return (
            f"No task matches what the user named, and {named} is not it: do not change it. If the user asked for "
            "something new, add it as a new task; if they meant a task that is not listed, tell them you could not "
            "find it."
        )
    return f"The user did not name {named}: do not change it. Answer what they asked."


def unhandled_ids(user_text: str, known: Iterable[int], handled: Iterable[int], values: Iterable[str]) -> list[int]:
    """Known task ids the user's message names that no call of this turn handled ("mark tasks 1 and 3 as done",
    after task 1 only); numbers inside quoted values ("rename it 'Call 3 people'") are not ids."""
    text = _without_quoted(user_text, values)
    named = {int(n) for n in _NUMBER.findall(unicodedata.normalize("NFKC", text))}
    return sorted(named & set(known) - set(handled))
