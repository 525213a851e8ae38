"""Recover tool calls that a small model wrote as text.

Qwen2.5-Coder, left free, writes a call as `<tool_call>` tags, a `<tools>` (or `<function_call>`, ...) wrapper around
one or several JSON objects, a fenced JSON block or bare JSON, and llama.cpp recognises only the first. This module
turns such a reply back into calls, but only when the whole reply is a call naming a tool the request offered: a
sentence that mentions a tool or contains braces stays a normal reply. `contains_call_markup` says whether a reply
still carries call syntax somewhere, so that it is never shown to a user as text.
"""

from __future__ import annotations

import json
import re
from typing import Any

ToolCall = tuple[str, dict[str, Any]]

# Any XML-ish wrapper a model puts around calls: <tool_call>, <tools>, <tool_calls>, <function_call>, <functions>...
_WRAPPER_NAMES = r"tool_calls?|tools?|function_calls?|functions?|calls?|toolcall|functioncall"
_TAGGED = re.compile(rf"<({_WRAPPER_NAMES})>\s*(.*?)\s*(?:</\1>|$)", re.DOTALL | re.IGNORECASE)
_FUNCTION_EQUALS = re.compile(r"<function=([A-Za-z_][A-Za-z0-9_]*)>\s*(.*?)\s*(?:</function>|$)", re.DOTALL)
_MARKUP = re.compile(
    rf"</?(?:{_WRAPPER_NAMES})>|<function=|\{{\s*\"(?:name|function)\"\s*:\s*\"[a-z_]+\"|```(?:json|tool_code|python)?\s*\n?\s*[{{\[]",
    re.IGNORECASE,
)
_FENCED = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
# Prose a model may put around a call without meaning it as a reply ("Sure:", "Here is the call").
_MAX_PREAMBLE_CHARS = 80


def _as_call(obj: Any, tool_names: set[str]) -> ToolCall | None:
    """One `{"name": ..., "arguments"|"parameters": ...}` object naming a known tool, or None."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # OpenAI wire shape: {"type": "function", "function": {...}}
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or name not in tool_names:
        return None
    extra = {k: v for k, v in obj.items() if k not in {"name", "arguments", "parameters", "type", "id"}}
    if "arguments" in obj or "parameters" in obj:
        if extra:
            return None  # an object with other fields is data the model is showing, not a call
        args: Any = obj.get("arguments", obj.get("parameters"))
    else:
        args = extra  # flattened: {"name": "add_task", "title": "..."}
    if args is None:
        args = {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return name, args


def _json_values(text: str) -> tuple[list[Any], str] | None:
    """Leading JSON values (one, or several one after another as models emit parallel calls) and the rest."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    index = 0
    text = text.strip()
    while index < len(text) and text[index] in "{[":
        try:
            value, index = decoder.raw_decode(text, index)
        except ValueError:
            break
        values.append(value)
        while index < len(text) and text[index] in " \t\r\n,;":
            index += 1
    if not values:
        return None
    return values, text[index:].strip()


def _calls_from_values(values: list[Any], tool_names: set[str]) -> list[ToolCall] | None:
    """Every value (an object, or a list of objects) must be a known-tool call, else none of it is."""
    items: list[Any] = []
    for value in values:
        items.extend(value if isinstance(value, list) else [value])
    if not items:
        return None
    calls = [_as_call(item, tool_names) for item in items]
    if any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _calls_from_json(text: str, tool_names: set[str], max_rest: int = 0) -> list[ToolCall] | None:
    """Parse text that is JSON call(s), followed by at most max_rest characters of other text."""
    text = text.strip()
    if text.startswith("{{"):
        # Qwen2.5-Coder's chat template shows the call format as `{{"name": ...}}` and the model copies the
        # doubled braces; undo them before parsing.
        parsed = _json_values(text[1:])
        if parsed is not None:
            values, rest = parsed
            rest = rest.removeprefix("}").strip()
            if len(rest) <= max_rest and (calls := _calls_from_values(values, tool_names)):
                return calls
    parsed = _json_values(text)
    if parsed is None:
        return None
    values, rest = parsed
    if len(rest) > max_rest:
        return None
    return _calls_from_values(values, tool_names)


def _outside(text: str, spans: list[tuple[int, int]]) -> str:
    """The text that is not inside any of the spans: the prose around the call blocks."""
    pieces: list[str] = []
    cursor = 0
    for start, end in spans:
        pieces.append(text[cursor:start])
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces).strip()


def _blocks(pattern: re.Pattern[str], text: str, tool_names: set[str]) -> list[ToolCall] | None:
    """Calls from every block the pattern finds, if each block is a call and little prose surrounds them."""
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    if len(_outside(text, [m.span() for m in matches])) > _MAX_PREAMBLE_CHARS:
        return None
    calls: list[ToolCall] = []
    for match in matches:
        found = _calls_from_json(match.group(match.lastindex or 1).strip(), tool_names)
        if found is None:
            return None
        calls.extend(found)
    return calls


def _function_equals(text: str, tool_names: set[str]) -> list[ToolCall] | None:
    """`<function=add_task>{"title": "x"}</function>` blocks (another template's call syntax)."""
    matches = list(_FUNCTION_EQUALS.finditer(text))
    if not matches or len(_outside(text, [m.span() for m in matches])) > _MAX_PREAMBLE_CHARS:
        return None
    calls: list[ToolCall] = []
    for match in matches:
        name, body = match.group(1), match.group(2).strip() or "{}"
        if name not in tool_names:
            return None
        parsed = _json_values(body)
        if parsed is None or parsed[1] or len(parsed[0]) != 1 or not isinstance(parsed[0][0], dict):
            return None
        calls.append((name, parsed[0][0]))
    return calls


def extract_tool_calls(text: str, tool_names: set[str]) -> list[tuple[str, dict[str, Any]]] | None:
    """The tool calls a text reply stands for, or None when it is a normal reply.

    Accepted shapes: `<tool_call>{...}</tool_call>` blocks, fenced code blocks, or bare JSON (one object, a
    list of objects, or objects one after another), each `{"name": <known tool>, "arguments"|"parameters":
    {...}}` with arguments possibly a JSON string. Every block must be a call; only a short preamble or
    trailer may surround it.
    """
    if not text or not tool_names:
        return None
    stripped = text.strip()
    for pattern in (_TAGGED, _FENCED):
        calls = _blocks(pattern, stripped, tool_names)
        if calls is not None:
            return calls
    calls = _function_equals(stripped, tool_names)
    if calls is not None:
        return calls
    if stripped[:1] in "{[":
        return _calls_from_json(stripped, tool_names, max_rest=_MAX_PREAMBLE_CHARS)
    return None


def contains_call_markup(text: str) -> bool:
    """Whether call syntax appears anywhere in a reply (a wrapper tag, a `{"name": "..."` object, a JSON fence)."""
    return _MARKUP.search(text) is not None


def looks_like_tool_call(text: str) -> bool:
    """Whether a reply starts the way a call does, so a failed parse means a malformed call worth retrying."""
    head = text.lstrip()
    if head.startswith(("{", "[{", "<function=")) or re.match(rf"<(?:{_WRAPPER_NAMES})>", head, re.IGNORECASE):
        return True
    if head.startswith("```"):
        body = head.split("\n", 1)[1].lstrip() if "\n" in head else ""
        return body.startswith(("{", "[")) and '"name"' in body
    return False
