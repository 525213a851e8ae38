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
