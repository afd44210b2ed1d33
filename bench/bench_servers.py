"""The benchmark's servers, each uvicorn in its own process on 127.0.0.1.

Run as a script, it serves one app and prints its base URL on the first line of stdout:

* ``emulator``: the LWA emulator (it plays Amazon, which is another machine in production);
* ``bare``: the inner app alone, no verification (the baseline);
* ``starlette-auth``: Starlette's ``AuthenticationMiddleware`` with a dict backend holding
  the token given in the ``BENCH_DICT_TOKEN`` environment variable (never an argument);
* ``per-request --lwa URL --client-id ID``: :class:`~bench_apps.PerRequestVerification`;
* ``warm --lwa URL --client-id ID``: ``LWAMiddleware`` (warm once its cache holds the token);
* ``flood --lwa URL --client-id ID [--breaker-failures N]``: ``LWAMiddleware`` with its
  defaults plus ``timeout=2.0``, ``/health`` and ``/_stats`` excluded; ``/_stats`` answers
  the circuit breaker's state (``stats()["breaker"]``) as JSON.

:class:`ServerProcess` starts one from the benchmark and stops it again. Separate
processes keep the load generator, the app server and "Amazon" from sharing one GIL. A
server also exits when its stdin closes, so none outlives a benchmark that was killed.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import uvicorn
from bench_apps import DictBearerBackend, PerRequestVerification, inner_app, raw_app
from starlette.authentication import SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from lwa_middleware import LWAMiddleware, LWAOptions
from lwa_middleware.emulator import Emulator

KINDS = ("emulator", "bare", "starlette-auth", "per-request", "warm", "flood")
#: The "flood" server's ``timeout`` (the hardening issue's setup: defaults plus this).
FLOOD_TIMEOUT = 2.0


def flood_app(lwa: str, client_id: str, breaker_failures: int | None) -> ASGIApp:
    """``LWAMiddleware`` (defaults, ``timeout=2.0``) over the raw app; ``/_stats`` (excluded,
    like ``/health``) answers the breaker's state."""
    middleware: list[LWAMiddleware] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/_stats":
            body = json.dumps(middleware[0].verifier.stats()["breaker"]).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await raw_app(scope, receive, send)

    options: LWAOptions = {
        "client_ids": [client_id],
        "api_base_url": lwa,
        "timeout": FLOOD_TIMEOUT,
        "exclude": ["/health", "/_stats"],
    }
    if breaker_failures is not None:
        options["breaker_failures"] = breaker_failures
    middleware.append(LWAMiddleware(app, **options))
    return middleware[0]


def build(
    kind: str,
    lwa: str | None,
    client_id: str | None,
    inner: str,
    breaker_failures: int | None = None,
) -> ASGIApp:
    """The app a server of ``kind`` runs."""
    if kind == "emulator":
        return Emulator().app
    if kind == "bare":
        return inner_app(inner)
    if kind == "starlette-auth":
        users = {os.environ["BENCH_DICT_TOKEN"]: SimpleUser("Ada Lovelace")}
        return AuthenticationMiddleware(inner_app(inner), backend=DictBearerBackend(users))
    if lwa is None or client_id is None:
        raise SystemExit(f"{kind} needs --lwa and --client-id")
    if kind == "per-request":
        return PerRequestVerification(inner_app(inner), lwa, client_id)
    if kind == "flood":
        return flood_app(lwa, client_id, breaker_failures)
    return LWAMiddleware(inner_app(inner), client_ids=[client_id], api_base_url=lwa)


def main(argv: list[str] | None = None) -> None:
    """Serve one app on a free port of 127.0.0.1; print its URL; run until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--lwa", help="the LWA (emulator) base URL")
    parser.add_argument("--client-id")
    parser.add_argument("--inner", default="raw", choices=("raw", "starlette"))
    parser.add_argument("--breaker-failures", type=int, help="flood: breaker_failures")
    args = parser.parse_args(argv)
    app = build(args.kind, args.lwa, args.client_id, args.inner, args.breaker_failures)
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every response waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, log_config=None
    )
    server = uvicorn.Server(config)

    def exit_with_parent() -> None:
        sys.stdin.read()  # EOF: the benchmark closed the pipe or died
        server.should_exit = True

    threading.Thread(target=exit_with_parent, daemon=True).start()
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process ``pid`` has used, from ``/proc``; ``None`` if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """One server process started by the benchmark (``ready()`` waits for its URL)."""

    def __init__(self, kind: str, *options: str, env: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), kind, *options],
            stdin=subprocess.PIPE,  # the server exits when this pipe closes, even if we die
            stdout=subprocess.PIPE,
            text=True,
            env=None if env is None else {**os.environ, **env},
        )
        self._url: str | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def ready(self, timeout: float = 30.0) -> str:
        """The base URL, once the server listens (raises if it died or took too long)."""
        if self._url is None:
            stdout: IO[str] | None = self.process.stdout
            assert stdout is not None
            readable, _, _ = select.select([stdout], [], [], timeout)
            line = stdout.readline().strip() if readable else ""
            if not line.startswith("http://"):
                self.stop()
                raise RuntimeError(f"the {self.kind} server did not start")
            self._url = line
        return self._url

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server has used so far; ``None`` without ``/proc``."""
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


if __name__ == "__main__":
    main()
