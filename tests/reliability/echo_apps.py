"""The apps the reliability suite serves behind the middlewares, and the soak's monitor.

Both echo apps answer ``{"user": ..., "stale": ...}``: the user id of the identity the
middleware attached (``scope["lwa"]`` / ``environ["lwa"]``, ``None`` when there is none)
and its ``stale`` flag (``None`` when the identity has no such attribute), so a test sees
exactly what the app saw, stale answers included (``conftest.seen`` has no ``stale``).

``Monitor`` wraps an ASGI app (the soak server's middleware): it counts the HTTP requests
in flight inside the app (maximum and time-weighted mean) and answers ``GET /_soak/stats``
itself, outside the middleware, with those figures, the middleware's ``stats()`` and the
breaker's changes a :class:`BreakerLog` (the middleware's ``recorder=``) kept;
``POST /_soak/reset`` restarts the count.

``tests/`` is not a package: modules here import this one by name (``from echo_apps
import ...``); ``soak_server.py`` runs as a script from this folder, so it can too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from lwa_middleware.asgi import answer_lifespan

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

JSON_HEADERS = [(b"content-type", b"application/json")]


def echo_body(identity: Any) -> bytes:
    """What the app saw: the identity's user id and ``stale`` flag."""
    user = None if identity is None else identity.user_id
    stale = None if identity is None else getattr(identity, "stale", None)
    return json.dumps({"user": user, "stale": stale}).encode()


async def asgi_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI: every HTTP path answers 200 with :func:`echo_body`."""
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    body = echo_body(scope.get("lwa"))
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_echo(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """WSGI: every path answers 200 with :func:`echo_body`."""
    start_response("200 OK", [("content-type", "application/json")])
    return [echo_body(environ.get("lwa"))]


class BreakerLog:
    """A ``metrics.Recorder`` keeping every circuit-breaker change with its
    ``time.monotonic()`` (system-wide on Linux: the test process reads the same clock), so
    the soak knows when the breaker was not closed. Every other event is ignored. (Not a
    ``NullRecorder`` subclass: ``FanOut`` drops those.)"""

    def __init__(self) -> None:
        self.changes: list[tuple[float, str]] = []

    def breaker_state(self, state: str) -> None:
        self.changes.append((time.monotonic(), state))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _ignore


def _ignore(*args: Any, **kwargs: Any) -> None:
    """Any other recorder event."""


class Monitor:
    """Counts requests in flight around ``app``; serves ``/_soak/stats`` and
    ``/_soak/reset`` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, middleware: Any, breaker: BreakerLog | None = None) -> None:
        self.app = app
        self.middleware = middleware
        self.breaker = breaker
        self.reset()

    def reset(self) -> None:
        """Start counting afresh (requests in flight now stay counted as in flight)."""
        self.inflight = getattr(self, "inflight", 0)
        self.max_inflight = self.inflight
        self.requests = 0
        self.area = 0.0  # integral of in-flight requests over time
        self.since = self.last = time.monotonic()

    def _tick(self, delta: int) -> None:
        now = time.monotonic()
        self.area += self.inflight * (now - self.last)
        self.last = now
        self.inflight += delta
        if self.inflight > self.max_inflight:
            self.max_inflight = self.inflight

    def figures(self) -> dict[str, Any]:
        self._tick(0)
        elapsed = max(1e-9, self.last - self.since)
        stats = getattr(self.middleware, "stats", None)
        return {
            "requests": self.requests,
            "max_inflight": self.max_inflight,
            "mean_inflight": self.area / elapsed,
            "seconds": elapsed,
            "stats": stats() if callable(stats) else None,
            "breaker_changes": None if self.breaker is None else self.breaker.changes,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/_soak/"):
            if path == "/_soak/reset":
                self.reset()
            body = json.dumps(self.figures()).encode()
            await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": body})
            return
        self.requests += 1
        self._tick(1)
        try:
            await self.app(scope, receive, send)
        finally:
            self._tick(-1)
