"""``TokenClient`` and ``AsyncTokenClient``: thin I/O shells over :mod:`lwa_middleware.core.grants`.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

They only move bytes: the grants module builds the form and judges the answer. The form
goes in the request body (httpx logs the URL at INFO, never the body), the answer is read
up to :data:`~lwa_middleware.core.grants.MAX_GRANT_BODY` bytes, and every failure comes out as a
:class:`~lwa_middleware.core.grants.GrantError` (never an httpx exception: those carry the
request, and so the form).

``timeout`` is a wall-clock deadline for the whole request (connect to last body byte):
the sync client's sockets are held to it (:mod:`lwa_middleware.upstream.deadlines`), the async
client cancels the request when it is spent. Missing it is
``GrantUnavailable("Login with Amazon timed out.")``. Token requests are never retried: an
authorization code is good for one exchange only.

A plain ``http://`` base URL to a host that is not loopback is refused unless
``allow_insecure_http=True`` (the rule of :class:`~lwa_middleware.core.settings.LWASettings`).

Given a ``recorder`` (:mod:`lwa_middleware.core.metrics`; a middleware's ``login=`` sets its own
on a client that has none), each request is counted as ``lwa_call("token", status,
seconds)``.

Bounded calls (what anonymous requests can trigger: the sign-in's ``/callback``, the
Swagger UI token proxy): given ``max_concurrent_calls`` (or later
:meth:`TokenClient.bound`), at most that many requests are in flight at once and up to
``max_queued_calls`` wait for a slot, newest first, within the client's ``timeout``
(:mod:`lwa_middleware.upstream.slots`, the verifiers' own mechanism); the excess, and a request
whose slot came with less than half of ``timeout`` left
(:func:`~lwa_middleware.core.breaker.call_budget`), is refused with
:class:`~lwa_middleware.core.errors.Overloaded` without calling LWA. The async client bounds
its calls under asyncio (one set of slots per event loop); under trio they are not
bounded. Given a circuit breaker (:meth:`TokenClient.guard_with`; ``LWAMiddleware(...,
login=...)`` shares the verifier's), a request is refused with
:class:`~lwa_middleware.core.breaker.CircuitOpen` while it is open, and every outcome is
reported to it by the breaker's one rule (only LWA's own failures count).
``Overloaded`` and ``CircuitOpen`` are server errors
(:class:`~lwa_middleware.core.errors.ServerError`), not grant errors: nothing was asked of LWA.

"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import httpx

from lwa_middleware.core.breaker import CircuitBreaker, call_budget
from lwa_middleware.core.device import CodePair, CodePairRequest, code_pair_request, parse_code_pair
from lwa_middleware.core.errors import ConfigurationError, Overloaded
from lwa_middleware.core.grants import (
    DEVICE_GRANT_ERRORS,
    GRANT_ERRORS,
    MAX_GRANT_BODY,
    CodeExchange,
    FormPost,
    GrantError,
    GrantRequest,
    GrantUnavailable,
    TokenGrant,
    code_grant,
    device_grant,
    parse_grant,
    refresh_grant,
)
from lwa_middleware.core.metrics import Recorder
from lwa_middleware.core.settings import is_insecure_http, resolve_api_base_url
from lwa_middleware.upstream import transport
from lwa_middleware.upstream.deadlines import deadline, hold_to_deadlines
from lwa_middleware.upstream.slots import AsyncSlots, Slots
from lwa_middleware.upstream.steps import Steps, arun, run
from lwa_middleware.upstream.transport import HTTPX_OPTIONS, Budget

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["AsyncTokenClient", "TokenClient"]

T = TypeVar("T")
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
Clock = Callable[[], float]
#: ``(status, content type, body)`` of a token endpoint's answer.
Answer = tuple[int, str | None, bytes]

_TIMED_OUT = "Login with Amazon timed out."
_TOO_LARGE = "Login with Amazon's token answer is too large."


def _failure(exc: httpx.HTTPError) -> str:
    """The message for an httpx failure (its kind only: the exception holds the request)."""
    kind = transport.failure(exc).kind
    if kind == "timeout":
        return _TIMED_OUT
    if kind == "connect":
        return "Login with Amazon could not be reached."
    return "Login with Amazon's token answer could not be read."


def _capped(chunks: Iterator[bytes]) -> bytes | None:
    """The body, or ``None`` once it grows past :data:`MAX_GRANT_BODY` (read no further)."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > MAX_GRANT_BODY:
            return None
    return bytes(body)


