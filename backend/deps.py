"""Annotated dependencies so routes read like prose: `user: CurrentUser`, `session: SessionDep`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from backend.auth import TokenVerifier, unauthorized
from backend.chat import ChatService
from backend.errors import ApiError
from backend.ratelimit import RateLimiter, retry_after_header
from backend.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="A Better Auth JWT")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


def get_chat_service(request: Request) -> ChatService:
    service: ChatService = request.app.state.chat
    return service


def get_current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The user named by a verified token; a plain `def` so a JWKS fetch runs in the threadpool."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise unauthorized("A Bearer token is required.")
    verifier: TokenVerifier = request.app.state.verifier
    user_id = verifier.user_id(credentials.credentials)
    request.state.user_id = user_id
    return user_id


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ChatDep = Annotated[ChatService, Depends(get_chat_service)]
CurrentUser = Annotated[str, Depends(get_current_user)]


def get_path_user(current: CurrentUser, user_id: Annotated[str, Path(max_length=128)]) -> str:
    """The `{user_id}` in the path must be the token's user: the path is a claim, the token is the proof."""
    if user_id != current:
        raise ApiError(403, "forbidden", "The path names a different user than the token.")
    return current


PathUser = Annotated[str, Depends(get_path_user)]


async def _limit(request: Request, user: str) -> str:
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = await limiter.hit(user)
    if wait is not None:
        raise ApiError(429, "rate_limited", "Too many chat turns; slow down.", headers=retry_after_header(wait))
    return user


async def get_limited_path_user(request: Request, user: PathUser) -> str:
    """A turn costs model time: each user gets `RATE_LIMIT_PER_MINUTE` of them."""
    return await _limit(request, user)


async def get_limited_user(request: Request, user: CurrentUser) -> str:
    return await _limit(request, user)


LimitedPathUser = Annotated[str, Depends(get_limited_path_user)]
LimitedUser = Annotated[str, Depends(get_limited_user)]
