"""The clients' I/O: budgets, deadlines, the async senders, failures and responses.

Everything that touches an HTTP library lives here, so the clients stay thin shells over the
sans-IO :mod:`lwa_middleware.protocol`. A library's exception becomes a
:class:`~lwa_middleware.protocol.TransportFailure` (never re-raised, never kept: httpx's and
aiohttp's exceptions carry the request, and so the token), its response an
:class:`~lwa_middleware.protocol.HTTPResponse` whose body is at most :data:`MAX_BODY` bytes
(an LWA answer is about 1 KiB; a bigger one is unusable: a ``"protocol"`` failure).

The async client sends through an :class:`AsyncSender`: :class:`AiohttpSender` (aiohttp used
directly, the default: ``bench/bench_client.py`` measured it at a fraction of httpx's CPU per
request under concurrency) or :class:`HTTPXSender` (an ``httpx.AsyncClient`` on the
caller's transport, e.g. ``httpx.MockTransport``).

httpx's timeouts apply per phase and per socket operation, so an upstream that trickles a
byte just inside the read timeout holds a request for as long as it likes. A call's
``timeout`` is a wall-clock deadline instead: the async client cancels the request when it
is spent (see ``AsyncLWAClient``); the sync client, which cannot cancel a blocking httpx
call, runs on :class:`DeadlineBackend`, which clamps every connect, TLS handshake, read and
write to the time left before the deadline of the call in progress (:func:`deadline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Iterable, Iterator
from contextvars import ContextVar
from functools import cache
from typing import Any, Protocol

import aiohttp
import anyio
import httpcore
import httpx

from lwa_middleware.errors import ConfigurationError
from lwa_middleware.protocol import HTTPRequest, HTTPResponse, Outcome, TransportFailure

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


# The sync deadline: a network backend clamping every socket operation ----------------

_DEADLINE: ContextVar[float | None] = ContextVar("lwa_middleware_deadline", default=None)


@contextlib.contextmanager
def deadline(at: float) -> Iterator[None]:
    """Hold every socket operation of :class:`DeadlineBackend` to ``at`` (monotonic) meanwhile.

    A context variable, so each thread (and each task) has its own: one ``LWAClient`` serves
    any number of threads, each call under its own deadline.
    """
    reset = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(reset)


def _clamp(timeout: float | None, spent: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` cut to the time left before the current deadline; raise ``spent`` if none."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise spent("deadline spent")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the current :func:`deadline`."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # One request is about 1 KiB: it fits the socket's send buffer, so the one ``send``
        # (bounded by the clamped timeout) never waits for the peer in practice.
        self._stream.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # CPython bounds the whole handshake by the socket timeout (one deadline, not one
        # per record), so clamping it once is enough.
        limit = _clamp(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, limit))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _addresses(host: str, port: int) -> list[str]:
    """The numeric addresses to try for ``host``, in the resolver's order."""
    found: list[str] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) > 3 and sockaddr[3]:
            address = f"{address}%{sockaddr[3]}"  # a link-local address keeps its scope
        if address not in found:
            found.append(address)
    return found