async def _acapped(chunks: AsyncIterator[bytes]) -> bytes | None:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_GRANT_BODY:
            return None
    return bytes(body)


def _status(status: int, failure: str | None) -> str:
    """The ``lwa_call`` status of a token request: its HTTP code, ``timeout`` or ``error``."""
    if failure is None:
        return str(status)
    return "timeout" if failure == _TIMED_OUT else "error"


def _slot_option(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


class _TokenClientBase(Generic[TransportT]):
    """Options, request building, the guard of each call and its steps, shared by both
    clients. ``transport`` (e.g. ``httpx.MockTransport``) is used as given: a sync one for
    :class:`TokenClient`, an async one for :class:`AsyncTokenClient`."""

    def __init__(
        self,
        api_base_url: str,
        *,
        timeout: float = 5.0,
        transport: TransportT | None = None,
        allow_insecure_http: bool = False,
        recorder: Recorder | None = None,
        max_concurrent_calls: int | None = None,
        max_queued_calls: int = 0,
    ) -> None:
        #: Where each token request is counted (``None``: nowhere).
        self.recorder = recorder
        #: The circuit breaker asked before each request and told its outcome (``None``:
        #: none), on ``clock``'s time: see :meth:`guard_with`.
        self.breaker: CircuitBreaker | None = None
        self.clock: Clock = time.time
        #: ``(max_concurrent_calls, max_queued_calls)``, or ``None``: calls not bounded.
        self.slot_options: tuple[int, int] | None = None
        self.bound(max_concurrent_calls, max_queued_calls)
        self.api_base_url = resolve_api_base_url(api_base_url, None)
        if is_insecure_http(self.api_base_url) and not allow_insecure_http:
            raise ConfigurationError(
                "api_base_url is plain http to a host that is not loopback: client secrets "
                "and tokens would cross the network unencrypted; use https, or set "
                "allow_insecure_http=True"
            )
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigurationError(f"timeout must be a positive number, got {timeout!r}")
        self.timeout = float(timeout)
        self._setup(transport)

    def _setup(self, transport: TransportT | None) -> None:
        """Set up the shell's HTTP client (or what makes them)."""
        raise NotImplementedError

    def bound(self, max_concurrent_calls: int | None, max_queued_calls: int = 0) -> None:
        """Hold this client's calls from now on to ``max_concurrent_calls`` at once, up to
        ``max_queued_calls`` waiting (``None``: not bounded). Calls in flight keep the
        slots they hold."""
        if max_concurrent_calls is None:
            self.slot_options = None
        else:
            self.slot_options = (
                _slot_option("max_concurrent_calls", max_concurrent_calls, 1),
                _slot_option("max_queued_calls", max_queued_calls, 0),
            )
        self._new_slots()

    def _new_slots(self) -> None:
        """Make the shell's slots for :attr:`slot_options`."""
        raise NotImplementedError

    def guard_with(self, breaker: CircuitBreaker | None, clock: Clock = time.time) -> None:
        """Share ``breaker`` (on ``clock``'s time, the one its other callers use), unless
        this client already has one: ``LWAMiddleware(..., login=...)`` gives the sign-in's
        token calls the verifier's breaker, one per LWA host."""
        if self.breaker is None and breaker is not None:
            self.breaker, self.clock = breaker, clock

    def _observe(self, status: int, failure: str | None, started: float) -> None:
        recorder = self.recorder
        if recorder is not None:
            recorder.lwa_call("token", _status(status, failure), time.perf_counter() - started)

    def _before(self) -> None:
        """Before a request: :class:`~lwa_middleware.core.breaker.CircuitOpen` while the breaker
        is open."""
        if self.breaker is not None:
            self.breaker.before_call(self.clock())

    def _report(self, error: BaseException | None) -> None:
        """After a request let through by :meth:`_before`: its outcome, for the breaker."""
        if self.breaker is not None:
            self.breaker.record(self.clock(), error)

    def _overloaded(self) -> Overloaded:
        if self.recorder is not None:
            self.recorder.fanout_rejected()
        return Overloaded()

    def _left(self, budget: Budget) -> float:
        """The time a request gets once it holds its slot; ``Overloaded`` (not sent, not
        counted against LWA) when less than a real budget is left."""
        left = call_budget(budget.remaining(), self.timeout)
        if left is None:
            raise self._overloaded()
        return left

    def _refresh(
        self, refresh_token: str, client_id: str, client_secret: str | None
    ) -> GrantRequest:
        return refresh_grant(
            self.api_base_url,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
        )

    @staticmethod
    def _grant_parser(
        request: GrantRequest, errors: Mapping[str, type[GrantError]]
    ) -> Callable[[int, str | None, bytes], TokenGrant]:
        """How a grant's answer is judged (LWA's error codes mapped by ``errors``)."""
        return partial(parse_grant, sensitive=request.sensitive_values, errors=errors)

    def _code_pair(
        self, client_id: str, scope: str, clock: Clock
    ) -> tuple[CodePairRequest, Callable[[int, str | None, bytes], CodePair]]:
        """The code-pair request, and how its answer is judged (received at ``clock()``)."""
        request = code_pair_request(self.api_base_url, client_id=client_id, scope=scope)
        return request, lambda status, content_type, body: parse_code_pair(
            status, content_type, body, now=clock()
        )

    def _device_grant(self, pair: CodePair) -> GrantRequest:
        return device_grant(
            self.api_base_url, device_code=pair.device_code, user_code=pair.user_code
        )

    def _calling(
        self,
        slots: Slots | AsyncSlots | None,
        request: FormPost,
        parse: Callable[[int, str | None, bytes], T],
    ) -> Steps[T]:
        """One call, as steps: the breaker asked first, a slot taken (when bounded), the
        request sent within ``timeout`` and its answer parsed; the breaker told the
        outcome on every way out."""
        self._before()
        try:
            budget = Budget(self.timeout)
            if slots is not None:
                try:
                    yield partial(slots.take, budget)
                except Overloaded:
                    raise self._overloaded() from None
            try:
                answer = yield partial(self._send, request, budget, self._left(budget))
            finally:
                if slots is not None:
                    slots.give()
            result = parse(*answer)
        except BaseException as error:
            self._report(error)
            raise
        self._report(None)
        return result

    def _send(self, request: FormPost, budget: Budget, left: float) -> Any:
        """Post the form (the shell's I/O): ``(status, content type, body)``."""
        raise NotImplementedError

    @staticmethod
    def _stream(request: FormPost, left: float) -> dict[str, Any]:
        """The arguments of the ``httpx`` stream that posts ``request``."""
        return {
            "method": request.method,
            "url": request.url,
            "content": request.body,
            "headers": dict(request.headers),
            "timeout": left,
        }

    def _answer(
        self, status: int, content_type: str | None, body: bytes | None, failure: str | None
    ) -> Answer:
        """What was read, or ``GrantUnavailable`` (raised here: the httpx exception is not
        kept as a context)."""
        if failure is not None:
            raise GrantUnavailable(failure)
        if body is None:
            raise GrantUnavailable(_TOO_LARGE)
        return status, content_type, body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api_base_url!r}, timeout={self.timeout})"


