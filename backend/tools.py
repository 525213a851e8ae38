"""The five todo tools, defined once.

Each tool is a pydantic argument model (its JSON schema is what the model and MCP clients see) plus a plain function
over the data layer. The user id is never an argument: it comes from `ToolRunContext`, which the caller builds from
the verified token. Expected failures (unknown id, invalid title) are results of the form
`{"error": {"code", "message"}}` so the model can recover and tell the user.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Engine
from sqlmodel import Session

from backend import crud, tracing
from backend.metrics import TOOL_CALLS
from backend.models import DESCRIPTION_MAX, TASK_SNAPSHOT_FIELDS, TITLE_MAX, Task, TaskCreate, TaskUpdate

ToolResult = dict[str, Any] | list[dict[str, Any]]


@dataclass(frozen=True)
class ToolRunContext:
    """What a tool needs that the model must never supply."""

    user_id: str
    engine: Engine


def _blank_to_none(value: object) -> object:
    """Small models fill optional arguments with "" or "null"; both mean "leave unchanged"."""
    if isinstance(value, str) and value.strip().lower() in ("", "null", "none"):
        return None
    return value


class _Args(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AddTaskArgs(_Args):
    title: str = Field(description="Short task title, e.g. 'Buy groceries'.", min_length=1, max_length=TITLE_MAX)
    description: str | None = Field(
        default=None,
        description="Optional details; only when the user gives some.",
        max_length=DESCRIPTION_MAX,
    )

    _blank = field_validator("description", mode="before")(_blank_to_none)


class ListTasksArgs(_Args):
    status: Literal["all", "pending", "completed"] = Field(
        default="all", description="Which tasks: 'all', 'pending' or 'completed'."
    )

    @field_validator("status", mode="before")
    @classmethod
    def _default_status(cls, value: object) -> object:
        value = _blank_to_none(value)
        return "all" if value is None else str(value).strip().lower()


class TaskIdArgs(_Args):
    task_id: int = Field(description="The task's id number, as shown by list_tasks.")


class UpdateTaskArgs(TaskIdArgs):
    title: str | None = Field(
        default=None, description="New title, if the user asks to rename it.", max_length=TITLE_MAX
    )
    description: str | None = Field(
        default=None, description="New description, if the user gives one.", max_length=DESCRIPTION_MAX
    )

    _blank = field_validator("title", "description", mode="before")(_blank_to_none)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _not_found(task_id: int) -> dict[str, Any]:
    return _error("not_found", f"There is no task with id {task_id}.")


def add_task(session: Session, user_id: str, args: AddTaskArgs) -> ToolResult:
    task = crud.create_task(
        session, user_id=user_id, task_in=TaskCreate(title=args.title, description=args.description)
    )
    return {"task_id": task.id, "status": "created", "title": task.title}


def list_tasks(session: Session, user_id: str, args: ListTasksArgs) -> ToolResult:
    tasks = crud.list_tasks(session, user_id=user_id, status=args.status)
    return [{"id": t.id, "title": t.title, "description": t.description, "completed": t.completed} for t in tasks]


def complete_task(session: Session, user_id: str, args: TaskIdArgs) -> ToolResult:
    task = crud.get_task(session, user_id=user_id, task_id=args.task_id)
    if task is None:
        return _not_found(args.task_id)
    if not task.completed:  # completing twice keeps it completed: never a toggle
        task = crud.update_task(session, task=task, task_in=TaskUpdate(completed=True))
    return {"task_id": task.id, "status": "completed", "title": task.title}


def delete_task(session: Session, user_id: str, args: TaskIdArgs) -> ToolResult:
    task = crud.get_task(session, user_id=user_id, task_id=args.task_id)
    if task is None:
        return _not_found(args.task_id)
    title = task.title
    crud.delete_task(session, task=task)
    return {"task_id": args.task_id, "status": "deleted", "title": title}


def update_task(session: Session, user_id: str, args: UpdateTaskArgs) -> ToolResult:
    task = crud.get_task(session, user_id=user_id, task_id=args.task_id)
    if task is None:
        return _not_found(args.task_id)
    changes = args.model_dump(include={"title", "description"}, exclude_none=True)
    if changes:
        task = crud.update_task(session, task=task, task_in=TaskUpdate(**changes))
    return {"task_id": task.id, "status": "updated", "title": task.title}


def task_snapshot(tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """The task list as a turn's message stores it (`Message.tasks`)."""
    return [{name: getattr(task, name) for name in TASK_SNAPSHOT_FIELDS} for task in tasks]


def task_lines(session: Session, *, user_id: str, limit: int = 50) -> str:
    return format_task_lines(crud.list_tasks(session, user_id=user_id), limit=limit)


