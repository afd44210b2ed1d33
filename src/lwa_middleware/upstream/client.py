"""``AsyncLWAClient`` and ``LWAClient``: thin I/O shells over :mod:`lwa_middleware.core.protocol`.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

Each holds one connection pool and only moves bytes: building requests, parsing answers and
the retry policy are the protocol module's. ``LWAClient`` runs on httpx; ``AsyncLWAClient``
on aiohttp (or on httpx, with the caller's transport): see :mod:`lwa_middleware.upstream.transport`.
Every failure comes out as an :class:`~lwa_middleware.core.errors.LWAError`, never as an httpx
or aiohttp exception.

A call's ``timeout`` (its own, or the client's) is a wall-clock deadline for the whole call,
retries included, whatever the upstream does: the sync client's sockets are clamped to it
(:class:`~lwa_middleware.upstream.deadlines.DeadlineBackend`), the async client cancels the request
(connect to last body byte) when it is spent. Missing it is
``LWAUnavailable("Login with Amazon timed out.")``.

Given a ``recorder`` (:mod:`lwa_middleware.core.metrics`), each HTTP attempt (a retry is
another) is counted with its status and duration (``time.perf_counter``); given a
``tracer``, each call is an ``lwa.tokeninfo`` / ``lwa.profile`` span.

"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar, cast

import httpx

from lwa_middleware.core.metrics import Endpoint, NullRecorder, Recorder, status_of
from lwa_middleware.core.models import Profile, TokenInfo
from lwa_middleware.core.protocol import (
    HTTPRequest,
    HTTPResponse,
    Outcome,
    Steps,
    drive,
    exchange,
    parse_profile,
    parse_tokeninfo,
    profile_request,
    tokeninfo_request,
)
from lwa_middleware.core.settings import resolve_api_base_url
from lwa_middleware.core.tokens import normalize_token, validate_token
from lwa_middleware.upstream import transport
from lwa_middleware.upstream.deadlines import deadline, hold_to_deadlines
from lwa_middleware.upstream.senders import AiohttpSender, AsyncSender, HTTPXSender
from lwa_middleware.upstream.tracing import SPAN_PROFILE, SPAN_TOKENINFO, SpanHandle, Tracer
from lwa_middleware.upstream.transport import HTTPX_OPTIONS

__all__ = ["HTTPX_OPTIONS", "AsyncLWAClient", "LWAClient"]

T = TypeVar("T")
TransportT = TypeVar("TransportT")
HTTPT = TypeVar("HTTPT")

#: A client built without a tracer makes no spans.
_NO_TRACING = Tracer(enabled=False)


class _ClientBase(Generic[TransportT, HTTPT]):
    """Options, the pooled HTTP client and request building, shared by both clients."""

    def __init__(
        self,
        api_base_url: str | None = None,
        *,
        region: str | None = None,
        timeout: float = 5.0,
        retries: int = 1,
        transport: TransportT | None = None,
        recorder: Recorder | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.api_base_url = resolve_api_base_url(api_base_url, region)
        self.timeout = timeout
        self.retries = retries
        self._recorder: Recorder = recorder if recorder is not None else NullRecorder()
        self._tracer = tracer if tracer is not None else _NO_TRACING
        self._http: HTTPT = self._open(transport)

    def _open(self, transport: TransportT | None) -> HTTPT:
        raise NotImplementedError

    def _observe(
        self, endpoint: Endpoint, outcome: Outcome, started: float, span: SpanHandle
    ) -> None:
        """Record one HTTP attempt: its status and duration, on the span too."""
        self._recorder.lwa_call(endpoint, status_of(outcome), time.perf_counter() - started)
        if isinstance(outcome, HTTPResponse):
            span.set_status_code(outcome.status)

    def _budget(self, timeout: float | None) -> transport.Budget:
        return transport.Budget(self.timeout if timeout is None else timeout)

    def _steps(
        self, token: str, build: Callable[[str, str], HTTPRequest], parse: Callable[..., T]
    ) -> Steps[T]:
        token = validate_token(normalize_token(token, decode=False))
        return exchange(build(self.api_base_url, token), parse, self.retries, secret=token)

    def _tokeninfo_steps(self, token: str, now: float | None) -> Steps[TokenInfo]:
        when = time.time() if now is None else now
        return self._steps(token, tokeninfo_request, lambda r: parse_tokeninfo(r, when))

    def _profile_steps(self, token: str) -> Steps[Profile]:
        return self._steps(token, profile_request, parse_profile)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api_base_url!r}, timeout={self.timeout})"


class LWAClient(_ClientBase[httpx.BaseTransport, httpx.Client]):
    """Blocking LWA client (one pooled ``httpx.Client``); use it from any number of threads."""

    def _open(self, transport: httpx.BaseTransport | None) -> httpx.Client:
        if transport is not None:  # the caller's (e.g. httpx.MockTransport), left as it is
            return httpx.Client(transport=transport, **HTTPX_OPTIONS)
        # httpx cannot be cancelled from outside, so its sockets are held to the deadline.
        return hold_to_deadlines(httpx.Client(**HTTPX_OPTIONS))

    def tokeninfo(
        self, token: str, *, now: float | None = None, timeout: float | None = None
    ) -> TokenInfo:
        """Ask LWA what the token is (``now``, epoch seconds, anchors ``expires_at``;
        ``timeout`` overrides the client's for this call, retry included)."""
        with self._tracer.span(SPAN_TOKENINFO) as span:
            steps = self._tokeninfo_steps(token, now)
            return drive(steps, self._sender(timeout, "tokeninfo", span))

    def profile(self, token: str, *, timeout: float | None = None) -> Profile:
        """Fetch the customer profile the token grants."""
        with self._tracer.span(SPAN_PROFILE) as span:
            return drive(self._profile_steps(token), self._sender(timeout, "profile", span))

    def _sender(
        self, timeout: float | None, endpoint: Endpoint, span: SpanHandle
    ) -> Callable[[HTTPRequest], Outcome]:
        budget = self._budget(timeout)

        def send(request: HTTPRequest) -> Outcome:
            left = budget.remaining()
            if left is None:
                return transport.SPENT
            started = time.perf_counter()
            outcome: Outcome
            try:
                with deadline(budget.deadline):
                    r = self._http.request(
                        request.method, request.url, headers=request.headers, timeout=left
                    )
            except httpx.HTTPError as exc:
                outcome = transport.failure(exc)
            else:
                outcome = transport.response(r)
            self._observe(endpoint, outcome, started, span)
            return outcome

        return send

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> LWAClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncLWAClient(_ClientBase[httpx.AsyncBaseTransport, AsyncSender]):
    """Async LWA client, bound to the event loop that first uses it.

    By default it sends with aiohttp (one ``ClientSession``, opened by the first request,
    asyncio only): :class:`~lwa_middleware.upstream.senders.AiohttpSender` says how it is set up,
    proxies from the environment included. Given ``transport`` (an
    ``httpx.AsyncBaseTransport``: ``httpx.MockTransport`` in tests, or
    ``httpx.AsyncHTTPTransport(...)`` for httpx's own options, or to run under trio) it
    sends with an ``httpx.AsyncClient`` on that transport instead. Either way a call's
    ``timeout`` bounds each request, connect to last body byte, by cancelling it.
    """

    def _open(self, transport: httpx.AsyncBaseTransport | None) -> AsyncSender:
        if transport is not None:
            return HTTPXSender(transport)
        return AiohttpSender(self.api_base_url)

    async def tokeninfo(
        self, token: str, *, now: float | None = None, timeout: float | None = None
    ) -> TokenInfo:
        """Ask LWA what the token is (``now``, epoch seconds, anchors ``expires_at``;
        ``timeout`` overrides the client's for this call, retry included)."""
        with self._tracer.span(SPAN_TOKENINFO) as span:
            return await self._drive(self._tokeninfo_steps(token, now), timeout, "tokeninfo", span)

    async def profile(self, token: str, *, timeout: float | None = None) -> Profile:
        """Fetch the customer profile the token grants."""
        with self._tracer.span(SPAN_PROFILE) as span:
            return await self._drive(self._profile_steps(token), timeout, "profile", span)

    async def _drive(
        self, steps: Steps[T], timeout: float | None, endpoint: Endpoint, span: SpanHandle
    ) -> T:
        budget = self._budget(timeout)
        send = self._http.send
        request = next(steps)
        while True:
            # Each attempt gets what is left of the budget, as a hard deadline (the sender
            # cancels the request when it is spent).
            left = budget.remaining()
            outcome: Outcome
            if left is None:
                outcome = transport.SPENT
            else:
                started = time.perf_counter()
                outcome = await send(request, left)
                self._observe(endpoint, outcome, started, span)
            try:
                request = steps.send(outcome)
            except StopIteration as done:
                return cast(T, done.value)

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` ran."""
        return self._http.is_closed

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLWAClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
