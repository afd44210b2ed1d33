"""The sync client's deadline: an httpcore network backend clamping every socket operation.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

httpx's timeouts apply per phase and per socket operation, so an upstream that trickles a
byte just inside the read timeout holds a request for as long as it likes. A call's
``timeout`` is a wall-clock deadline instead; the sync client, which cannot cancel a
blocking httpx call (and takes no thread hop), runs on :class:`DeadlineBackend`, which
clamps every connect, TLS handshake, read and write to the time left before the deadline of
the call in progress (:func:`deadline`).

"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

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
