"""The async client's senders: one request out, one outcome back, within a deadline.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

:class:`AiohttpSender` (aiohttp used directly, the default: ``bench/bench_client.py``
measured it at a fraction of httpx's CPU per request under concurrency) or
:class:`HTTPXSender` (an ``httpx.AsyncClient`` on the caller's transport, e.g.
``httpx.MockTransport``). The deadline cancels the request when it is spent.

"""

from __future__ import annotations

import asyncio
import sys
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Protocol

import anyio
import httpx

from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.protocol import (
    HTTPRequest,
    HTTPResponse,
    Outcome,
    TransportFailure,
    failure_of,
)
from lwa_middleware.upstream.transport import (
    DEADLINE_MISSED,
    HTTPX_OPTIONS,
    LIMITS,
    MAX_BODY,
    TOO_LARGE,
    failure,
    response,
    ssl_context,
)

if TYPE_CHECKING:
    # At run time aiohttp (~100 ms to import) is imported by the first AiohttpSender, which
    # a middleware builds at lifespan startup: ``import lwa_middleware`` stays cheap.
    import aiohttp


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
    """The failure for an aiohttp (or socket) exception; the detail is its cause in words."""
    return failure_of(
        exc, timeouts=(asyncio.TimeoutError,), connects=(aiohttp.ClientConnectorError,)
    )


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
        global aiohttp  # every use of aiohttp in this module follows a sender's creation
        import aiohttp

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
