"""What every benchmark section shares: the apps and prebuilt requests, the server processes,
the timing helpers, the statistics, and the report's ``Section``.

* The apps: every variant wraps the same inner app (a raw ASGI callable or a one-route
  Starlette app, both answering a small JSON), so the difference between variants is the
  middleware alone; :func:`wsgi_app` is the WSGI twin (and :func:`gunicorn_app` serves it
  under gunicorn, ``common:gunicorn_app()``).
* The servers: run as a script (``python bench/common.py KIND ...``), this module serves one
  app with uvicorn on 127.0.0.1 and prints its base URL on the first line of stdout (see
  :func:`serve_main`); :class:`ServerProcess` starts one from a section and stops it again.
  Separate processes keep the load generator, the app server and "Amazon" (the LWA
  emulator) from sharing one GIL. A server also exits when its stdin closes, so none
  outlives a benchmark that was killed.
* :class:`EmulatorControl` drives the emulator's control API (tokens it mints are never
  printed).
* :class:`Section` is what a section module's ``section(quick)`` returns (``run.py``
  renders it); its tables, its prose and its chart come from the same measurements.

A section imports this module, never another section.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    SimpleUser,
)
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lwa_middleware import AsyncLWAClient, LWAError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
import asyncio
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from itertools import repeat
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
import argparse
import json
import os
import select
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import IO

import httpx
import uvicorn
from starlette.middleware.authentication import AuthenticationMiddleware

from lwa_middleware import LWAMiddleware, LWAOptions, LWASettings, LWAWSGIMiddleware
from lwa_middleware.emulator import Emulator

# Statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (linear interpolation between ranks)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """Median and p10/p90 of one variant's per-round figures."""

    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """The summary of ``values`` (one figure per round)."""
        return cls(statistics.median(values), percentile(values, 0.1), percentile(values, 0.9))


def paired_differences(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """``values[i] - baseline[i]`` per round: the overhead, with round-to-round drift removed."""
    return [value - base for value, base in zip(values, baseline, strict=True)]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])


# The report -------------------------------------------------------------------------------


@dataclass
class Section:
    """One part of the report."""

    #: Short stable id ("warm", "servers", "cold", "memory", "wsgi", "client").
    key: str
    #: The heading in docs/benchmarks.md.
    title: str
    #: How it is measured (Markdown, a paragraph or a list).
    method: str
    #: The table: column headings, then rows of already formatted cells.
    headers: list[str]
    rows: list[list[str]]
    #: What the figures mean for a deployment, one Markdown sentence each.
    meaning: list[str] = field(default_factory=list)
    #: Figures for the chart: label -> value, all in ``chart_unit`` (empty: no chart panel).
    chart: dict[str, float] = field(default_factory=dict)
    chart_unit: str = ""
    #: Targets met or not: name -> (met, "figure vs target" text).
    targets: dict[str, tuple[bool, str]] = field(default_factory=dict)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-style Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table for a terminal: columns padded, first left-aligned, others right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [str(first).ljust(widths[0])]
            + [str(c).rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        )

    return "\n".join([line(headers), *(line(row) for row in rows)])


def progress(message: str) -> None:
    """A progress line on stderr (the report goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def print_section(section: Section) -> None:
    """The section's table (and targets) on stdout."""
    print(f"\n== {section.title} ==")
    print(text_table(section.headers, section.rows))
    for name, (met, text) in section.targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'} ({text})")


# The apps and the prebuilt requests -------------------------------------------------------


PATH = "/me"
BODY = b'{"hello":"world"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
_WSGI_HEADERS = [(k.decode(), v.decode()) for k, v in _HEADERS]


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The smallest ASGI app: a fixed JSON answer; it also acknowledges the lifespan."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def starlette_app() -> Starlette:
    """A one-route Starlette app answering the same JSON."""

    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    return Starlette(routes=[Route(PATH, me)])


def inner_app(kind: str) -> ASGIApp:
    """The inner app every ASGI variant wraps: ``"raw"`` or ``"starlette"``."""
    if kind == "raw":
        return raw_app
    if kind == "starlette":
        return starlette_app()
    raise ValueError(f"unknown inner app {kind!r}")


def wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The smallest WSGI app: the same fixed JSON answer."""
    start_response("200 OK", _WSGI_HEADERS)
    return [BODY]


class DictBearerBackend(AuthenticationBackend):
    """Starlette's in-memory authentication: ``Authorization: Bearer`` looked up in a dict."""

    def __init__(self, users: Mapping[str, BaseUser]) -> None:
        self.users = users

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        user = self.users.get(token)
        if user is None:
            raise AuthenticationError("Invalid token")
        return AuthCredentials(["profile"]), user


def _bearer(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                return token
    return None


_REFUSAL = b'{"error":"refused"}'
_REFUSAL_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_REFUSAL)).encode()),
]


async def _refuse(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _REFUSAL_HEADERS})
    await send({"type": "http.response.body", "body": _REFUSAL})


class PerRequestVerification:
    """The documented algorithm with no cache: on every request, token-info, check ``aud``,
    then profile, with :class:`~lwa_middleware.AsyncLWAClient` (one per server loop)."""

    def __init__(self, app: ASGIApp, api_base_url: str, client_id: str) -> None:
        self.app = app
        self.api_base_url = api_base_url
        self.client_id = client_id
        self._client: AsyncLWAClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope["headers"])
        if token is None:
            await _refuse(send, 401)
            return
        if self._client is None:
            self._client = AsyncLWAClient(self.api_base_url)
        try:
            info = await self._client.tokeninfo(token)
            if info.aud != self.client_id:
                await _refuse(send, 400)
                return
            profile = await self._client.profile(token)
        except LWAError as error:
            await _refuse(send, error.status("lwa"))
            return
        scope["user"] = SimpleUser(profile.user_id)
        await self.app(scope, receive, send)


#: How the prebuilt requests carry the token (``http_scope``'s ``carrier``).
CARRIERS = ("bearer", "amz", "cookie", "cookies5")


def token_header(token: str, carrier: str = "bearer") -> tuple[bytes, bytes]:
    """The header that carries ``token``: ``Authorization: Bearer``, ``x-amz-access-token``,
    the session cookie alone, or the session cookie among five cookies."""
    if carrier == "bearer":
        return b"authorization", f"Bearer {token}".encode()
    if carrier == "amz":
        return b"x-amz-access-token", token.encode()
    if carrier == "cookie":
        return b"cookie", f"lwa_token={token}".encode()
    others = "; ".join(f"pref{i}={'v' * 24}" for i in range(2))
    return b"cookie", f"_ga=GA1.1.123.456; {others}; lwa_token={token}; theme=dark".encode()


def http_scope(token: str, carrier: str = "bearer") -> Scope:
    """A prebuilt ASGI HTTP scope like uvicorn's, for ``GET /me`` with the token carried as
    :func:`token_header` says."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"bench/1.0"),
            (b"accept", b"*/*"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"connection", b"keep-alive"),
            token_header(token, carrier),
        ],
        "state": {},
    }


def wsgi_environ(token: str) -> dict[str, object]:
    """A prebuilt WSGI environ like a server's, for ``GET /me`` with the bearer token."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": PATH,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench/1.0",
        "HTTP_ACCEPT": "*/*",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
        "HTTP_CONNECTION": "keep-alive",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


async def receive_nothing() -> Message:
    """``receive`` of a GET without a body."""
    return {"type": "http.request", "body": b"", "more_body": False}


# In-process timing ------------------------------------------------------------------------


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


# HTTP load (httpx) ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    """One batch: wall time, requests sent, non-200 answers, CPU the load generator used."""

    seconds: float
    requests: int
    failures: int
    client_cpu: float

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


