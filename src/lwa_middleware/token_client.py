"""``TokenClient`` and ``AsyncTokenClient``: thin I/O shells over :mod:`lwa_middleware.grants`.

They only move bytes: the grants module builds the form and judges the answer. The form
goes in the request body (httpx logs the URL at INFO, never the body), the answer is read
up to :data:`~lwa_middleware.grants.MAX_GRANT_BODY` bytes, and every failure comes out as a
:class:`~lwa_middleware.grants.GrantError` (never an httpx exception: those carry the
request, and so the form).

``timeout`` is a wall-clock deadline for the whole request (connect to last body byte):
the sync client's sockets are held to it (:mod:`lwa_middleware.deadlines`), the async
client cancels the request when it is spent. Missing it is
``GrantUnavailable("Login with Amazon timed out.")``. Token requests are never retried: an
authorization code is good for one exchange only.

A plain ``http://`` base URL to a host that is not loopback is refused unless
``allow_insecure_http=True`` (the rule of :class:`~lwa_middleware.settings.LWASettings`).

Given a ``recorder`` (:mod:`lwa_middleware.metrics`; a middleware's ``login=`` sets its own
on a client that has none), each request is counted as ``lwa_call("token", status,
seconds)``.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType

import anyio
import httpx

from lwa_middleware import transport
from lwa_middleware.deadlines import deadline, hold_to_deadlines
from lwa_middleware.device import CodePair, CodePairRequest, code_pair_request, parse_code_pair
from lwa_middleware.errors import ConfigurationError
from lwa_middleware.grants import (
    DEVICE_GRANT_ERRORS,
    GRANT_ERRORS,
    MAX_GRANT_BODY,
    GrantError,
    GrantRequest,
    GrantUnavailable,
    TokenGrant,
    code_grant,
    device_grant,
    parse_grant,
    refresh_grant,
)
from lwa_middleware.metrics import Recorder
from lwa_middleware.settings import is_insecure_http, resolve_api_base_url
from lwa_middleware.transport import HTTPX_OPTIONS

__all__ = ["AsyncTokenClient", "TokenClient"]

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


class _TokenClientBase:
    """Options and request building, shared by both clients."""

    def __init__(
        self,
        api_base_url: str,
        *,
        timeout: float = 5.0,
        allow_insecure_http: bool = False,
        recorder: Recorder | None = None,
    ) -> None:
        #: Where each token request is counted (``None``: nowhere).
        self.recorder = recorder
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

    def _observe(self, status: int, failure: str | None, started: float) -> None:
        recorder = self.recorder
        if recorder is not None:
            recorder.lwa_call("token", _status(status, failure), time.perf_counter() - started)

    def _code(
        self,
        code: str,
        redirect_uri: str,
        client_id: str,
        client_secret: str | None,
        code_verifier: str | None,
    ) -> GrantRequest:
        return code_grant(
            self.api_base_url,
            code=code,
            redirect_uri=redirect_uri,
            client_id=client_id,
            client_secret=client_secret,
            code_verifier=code_verifier,
        )

    def _refresh(
        self, refresh_token: str, client_id: str, client_secret: str | None
    ) -> GrantRequest:
        return refresh_grant(
            self.api_base_url,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api_base_url!r}, timeout={self.timeout})"


class TokenClient(_TokenClientBase):
    """Blocking token-endpoint client (one pooled ``httpx.Client``; any number of threads).

    ``transport`` (e.g. ``httpx.MockTransport``) is used as given; without one the client's
    sockets are held to each request's deadline.
    """

    def __init__(
        self,
        api_base_url: str,
        *,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        allow_insecure_http: bool = False,
        recorder: Recorder | None = None,
    ) -> None:
        super().__init__(
            api_base_url,
            timeout=timeout,
            allow_insecure_http=allow_insecure_http,
            recorder=recorder,
        )
        if transport is not None:
            self._http = httpx.Client(transport=transport, **HTTPX_OPTIONS)
        else:
            self._http = hold_to_deadlines(httpx.Client(**HTTPX_OPTIONS))

    def exchange_code(
        self,
        code: str,
        *,
        redirect_uri: str,
        client_id: str,
        client_secret: str | None = None,
        code_verifier: str | None = None,
    ) -> TokenGrant:
        """Exchange an authorization code (``client_secret`` and/or PKCE ``code_verifier``)."""
        return self.grant(self._code(code, redirect_uri, client_id, client_secret, code_verifier))

    def refresh(
        self, refresh_token: str, *, client_id: str, client_secret: str | None = None
    ) -> TokenGrant:
        """A new access token for a refresh token (a new refresh token only with the secret)."""
        return self.grant(self._refresh(refresh_token, client_id, client_secret))

    def grant(
        self, request: GrantRequest, *, errors: Mapping[str, type[GrantError]] = GRANT_ERRORS
    ) -> TokenGrant:
        """Send any grant request; the :class:`TokenGrant` or a ``GrantError`` (``errors``
        maps LWA's error codes to classes, as in :func:`~lwa_middleware.grants.parse_grant`)."""
        status, content_type, body = self._send(request)
        return parse_grant(
            status, content_type, body, sensitive=request.sensitive_values, errors=errors
        )

    def create_code_pair(
        self, client_id: str, *, scope: str = "profile", clock: Callable[[], float] = time.time
    ) -> CodePair:
        """``POST /auth/o2/create/codepair``: a :class:`~lwa_middleware.device.CodePair`
        (received at ``clock()``) or a ``GrantError``."""
        request = code_pair_request(self.api_base_url, client_id=client_id, scope=scope)
        status, content_type, body = self._send(request)
        return parse_code_pair(status, content_type, body, now=clock())

    def poll_code_pair(self, pair: CodePair) -> TokenGrant:
        """One ``grant_type=device_code`` poll: the tokens, or ``AuthorizationPending``,
        ``SlowDown``, ``InvalidCodePair``, ``InvalidGrant``, … (see
        :class:`~lwa_middleware.device_flow.DeviceFlow` for the whole polling)."""
        request = device_grant(
            self.api_base_url, device_code=pair.device_code, user_code=pair.user_code
        )
        return self.grant(request, errors=DEVICE_GRANT_ERRORS)

    def _send(self, request: GrantRequest | CodePairRequest) -> tuple[int, str | None, bytes]:
        """Post the form; ``(status, content type, body)`` or ``GrantUnavailable``."""
        budget = transport.Budget(self.timeout)
        failure: str | None = None
        status = 0
        started = time.perf_counter()
        try:
            with (
                deadline(budget.deadline),
                self._http.stream(
                    request.method,
                    request.url,
                    content=request.body,
                    headers=dict(request.headers),
                    timeout=self.timeout,
                ) as r,
            ):
                body = _capped(r.iter_bytes())
                status, content_type = r.status_code, r.headers.get("content-type")
        except httpx.HTTPError as exc:
            failure = _failure(exc)
        self._observe(status, failure, started)
        if failure is not None:  # raised here: the httpx exception is not kept as a context
            raise GrantUnavailable(failure)
        if body is None:
            raise GrantUnavailable(_TOO_LARGE)
        return status, content_type, body

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> TokenClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncTokenClient(_TokenClientBase):
    """Async token-endpoint client: one ``httpx.AsyncClient`` per event loop (an httpx pool
    belongs to the loop that opened it; Starlette's ``TestClient`` runs each request on a
    new loop), opened by the loop's first request.

    ``transport`` (``httpx.MockTransport``, ``httpx.AsyncHTTPTransport(...)``) is shared by
    the loops' clients. :meth:`aclose` closes the running loop's client (a later request
    opens a new one) and forgets those of closed loops.
    """

    def __init__(
        self,
        api_base_url: str,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_insecure_http: bool = False,
        recorder: Recorder | None = None,
    ) -> None:
        super().__init__(
            api_base_url,
            timeout=timeout,
            allow_insecure_http=allow_insecure_http,
            recorder=recorder,
        )
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

    async def exchange_code(
        self,
        code: str,
        *,
        redirect_uri: str,
        client_id: str,
        client_secret: str | None = None,
        code_verifier: str | None = None,
    ) -> TokenGrant:
        """Exchange an authorization code (``client_secret`` and/or PKCE ``code_verifier``)."""
        request = self._code(code, redirect_uri, client_id, client_secret, code_verifier)
        return await self.grant(request)

    async def refresh(
        self, refresh_token: str, *, client_id: str, client_secret: str | None = None
    ) -> TokenGrant:
        """A new access token for a refresh token (a new refresh token only with the secret)."""
        return await self.grant(self._refresh(refresh_token, client_id, client_secret))

    async def grant(
        self, request: GrantRequest, *, errors: Mapping[str, type[GrantError]] = GRANT_ERRORS
    ) -> TokenGrant:
        """Send any grant request; the :class:`TokenGrant` or a ``GrantError`` (``errors``
        maps LWA's error codes to classes, as in :func:`~lwa_middleware.grants.parse_grant`)."""
        status, content_type, body = await self._send(request)
        return parse_grant(
            status, content_type, body, sensitive=request.sensitive_values, errors=errors
        )

    async def create_code_pair(
        self, client_id: str, *, scope: str = "profile", clock: Callable[[], float] = time.time
    ) -> CodePair:
        """``POST /auth/o2/create/codepair``: a :class:`~lwa_middleware.device.CodePair`
        (received at ``clock()``) or a ``GrantError``."""
        request = code_pair_request(self.api_base_url, client_id=client_id, scope=scope)
        status, content_type, body = await self._send(request)
        return parse_code_pair(status, content_type, body, now=clock())

    async def poll_code_pair(self, pair: CodePair) -> TokenGrant:
        """One ``grant_type=device_code`` poll (see :meth:`TokenClient.poll_code_pair`)."""
        request = device_grant(
            self.api_base_url, device_code=pair.device_code, user_code=pair.user_code
        )
        return await self.grant(request, errors=DEVICE_GRANT_ERRORS)

    async def _send(self, request: GrantRequest | CodePairRequest) -> tuple[int, str | None, bytes]:
        """Post the form; ``(status, content type, body)`` or ``GrantUnavailable``."""
        client = self._client()
        failure: str | None = _TIMED_OUT
        body: bytes | None = None
        status, content_type = 0, None
        started = time.perf_counter()
        # httpx's timeouts are per phase and per read: the deadline is a cancel scope around
        # the whole request (anyio: asyncio or trio).
        with anyio.move_on_after(self.timeout):
            try:
                async with client.stream(
                    request.method,
                    request.url,
                    content=request.body,
                    headers=dict(request.headers),
                    timeout=self.timeout,
                ) as r:
                    body = await _acapped(r.aiter_bytes())
                    status, content_type = r.status_code, r.headers.get("content-type")
                failure = None
            except httpx.HTTPError as exc:
                failure = _failure(exc)
        self._observe(status, failure, started)
        if failure is not None:  # raised here: the httpx exception is not kept as a context
            raise GrantUnavailable(failure)
        if body is None:
            raise GrantUnavailable(_TOO_LARGE)
        return status, content_type, body

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
