"""ASGI gates in front of every door: authenticate before any body is read, then cap what a body may hold.

FastAPI reads and parses a request's body before it solves the route's dependencies, so without a gate an
unauthenticated client could make the server read (and hold) a body of any size, and a garbled body would answer
422 before the missing token answered 401. `AuthGate` verifies the bearer token of the authenticated doors (the REST
API, ChatKit's endpoint, MCP) from the headers alone and hands the verified user on in the request scope;
`BodyLimit` then reads the body chunk by chunk up to `max_bytes` and answers 413 as soon as it is exceeded.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.auth import TokenVerifier, unauthorized
from backend.errors import ApiError, error_body

USER_STATE_KEY = "user_id"  # where the verified user travels in `scope["state"]` (`request.state.user_id`)


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def verified_user(scope: Scope) -> str | None:
    """The user the gate verified for this request, if it did."""
    user = (scope.get("state") or {}).get(USER_STATE_KEY)
    return user if isinstance(user, str) else None


class AuthGate:
    """Answer 401 (with the contract's error body) before the app sees a request that `needs_auth` and carries no
    valid bearer token; otherwise pass it on with the verified user in `scope["state"]`."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, needs_auth: Callable[[str, str], bool]) -> None:
        self.app = app
        self.verifier = verifier
        self.needs_auth = needs_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or not self.needs_auth(scope["method"], scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        try:
            token = bearer_token(scope)
            if token is None:
                raise unauthorized("A Bearer token is required.")
            user = await self.verifier.verified_user(token)
        except ApiError as exc:
            await JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)(scope, receive, send)
            return
        # A fresh state dict per request: nothing is shared between concurrent requests.
        state = {**(scope.get("state") or {}), USER_STATE_KEY: user}
        await self.app({**scope, "state": state}, receive, send)


class BodyLimit:
    """Read a request's body up to `max_bytes` before the app runs, answering 413 the moment it is exceeded.

    A declared `Content-Length` over the limit is refused without reading anything; a streamed body is read chunk
    by chunk, so the server never pulls more than the limit plus one chunk. The app then receives the body in one
    message, and every later `receive` (a disconnect, for a stream) comes from the client as usual.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = error_body("payload_too_large", f"The request body is larger than {self.max_bytes} bytes.")
        await JSONResponse(body, status_code=413, headers={"Connection": "close"})(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before sending its body
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _replay(first: list[Message], receive: Receive) -> Receive:
    pending = list(first)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