class TokenClient(_TokenClientBase[httpx.BaseTransport]):
    """Blocking token-endpoint client (one pooled ``httpx.Client``; any number of threads).

    ``transport`` (e.g. ``httpx.MockTransport``) is used as given; without one the client's
    sockets are held to each request's deadline.
    """

    def _setup(self, transport: httpx.BaseTransport | None) -> None:
        if transport is not None:
            self._http = httpx.Client(transport=transport, **HTTPX_OPTIONS)
        else:
            self._http = hold_to_deadlines(httpx.Client(**HTTPX_OPTIONS))

    def _new_slots(self) -> None:
        options = self.slot_options
        self._slots = None if options is None else Slots(*options)

    def exchange_code(self, code: str, **fields: Unpack[CodeExchange]) -> TokenGrant:
        """Exchange an authorization code: ``redirect_uri=``, ``client_id=``, and
        ``client_secret=`` and/or the PKCE ``code_verifier=`` (:class:`CodeExchange
        <lwa_middleware.core.grants.CodeExchange>`)."""
        return self.grant(code_grant(self.api_base_url, code=code, **fields))

    def refresh(
        self, refresh_token: str, *, client_id: str, client_secret: str | None = None
    ) -> TokenGrant:
        """A new access token for a refresh token (a new refresh token only with the secret)."""
        return self.grant(self._refresh(refresh_token, client_id, client_secret))

    def grant(
        self, request: GrantRequest, *, errors: Mapping[str, type[GrantError]] = GRANT_ERRORS
    ) -> TokenGrant:
        """Send any grant request; the :class:`TokenGrant` or a ``GrantError`` (``errors``
        maps LWA's error codes to classes, as in
        :func:`~lwa_middleware.core.grants.parse_grant`)."""
        return run(self._calling(self._slots, request, self._grant_parser(request, errors)))

    def create_code_pair(
        self, client_id: str, *, scope: str = "profile", clock: Clock = time.time
    ) -> CodePair:
        """``POST /auth/o2/create/codepair``: a :class:`~lwa_middleware.core.device.CodePair`
        (received at ``clock()``) or a ``GrantError``."""
        return run(self._calling(self._slots, *self._code_pair(client_id, scope, clock)))

    def poll_code_pair(self, pair: CodePair) -> TokenGrant:
        """One ``grant_type=device_code`` poll: the tokens, or ``AuthorizationPending``,
        ``SlowDown``, ``InvalidCodePair``, ``InvalidGrant``, … (see
        :class:`~lwa_middleware.callers.device_flow.DeviceFlow` for the whole polling)."""
        return self.grant(self._device_grant(pair), errors=DEVICE_GRANT_ERRORS)

    def _send(self, request: FormPost, budget: Budget, left: float) -> Answer:
        failure: str | None = None
        body: bytes | None = None
        status, content_type = 0, None
        started = time.perf_counter()
        try:
            with deadline(budget.deadline), self._http.stream(**self._stream(request, left)) as r:
                body = _capped(r.iter_bytes())
                status, content_type = r.status_code, r.headers.get("content-type")
        except httpx.HTTPError as exc:
            failure = _failure(exc)
        self._observe(status, failure, started)
        return self._answer(status, content_type, body, failure)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> TokenClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncTokenClient(_TokenClientBase[httpx.AsyncBaseTransport]):
    """Async token-endpoint client: one ``httpx.AsyncClient`` per event loop (an httpx pool
    belongs to the loop that opened it; Starlette's ``TestClient`` runs each request on a
    new loop), opened by the loop's first request.

    ``transport`` (``httpx.MockTransport``, ``httpx.AsyncHTTPTransport(...)``) is shared by
    the loops' clients. :meth:`aclose` closes the running loop's client (a later request
    opens a new one) and forgets those of closed loops.
    """

    def _setup(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._transport = transport
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._other: httpx.AsyncClient | None = None  # not asyncio (trio): one client

    @staticmethod
    def _loop() -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _open(self) -> httpx.AsyncClient:
        if self._transport is not None:
            return httpx.AsyncClient(transport=self._transport, **HTTPX_OPTIONS)
        return httpx.AsyncClient(**HTTPX_OPTIONS)

    def _client(self) -> httpx.AsyncClient:
        loop = self._loop()
        if loop is None:
            if self._other is None or self._other.is_closed:
                self._other = self._open()
            return self._other
        client = self._loops.get(loop)
        if client is None or client.is_closed:
            for old in [old for old in self._loops if old.is_closed()]:
                del self._loops[old]
            client = self._loops[loop] = self._open()
        return client

    def _new_slots(self) -> None:
        # One set per event loop (its waiters are that loop's futures), made at first use.
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncSlots] = (
            weakref.WeakKeyDictionary()
        )

    def _loop_slots(self) -> AsyncSlots | None:
        """The running asyncio loop's slots (``None``: calls not bounded, or not asyncio)."""
        options, loop = self.slot_options, self._loop()
        if options is None or loop is None:
            return None
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = AsyncSlots(*options)
        return slots

    async def exchange_code(self, code: str, **fields: Unpack[CodeExchange]) -> TokenGrant:
        """Exchange an authorization code (see :meth:`TokenClient.exchange_code`)."""
        return await self.grant(code_grant(self.api_base_url, code=code, **fields))

    async def refresh(
        self, refresh_token: str, *, client_id: str, client_secret: str | None = None
    ) -> TokenGrant:
        """A new access token for a refresh token (a new refresh token only with the secret)."""
        return await self.grant(self._refresh(refresh_token, client_id, client_secret))

    async def grant(
        self, request: GrantRequest, *, errors: Mapping[str, type[GrantError]] = GRANT_ERRORS
    ) -> TokenGrant:
        """Send any grant request (see :meth:`TokenClient.grant`)."""
        parse = self._grant_parser(request, errors)
        return await arun(self._calling(self._loop_slots(), request, parse))

    async def create_code_pair(
        self, client_id: str, *, scope: str = "profile", clock: Clock = time.time
    ) -> CodePair:
        """``POST /auth/o2/create/codepair`` (see :meth:`TokenClient.create_code_pair`)."""
        pair = self._code_pair(client_id, scope, clock)
        return await arun(self._calling(self._loop_slots(), *pair))

    async def poll_code_pair(self, pair: CodePair) -> TokenGrant:
        """One ``grant_type=device_code`` poll (see :meth:`TokenClient.poll_code_pair`)."""
        return await self.grant(self._device_grant(pair), errors=DEVICE_GRANT_ERRORS)

    async def _send(self, request: FormPost, budget: Budget, left: float) -> Answer:
        client = self._client()
        failure: str | None = _TIMED_OUT
        body: bytes | None = None
        status, content_type = 0, None
        started = time.perf_counter()
        # httpx's timeouts are per phase and per read: the deadline is a cancel scope around
        # the whole request (anyio: asyncio or trio).
        with anyio.move_on_after(left):
            try:
                async with client.stream(**self._stream(request, left)) as r:
                    body = await _acapped(r.aiter_bytes())
                    status, content_type = r.status_code, r.headers.get("content-type")
                failure = None
            except httpx.HTTPError as exc:
                failure = _failure(exc)
        self._observe(status, failure, started)
        return self._answer(status, content_type, body, failure)

    async def aclose(self) -> None:
        """Close the running loop's connection pool (and forget those of closed loops)."""
        loop = self._loop()
        client = self._other if loop is None else self._loops.pop(loop, None)
        if loop is None:
            self._other = None
        for old in [old for old in self._loops if old.is_closed()]:
            del self._loops[old]
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> AsyncTokenClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
