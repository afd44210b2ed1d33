"""Sections "servers" and "wsgi" of ``bench/run.py``: real servers under ``wrk``.

* ``section`` ("servers"): uvicorn, one worker, each app in its own process on 127.0.0.1
  (``common.py``): the bare inner app, ``LWAMiddleware`` warm, and the documented
  per-request verification (token-info, then profile, no cache), the LWA emulator answering
  after 20 ms.
* ``wsgi_section`` ("wsgi"): gunicorn, one gthread worker (``common.gunicorn_app``): the
  bare WSGI app, ``LWAWSGIMiddleware`` warm, and ``LWAWSGIMiddleware`` with ``cache_ttl=0``.

``wrk`` (2 threads, 64 kept-alive connections) is the load generator; it reads the
``Authorization`` header from its environment through a Lua script, so the token is on no
command line and never printed. Server CPU comes from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import httpx
from common import (
    LWA_LATENCY,
    PATH,
    EmulatorControl,
    Section,
    ServerProcess,
    cpu_seconds,
    median,
    print_section,
    progress,
    settle,
)

BENCH_DIR = Path(__file__).resolve().parent

WRK_THREADS = 2
WRK_CONNECTIONS = 64
#: gunicorn's gthread worker: threads per worker (each verification without cache holds one).
GUNICORN_THREADS = 8

BARE = "bare ASGI app"
STARLETTE = "Starlette AuthenticationMiddleware (dict backend)"
WARM = "LWAMiddleware (warm)"
PER_REQUEST = "per-request verification"
WSGI_BARE = "bare WSGI app"
WSGI_WARM = "LWAWSGIMiddleware (warm)"
WSGI_NO_CACHE = "LWAWSGIMiddleware (cache_ttl=0)"

#: The variable the Lua script reads the header from (not LWA_*: see LWASettings.from_env).
_AUTH_VARIABLE = "BENCH_WRK_AUTHORIZATION"
_WRK_SCRIPT = """
local authorization = os.getenv("BENCH_WRK_AUTHORIZATION")
if authorization then wrk.headers["Authorization"] = authorization end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from ``/proc/*/stat``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of ``pid`` and its live children (gunicorn's arbiter and its workers)."""
    total = cpu_seconds(pid)
    if total is None:
        return None
    for child in children(pid):
        total += cpu_seconds(child) or 0.0
    return total


def prime(url: str, token: str) -> None:
    """One ``GET /me`` with the token; it must answer 200 (this warms a cache)."""
    headers = {"authorization": f"Bearer {token}"}
    status = httpx.get(url + PATH, headers=headers, timeout=30.0).status_code
    if status != 200:
        raise RuntimeError(f"{url} answered {status} to the first request, not 200")


def shown(value: float) -> float:
    """``value`` as the tables show it (a whole number), so that the prose quotes the same."""
    return float(f"{value:.0f}")


def ms(seconds_or_us: float, *, unit: str = "us") -> str:
    """Milliseconds, 3 significant figures, from µs (or s with ``unit="s"``)."""
    value = seconds_or_us * (1000 if unit == "s" else 0.001)
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def skipped(key: str, title: str, reason: str) -> Section:
    """A section that could not be measured on this machine, with the reason."""
    progress(f"{key}: skipped: {reason}")
    return Section(
        key=key,
        title=title,
        method=f"Not measured on this machine: {reason}.",
        headers=["status", "reason"],
        rows=[["skipped", reason]],
    )


# wrk ------------------------------------------------------------------------------------


def find_wrk() -> tuple[str | None, str]:
    """``(path, note)``: wrk, installed with ``apt-get`` when missing; ``(None, reason)``."""
    found = shutil.which("wrk")
    if found:
        return found, ""
    if os.environ.get("BENCH_NO_APT"):
        return None, "wrk is not installed (and BENCH_NO_APT is set)"
    apt = shutil.which("apt-get")
    if apt is None:
        return None, "wrk is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt_get(*args: str) -> bool:
        progress(f"wrk is missing: running apt-get {' '.join(args)}")
        try:
            done = subprocess.run(
                [apt, *args], env=env, capture_output=True, text=True, timeout=180, check=False
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    if not apt_get("install", "-y", "-q", "wrk"):
        apt_get("update", "-q")
        apt_get("install", "-y", "-q", "wrk")
    found = shutil.which("wrk")
    if found:
        return found, "wrk was not installed: this run installed it with `apt-get install wrk`"
    return None, "wrk is not installed and `apt-get install wrk` failed"


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: completed requests, wall time, latency percentiles, errors, wrk's CPU."""

    requests: int
    seconds: float
    p50_us: float
    p99_us: float
    non_2xx: int
    socket_errors: int
    client_cpu: float

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


@contextlib.contextmanager
def wrk_script() -> Iterator[Path]:
    """The Lua script (header from the environment, a JSON summary line), in a temp dir."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        path = Path(folder) / "bench.lua"
        path.write_text(_WRK_SCRIPT)
        yield path


def run_wrk(
    wrk: str,
    script: Path,
    url: str,
    token: str,
    seconds: float,
    *,
    threads: int = WRK_THREADS,
    connections: int = WRK_CONNECTIONS,
) -> WrkResult:
    """``wrk --latency`` against ``url + PATH`` for ``seconds``, with the bearer token."""
    command = [
        wrk,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        "--latency",
        f"--script={script}",
        url + PATH,
    ]
    env = {**os.environ, _AUTH_VARIABLE: f"Bearer {token}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = (done.stdout + done.stderr).replace(token, "<token>")
    lines = [line for line in out.splitlines() if line.startswith("BENCH_JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed (exit {done.returncode}): {out[-2000:]}")
    data = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    errors = sum(int(data[k]) for k in ("connect", "read", "write", "timeout"))
    return WrkResult(
        requests=int(data["requests"]),
        seconds=int(data["duration_us"]) / 1e6,
        p50_us=float(data["p50_us"]),
        p99_us=float(data["p99_us"]),
        non_2xx=int(data["status"]),
        socket_errors=errors,
        client_cpu=cpu / wall,
    )


def wrk_version(wrk: str) -> str:
    """wrk's version line ("wrk 4.1.0 ..."), shortened."""
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    first = (done.stdout or done.stderr).strip().splitlines()
    return " ".join(first[0].split()[:2]) if first else "wrk"


# Measuring servers ------------------------------------------------------------------------


@dataclass
class Target:
    """One server measured under wrk, and what its rounds gave (CPU in µs per request)."""

    name: str
    url: str
    cpu: Callable[[], float | None]
    results: list[WrkResult] = field(default_factory=list)
    server_cpu_us: list[float] = field(default_factory=list)
    lwa_cpu_us: list[float] = field(default_factory=list)
    lwa_calls: list[float] = field(default_factory=list)

    def rps(self) -> float:
        """Median req/s over rounds."""
        return median([r.rps for r in self.results])

    def cpu_us(self) -> float:
        """Median server CPU µs per request over rounds."""
        return median(self.server_cpu_us)


def cpu_pair(
    first: Callable[[], float | None], second: Callable[[], float | None]
) -> tuple[float | None, float | None]:
    """Two CPU readings at once (what :func:`settle` watches)."""
    return first(), second()


def measure(
    wrk: str,
    targets: Sequence[Target],
    control: EmulatorControl,
    emulator_cpu: Callable[[], float | None],
    token: str,
    *,
    seconds: float,
    rounds: int,
    warmup: bool,
) -> None:
    """Fill each target with ``rounds`` wrk runs; the order rotates every round."""
    with wrk_script() as script:
        if warmup:
            for target in targets:
                progress(f"  warm-up: {target.name}")
                run_wrk(wrk, script, target.url, token, 1.0)
        for round_ in range(rounds):
            shift = round_ % len(targets)
            for target in [*targets[shift:], *targets[:shift]]:
                progress(f"  round {round_ + 1}/{rounds}: {target.name} ({seconds:g} s)")
                control.reset_calls()
                app0, lwa0 = target.cpu(), emulator_cpu()
                result = run_wrk(wrk, script, target.url, token, seconds)
                settle(partial(cpu_pair, target.cpu, emulator_cpu))  # requests in flight
                app1, lwa1 = target.cpu(), emulator_cpu()
                calls = sum(control.calls().values())
                target.results.append(result)
                # wrk keeps one request in flight per connection: when it stops, the server
                # still finishes those, and its CPU (and LWA calls) include them.
                served = result.requests + WRK_CONNECTIONS
                if result.requests:
                    if app0 is not None and app1 is not None:
                        target.server_cpu_us.append((app1 - app0) * 1e6 / served)
                    if lwa0 is not None and lwa1 is not None:
                        target.lwa_cpu_us.append((lwa1 - lwa0) * 1e6 / served)
                    target.lwa_calls.append(calls / served)


def paired_ratio(numerator: Target, denominator: Target) -> tuple[float, float, float]:
    """req/s of one target over another's in the same round: median, min, max over rounds."""
    ratios = [
        a.rps / b.rps for a, b in zip(numerator.results, denominator.results, strict=True) if b.rps
    ]
    return median(ratios), min(ratios, default=float("nan")), max(ratios, default=float("nan"))


def ratio_target(warm: Target, bare: Target, label: str) -> dict[str, tuple[bool, str]]:
    """The warm/bare req/s target (≥ 0.95), from the ratio within each round."""
    ratio, low, high = paired_ratio(warm, bare)
    spread = f", {low:.2f}..{high:.2f} over rounds" if len(warm.results) > 1 else ""
    return {
        label: (
            ratio >= 0.95,
            f"{ratio:.2f} (median of the rounds' ratios{spread}; {warm.rps():.0f} vs "
            f"{bare.rps():.0f} req/s) vs ≥ 0.95",
        )
    }


HEADERS = [
    "variant",
    "req/s",
    "range",
    "p50 ms",
    "p99 ms",
    "server CPU µs/req",
    "LWA CPU µs/req",
    "LWA calls/req",
    "errors",
    "wrk CPU",
]


def rows(targets: Sequence[Target]) -> list[list[str]]:
    """The table rows: medians over rounds (errors: totals; wrk CPU: the highest)."""
    table = []
    for t in targets:
        rps = [r.rps for r in t.results]
        errors = sum(r.non_2xx + r.socket_errors for r in t.results)
        table.append(
            [
                t.name,
                f"{median(rps):.0f}",
                f"{min(rps):.0f}..{max(rps):.0f}",
                ms(median([r.p50_us for r in t.results])),
                ms(median([r.p99_us for r in t.results])),
                f"{median(t.server_cpu_us):.0f}",
                f"{median(t.lwa_cpu_us):.0f}",
                f"{median(t.lwa_calls):.2f}",
                str(errors),
                f"{max(r.client_cpu for r in t.results):.0%}",
            ]
        )
    return table


def _settings(quick: bool) -> tuple[float, int]:
    """``(seconds per wrk run, rounds)``."""
    return (1.0, 1) if quick else (5.0, 4)


_WRK_METHOD = (
    f"[wrk](https://github.com/wg/wrk) on the same machine: {WRK_THREADS} threads, "
    f"{WRK_CONNECTIONS} kept-alive connections, `GET /me` with `Authorization: Bearer <token>` "
    "(one emulator token, so a warm middleware always hits its cache), `--latency`"
)
_COLUMNS = (
    "- `req/s`: completed requests / wrk's duration, median over rounds (`range`: min..max); "
    "the variants run in turn, the order rotating every round, so a slow spell of the "
    "(shared) machine hits them alike.\n"
    "- `p50 ms`, `p99 ms`: wrk's latency percentiles (median over rounds).\n"
    "- `server CPU µs/req`: CPU time (user + system, `/proc/<pid>/stat`) the app server "
    "spent per completed request; `LWA CPU µs/req`: the emulator's, i.e. what Amazon would "
    "spend; `LWA calls/req`: token-info + profile calls the emulator counted per request.\n"
    "- `errors`: non-2xx answers plus socket errors and timeouts (should be 0); `wrk CPU`: "
    "the load generator's CPU over wall time (100% = one core; it shares the machine).\n"
)


class Server(Protocol):
    """A server the bench started (a uvicorn ``ServerProcess``, a ``Gunicorn``)."""

    def ready(self, timeout: float = 30.0) -> str: ...

    def cpu_seconds(self) -> float | None: ...

    def stop(self) -> None: ...


def under_wrk(
    key: str,
    wrk: str,
    start: Callable[[str, str, str], dict[str, Server]],
    *,
    seconds: float,
    rounds: int,
    quick: bool,
) -> tuple[list[Target], str]:
    """Start the emulator, then ``start(lwa_url, client_id, token)``'s servers (by variant
    name); prime each with the token, load them in turn with wrk (the emulator answering
    after ``LWA_LATENCY``), stop everything. Returns the targets and wrk's version."""
    emulator = ServerProcess("emulator")
    servers: list[Server] = []
    control: EmulatorControl | None = None
    try:
        lwa_url = emulator.ready()
        control = EmulatorControl(lwa_url)
        client_id, token = control.client_id(), control.mint()
        started = start(lwa_url, client_id, token)
        servers += started.values()
        control.set_latency(LWA_LATENCY)
        targets = []
        for name, server in started.items():
            url = server.ready()
            prime(url, token)
            targets.append(Target(name, url, server.cpu_seconds))
        progress(f"{key}: wrk, {rounds} round(s) of {seconds:g} s per variant")
        measure(
            wrk,
            targets,
            control,
            emulator.cpu_seconds,
            token,
            seconds=seconds,
            rounds=rounds,
            warmup=not quick,
        )
        return targets, wrk_version(wrk)
    finally:
        if control is not None:
            control.close()
        for server in servers:
            server.stop()
        emulator.stop()


def section(quick: bool) -> Section:
    """Bare app vs ``LWAMiddleware`` warm vs per-request verification, uvicorn under wrk."""
    key, title = "servers", "ASGI servers under load (uvicorn + wrk)"
    wrk, note = find_wrk()
    if wrk is None:
        return skipped(key, title, note)
    if note:
        progress(note)
    seconds, rounds = _settings(quick)

    def start(lwa_url: str, client_id: str, token: str) -> dict[str, Server]:
        common = ["--lwa", lwa_url, "--client-id", client_id]
        kinds = {
            BARE: ("bare",),
            STARLETTE: ("starlette-auth",),
            WARM: ("warm", *common),
            PER_REQUEST: ("per-request", *common),
        }
        token_env = {"BENCH_DICT_TOKEN": token}  # the dict backend's token, not an argument
        return {name: ServerProcess(*args, env=token_env) for name, args in kinds.items()}

    targets, version = under_wrk(key, wrk, start, seconds=seconds, rounds=rounds, quick=quick)
    bare, starlette, warm, per = targets
    ratio = paired_ratio(warm, bare)[0]
    starlette_ratio = paired_ratio(starlette, bare)[0]
    method = (
        "Four uvicorn servers (one worker each, its own process, `http=auto` so httptools "
        "when installed, no uvloop) serve the same raw ASGI app answering a small JSON:\n\n"
        f"- `{BARE}`: the app alone (no authentication at all);\n"
        f"- `{STARLETTE}`: Starlette's own authentication with a backend that looks the "
        "bearer token up in a dict (the cheapest authentication an ASGI app can have);\n"
        f"- `{WARM}`: `LWAMiddleware` in front, its cache holding the token (verified once "
        "before timing);\n"
        f"- `{PER_REQUEST}`: the documented algorithm with no cache: on every request "
        "`AsyncLWAClient.tokeninfo`, the `aud` check, then `AsyncLWAClient.profile`.\n\n"
        f"The LWA emulator (another process) answers each call after "
        f"{LWA_LATENCY * 1000:.0f} ms. Load: {_WRK_METHOD}, {seconds:g} s per run, "
        f"{rounds} round(s) ({version}).\n\n{_COLUMNS}"
    )
    if note:
        method += f"\n{note}.\n"
    warm_cpu, bare_cpu = shown(warm.cpu_us()), shown(bare.cpu_us())
    meaning = [
        f"A warm `LWAMiddleware` served **{shown(warm.rps()):,.0f}** requests per second "
        f"against {shown(bare.rps()):,.0f} for the bare app (**{ratio:.0%}** of its "
        "throughput, the median of the rounds' paired ratios): a cached token costs about "
        f"{warm_cpu - bare_cpu:.0f} µs of server CPU per request on top of the {bare_cpu:.0f} µs "
        "uvicorn and the app spend. Starlette's own `AuthenticationMiddleware` with a dict "
        f"backend keeps **{starlette_ratio:.0%}** under the same load: on a server this fast, "
        "any Python authentication layer costs a tenth or more of the throughput, and the "
        "warm path costs no more than the cheapest one.",
        f"At {warm_cpu:.0f} µs of server CPU per request, one core's worth of CPU serves "
        f"about {1e6 / warm_cpu:,.0f} warm requests per second ({1e6 / bare_cpu:,.0f} bare); "
        "the req/s above are less, wrk sharing the machine's cores with the server.",
        f"Verifying every request instead (two sequential LWA calls of "
        f"{LWA_LATENCY * 1000:.0f} ms) gives {per.rps():,.0f} req/s at "
        f"{ms(median([r.p50_us for r in per.results]))} ms p50 and costs "
        f"{per.cpu_us():,.0f} µs of server CPU per request: the cache makes a worker "
        f"**{warm.rps() / per.rps():.0f}x** faster and "
        f"{per.cpu_us() / warm.cpu_us():.0f}x cheaper in CPU, and spares Amazon "
        f"{median(per.lwa_calls):.0f} calls per request.",
    ]
    return Section(
        key=key,
        title=title,
        method=method,
        headers=HEADERS,
        rows=rows(targets),
        meaning=meaning,
        chart={t.name: t.rps() for t in targets},
        chart_unit="req/s (uvicorn, one worker)",
        targets=ratio_target(warm, bare, "warm/bare req/s ≥ 0.95"),
    )


# gunicorn ---------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for gunicorn, which cannot report a port 0 bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """gunicorn, one gthread worker, serving ``common:gunicorn_app()`` of ``kind`` on 127.0.0.1."""

    def __init__(self, kind: str, env: dict[str, str]) -> None:
        self.kind = kind
        self.port = free_port()
        # Only the options the app is given: LWA_* left over in our environment could be
        # refused by LWASettings.from_env (a misspelt option) or change the figures.
        clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("LWA_")}
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in stop)
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            f"--bind=127.0.0.1:{self.port}",
            "--workers=1",
            "--worker-class=gthread",
            f"--threads={GUNICORN_THREADS}",
            "--keep-alive=30",
            "--backlog=1024",
            "--graceful-timeout=3",
            "--log-level=warning",
            f"--pythonpath={BENCH_DIR}",
            "common:gunicorn_app()",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=BENCH_DIR,
            env={**clean, **env, "BENCH_WSGI_KIND": kind, "BENCH_WSGI_EXIT_WITH_STDIN": "1"},
            stdin=subprocess.PIPE,  # the worker stops gunicorn when this pipe closes
            stdout=self.log,
            stderr=self.log,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def ready(self, timeout: float = 30.0) -> str:
        """The base URL once gunicorn accepts connections (raises if it died or took long)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return self.url
            except OSError:
                time.sleep(0.05)
        self.log.seek(0)
        log = self.log.read()[-2000:]
        self.stop()
        raise RuntimeError(f"gunicorn ({self.kind}) did not start: {log}")

    def cpu_seconds(self) -> float | None:
        """CPU time of the arbiter and its worker."""
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        """SIGTERM (gunicorn stops its worker), then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                for child in children(self.process.pid):
                    with contextlib.suppress(OSError):
                        os.kill(child, 9)
                self.process.kill()
                self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.log.close()


def wsgi_section(quick: bool) -> Section:
    """Bare WSGI app vs ``LWAWSGIMiddleware`` warm and without cache, gunicorn under wrk."""
    key, title = "wsgi", "WSGI servers under load (gunicorn + wrk)"
    wrk, note = find_wrk()
    if wrk is None:
        return skipped(key, title, note)
    if importlib.util.find_spec("gunicorn") is None:
        raise RuntimeError("gunicorn is not installed (pip install gunicorn)")
    seconds, rounds = _settings(quick)

    def start(lwa_url: str, client_id: str, token: str) -> dict[str, Server]:
        lwa = {"LWA_CLIENT_IDS": client_id, "LWA_API_BASE_URL": lwa_url}
        kinds = {
            WSGI_BARE: ("bare", {}),
            WSGI_WARM: ("lwa", lwa),
            WSGI_NO_CACHE: ("lwa", {**lwa, "LWA_CACHE_TTL": "0"}),
        }
        return {name: Gunicorn(kind, env) for name, (kind, env) in kinds.items()}

    targets, version = under_wrk(key, wrk, start, seconds=seconds, rounds=rounds, quick=quick)
    bare, warm, no_cache = targets
    ratio = paired_ratio(warm, bare)[0]
    method = (
        "Three gunicorn servers (`--workers=1 --worker-class=gthread "
        f"--threads={GUNICORN_THREADS}`, each its own process tree) serve "
        "`gunicorn_app()` of `bench/common.py`, a WSGI app answering a small JSON, built "
        "from environment variables (`LWASettings.from_env()`: `LWA_CLIENT_IDS`, "
        "`LWA_API_BASE_URL`):\n\n"
        f"- `{WSGI_BARE}`: the app alone;\n"
        f"- `{WSGI_WARM}`: `LWAWSGIMiddleware` in front, its cache holding the token;\n"
        f"- `{WSGI_NO_CACHE}`: the same with `LWA_CACHE_TTL=0` (no cache): each request "
        "verifies (token-info, then profile, one after the other), except that requests "
        "arriving while a verification of the same token is in flight share it (single "
        "flight), which `LWA calls/req` shows.\n\n"
        f"The LWA emulator answers each call after {LWA_LATENCY * 1000:.0f} ms. Load: "
        f"{_WRK_METHOD}, {seconds:g} s per run, {rounds} round(s) ({version}). Server CPU "
        "is the arbiter's plus its worker's.\n\n"
        f"{_COLUMNS}"
    )
    meaning = [
        f"A warm `LWAWSGIMiddleware` served **{shown(warm.rps()):,.0f}** requests per second "
        f"against {shown(bare.rps()):,.0f} for the bare WSGI app under gunicorn "
        f"(**{ratio:.0%}** of its throughput, the median of the rounds' paired ratios): about "
        f"{shown(warm.cpu_us()) - shown(bare.cpu_us()):.0f} µs of CPU per request on top of "
        f"the {shown(bare.cpu_us()):.0f} µs gunicorn and the app spend.",
        f"Without the cache, a sync verification holds a worker thread for two LWA round "
        f"trips: {no_cache.rps():,.0f} req/s at "
        f"{ms(median([r.p50_us for r in no_cache.results]))} ms p50 with "
        f"{GUNICORN_THREADS} threads, {median(no_cache.lwa_calls):.2g} LWA calls per request "
        f"(single flight shares one verification among concurrent requests for one token); "
        f"the cache makes it **{warm.rps() / no_cache.rps():.0f}x** faster.",
    ]
    return Section(
        key=key,
        title=title,
        method=method,
        headers=HEADERS,
        rows=rows(targets),
        meaning=meaning,
        chart={t.name: t.rps() for t in targets},
        chart_unit="req/s (gunicorn, one gthread worker)",
        targets=ratio_target(warm, bare, "warm/bare req/s ≥ 0.95 (WSGI)"),
    )


if __name__ == "__main__":
    # python bench/bench_http.py [--quick] [wsgi]: one section alone (run.py runs both)
    run = wsgi_section if "wsgi" in sys.argv[1:] else section
    print_section(run("--quick" in sys.argv[1:]))