class DeadlineBackend(httpcore.NetworkBackend):
    """An httpcore network backend (wrapping ``httpcore.SyncBackend()``) held to deadlines.

    Outside :func:`deadline` it is the wrapped backend. Inside, every connect, TLS handshake,
    read and write gets at most the time left, and none starts once it is spent
    (``ConnectTimeout``/``ReadTimeout``/``WriteTimeout``, which httpx maps to its own timeout
    exceptions), so a call ends by its deadline (plus scheduling slack) whatever the
    upstream does: slow connect, status line, headers or body trickled, endless body.
    The one step it cannot bound is the host name lookup (``getaddrinfo`` blocks, bounded
    only by the resolver's own timeouts); a host with several addresses is connected to
    one address at a time, each attempt within the time left, not each with the whole.
    """

    def __init__(self, backend: httpcore.NetworkBackend | None = None) -> None:
        self._backend = httpcore.SyncBackend() if backend is None else backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if _DEADLINE.get() is None:
            stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
            return DeadlineStream(stream)
        _clamp(timeout, httpcore.ConnectTimeout)
        try:
            addresses = _addresses(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(type(exc).__name__) from exc
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            limit = _clamp(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._backend.connect_tcp(
                    address, port, limit, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return DeadlineStream(stream)
        raise failure or httpcore.ConnectError("no address")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        limit = _clamp(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_unix_socket(path, limit, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class HTTPXShapeError(RuntimeError):
    """httpx no longer holds its connection pools where :func:`hold_to_deadlines` looks."""


def _pools(client: httpx.Client) -> list[httpcore.ConnectionPool]:
    """Every httpcore pool of ``client``: its transport's, and those of env proxies' mounts."""
    transports: list[object] = [getattr(client, "_transport", None)]
    mounts = getattr(client, "_mounts", None)
    if not isinstance(mounts, dict):
        raise HTTPXShapeError(f"httpx {httpx.__version__}: Client._mounts is not a dict")
    transports.extend(mount for mount in mounts.values() if mount is not None)
    pools = []
    for owner in transports:
        pool = getattr(owner, "_pool", None)
        if not isinstance(owner, httpx.HTTPTransport) or not isinstance(
            pool, httpcore.ConnectionPool
        ):
            raise HTTPXShapeError(
                f"httpx {httpx.__version__}: {type(owner).__name__} holds no httpcore pool in _pool"
            )
        if not isinstance(getattr(pool, "_network_backend", None), httpcore.NetworkBackend):
            raise HTTPXShapeError(
                f"httpcore {httpcore.__version__}: ConnectionPool._network_backend is not a "
                "network backend"
            )
        pools.append(pool)
    return pools


def hold_to_deadlines(client: httpx.Client) -> httpx.Client:
    """Run every connection of ``client`` on a :class:`DeadlineBackend`; return ``client``.

    Why patch a built client rather than write a transport: ``httpx.HTTPTransport`` takes
    no ``network_backend``, and a ``BaseTransport`` of our own around
    ``httpcore.ConnectionPool(network_backend=...)`` would copy httpx's request conversion,
    response streaming and exception mapping, and lose the proxies httpx reads from the
    environment (``HTTPS_PROXY``, ``NO_PROXY``: it mounts them only when it builds its own
    transport). Replacing the backend of the pools httpx built keeps all of it (limits, TLS
    context, proxies) and touches two private attributes, checked here: if httpx changes
    shape this raises :class:`HTTPXShapeError` when the client is built (and the test suite
    fails) rather than silently losing the deadline. Call it before the first request.
    """
    for pool in _pools(client):
        backend = pool._network_backend
        if not isinstance(backend, DeadlineBackend):
            pool._network_backend = DeadlineBackend(backend)
    return client


def failure(exc: httpx.HTTPError) -> TransportFailure:
    """The failure for an httpx exception; the detail is the class name only."""
    if isinstance(exc, httpx.TimeoutException):
        return TransportFailure("timeout", type(exc).__name__)
    if isinstance(exc, httpx.ConnectError):
        return TransportFailure("connect", type(exc).__name__)
    return TransportFailure("protocol", type(exc).__name__)


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


# The async senders ----------------------------------------------------------------------

#: httpx client options: pool limits, the shared TLS context, no redirects.
HTTPX_OPTIONS: dict[str, Any] = {
    "limits": LIMITS,
    "verify": ssl_context(),
    "follow_redirects": False,
}


class AsyncSender(Protocol):
    """Sends one request and reads its answer; every failure comes back as an outcome.

    ``timeout`` (the time left of the call) is a hard deadline for the whole request,
    connect to last body byte, whatever the upstream does: a request still running then is
    cancelled and the outcome is :data:`DEADLINE_MISSED`.
    """

    @property
    def is_closed(self) -> bool: ...

    async def send(self, request: HTTPRequest, timeout: float) -> Outcome: ...

    async def aclose(self) -> None: ...


class HTTPXSender:
    """An ``httpx.AsyncClient`` on the caller's transport (e.g. ``httpx.MockTransport``)."""

    __slots__ = ("_http",)

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._http = httpx.AsyncClient(transport=transport, **HTTPX_OPTIONS)

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    async def send(self, request: HTTPRequest, timeout: float) -> Outcome:
        # httpx's timeouts are per phase and per read: the deadline is a cancel scope around
        # the whole request (anyio: asyncio or trio).
        with anyio.move_on_after(timeout):
            try:
                r = await self._http.request(
                    request.method, request.url, headers=request.headers, timeout=timeout
                )
            except httpx.HTTPError as exc:
                return failure(exc)
            return response(r)
        return DEADLINE_MISSED

    async def aclose(self) -> None:
        await self._http.aclose()


def _bypassed(url: urllib.parse.SplitResult, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names the URL's host (curl's rules: ``*``, a host, a domain)."""
    host, netloc = (url.hostname or "").lower(), url.netloc.lower()
    for entry in no_proxy.lower().split(","):
        name = entry.strip().lstrip(".")
        if name == "*" or (name and (name in (host, netloc) or host.endswith("." + name))):
            return True
    return False


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, as httpx picks it: ``HTTPS_PROXY`` (or
    ``HTTP_PROXY`` for an ``http`` URL), else ``ALL_PROXY``; none when ``NO_PROXY`` names
    the host. Raises :class:`ConfigurationError` for a proxy aiohttp cannot use (SOCKS).
    """
    proxies = urllib.request.getproxies()
    parts = urllib.parse.urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or _bypassed(parts, proxies.get("no", "")):
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    scheme = urllib.parse.urlsplit(proxy).scheme.lower()
    if scheme not in ("http", "https"):  # the URL may hold credentials: name the scheme only
        raise ConfigurationError(
            f"the environment's proxy for {parts.scheme} is a {scheme} proxy, which "
            "AsyncLWAClient cannot use; give it transport=httpx.AsyncHTTPTransport(...)"
        )
    return proxy


def aiohttp_failure(exc: BaseException) -> TransportFailure:
    """The failure for an aiohttp (or socket) exception; the detail is the class name only."""
    if isinstance(exc, asyncio.TimeoutError):
        kind = "timeout"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = "connect"
    else:
        kind = "protocol"
    return TransportFailure(kind, type(exc).__name__)


async def _read_capped(content: aiohttp.StreamReader) -> bytes | None:
    """The whole body, or ``None`` once it passes :data:`MAX_BODY`."""
    chunk = await content.readany()
    chunks = [chunk]
    size = len(chunk)
    while chunk and size <= MAX_BODY:
        chunk = await content.readany()
        chunks.append(chunk)
        size += len(chunk)
    return None if size > MAX_BODY else b"".join(chunks)


async def _held(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Holds ``session`` open; closes it when closed itself, by :meth:`AiohttpSender.aclose`
    or, since the running loop tracks its async generators, by the loop's shutdown
    (``asyncio.run`` and anyio close them) or when the sender is dropped unclosed."""
    try:
        yield
    finally:
        await session.close()


class AiohttpSender:
    """aiohttp used directly: one ``ClientSession``, opened by the first request inside the
    running loop and bound to that loop (asyncio only: under trio, give the client an
    httpx transport).

    The session follows no redirects, raises for no status, keeps no cookies (each
    verification stands alone), asks for no compression (an answer is ~1 KiB), sets no
    timeouts of aiohttp's (``send``'s deadline bounds the request), and does not retry a failed
    request by itself (``protocol.exchange`` owns the retry policy). aiohttp logs no request
    headers. Proxies: like httpx, ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and
    ``NO_PROXY`` (:func:`environment_proxy`), read once when the sender is built; aiohttp's
    ``trust_env=True`` would instead re-read them, and ``~/.netrc``, in worker threads on
    every request, which costs more CPU than the request itself (``bench/bench_client.py``).

    A session left open closes with its loop (see :func:`_held`), so a sender of a loop
    that ended without :meth:`aclose` neither leaks its connections nor logs aiohttp's
    "Unclosed client session" error.
    """

    __slots__ = ("_closed", "_holder", "_loop", "_proxy", "_session")

    def __init__(self, base_url: str) -> None:
        self._proxy = environment_proxy(base_url)
        self._session: aiohttp.ClientSession | None = None
        self._holder: AsyncGenerator[None, None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def _open(self) -> aiohttp.ClientSession:
        """The session for the running loop (opened now if this is the first request)."""
        if self._closed:
            raise RuntimeError("AsyncLWAClient is closed")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "AsyncLWAClient's aiohttp stack runs under asyncio only; "
                "give it transport=httpx.AsyncHTTPTransport() to run under trio"
            ) from None
        if self._session is not None:
            if loop is self._loop:
                return self._session
            raise RuntimeError(
                "AsyncLWAClient is bound to the event loop of its first request; "
                "use one client per event loop"
            )
        connector = aiohttp.TCPConnector(
            limit=LIMITS.max_connections or 100,
            keepalive_timeout=LIMITS.keepalive_expiry,
            ssl=ssl_context(),
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept-Encoding",),
            timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None),
            proxy=self._proxy,
        )
        # aiohttp resends an idempotent request once, unasked, when its connection drops
        # (aiohttp has no public switch for it; its own test client turns it off this way).
        if "_retry_connection" in aiohttp.ClientSession.ATTRS:
            session._retry_connection = False
        holder = _held(session)
        self._session, self._holder, self._loop = session, holder, loop
        await holder.__anext__()  # started: the loop now tracks it
        return session

    async def send(self, request: HTTPRequest, timeout: float) -> Outcome:
        session = self._session
        if session is None or self._closed or self._loop is not asyncio.get_running_loop():
            session = await self._open()
        # The deadline: asyncio's own timeout where there is one (half the CPU of anyio's
        # cancel scope, measured), else anyio's.
        if sys.version_info >= (3, 11):
            try:
                async with asyncio.timeout(timeout):
                    return await self._request(session, request)
            except TimeoutError:
                return DEADLINE_MISSED
        with anyio.move_on_after(timeout):
            return await self._request(session, request)
        return DEADLINE_MISSED

    @staticmethod
    async def _request(session: aiohttp.ClientSession, request: HTTPRequest) -> Outcome:
        try:
            async with session.request(
                request.method, request.url, headers=request.headers, allow_redirects=False
            ) as r:
                length = r.content_length
                body = None if length and length > MAX_BODY else await _read_capped(r.content)
                if body is None:
                    r.close()  # drop the connection rather than read the rest
                    return TOO_LARGE
                return HTTPResponse(r.status, r.headers, body)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            return aiohttp_failure(exc)

    async def aclose(self) -> None:
        self._closed = True
        holder, self._holder, self._session = self._holder, None, None
        if holder is not None:
            await holder.aclose()
