"""Run an ASGI or WSGI app on a local port, in a daemon thread.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

``serve`` runs any ASGI app under uvicorn (an optional extra, imported only
when called); ``serve_wsgi`` runs any WSGI app under a threaded
``wsgiref`` server. Both bind the socket themselves, so ``port=0`` picks a
free port, and both return a ``ServerHandle`` usable as a context manager.

"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from starlette.types import ASGIApp

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_LIFESPAN_MODES = ("auto", "on", "off")
_Lifespan = Literal["auto", "on", "off"]


class ServerStartError(RuntimeError):
    """The server thread did not start serving in time."""


class ServerHandle:
    """A server running in a daemon thread: its address and how to stop it."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        thread: threading.Thread,
        request_stop: Callable[[], None],
        force_stop: Callable[[], None] | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.thread = thread
        self._request_stop = request_stop
        self._force_stop = force_stop
        self._cleanup = cleanup
        self._stopped = False

    @property
    def url(self) -> str:
        """Base URL without trailing slash, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server thread is still alive."""
        return self.thread.is_alive()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop gracefully and join the thread; force it after ``timeout`` seconds.

        Calling it again is a no-op. Raises ``RuntimeError`` if the thread
        is still alive after being forced.
        """
        if self._stopped:
            return
        self._stopped = True
        try:
            self._request_stop()
            self.thread.join(timeout)
            if self.thread.is_alive() and self._force_stop is not None:
                self._force_stop()
                self.thread.join(timeout)
            if self.thread.is_alive():
                raise RuntimeError(f"server at {self.url} did not stop within {timeout} s")
        finally:
            if self._cleanup is not None:
                self._cleanup()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ServerHandle {self.url} running={self.running}>"


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)  # bursts of hundreds of connections (flood tests) are not dropped
    except BaseException:
        sock.close()
        raise
    return sock


def serve(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    lifespan: str = "auto",
    log_level: str = "warning",
    startup_timeout: float = STARTUP_TIMEOUT,
    **uvicorn_options: Any,
) -> ServerHandle:
    """Serve an ASGI app with uvicorn in a daemon thread; return once it accepts requests.

    ``lifespan`` is uvicorn's ("auto", "on" or "off"). Extra keyword
    arguments go to ``uvicorn.Config``. uvicorn's loggers are left to
    propagate (``log_config=None``) unless ``log_config`` is given. Raises
    ``ServerStartError`` if the server is not up within ``startup_timeout``.
    """
    try:
        import uvicorn  # optional extra, imported on demand
    except ImportError as exc:
        raise ImportError(
            "serving the LWA emulator needs uvicorn: pip install 'lwa-middleware[emulator]'"
        ) from exc
    if lifespan not in _LIFESPAN_MODES:
        raise ValueError(f"lifespan must be one of {_LIFESPAN_MODES}, not {lifespan!r}")

    sock = _bind(host, port)
    bound_port: int = sock.getsockname()[1]
    uvicorn_options.setdefault("log_config", None)
    uvicorn_options.setdefault("access_log", False)
    config = uvicorn.Config(
        app, lifespan=cast(_Lifespan, lifespan), log_level=log_level, **uvicorn_options
    )
    server = uvicorn.Server(config)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit included: uvicorn exits on startup errors.
            failures.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn-{host}:{bound_port}", daemon=True)
    handle = ServerHandle(
        host=host,
        port=bound_port,
        thread=thread,
        request_stop=lambda: setattr(server, "should_exit", True),
        force_stop=lambda: setattr(server, "force_exit", True),
        cleanup=sock.close,
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            reason = f": {failures[0]!r}" if failures else ""
            with contextlib.suppress(RuntimeError):
                handle.stop(timeout=1.0)
            raise ServerStartError(
                f"uvicorn did not start on {handle.url} within {startup_timeout} s{reason}"
            )
        time.sleep(0.005)
    return handle


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """``wsgiref`` server handling each request in its own daemon thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # socketserver's 5 drops bursts of connections


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not write an access log line to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        """Drop access log lines (errors raised by the app are still reported)."""


def serve_wsgi(wsgi_app: WSGIApplication, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    """Serve a WSGI app with a threaded ``wsgiref`` server in a daemon thread."""
    server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
    server = make_server(
        host, port, wsgi_app, server_class=server_class, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"wsgiref-{host}:{server.server_port}",
        daemon=True,
    )
    thread.start()
    return ServerHandle(
        host=host,
        port=server.server_port,
        thread=thread,
        request_stop=server.shutdown,
        cleanup=server.server_close,
    )
