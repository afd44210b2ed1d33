"""A real ``redis-server`` for the tests, on a free 127.0.0.1 port, one per test.

``redis_server`` (a :class:`RedisServer`) starts ``redis-server --port <free> --bind
127.0.0.1 --save '' --appendonly no`` in the test's temporary folder and stops it after
the test. It can be killed (SIGKILL), stopped (SIGSTOP: it still accepts connections, the
kernel does, but never answers), continued (SIGCONT) and restarted on the same port; its
``client()`` is a redis-py client for looking at what the middleware stored.

When the server cannot start (no ``redis-server``, no redis-py, no answer), the test
**fails**: these tests are the proof that the shared cache works, never skipped.

``shell`` (a :class:`Shell`, once per shell) serves the whoami app behind ``LWAMiddleware``
(uvicorn, lifespan on) or ``LWAWSGIMiddleware`` (threaded wsgiref) and hands back the base
URL *and* the middleware, whose shared-cache counts the tests read. Its ``secret_key`` is
:data:`SECRET` unless given (a shared cache needs one); :func:`l2_key`, :func:`signed` and
:func:`body_of` make and read values as a worker of the fleet would.

``tests/`` is not a package: test modules import the fixtures by name, ``from
redis_fixtures import redis_server_fixture, shell_fixture`` (they register as
``redis_server`` and ``shell``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.core.cache import cache_key
from lwa_middleware.core.keys import KeyRing, secret_keys
from lwa_middleware.core.l2 import TAG_CHARS
from lwa_middleware.emulator import Emulator, ServerHandle, serve, serve_wsgi

from conftest import FakeClock, Teardown, inner_app, wsgi_whoami

#: Where Debian puts it; ``PATH`` wins when it has one.
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
#: How long a server may take to answer its first PING.
START_TIMEOUT = 10.0
#: The fleet's ``secret_key`` in these tests (every value in Redis is MACed with it).
SECRET = "redis-tests-fleet-secret-0123"


def l2_key(api_base_url: str, token: str, prefix: str = "lwa") -> bytes:
    """The Redis key of a token's entry (format 2)."""
    return f"{prefix}:v2:".encode() + cache_key(api_base_url, token).hex().encode()


def signed(key: bytes, body: dict[str, Any] | bytes, secret: str | list[str] = SECRET) -> bytes:
    """A value for ``key`` as a worker holding ``secret`` writes it (MAC, then the JSON)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    tag = KeyRing(secret_keys(secret), "shared-cache").mac(key, data)
    return base64.urlsafe_b64encode(tag).rstrip(b"=") + data


def body_of(value: bytes) -> dict[str, Any]:
    """The JSON of a value read from Redis (after its MAC)."""
    data: dict[str, Any] = json.loads(value[TAG_CHARS:])
    return data


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        pytest.fail("redis-py is not installed: pip install 'lwa-middleware[redis]'")
    return redis


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1:``port``."""

    def __init__(self, folder: Path, port: int | None = None, *extra: str) -> None:
        self.folder = folder
        self.port = port or free_port()
        #: More ``redis-server`` arguments (``--cluster-enabled yes``, ...).
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self._clients: list[Any] = []
        self._log = folder / "redis-server.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> RedisServer:
        """Start the server and wait for its first PING (the test fails if it never comes)."""
        if not os.path.exists(REDIS_SERVER):
            pytest.fail(f"redis-server not found (looked for {REDIS_SERVER}): install redis")
        redis = _redis_module()
        command = [
            REDIS_SERVER,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
            *("--dir", str(self.folder), "--daemonize", "no", "--loglevel", "warning"),
            *self.extra,
        ]
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if self.process.poll() is not None:
                    self._fail(f"redis-server exited with status {self.process.returncode}")
                try:
                    if probe.ping():
                        return self
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self._fail(f"redis-server gave no PONG within {START_TIMEOUT:g} s")
                time.sleep(0.02)
        finally:
            probe.close()

    def _fail(self, why: str) -> None:
        log = self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""
        self.terminate()
        pytest.fail(f"could not start redis-server on 127.0.0.1:{self.port}: {why}\n{log}")

    def kill(self) -> None:
        """SIGKILL: the server dies at once (connections are reset, nothing is saved)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(5)

    def stop(self) -> None:
        """SIGSTOP: connections are still accepted (by the kernel), nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        """SIGCONT: a stopped server answers again."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> RedisServer:
        """Kill the server (if alive) and start a new, empty one on the same port."""
        self.kill()
        return self.start()

    def client(self, **options: Any) -> Any:
        """A redis-py client of this server (closed with it)."""
        options.setdefault("socket_timeout", 5)
        client = _redis_module().Redis(host="127.0.0.1", port=self.port, **options)
        self._clients.append(client)
        return client

    def terminate(self) -> None:
        """Stop for good (also a stopped server) and close the clients."""
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self.kill()


@pytest.fixture(name="redis_server")
def redis_server_fixture(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` for this test (see the module's docstring)."""
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.terminate()


