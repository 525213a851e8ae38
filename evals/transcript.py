"""What the runner observed for one trial of one case: the solver's output and the scorer's input."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from backend.models import TASK_FIELDS


class ObservedCall(BaseModel):
    """One tool call as the chat contract reported it."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: Any = None


class TurnRecord(BaseModel):
    index: int
    user: str  # the text sent, refs substituted
    status: int | None = None  # HTTP status of the chat call (None: no answer)
    response: str | None = None
    tool_calls: list[ObservedCall] = Field(default_factory=list)
    error: str | None = None  # transport failure, timeout or error body
    latency_ms: float | None = None
    tasks_after: list[dict[str, Any]] | None = None  # the user's tasks (tasks API) after the turn
    other_tasks_after: list[dict[str, Any]] | None = None  # the other user's tasks, when the case has one
    model_calls: int | None = None  # model requests made during the turn (in-process only)
    model_latency_ms: float | None = None  # time spent waiting on the live model (replayed answers: ~0)
    cache_hits: int | None = None
    cache_misses: int | None = None
    input_tokens: int | None = None  # as reported by the model's `usage` (in-process only)
    output_tokens: int | None = None
    # The local model server's own report (absent for other models): prompt tokens it re-read and tokens it
    # decoded, the milliseconds of each, the aids that re-asked it, and replies it could not use.
    prompt_tokens_read: int | None = None
    decoded_tokens: int | None = None
    prompt_ms: float | None = None
    decode_ms: float | None = None
    reasked: list[str] = Field(default_factory=list)
    unparsed_calls: int = 0


class Transcript(BaseModel):
    case_id: str
    trial: int
    user_id: str
    other_user_id: str | None = None
    ids: dict[str, int] = Field(default_factory=dict)  # seeded ref -> real task id
    missing_id: int = 0
    tasks_before: list[dict[str, Any]] = Field(default_factory=list)
    other_tasks_before: list[dict[str, Any]] = Field(default_factory=list)
    turns: list[TurnRecord] = Field(default_factory=list)
    conversation_id: int | None = None
    setup_error: str | None = None  # seeding failed: the case never ran
    wall_ms: float | None = None  # the case's own time: setup, turns and task-list reads, not its waits for a turn slot
    queued_ms: float | None = None  # waits for a turn slot (`--concurrency` turns in flight at once)
    retried: list[str] = Field(default_factory=list)  # what stopped each earlier attempt (errors, retried)


def task_view(task: dict[str, Any]) -> dict[str, Any]:
    """The fields of a task that state checks look at: its id and the backend's `TASK_FIELDS`."""
    return {"id": task.get("id"), **{name: task.get(name) for name in TASK_FIELDS}}