def format_task_lines(tasks: Sequence[Task], *, limit: int = 50) -> str:
    """The user's tasks as the prompt's turn context shows them, so "the meeting task" can be resolved to an id.

    Ids and titles only: enough to resolve a title, too little to answer "what's pending?" without calling list_tasks
    (a small model otherwise answers from this list instead of the tool). Titles are JSON-quoted: data, never text
    the model could read as part of the prompt.
    """
    if not tasks:
        return "(the user has no tasks)"
    shown = tasks[-limit:]
    lines = [f"- id {t.id}: {json.dumps(t.title, ensure_ascii=False)}" for t in shown]
    if len(tasks) > len(shown):
        lines.append(f"({len(tasks) - len(shown)} older tasks not shown.)")
    return "\n".join(lines)


_TASK_LINE = re.compile(r'^- id (\d+): (".*")$', re.MULTILINE)


def parse_task_lines(text: str) -> dict[int, str]:
    """The ids and titles `task_lines` wrote into a text (the local model's guard reads the turn context back)."""
    found: dict[int, str] = {}
    for match in _TASK_LINE.finditer(text):
        try:
            found[int(match.group(1))] = str(json.loads(match.group(2)))
        except ValueError:
            continue
    return found


@dataclass(frozen=True)
class TodoTool:
    name: str
    description: str
    args_model: type[_Args]
    run: Callable[[Session, str, Any], ToolResult]
    writes: bool = True  # changes a task (rate-limited as a write; never a free extra call in an eval case)

    def parameters_schema(self) -> dict[str, Any]:
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
            prop.pop("default", None) if prop.get("default") is None else None
            # `anyOf [string, null]` confuses small models; an optional string is just a string here.
            any_of = prop.pop("anyOf", None)
            if any_of:
                prop.update(next(s for s in any_of if s.get("type") != "null"))
        schema["additionalProperties"] = False
        return schema


TOOLS: tuple[TodoTool, ...] = (
    TodoTool("add_task", "Create a new task for the user.", AddTaskArgs, add_task),
    TodoTool(
        "list_tasks",
        "List the user's tasks with their ids. Use it to find a task's id before acting on it by title.",
        ListTasksArgs,
        list_tasks,
        writes=False,
    ),
    TodoTool("complete_task", "Mark a task as completed, by its id.", TaskIdArgs, complete_task),
    TodoTool("delete_task", "Delete a task permanently, by its id.", TaskIdArgs, delete_task),
    TodoTool("update_task", "Change a task's title and/or description, by its id.", UpdateTaskArgs, update_task),
)
TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}
WRITE_TOOLS = frozenset(tool.name for tool in TOOLS if tool.writes)


def tool_names() -> tuple[str, ...]:
    """The tools' names, read from `TOOLS` when asked (the eval dataset's vocabulary is this, not a copy)."""
    return tuple(tool.name for tool in TOOLS)


def read_only_tools() -> frozenset[str]:
    """The tools that change nothing: the only ones an eval case may allow as free extra calls."""
    return frozenset(tool.name for tool in TOOLS if not tool.writes)


def chat_completions_tools() -> list[dict[str, Any]]:
    """The tools in the Chat Completions `tools` wire format: what the agent sends, for clients that talk to a model
    server directly (the local model's tests and benchmark)."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters_schema()},
        }
        for t in TOOLS
    ]


def parse_arguments(raw: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """Arguments as the model sent them, parsed; None when they are not a JSON object."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def invoke(context: ToolRunContext, name: str, arguments: dict[str, Any] | None) -> ToolResult:
    """Run one tool for the context's user; blocking (callers run it in a worker thread). Counted by outcome."""
    known = name if name in TOOLS_BY_NAME else "unknown"
    with tracing.span("tool_call", tool=known) as current:
        result = _invoke(context, name, arguments)
        error = result.get("error") if isinstance(result, dict) else None
        outcome = str(error.get("code", "error")) if isinstance(error, dict) else "ok"
        if current is not None:
            current.set_attribute("outcome", outcome)
    TOOL_CALLS.labels(known, outcome).inc()
    return result


def _invoke(context: ToolRunContext, name: str, arguments: dict[str, Any] | None) -> ToolResult:
    tool = TOOLS_BY_NAME.get(name)
    if tool is None:
        return _error("unknown_tool", f"There is no tool named {name!r}.")
    if arguments is None:
        return _error("invalid_arguments", "The arguments must be a JSON object.")
    try:
        args = tool.args_model.model_validate(arguments)
        with Session(context.engine, expire_on_commit=False) as session:
            # The data layer validates too (TaskCreate / TaskUpdate refuse a NUL character, say).
            return tool.run(session, context.user_id, args)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
        return _error("invalid_arguments", problems)
