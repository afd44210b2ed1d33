"""What the sync and async clients share about httpx: budgets, failures, responses.

Only translation lives here: an httpx exception becomes a
:class:`~lwa_middleware.protocol.TransportFailure` (never re-raised, since httpx
exceptions carry the request, and so the token), an httpx response becomes an
:class:`~lwa_middleware.protocol.HTTPResponse`.
"""

from __future__ import annotations

import ssl
import time
from functools import cache

import httpx

from lwa_middleware.protocol import HTTPResponse, TransportFailure

LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60)


@cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context for every client (building one costs milliseconds)."""
    return ssl.create_default_context()


class Budget:
    """The overall timeout of one call, shared by its attempts (monotonic clock)."""

    __slots__ = ("_deadline",)

    def __init__(self, timeout: float) -> None:
        self._deadline = time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left, or ``None`` when the budget is spent."""
        left = self._deadline - time.monotonic()
        return left if left > 0 else None


def failure(exc: httpx.HTTPError) -> TransportFailure:
    """The failure for an httpx exception; the detail is the class name only."""
    if isinstance(exc, httpx.TimeoutException):
        return TransportFailure("timeout", type(exc).__name__)
    if isinstance(exc, httpx.ConnectError):
        return TransportFailure("connect", type(exc).__name__)
    return TransportFailure("protocol", type(exc).__name__)


SPENT = TransportFailure("timeout", "budget spent")


def response(r: httpx.Response) -> HTTPResponse:
    """An :class:`HTTPResponse` from a read httpx response."""
    return HTTPResponse(r.status_code, r.headers, r.content)