Middleware = LWAMiddleware | LWAWSGIMiddleware


class Shell:
    """``shell(**options) -> (base URL, middleware)``: the whoami app behind one shell's
    middleware (``asgi``: uvicorn with lifespan; ``wsgi``: threaded wsgiref)."""

    def __init__(self, kind: str, emu: Emulator, emu_url: str, clock: FakeClock) -> None:
        self.kind = kind
        self._defaults = {
            "client_ids": [emu.client_id],
            "api_base_url": emu_url,
            "clock": clock,
            "secret_key": SECRET,
        }
        self.stops: list[Callable[[], None]] = []

    def __call__(self, **options: Any) -> tuple[str, Middleware]:
        options = {**self._defaults, **options}
        middleware: Middleware
        handle: ServerHandle
        if self.kind == "asgi":
            middleware = LWAMiddleware(inner_app(), **options)
            handle = serve(middleware, lifespan="on")
            self.stops.append(handle.stop)
        else:
            middleware = LWAWSGIMiddleware(wsgi_whoami, **options)
            handle = serve_wsgi(middleware)
            self.stops.append(partial(_stop_and_close, handle, middleware))
        return handle.url, middleware


def _stop_and_close(handle: ServerHandle, middleware: LWAWSGIMiddleware) -> None:
    handle.stop()
    middleware.close()


@pytest.fixture(name="shell", params=["asgi", "wsgi"])
def shell_fixture(
    request: pytest.FixtureRequest,
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    teardown_later: Teardown,
) -> Iterator[Shell]:
    made = Shell(request.param, emu, emu_url, clock)
    yield made
    for stop in made.stops:
        teardown_later(stop)


TESTS = Path(__file__).resolve().parent


class AppProcess:
    """An app module of ``tests/`` served in processes of its own on one port of 127.0.0.1
    (``port``, else a free one): ``uvicorn`` (``module:asgi``) or ``gunicorn``
    (``module:wsgi``), with ``workers`` worker processes, in their own process group
    (:meth:`stop` ends them all); their output goes to ``log``."""

    def __init__(
        self,
        kind: str,
        app: tuple[str, str, str],
        env: dict[str, str],
        log: Path,
        *,
        workers: int = 1,
        port: int | None = None,
    ) -> None:
        module, asgi, wsgi = app
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        if kind == "uvicorn":
            command = [
                *(sys.executable, "-m", "uvicorn", f"{module}:{asgi}", "--workers", str(workers)),
                *("--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "on"),
                *("--log-level", "warning", "--no-access-log"),
            ]
        else:
            command = [
                *(sys.executable, "-m", "gunicorn", "-w", str(workers)),
                *("-b", f"127.0.0.1:{self.port}", "--log-level", "warning", f"{module}:{wsgi}"),
            ]
        path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                command,
                cwd=TESTS,
                env={**os.environ, **env, "PYTHONPATH": path},
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped with its workers
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
