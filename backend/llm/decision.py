"""A constrained decision for the local model, when it must be asked again: `{"calls": [...]}` or a question.

Left free, Qwen2.5-Coder-1.5B sometimes answers "mark it done" with "The task has been marked as completed." and
runs no tool, or writes a call the parser cannot read. Asked again for one JSON object whose grammar admits only
calls of the request's tools (with their argument schemas) or a short question, it cannot claim anything and cannot
write a malformed call. The grammar is built from the tools the request sends (the agent's own definitions), so
nothing here knows the todo domain. (Used for every step, the same grammar made things worse: the model folded
descriptions into titles and answered more requests in prose, so it serves only the re-asks.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

ReplyKind = Literal["any", "question", "none"]
QUESTION_MAX_CHARS = 200
ToolCall = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Decision:
    calls: list[ToolCall] = field(default_factory=list)
    reply: str | None = None


def _call_schema(tool: dict[str, Any]) -> dict[str, Any] | None:
    function = tool.get("function") or {}
    name = function.get("name")
    if not name:
        return None
    return {
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": function.get("parameters") or {"type": "object"}},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def decision_schema(
    tools: list[dict[str, Any]], reply: ReplyKind = "any", max_calls: int | None = None, reply_chars: int | None = None
) -> dict[str, Any]:
    """`{"calls": [one or more calls]}`, or `{"reply": text}` ("any"), or `{"question": short text}` ("question"),
    or nothing else ("none"). A re-ask offers "question" rather than "reply": given a key that means asking, the
    model calls the tool it had only claimed to call, or asks; given "reply", it writes the same claim again.
    `max_calls` caps the calls (a call asked for again is one call, not an invitation to add others); `reply_chars`
    caps the text, for a re-ask whose text is not used (the choice between calls and text is the first key the
    model writes, which a cap further on does not change)."""
    calls = [schema for tool in tools if (schema := _call_schema(tool)) is not None]
    options: list[dict[str, Any]] = []
    if calls:
        items = calls[0] if len(calls) == 1 else {"anyOf": calls}
        array: dict[str, Any] = {"type": "array", "minItems": 1, "items": items}
        if max_calls is not None:
            array["maxItems"] = max(1, max_calls)
        options.append(
            {
                "type": "object",
                "properties": {"calls": array},
                "required": ["calls"],
                "additionalProperties": False,
            }
        )
    if reply != "none":
        key = "question" if reply == "question" else "reply"
        text: dict[str, Any] = {"type": "string", "minLength": 1}
        if reply == "question" or reply_chars is not None:
            text["maxLength"] = reply_chars or QUESTION_MAX_CHARS
        options.append({"type": "object", "properties": {key: text}, "required": [key], "additionalProperties": False})
    return options[0] if len(options) == 1 else {"anyOf": options}


@lru_cache(maxsize=64)
def _grammar(tools_json: str, reply: ReplyKind, max_calls: int | None, reply_chars: int | None) -> str:
    import xllamacpp  # the native library: only the model server process loads it

    schema = decision_schema(json.loads(tools_json), reply, max_calls, reply_chars)
    grammar: str = xllamacpp.json_schema_to_grammar(schema)
    return grammar


def decision_grammar(
    tools: list[dict[str, Any]], reply: ReplyKind = "any", max_calls: int | None = None, reply_chars: int | None = None
) -> str:
    """The GBNF grammar for `decision_schema` (built once per tool set: a request's tools are byte-stable)."""
    return _grammar(json.dumps(tools, sort_keys=True), reply, max_calls, reply_chars)


def parse_decision(text: str) -> Decision | None:
    """The decision the grammar-constrained text stands for; None when it is not one (a cut-off answer)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("calls"), list):
        calls: list[ToolCall] = []
        for call in value["calls"]:
            if not (isinstance(call, dict) and isinstance(call.get("name"), str)):
                return None
            arguments = call.get("arguments")
            calls.append((call["name"], arguments if isinstance(arguments, dict) else {}))
        return Decision(calls=calls) if calls else None
    for key in ("reply", "question"):
        if isinstance(value.get(key), str) and value[key].strip():
            return Decision(reply=value[key].strip())
    return None