async def load(
    url: str, token: str, total: int, concurrency: int, max_seconds: float = 10.0
) -> LoadResult:
    """``GET /me`` up to ``total`` times from ``concurrency`` workers (connections opened
    first); workers take no new request once ``max_seconds`` have passed."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60.0
    ) as client:
        await asyncio.gather(*(client.get(PATH) for _ in range(concurrency)))
        remaining = iter(range(total))
        done = failures = 0
        cpu = time.process_time()
        start = time.perf_counter()
        deadline = start + max_seconds

        async def worker() -> None:
            nonlocal done, failures
            for _ in remaining:
                if time.perf_counter() > deadline:
                    return
                response = await client.get(PATH)
                done += 1
                if response.status_code != 200:
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        return LoadResult(seconds, done, failures, time.process_time() - cpu)


# The LWA emulator and CPU readings ---------------------------------------------------------

#: How long the emulator waits before answering each LWA call (seconds).
LWA_LATENCY = 0.020


class EmulatorControl:
    """The emulator's control API (``/_emulator/...``); tokens it mints are never printed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = httpx.Client(base_url=url, timeout=30.0)

    def client_id(self) -> str:
        """The client id the emulator issues tokens to."""
        return str(self._client.get("/_emulator").json()["client_id"])

    def mint(self) -> str:
        """A fresh ``profile`` token of a new user, valid for an hour."""
        body = {"scopes": ["profile"], "lifetime": 3600}
        response = self._client.post("/_emulator/tokens", json=body)
        response.raise_for_status()
        return str(response.json()["access_token"])

    def set_latency(self, seconds: float) -> None:
        """Delay every token-info and profile answer by ``seconds``."""
        self._client.post("/_emulator/latency", json={"seconds": seconds}).raise_for_status()

    def calls(self) -> dict[str, int]:
        """LWA calls so far, per endpoint (``tokeninfo``, ``profile``)."""
        response = self._client.get("/_emulator/calls")
        response.raise_for_status()
        return {str(k): int(v) for k, v in response.json().items()}

    def reset_calls(self) -> None:
        """Zero the call counts."""
        self._client.delete("/_emulator/calls").raise_for_status()

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def minted(url: str) -> tuple[str, str]:
    """``(client_id, token)``: the emulator's client id and a fresh ``profile`` token."""
    control = EmulatorControl(url)
    try:
        return control.client_id(), control.mint()
    finally:
        control.close()


def median(values: Sequence[float]) -> float:
    """The median (``nan`` for no values)."""
    return statistics.median(values) if values else float("nan")


def settle(cpu: Callable[[], object], *, limit: float = 5.0) -> None:
    """Wait (up to ``limit`` s) until ``cpu()`` (CPU times) stops changing for 100 ms."""
    deadline = time.monotonic() + limit
    last = cpu()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu()
        if now == last:
            return
        last = now


# The server processes ---------------------------------------------------------------------


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


def serve_main(argv: list[str] | None = None) -> None:
    """Serve one app on a free port of 127.0.0.1; print its URL; run until SIGTERM."""
    parser = argparse.ArgumentParser(description="Serve one benchmark app (see common.py).")
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


# The WSGI app gunicorn serves (the "wsgi" section) ---------------------------------------


def gunicorn_app() -> WSGIApplication:
    """``gunicorn --pythonpath bench 'common:gunicorn_app()'``, configured by environment
    variables: ``BENCH_WSGI_KIND=bare`` (:func:`wsgi_app` alone, the baseline) or ``lwa``
    (``LWAWSGIMiddleware`` over it, every option from ``LWA_*``:
    ``LWASettings.from_env()``); ``BENCH_WSGI_EXIT_WITH_STDIN=1``: the worker stops gunicorn
    (SIGTERM to its arbiter) when its stdin closes, so no server outlives a benchmark that
    was killed."""
    if os.environ.get("BENCH_WSGI_EXIT_WITH_STDIN") == "1":
        threading.Thread(target=_stop_gunicorn_on_eof, daemon=True).start()
    kind = os.environ.get("BENCH_WSGI_KIND", "bare")
    if kind == "bare":
        return wsgi_app
    if kind == "lwa":
        return LWAWSGIMiddleware(wsgi_app, settings=LWASettings.from_env())
    raise SystemExit(f"BENCH_WSGI_KIND must be bare or lwa, not {kind!r}")


def _stop_gunicorn_on_eof() -> None:
    sys.stdin.read()  # EOF: the benchmark closed the pipe or died
    os.kill(os.getppid(), signal.SIGTERM)


if __name__ == "__main__":
    serve_main()
