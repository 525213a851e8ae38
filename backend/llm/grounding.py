"""Whether the optional text a call carries comes from the user, or was made up.

Asked to "add a task to water the plants", the small model adds the description "Make sure the plants are well
watered." A required argument (a title) is the model's rewording of the request and is left alone; an optional
free-text argument (a description) must add something the user said. Its words beyond the call's other text (the
title) are what it adds: when there are none (it restates the title, or the request itself) or most of them are not
in the user's message, it is ungrounded, and the call is asked for again with that argument taken out of the tool's
schema (`backend.llm.local_server`): the model then writes the call without it. Nothing here knows the todo domain:
which arguments are optional text comes from the tools' own JSON schemas.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

# Words that carry no content in either language (the ones a made-up description shares with any request).
_FILLER = {
    "the", "and", "for", "with", "that", "this", "from", "into", "about", "your", "you", "are", "was", "will", "make",
    "sure", "need", "needs", "task", "tasks", "add", "please", "also", "some", "any", "all", "has", "have", "not",
    "remind", "reminder", "remember", "want", "create", "note", "jot", "down", "don't", "dont", "forget", "list",
    "todo", "new", "called", "titled", "description", "details", "detail", "notes",
    "کے", "کی", "کا", "کو", "میں", "سے", "اور", "ہے", "ہیں", "کام", "aur", "hai", "hain", "kam", "kaam", "ka", "ki", "ke",
}  # fmt: skip
GROUNDED_SHARE = 0.5  # at least this share of an argument's words must come from the user's message


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).casefold()
    return [w for w in re.findall(r"\w+", text) if len(w) >= 3 and w not in _FILLER and not w.isdigit()]


def _said(word: str, spoken: set[str]) -> bool:
    """The user said this word, or one with its stem ("watered" / "water", "leaking" / "leak")."""
    if word in spoken:
        return True
    stem = word[:5] if len(word) > 5 else word[:4]
    return len(stem) >= 4 and any(other.startswith(stem) or word.startswith(other[:5]) for other in spoken)


def grounded(value: str, user_text: str, beside: str = "") -> bool:
    """Whether `value` adds words the user said, beyond those of `beside` (the call's other text)."""
    others = set(_words(beside))
    added = [word for word in _words(value) if not _said(word, others)]
    if not added:
        return False  # the title again, or the request framing ("remind me to ..."): no details were given
    spoken = set(_words(user_text))
    return sum(_said(word, spoken) for word in added) / len(added) >= GROUNDED_SHARE


def optional_text_arguments(tool: dict[str, Any]) -> set[str]:
    """A tool's optional free-text arguments, from its JSON schema (a string with a fixed set of values is not)."""
    parameters = (tool.get("function") or {}).get("parameters") or {}
    required = set(parameters.get("required") or [])
    properties = parameters.get("properties") or {}
    if not any(
        isinstance(properties.get(name), dict) and properties[name].get("type") == "string" for name in required
    ):
        return set()  # no required text beside it: the optional text is the call's point (an update's description)
    return {
        name
        for name, schema in properties.items()
        if name not in required
        and isinstance(schema, dict)
        and schema.get("type") == "string"
        and not ({"enum", "const", "pattern", "format"} & set(schema))
    }


def ungrounded(
    calls: Iterable[tuple[str, dict[str, Any]]], tools: list[dict[str, Any]], user_text: str
) -> dict[str, set[str]]:
    """Tool name -> its optional text arguments that a call filled with words the user did not say."""
    by_name = {str((t.get("function") or {}).get("name")): t for t in tools}
    found: dict[str, set[str]] = {}
    for name, arguments in calls:
        tool = by_name.get(name)
        if tool is None:
            continue
        optional = optional_text_arguments(tool)
        for argument in optional:
            value = arguments.get(argument)
            beside = " ".join(str(v) for k, v in arguments.items() if k not in optional and isinstance(v, str))
            if isinstance(value, str) and value.strip() and not grounded(value, user_text, beside):
                found.setdefault(name, set()).add(argument)
    return found


def without_arguments(tools: list[dict[str, Any]], dropped: dict[str, set[str]]) -> list[dict[str, Any]]:
    """The tools with the dropped arguments taken out of their schemas (for the re-ask's grammar only)."""
    narrowed = []
    for tool in tools:
        function = tool.get("function") or {}
        drop = dropped.get(str(function.get("name")), set())
        if not drop:
            narrowed.append(tool)
            continue
        parameters = dict(function.get("parameters") or {})
        parameters["properties"] = {k: v for k, v in (parameters.get("properties") or {}).items() if k not in drop}
        narrowed.append({**tool, "function": {**function, "parameters": parameters}})
    return narrowed
