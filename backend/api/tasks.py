"""Tasks REST: the same data functions the agent's tools use. Another user's task answers like a missing one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlmodel import Session

from backend import crud
from backend.deps import DbDep, PathUser, WritingUser
from backend.errors import ApiError, error_responses
from backend.models import Task, TaskCreate, TaskPublic, TaskStatus, TaskUpdate

router = APIRouter(prefix="/api/{user_id}/tasks", tags=["tasks"], responses=error_responses(400, 401, 403, 422, 503))
NOT_FOUND = error_responses(404)
LIMITED = error_responses(429)


def owned_task(session: Session, user: str, task_id: int) -> Task:
    task = crud.get_task(session, user_id=user, task_id=task_id)
    if task is None:
        raise ApiError(404, "not_found", "Task not found.")
    return task


@router.get("", response_model=list[TaskPublic])
async def list_tasks(user: PathUser, db: DbDep, status: Annotated[TaskStatus, Query()] = "all") -> list[Task]:
    """Oldest first."""
    return await db(lambda session: list(crud.list_tasks(session, user_id=user, status=status)))


@router.post("", response_model=TaskPublic, status_code=201, responses=LIMITED)
async def create_task(user: WritingUser, db: DbDep, task_in: TaskCreate) -> Task:
    return await db(lambda session: crud.create_task(session, user_id=user, task_in=task_in))


@router.get("/{task_id}", response_model=TaskPublic, responses=NOT_FOUND)
async def read_task(user: PathUser, db: DbDep, task_id: int) -> Task:
    return await db(lambda session: owned_task(session, user, task_id))


@router.patch("/{task_id}", response_model=TaskPublic, responses={**NOT_FOUND, **LIMITED})
async def update_task(user: WritingUser, db: DbDep, task_id: int, task_in: TaskUpdate) -> Task:
    """Any of title, description, completed; `description: null` clears it, `title: null` is refused."""
    for field in ("title", "completed"):
        if field in task_in.model_fields_set and getattr(task_in, field) is None:
            raise ApiError(422, "validation_error", f"{field} cannot be null")
    return await db(lambda session: crud.update_task(session, task=owned_task(session, user, task_id), task_in=task_in))


@router.delete("/{task_id}", status_code=204, responses={**NOT_FOUND, **LIMITED})
async def delete_task(user: WritingUser, db: DbDep, task_id: int) -> Response:
    await db(lambda session: crud.delete_task(session, task=owned_task(session, user, task_id)))
    return Response(status_code=204)
