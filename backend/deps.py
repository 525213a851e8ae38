"""Annotated dependencies so routes read like prose: `user: CurrentUser`, `db: DbDep`.

Every dependency is `async def`: FastAPI runs a plain `def` one in the threadpool, a trip that costs more than what
these do. Database work goes to the threadpool once per request, through `Db`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from backend import db
from backend.auth import TokenVerifier, unauthorized
from backend.chat import ChatService
from backend.errors import ApiError
from backend.gates import verified_user
from backend.metrics import RATE_LIMITED
from backend.ratelimit import RateLimiter, retry_after_header

_bearer = HTTPBearer(auto_error=False, description="A Better Auth JWT")


T = TypeVar("T")


class Db:
    """A route's database: `await db(work)` runs `work(session)` in the threadpool, in a session of its own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def __call__(self, work: Callable[[Session], T]) -> T:
        return await db.run_in_session(self.engine, work)


async def get_db(request: Request) -> Db:
    return Db(request.app.state.engine)


async def get_chat_service(request: Request) -> ChatService:
    service: ChatService = request.app.state.chat
    return service


async def get_current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The user named by a verified token: the auth gate verified it before the body was read (`backend.gates`);
    verified here only for a route the gate does not cover."""
    gated = verified_user(request.scope)
    if gated is not None:
        return gated
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise unauthorized("A Bearer token is required.")
    verifier: TokenVerifier = request.app.state.verifier
    user_id = await verifier.verified_user(credentials.credentials)
    request.state.user_id = user_id
    return user_id


DbDep = Annotated[Db, Depends(get_db)]
ChatDep = Annotated[ChatService, Depends(get_chat_service)]
CurrentUser = Annotated[str, Depends(get_current_user)]


async def get_path_user(current: CurrentUser, user_id: Annotated[str, Path(max_length=128)]) -> str:
    """The `{user_id}` in the path must be the token's user: the path is a claim, the token is the proof."""
    if user_id != current:
        raise ApiError(403, "forbidden", "The path names a different user than the token.")
    return current


PathUser = Annotated[str, Depends(get_path_user)]


async def limit(limiter: RateLimiter, user: str, what: str) -> None:
    """Count one `what` for `user`; 429 with Retry-After when the minute's allowance is used up."""
    wait = await limiter.hit(user)
    if wait is not None:
        RATE_LIMITED.labels(what).inc()
        raise ApiError(429, "rate_limited", f"Too many {what}; slow down.", headers=retry_after_header(wait))


async def _limit(request: Request, user: str) -> str:
    await limit(request.app.state.rate_limiter, user, "chat turns")
    return user


async def get_limited_path_user(request: Request, user: PathUser) -> str:
    """A turn costs model time: each user gets `RATE_LIMIT_PER_MINUTE` of them."""
    return await _limit(request, user)


async def get_limited_user(request: Request, user: CurrentUser) -> str:
    return await _limit(request, user)


LimitedPathUser = Annotated[str, Depends(get_limited_path_user)]
LimitedUser = Annotated[str, Depends(get_limited_user)]


async def get_writing_user(request: Request, user: PathUser) -> str:
    """A change to tasks or conversations: each user gets `WRITE_RATE_LIMIT_PER_MINUTE` of them."""
    await limit(request.app.state.write_limiter, user, "changes")
    return user


WritingUser = Annotated[str, Depends(get_writing_user)]
