"""What stands in front of the playground's Gradio app, mounted or standalone.

- `HostCheck`: in development the playground has no login, so a web page the developer visits could drive it through
  DNS rebinding (its script reaching `127.0.0.1` under the page's own name). Only Host headers naming loopback, the
  bind address or `PLAYGROUND_ALLOWED_HOSTS` are answered.
- `LoginThrottle`: the login form answers 429 after 5 failed logins a minute from one client or for one username.
- `BodyLimit` (the backend's): bodies over `MAX_BODY_BYTES` answer 413.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from urllib.parse import parse_qs

from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.errors import error_body
from backend.gates import BodyLimit
from backend.settings import Settings

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
LOGIN_FAILURES_PER_MINUTE = 5
LOGIN_WINDOW_SECONDS = 60.0


def _route_path(scope: Scope) -> str:
    """The path inside the Gradio app, wherever it is mounted."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def host_of(header: str) -> str:
    """`example.com:8000` -> `example.com`, `[::1]:8000` -> `::1`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def allowed_hosts(settings: Settings, bind_host: str | None = None) -> frozenset[str] | None:
    """The Host names the playground answers; None: any (production without an allow-list sits behind its login)."""
    if settings.environment != "development" and not settings.playground_allowed_hosts:
        return None
    names = set(LOOPBACK_HOSTS) | {h.strip().lower() for h in settings.playground_allowed_hosts}
    for host in (settings.host, bind_host):
        if host and host not in WILDCARD_HOSTS:
            names.add(host.lower())
    return frozenset(names)


class HostCheck:
    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"host"), "")
            if host_of(header) not in self.allowed:
                body = error_body(
                    "forbidden", "The playground does not answer for this host (PLAYGROUND_ALLOWED_HOSTS)."
                )
                if scope["type"] == "http":
                    await JSONResponse(body, status_code=403)(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)


class FailureCounter:
    """Failures per key in a sliding window (in memory: a login throttle per process is enough to stop guessing)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen[key]
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def blocked_for(self, key: str, now: float) -> float | None:
        times = self._recent(key, now)
        return self.window - (now - times[0]) if len(times) >= self.limit else None

    def fail(self, key: str, now: float) -> None:
        self._recent(key, now).append(now)
        if len(self._seen) > 10_000:  # forget idle keys
            for stale in [k for k, v in self._seen.items() if not v]:
                del self._seen[stale]


class LoginThrottle:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.failures = FailureCounter(LOGIN_FAILURES_PER_MINUTE, LOGIN_WINDOW_SECONDS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or _route_path(scope).rstrip("/") != "/login":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        messages: list[Message] = []
        while more:  # the body cap in front of this has bounded it already
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            more = message.get("more_body", False) and message["type"] == "http.request"
        username = (parse_qs(body.decode("utf-8", "replace")).get("username") or [""])[0].strip()
        client = (scope.get("client") or ("?", 0))[0]
        keys = [f"client:{client}"] + ([f"user:{username}"] if username else [])
        now = time.monotonic()
        waits = [wait for key in keys if (wait := self.failures.blocked_for(key, now)) is not None]
        if waits:
            headers = {"Retry-After": str(max(1, int(max(waits)) + 1))}
            body_json = error_body("rate_limited", "Too many failed logins; try again in a minute.")
            await JSONResponse(body_json, status_code=429, headers=headers)(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        pending = list(messages)

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, watch)
        if 400 <= status < 500:
            for key in keys:
                self.failures.fail(key, time.monotonic())


def guard_middleware(settings: Settings, *, bind_host: str | None = None) -> list[Middleware]:
    """The Gradio app's own middleware (`app_kwargs={"middleware": ...}`), outermost first."""
    stack = [Middleware(BodyLimit, max_bytes=settings.max_body_bytes), Middleware(LoginThrottle)]
    hosts = allowed_hosts(settings, bind_host)
    if hosts is not None:
        stack.insert(0, Middleware(HostCheck, allowed=hosts))
    return stack
