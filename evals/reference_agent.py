"""A deterministic, rule-based stand-in for a good model, served as a scripted OpenAI-compatible model.

It exercises the whole eval pipeline (runner, scorer, reports, gate) in milliseconds and without a real model: the
self-tests plant regressions in it, the throughput bench serves it with a delay, and `--model scripted` runs it from
the CLI. It handles the English requests of the suite (by id, by title with a lookup first, multi-step, follow-ups,
ambiguity, chit-chat) and, like any small model, not all of them: it is a fixture, not an oracle.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI

from evals.scripted_model import Reply, create_scripted_app, last_user_text

Call = tuple[str, dict[str, Any]]

_QUOTED = re.compile(r"['\"“‘](.+?)['\"”’](?=\s|$|[.,!?:;])")
_COMPLETE = re.compile(r"\b(complete|compelte|done|finish(ed)?|mark)\b|مکمل", re.IGNORECASE)
_DELETE = re.compile(r"\b(delete|delte|remove|get rid)\b|حذف", re.IGNORECASE)
_UPDATE = re.compile(r"\b(rename|change|update|set the description|add a description)\b", re.IGNORECASE)
_ADD = re.compile(r"^(please )?(add|ad|create)\b|\b(remind me to|remember to|add a task|add buy)\b|شامل", re.IGNORECASE)
_LIST = re.compile(r"\b(show|shwo|list|what|which|pending|pendng|open|dikhao|baqi)\b|دکھائیں|باقی", re.IGNORECASE)
_PENDING = re.compile(r"\b(pending|pendng|still|open|left|remaining|baqi)\b|باقی", re.IGNORECASE)
_DONE_FILTER = re.compile(r"\b(completed|finish|finished|have i done)\b", re.IGNORECASE)
_IDS = re.compile(r"(?:\btasks?\b|#|نمبر)\s*#?\s*(\d+)(?:\s*(?:and|,|&)\s*(\d+))?", re.IGNORECASE)
_STOP = {
    "the", "a", "an", "task", "tasks", "my", "mark", "as", "done", "complete", "delete", "remove", "it", "to",
    "of", "one", "about", "for", "and", "find", "i", "finished", "get", "rid", "change", "title", "rename", "set",
    "description", "that", "is", "please", "me", "with", "on", "in", "what", "which", "this",
}  # fmt: skip
_ORDINALS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "last": -1}


def _messages_since_user(request: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages = request.get("messages", [])
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    return messages[:last_user], messages[last_user + 1 :]


def _calls_and_results(messages: list[dict[str, Any]]) -> list[tuple[Call, Any]]:
    """(call, result) pairs in order, paired by tool_call_id."""
    results: dict[str, Any] = {}
    for m in messages:
        if m.get("role") == "tool":
            try:
                results[m.get("tool_call_id", "")] = json.loads(m.get("content") or "null")
            except ValueError:
                results[m.get("tool_call_id", "")] = m.get("content")
    pairs: list[tuple[Call, Any]] = []
    for m in messages:
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function", {})
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except ValueError:
                args = {}
            pairs.append(((fn.get("name", ""), args), results.get(tc.get("id", ""))))
    return pairs


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 1}


def _find(tasks: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    quoted = _QUOTED.search(text)
    if quoted:
        exact = [t for t in tasks if t["title"].lower() == quoted.group(1).lower()]
        if exact:
            return exact
    wanted = _words(text.split(" to ")[0] if _UPDATE.search(text) else text)
    scored = [(len(wanted & _words(t["title"])), t) for t in tasks]
    best = max((s for s, _ in scored), default=0)
    return [t for s, t in scored if s == best and best > 0]


def _title(text: str) -> str:
    text = text.strip().strip("'\"").rstrip(".!?").strip()
    return text[:1].upper() + text[1:]


def _add_calls(text: str) -> list[Call]:
    quoted = _QUOTED.search(text)
    description = None
    m = re.search(r"(?:details|description)\s*(?:is|:)?\s*[:]?\s*['\"]?(.+?)['\"]?$", text, re.IGNORECASE)
    if m and re.search(r"details|description", text, re.IGNORECASE):
        description = m.group(1).strip()
        text = text[: m.start()].rstrip(" ,.;:-")
        text = re.sub(r"\bwith the\s*$", "", text).strip()
    if quoted and (description is None or quoted.start() < len(text)):
        return [("add_task", {"title": quoted.group(1), **({"description": description} if description else {})})]
    body = re.sub(
        r"^(please\s+)?(add|ad|create)\s+(a\s+)?(task|tsak)?\s*(to|called|titled|:)?\s*|"
        r"^.*?\b(remind me to|remember to|need to)\s+",
        "",
        text,
        flags=re.IGNORECASE,
    ).strip(" :")
    body = re.sub(r"^(three|two|\d+)\s+tasks\s*:\s*", "", body, flags=re.IGNORECASE)
    parts = [p for p in re.split(r",\s*|\s+and\s+", body) if p.strip()]
    if len(parts) > 1 and description is None:
        return [("add_task", {"title": _title(p)}) for p in parts]
    return [("add_task", {"title": _title(body), **({"description": description} if description else {})})]


def _ids(text: str) -> list[int]:
    found: list[int] = []
    for m in _IDS.finditer(text):
        found += [int(g) for g in m.groups() if g]
    return found


def _confirm(pairs: list[tuple[Call, Any]]) -> str:
    lines = []
    for _call, result in pairs:
        if isinstance(result, dict) and "error" in result:
            lines.append(f"Sorry, I could not do that: {result['error'].get('message', 'error')}")
        elif isinstance(result, list):
            if not result:
                lines.append("You have no tasks there.")
            else:
                lines.append(
                    "Here are your tasks:\n"
                    + "\n".join(
                        f"{t['id']}. {t['title']} ({'done' if t.get('completed') else 'pending'})" for t in result
                    )
                )
        elif isinstance(result, dict):
            lines.append(f"Done: '{result.get('title')}' is {result.get('status')}.")
    return "\n".join(lines) or "Done."


def _last_list(pairs: list[tuple[Call, Any]]) -> list[dict[str, Any]] | None:
    for (name, _), result in reversed(pairs):
        if name == "list_tasks" and isinstance(result, list):
            return result
    return None


def _last_task_id(pairs: list[tuple[Call, Any]]) -> int | None:
    for _, result in reversed(pairs):
        if isinstance(result, dict) and isinstance(result.get("task_id"), int):
            return int(result["task_id"])
    return None


def plan(text: str, history: list[tuple[Call, Any]], done: list[tuple[Call, Any]]) -> list[Call] | str:
    """The calls this request needs, given what is known; a string when the answer is text."""
    lower = text.lower()
    ids = _ids(text)
    known = _last_list(done) or _last_list(history)
    looked_up = _last_list(done) is not None
    follow_up = re.search(r"\b(it|the (first|second|third|last) one|the one)\b", lower) is not None

    if (
        _UPDATE.search(text)
        or (re.search(r"\bdescription\b", lower) and not _ADD.search(text))
        or (re.search(r"add a description", lower))
    ):
        quoted = _QUOTED.findall(text)
        args: dict[str, Any] = {}
        described = re.search(r"description[^:]*:\s*(.+)$", text, re.IGNORECASE)
        if described:
            args["description"] = described.group(1).strip().strip("'\"")
        elif quoted:
            args["title"] = quoted[-1]
        target = ids[0] if ids else None
        if target is None and follow_up and _last_task_id(history) is not None and " it" in f" {lower}":
            target = _last_task_id(history)
        if target is None:
            if not looked_up:
                return [("list_tasks", {})]
            matches = _find(known or [], text)
            if len(matches) != 1:
                return _not_one(matches)
            target = matches[0]["id"]
        return [("update_task", {"task_id": target, **args})]

    if _ADD.search(text) and not ids:
        return _add_calls(text)

    for verb, tool in ((_DELETE, "delete_task"), (_COMPLETE, "complete_task")):
        if not verb.search(text):
            continue
        calls: list[Call] = []
        if tool == "delete_task" and _COMPLETE.search(text) and ids and len(ids) >= 2:
            return [("complete_task", {"task_id": ids[0]}), ("delete_task", {"task_id": ids[1]})]
        if ids:
            return [(tool, {"task_id": i}) for i in ids]
        if follow_up and " it" in f" {lower}" and _last_task_id(history) is not None:
            return [(tool, {"task_id": _last_task_id(history)})]
        ordinal = next((v for k, v in _ORDINALS.items() if k in lower), None)
        if ordinal is not None and known:
            return [(tool, {"task_id": known[ordinal]["id"]})]
        if tool == "delete_task" and "completed" in lower:
            if not looked_up:
                return [("list_tasks", {"status": "completed"})]
            return [(tool, {"task_id": t["id"]}) for t in known or [] if t.get("completed")]
        if not looked_up and not (known and follow_up):
            return [("list_tasks", {})]
        matches = _find(known or [], text)
        if len(matches) != 1:
            return _not_one(matches)
        calls.append((tool, {"task_id": matches[0]["id"]}))
        return calls

    if _LIST.search(text) or "task" in lower:
        if re.search(r"\b(weather|capital|joke|function)\b", lower):
            return "I can only help with your tasks."
        status = "pending" if _PENDING.search(text) else "completed" if _DONE_FILTER.search(text) else "all"
        return [("list_tasks", {"status": status})]
    return "Hi! I can add, list, complete, update and delete your tasks."


def _not_one(matches: list[dict[str, Any]]) -> str:
    if not matches:
        return "I could not find a task like that."
    names = ", ".join(f"'{t['title']}' (task {t['id']})" for t in matches)
    return f"Which one do you mean: {names}?"


def _same_target(planned: Call, made: Call) -> bool:
    """Whether a planned call was already made this turn, judged by its target: a model does not act twice on one
    task in one turn (and a call rewritten on the way, as the self-tests plant, is not retried forever)."""
    (p_name, p_args), (m_name, m_args) = planned, made
    if "task_id" in p_args and "task_id" in m_args:
        return bool(p_args["task_id"] == m_args["task_id"])
    if "title" in p_args and "title" in m_args:
        return bool(p_args["title"] == m_args["title"])
    return p_name == m_name and p_args == m_args


def reference_responder(request: dict[str, Any]) -> Reply:
    before, since = _messages_since_user(request)
    history = _calls_and_results(before)
    done = _calls_and_results(since)
    decision = plan(last_user_text(request), history, done)
    if isinstance(decision, str):
        return Reply(text=decision)
    made = [call for call, _ in done]
    remaining = [c for c in decision if not any(_same_target(c, m) for m in made)]
    if remaining and not (done and all(c[0] == "list_tasks" for c in remaining)):
        return Reply(calls=[(name, args) for name, args in remaining])
    return Reply(text=_confirm(done))


def reference_app() -> FastAPI:
    """`uvicorn --factory evals.reference_agent:reference_app`: the reference agent as an instant fake model."""
    return create_scripted_app(reference_responder)
