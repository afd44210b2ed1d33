"""In-process timing: N requests through an app with a prebuilt request, no server, no network.

Every request gets a shallow copy of the prebuilt scope (or environ), as a server builds a new
one per request; that copy costs the same in every variant, so it cancels in the overheads.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import time
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import TYPE_CHECKING, Any

from bench_apps import receive_nothing
from starlette.types import ASGIApp, Message, Scope

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


async def _discard(message: Message) -> None:
    return None


async def asgi_status(app: ASGIApp, scope: Scope) -> int:
    """The status ``app`` answers the prebuilt request with (a check before timing)."""
    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(dict(scope), receive_nothing, send)
    return statuses[0]


async def time_asgi(app: ASGIApp, scope: Scope, n: int) -> float:
    """Nanoseconds per request over ``n`` requests on the running loop."""
    receive, send = receive_nothing, _discard
    start = time.perf_counter_ns()
    for _ in repeat(None, n):
        await app(dict(scope), receive, send)
    return (time.perf_counter_ns() - start) / n


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def wsgi_status(app: WSGIApplication, environ: dict[str, Any]) -> str:
    """The status line ``app`` answers the prebuilt request with (a check before timing)."""
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)

    _consume(app(dict(environ), start_response))
    return statuses[0]


def _consume(body: Iterable[bytes]) -> None:
    for _ in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()


def time_wsgi(app: WSGIApplication, environ: dict[str, Any], n: int) -> float:
    """Nanoseconds per request over ``n`` requests."""
    start_response = _start_response
    start = time.perf_counter_ns()
    for _ in repeat(None, n):
        _consume(app(dict(environ), start_response))
    return (time.perf_counter_ns() - start) / n


def per_call_ns(call: Callable[[Any], object], argument: object, n: int, tries: int = 5) -> float:
    """Best-of-``tries`` nanoseconds of ``call(argument)``, the bare loop's cost subtracted."""
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter_ns()
        for _ in repeat(None, n):
            pass
        empty = time.perf_counter_ns() - start
        start = time.perf_counter_ns()
        for _ in repeat(None, n):
            call(argument)
        best = min(best, (time.perf_counter_ns() - start - empty) / n)
    return best


def profile_asgi(app: ASGIApp, scope: Scope, n: int, top: int = 15) -> str:
    """cProfile of ``n`` requests through ``app`` (sorted by own time), as text."""

    async def run() -> None:
        receive, send = receive_nothing, _discard
        for _ in repeat(None, n):
            await app(dict(scope), receive, send)

    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(run())
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()
