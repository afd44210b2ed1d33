"""What both LWA clients share about I/O: budgets, pool options, failures and responses.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

A library's exception becomes a :class:`~lwa_middleware.core.protocol.TransportFailure` (never
re-raised, never kept: httpx's and aiohttp's exceptions carry the request, and so the
token), its response an :class:`~lwa_middleware.core.protocol.HTTPResponse` whose body is at most
:data:`MAX_BODY` bytes (an LWA answer is about 1 KiB; a bigger one is unusable: a
``"protocol"`` failure). The sync client's deadline is :mod:`lwa_middleware.upstream.deadlines`, the
async client's senders :mod:`lwa_middleware.upstream.senders`.

"""

from __future__ import annotations

import ssl
import time
from functools import cache
from typing import Any

import httpx

from lwa_middleware.core.protocol import HTTPResponse, Outcome, TransportFailure, failure_of

#: Connection pool limits: 100 connections (a cold verification makes two requests at once,
#: and the verifier admits 32 at a time by default), kept alive 60 s when idle.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60)
#: The largest answer body read: an LWA answer is about 1 KiB, a bigger one is unusable.
MAX_BODY = 64 * 1024


@cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context for every client (building one costs milliseconds)."""
    return ssl.create_default_context()


class Budget:
    """The overall timeout of one call, shared by its attempts (monotonic clock)."""

    __slots__ = ("deadline",)

    def __init__(self, timeout: float) -> None:
        #: When the budget is spent, on the :func:`time.monotonic` clock.
        self.deadline = time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left, or ``None`` when the budget is spent."""
        left = self.deadline - time.monotonic()
        return left if left > 0 else None


def failure(exc: httpx.HTTPError) -> TransportFailure:
    """The failure for an httpx exception (:func:`~lwa_middleware.core.protocol.failure_of`)."""
    return failure_of(exc, timeouts=(httpx.TimeoutException,), connects=(httpx.ConnectError,))


SPENT = TransportFailure("timeout", "budget spent")
#: The async client cancelled a request at its deadline.
DEADLINE_MISSED = TransportFailure("timeout", "deadline")
#: The answer's body is larger than :data:`MAX_BODY`.
TOO_LARGE = TransportFailure("protocol", "body too large")


def response(r: httpx.Response) -> Outcome:
    """An :class:`HTTPResponse` from a read httpx response (:data:`TOO_LARGE` past the cap)."""
    if len(r.content) > MAX_BODY:
        return TOO_LARGE
    return HTTPResponse(r.status_code, r.headers, r.content)


#: httpx client options: pool limits, the shared TLS context, no redirects.
HTTPX_OPTIONS: dict[str, Any] = {
    "limits": LIMITS,
    "verify": ssl_context(),
    "follow_redirects": False,
}
