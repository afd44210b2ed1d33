"""New tokens: the "cold" and "flood" sections of ``run.py``.

"cold" (:func:`section`): what a token the cache does not hold yet costs. Against
``LWAMiddleware`` served by uvicorn (``common.py``, kind ``warm``), the LWA emulator
answering after 20 ms:

* **bursts**: 50, then 500 concurrent requests carrying ONE new token, each on its own
  kept-alive connection; the emulator's call counts (``/_emulator/calls``) show how many
  LWA calls the burst cost (single flight: 1 token-info + 1 profile), the wall time how long
  the last request waited, in LWA round trips (wall time / 20 ms);
* **a stream of distinct new tokens**, minted in advance (``/_emulator/tokens``), sent by 32
  workers: verifications per second, server CPU per verification (``/proc/<pid>/stat``).

"flood" (:func:`flood_section`): a flood of bogus tokens must not lock anyone out. The
hardening issue's setup: one uvicorn worker running ``LWAMiddleware`` with its defaults plus
``timeout=2.0`` (``common.py``, kind ``flood``), the LWA emulator answering every call
after 300 ms, and 600 concurrent requests each carrying a distinct bogus (but well-formed)
token. While the flood runs, and after it, a legitimate first sign-in (a token the server
has never seen) and a request to the excluded ``/health`` are sent at fixed moments, each on
a connection of its own; their latency is timed from this process (not the server's). The
server's circuit breaker is read from its ``/_stats`` afterwards: the flood's refusals (the
fan-out limit, a queue wait that ran out, a slot too late to call LWA) must never count
against LWA, so it must never open. The same flood against ``breaker_failures=0`` is the
reference: the breaker off, only the fan-out limit at work.

The load generator is raw asyncio sockets in this process (a prebuilt ``GET``, a minimal
response reader), cheaper than an HTTP client library, so the wall times are mostly the
server's. Every loop is bounded in count and time; tokens are never printed.
``python bench/bench_cold.py [--quick] [flood]`` runs one section alone.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
from common import (
    FLOOD_TIMEOUT,
    LWA_LATENCY,
    PATH,
    EmulatorControl,
    Section,
    ServerProcess,
    median,
    print_section,
    progress,
    settle,
)

# cold ---------------------------------------------------------------------------------------


BURSTS = (50, 500)
#: Concurrent workers of the distinct-token stream (the default max_concurrent_verifications).
STREAM_WORKERS = 32
#: Time cap of any single socket operation or burst (seconds).
IO_TIMEOUT = 30.0


class Connection:
    """One kept-alive HTTP/1.1 connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, request: bytes) -> None:
        """Write a prebuilt request (no wait)."""
        self.writer.write(request)

    async def response(self) -> int:
        """Read one response; its status (the body is read and dropped)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
        elif length:
            await self.reader.readexactly(length)
        return status

    async def get(self, request: bytes) -> int:
        """Send a request and read its response."""
        self.send(request)
        return await self.response()

    def close(self) -> None:
        """Close the socket."""
        self.writer.close()


def get_request(port: int, token: str) -> bytes:
    """``GET /me`` with the bearer token, as bytes."""
    return (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()


async def connect(port: int, count: int, warm_request: bytes) -> list[Connection]:
    """``count`` connections, each used once with ``warm_request`` (a cached token)."""

    async def one() -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return Connection(reader, writer)

    connections: list[Connection] = []
    for start in range(0, count, 100):
        batch = min(100, count - start)
        connections += await asyncio.wait_for(
            asyncio.gather(*(one() for _ in range(batch))), IO_TIMEOUT
        )
    statuses = await asyncio.wait_for(
        asyncio.gather(*(c.get(warm_request) for c in connections)), IO_TIMEOUT
    )
    if set(statuses) != {200}:
        raise RuntimeError(f"warming the connections gave statuses {sorted(set(statuses))}")
    return connections


@dataclass(frozen=True)
class Burst:
    """One burst of ``size`` concurrent requests with one new token."""

    size: int
    seconds: float
    non_200: int
    tokeninfo: int
    profile: int
    cpu_us: float | None


async def burst(
    connections: list[Connection], request: bytes, control: EmulatorControl, server: ServerProcess
) -> Burst:
    """Send ``request`` on every connection at once; wait for every answer."""
    control.reset_calls()
    cpu0 = server.cpu_seconds()
    start = time.perf_counter()
    for connection in connections:
        connection.send(request)
    statuses = await asyncio.wait_for(
        asyncio.gather(*(c.response() for c in connections)), IO_TIMEOUT
    )
    seconds = time.perf_counter() - start
    settle(server.cpu_seconds, limit=2.0)
    cpu1 = server.cpu_seconds()
    calls = control.calls()
    cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) * 1e6
    return Burst(
        size=len(connections),
        seconds=seconds,
        non_200=sum(s != 200 for s in statuses),
        tokeninfo=calls.get("tokeninfo", 0),
        profile=calls.get("profile", 0),
        cpu_us=cpu,
    )


async def mint_many(url: str, count: int, seconds: float) -> list[str]:
    """Up to ``count`` new tokens (one new user each), 16 at a time, within ``seconds``."""
    tokens: list[str] = []
    deadline = time.monotonic() + seconds
    body = {"scopes": ["profile"], "lifetime": 3600}
    async with httpx.AsyncClient(base_url=url, timeout=IO_TIMEOUT) as client:

        async def worker(numbers: Iterator[int]) -> None:
            for _ in numbers:
                if time.monotonic() > deadline:
                    return
                response = await client.post("/_emulator/tokens", json=body)
                response.raise_for_status()
                tokens.append(str(response.json()["access_token"]))

        numbers = iter(range(count))
        await asyncio.gather(*(worker(numbers) for _ in range(16)))
    return tokens


@dataclass(frozen=True)
class Stream:
    """The distinct-token stream: requests done, wall time, latencies, CPU, LWA calls."""

    done: int
    seconds: float
    latencies: list[float]
    non_200: int
    server_cpu: float | None
    emulator_cpu: float | None
    calls: int


async def stream(
    connections: list[Connection],
    requests: list[bytes],
    control: EmulatorControl,
    server: ServerProcess,
    emulator: ServerProcess,
    max_seconds: float,
) -> Stream:
    """Each connection's worker sends the next new token's request until none are left."""
    pending = iter(requests)
    latencies: list[float] = []
    non_200 = 0
    control.reset_calls()
    cpu0, lwa0 = server.cpu_seconds(), emulator.cpu_seconds()
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker(connection: Connection) -> None:
        nonlocal non_200
        for request in pending:
            if time.perf_counter() > deadline:
                return
            sent = time.perf_counter()
            status = await asyncio.wait_for(connection.get(request), IO_TIMEOUT)
            latencies.append(time.perf_counter() - sent)
            non_200 += status != 200

    await asyncio.gather(*(worker(c) for c in connections))
    seconds = time.perf_counter() - start
    cpu1, lwa1 = server.cpu_seconds(), emulator.cpu_seconds()
    calls = sum(control.calls().values())
    return Stream(
        done=len(latencies),
        seconds=seconds,
        latencies=latencies,
        non_200=non_200,
        server_cpu=None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        emulator_cpu=None if lwa0 is None or lwa1 is None else lwa1 - lwa0,
        calls=calls,
    )


def nearest_rank(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


@dataclass(frozen=True)
class Figures:
    """Everything the section reports."""

    bursts: dict[int, list[Burst]]
    stream: Stream
    minted: int


async def measure(quick: bool) -> Figures:
    """Start the emulator and the LWAMiddleware server, run the bursts and the stream."""
    rounds = 1 if quick else 5
    stream_tokens, stream_seconds = (500, 3.0) if quick else (5000, 20.0)
    emulator = ServerProcess("emulator")
    server: ServerProcess | None = None
    control: EmulatorControl | None = None
    connections: list[Connection] = []
    try:
        lwa_url = emulator.ready()
        control = EmulatorControl(lwa_url)
        client_id = control.client_id()
        server = ServerProcess("warm", "--lwa", lwa_url, "--client-id", client_id)
        port = int(server.ready().rpartition(":")[2])
        progress(f"cold: minting {stream_tokens} tokens for the stream")
        minted = await mint_many(lwa_url, stream_tokens, 60.0)
        warm_request = get_request(port, control.mint())
        control.set_latency(LWA_LATENCY)
        connections = await connect(port, max(BURSTS), warm_request)
        bursts: dict[int, list[Burst]] = {size: [] for size in BURSTS}
        for round_ in range(rounds):
            for size in BURSTS:
                progress(f"  burst {round_ + 1}/{rounds}: {size} requests, one new token")
                request = get_request(port, control.mint())
                bursts[size].append(await burst(connections[:size], request, control, server))
        for connection in connections[STREAM_WORKERS:]:
            connection.close()
        connections = connections[:STREAM_WORKERS]
        progress(
            f"  stream: {len(minted)} distinct new tokens, {STREAM_WORKERS} at a time "
            f"(at most {stream_seconds:g} s)"
        )
        requests = [get_request(port, token) for token in minted]
        result = await stream(connections, requests, control, server, emulator, stream_seconds)
        return Figures(bursts, result, len(minted))
    finally:
        for connection in connections:
            connection.close()
        if control is not None:
            control.close()
        if server is not None:
            server.stop()
        emulator.stop()


def section(quick: bool) -> Section:
    """Bursts for one new token, and a stream of distinct new tokens."""
    figures = asyncio.run(measure(quick))
    rtt_ms = LWA_LATENCY * 1000
    rows: list[list[str]] = []
    targets: dict[str, tuple[bool, str]] = {}
    chart: dict[str, float] = {"one LWA round trip (emulator latency)": rtt_ms}
    wall_ms: dict[int, float] = {}
    for size, runs in figures.bursts.items():
        wall = median([b.seconds for b in runs]) * 1000
        wall_ms[size] = wall
        worst_ti, worst_pr = max(b.tokeninfo for b in runs), max(b.profile for b in runs)
        failures = sum(b.non_200 for b in runs)
        # All bursts together: one burst's CPU is a few /proc ticks (10 ms) at most.
        cpu_runs = [b for b in runs if b.cpu_us is not None]
        cpu_total = sum(b.cpu_us or 0.0 for b in cpu_runs)
        cpu_cell = "n/a"
        if cpu_runs:
            per_request = cpu_total / sum(b.size for b in cpu_runs)
            coarse = cpu_total < 100_000  # under 10 ticks: about, not exact
            cpu_cell = f"{'~' if coarse else ''}{per_request:.0f}"
        rows.append(
            [
                f"{size} concurrent requests, one new token",
                f"{size} x {len(runs)} burst(s)",
                f"{worst_ti} + {worst_pr}",
                f"{wall:.1f} ms",
                f"{wall / rtt_ms:.1f}",
                cpu_cell,
                str(failures),
            ]
        )
        chart[f"{size} requests, one new token (all answered)"] = wall
        met = worst_ti == 1 and worst_pr == 1 and failures == 0
        targets[f"single flight, {size} concurrent requests"] = (
            met,
            f"at most {worst_ti} token-info + {worst_pr} profile call(s) per burst, "
            f"{failures} non-200, vs 1 + 1 and 0",
        )
    s = figures.stream
    if not s.done:
        raise RuntimeError("the distinct-token stream completed no request")
    rate = s.done / s.seconds
    cpu_us = s.server_cpu * 1e6 / s.done if s.server_cpu is not None else float("nan")
    lwa_us = s.emulator_cpu * 1e6 / s.done if s.emulator_cpu is not None else float("nan")
    p50, p99 = nearest_rank(s.latencies, 0.5) * 1000, nearest_rank(s.latencies, 0.99) * 1000
    per_core = 1e6 / cpu_us
    rows.append(
        [
            f"stream of distinct new tokens, {STREAM_WORKERS} at a time",
            f"{s.done} in {s.seconds:.1f} s: {rate:.0f} verifications/s",
            f"{s.calls / s.done:.2g} per token",
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
            f"{p50 / rtt_ms:.1f} (p50)",
            f"{cpu_us:.0f} (LWA: {lwa_us:.0f})",
            str(s.non_200),
        ]
    )
    chart["new token in the stream, p50"] = p50
    chart["new token in the stream, p99"] = p99
    users = 10_000
    slots_rate = 32 / LWA_LATENCY
    method = (
        "One uvicorn server (its own process) runs `LWAMiddleware` with default options over "
        "a raw ASGI app; the LWA emulator (another process) answers every token-info and "
        f"profile call after {rtt_ms:.0f} ms. The load comes from raw asyncio sockets in the "
        "benchmark's process: a prebuilt `GET /me` with `Authorization: Bearer <token>` per "
        "kept-alive connection (connections opened and used once with an already cached "
        "token before timing).\n\n"
        f"- **Bursts**: {' and '.join(map(str, BURSTS))} requests carrying the same new token, "
        "written at once on as many connections; `wall time` runs from the first write to the "
        "last answer (median over bursts, a fresh token each), `in LWA round trips` is it "
        f"divided by {rtt_ms:.0f} ms (`LWAMiddleware` calls token-info and profile at once, "
        "so a verification is about one round trip). `LWA calls` are the emulator's counts "
        "(`/_emulator/calls`) for the burst (the highest over bursts): single flight should "
        "make them 1 token-info + 1 profile.\n"
        f"- **Stream**: tokens of distinct users minted in advance (`/_emulator/tokens`), "
        f"sent by {STREAM_WORKERS} workers (the default `max_concurrent_verifications`), one "
        "request per token, up to the tokens minted or a time cap: verifications per second "
        "(wall), the latency of each request, and the server CPU per verification "
        "(`/proc/<pid>/stat`, user + system; `LWA`: the emulator's).\n"
        "- `server CPU µs/req`: server CPU over the stream, or over all the bursts of a size, "
        "divided by their requests (`~`: under 100 ms of CPU in all, which `/proc` counts in "
        "10 ms ticks, so only roughly).\n"
    )
    meaning = [
        f"A burst of {max(BURSTS)} requests carrying one new token (a page firing its API "
        f"calls at once just after sign-in) costs Amazon one token-info and one profile call, "
        f"and every request is answered in {wall_ms[max(BURSTS)]:.0f} ms "
        f"({wall_ms[max(BURSTS)] / rtt_ms:.1f} LWA round trips): the requests wait for one "
        f"verification, not for {max(BURSTS)}.",
        f"Verifying a new token costs about **{cpu_us:,.0f} µs** of server CPU, so one core "
        f"verifies about **{per_core:,.0f} new tokens per second**: a cold cache of "
        f"{users:,} users (a restart, everyone coming back at once) recovers in about "
        f"**{users / per_core:.0f} s per core** of CPU.",
        f"Latency bounds it too: a worker verifies at most `max_concurrent_verifications` (32) "
        f"tokens at once, one LWA round trip each, so at most 32 / {rtt_ms:.0f} ms = "
        f"{slots_rate:,.0f} per second here and 32 / 100 ms = 320 per second if Amazon takes "
        f"100 ms; {users:,} users then need at least {users / 320:.0f} s per worker. This run "
        f"reached {rate:,.0f} verifications/s (server, emulator and load generator sharing "
        "the machine's cores).",
        f"A new token waits {p50:.0f} ms (p50) and {p99:.0f} ms (p99) in that stream, "
        f"{p50 / rtt_ms:.1f} and {p99 / rtt_ms:.1f} LWA round trips.",
    ]
    return Section(
        key="cold",
        title="Cold path: new tokens (uvicorn + LWAMiddleware)",
        method=method,
        headers=[
            "case",
            "requests",
            "LWA calls (token-info + profile)",
            "wall time / latency",
            "in LWA round trips",
            "server CPU µs/req",
            "non-200",
        ],
        rows=rows,
        meaning=meaning,
        chart=chart,
        chart_unit="milliseconds",
        targets=targets,
    )


# flood --------------------------------------------------------------------------------------


FLOOD = 600
LATENCY = 0.3
#: Seconds into the flood at which a legitimate first sign-in and /health are sent.
MOMENTS = (0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
#: A legitimate first sign-in must be verified within this (``timeout`` + 1 s).
SIGN_IN_BOUND = FLOOD_TIMEOUT + 1.0


def _request(port: int, path: str, token: str | None = None) -> bytes:
    auth = "" if token is None else f"Authorization: Bearer {token}\r\n"
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{auth}\r\n"
    ).encode()


async def _send(port: int, request: bytes) -> tuple[int, float, bool]:
    """``(status, seconds, Retry-After present)`` of one request on its own connection
    (status -1: the connection failed)."""
    start = time.perf_counter()
    status, retry_after = -1, False
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
        status = int(head.split(b" ", 2)[1])
        retry_after = b"\r\nretry-after:" in head.lower()
        writer.close()
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        pass
    return status, time.perf_counter() - start, retry_after


@dataclass
class Round:
    """One flood: its statuses, and the timed sign-ins and /health requests."""

    statuses: dict[int, int] = field(default_factory=dict)
    retry_after: int = 0
    seconds: float = 0.0
    sign_ins: list[tuple[float, int, float]] = field(default_factory=list)
    health: list[tuple[float, int, float]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    breaker: dict[str, object] = field(default_factory=dict)


async def flood_round(port: int, tokens: list[str]) -> Round:
    """600 bogus tokens at once; a sign-in (one of ``tokens``) and /health at each moment."""
    result = Round()
    bogus = [_request(port, "/me", f"Atza|{secrets.token_urlsafe(300)}") for _ in range(FLOOD)]
    began = time.perf_counter()
    flood = asyncio.gather(*(_send(port, request) for request in bogus))
    flood_done: list[tuple[int, float, bool]] = []

    async def whole_flood() -> None:
        flood_done.extend(await flood)

    async def at(moment: float, request: bytes, into: list[tuple[float, int, float]]) -> None:
        await asyncio.sleep(max(0.0, began + moment - time.perf_counter()))
        status, seconds, _ = await _send(port, request)
        into.append((moment, status, seconds))

    timed = [
        at(moment, _request(port, "/me", token), result.sign_ins)
        for moment, token in zip(MOMENTS, tokens, strict=True)
    ]
    timed += [at(moment, _request(port, "/health"), result.health) for moment in MOMENTS]
    await asyncio.wait_for(asyncio.gather(whole_flood(), *timed), IO_TIMEOUT * 2)
    answers = flood_done
    result.seconds = max(seconds for _, seconds, _ in answers)
    for status, _, retry_after in answers:
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.retry_after += retry_after
    result.sign_ins.sort()
    result.health.sort()
    return result


def run_config(
    lwa_url: str,
    client_id: str,
    control: EmulatorControl,
    breaker_failures: int | None,
    rounds: int,
) -> list[Round]:
    """Start a server with these options, flood it ``rounds`` times, stop it."""
    options = [] if breaker_failures is None else ["--breaker-failures", str(breaker_failures)]
    server = ServerProcess("flood", "--lwa", lwa_url, "--client-id", client_id, *options)
    try:
        url = server.ready()
        port = int(url.rpartition(":")[2])
        results = []
        with httpx.Client(base_url=url, timeout=IO_TIMEOUT) as http:
            for number in range(rounds):
                progress(f"  flood {number + 1}/{rounds} (breaker_failures={breaker_failures})")
                tokens = [control.mint() for _ in MOMENTS]
                control.reset_calls()
                result = asyncio.run(flood_round(port, tokens))
                result.calls = control.calls()
                result.breaker = dict(http.get("/_stats").json())
                results.append(result)
                time.sleep(0.5)  # the last answers written, the loop idle again
        return results
    finally:
        server.stop()


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms, worst {max(values) * 1000:.0f} ms"


def _row(label: str, results: list[Round]) -> list[str]:
    statuses: dict[int, int] = {}
    for result in results:
        for status, count in result.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    sign_ins = [s for r in results for s in r.sign_ins]
    verified = sum(status == 200 for _, status, _ in sign_ins)
    health = [h for r in results for h in r.health]
    opens = sum(int(str(r.breaker.get("opens", 0))) for r in results)
    return [
        label,
        f"{len(results)} x {FLOOD}",
        ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
        + f" ({sum(r.retry_after for r in results)} with Retry-After)",
        str(max(r.calls.get("tokeninfo", 0) for r in results)),
        f"{verified}/{len(sign_ins)} verified; {_ms([s for _, _, s in sign_ins])}",
        _ms([s for _, _, s in health]),
        str(opens),
    ]


def flood_section(quick: bool) -> Section:
    """The flood against the defaults (breaker on) and, unless quick, the breaker off."""
    rounds = 1 if quick else 3
    configs: list[tuple[str, int | None]] = [("defaults (breaker on), timeout=2.0", None)]
    if not quick:
        configs.append(("breaker_failures=0, timeout=2.0", 0))
    emulator = ServerProcess("emulator")
    control: EmulatorControl | None = None
    measured: dict[str, list[Round]] = {}
    try:
        lwa_url = emulator.ready()
        control = EmulatorControl(lwa_url)
        client_id = control.client_id()
        control.set_latency(LATENCY)
        for label, failures in configs:
            measured[label] = run_config(lwa_url, client_id, control, failures, rounds)
    finally:
        if control is not None:
            control.close()
        emulator.stop()
    default = measured[configs[0][0]]
    sign_ins = [s for r in default for s in r.sign_ins]
    worst = max(seconds for _, _, seconds in sign_ins)
    all_verified = all(status == 200 for _, status, _ in sign_ins)
    opens = sum(int(str(r.breaker.get("opens", 0))) for r in default)
    health_worst = max(seconds for r in default for _, _, seconds in r.health)
    per_moment = ", ".join(
        f"{moment:g} s: {seconds * 1000:.0f} ms" for moment, _, seconds in default[-1].sign_ins
    )
    method = (
        f"One uvicorn server (its own process) runs `LWAMiddleware` with its defaults "
        f"(`max_concurrent_verifications=32`, `max_queued_verifications=256`, "
        f"`breaker_failures=5`) plus `timeout={FLOOD_TIMEOUT:g}`; the LWA emulator (another "
        f"process) answers every call after {LATENCY * 1000:.0f} ms. {FLOOD} requests, each "
        "with its own bogus `Atza|` token, are written at once, one connection each (raw "
        "asyncio sockets in the benchmark's process). At "
        + ", ".join(f"{m:g}" for m in MOMENTS)
        + " s into the flood a legitimate first sign-in (a token minted for a new user, "
        "never seen by the server) and a `GET /health` (an excluded path) are sent, each on a "
        "connection of its own, and timed from the benchmark's process. `breaker opened` is "
        "the server's count (`stats()['breaker']['opens']`) after the flood. "
        + (
            "The reference row turns the breaker off (`breaker_failures=0`): only the "
            "fan-out limit at work."
            if not quick
            else ""
        )
    )
    meaning = [
        "Only LWA's own failures count toward the circuit breaker: a request refused by the "
        "fan-out limit, one that ran out of time in its queue, or one whose slot came with "
        "less than half of `timeout` left (not sent) is never taken for LWA failing, so an "
        f"attacker's flood cannot open it: it opened {opens} time(s) here.",
        f"A legitimate first sign-in sent at any moment of the flood was verified within "
        f"{worst * 1000:.0f} ms (worst over {len(sign_ins)}; bound: `timeout` + 1 s = "
        f"{SIGN_IN_BOUND:g} s); last round, by moment: {per_moment}.",
        f"An excluded `/health` answered within {health_worst * 1000:.0f} ms at worst "
        "during the flood.",
        "The flood itself is refused: LWA's `invalid_token` for the requests that got a slot "
        "in time, `ServerError` with `Retry-After` for the others, and at most "
        "`max_concurrent_verifications` calls to LWA at once.",
    ]
    targets = {
        "legitimate sign-in during a flood": (
            all_verified and worst < SIGN_IN_BOUND,
            f"all {len(sign_ins)} verified: {all_verified}, worst {worst * 1000:.0f} ms vs "
            f"{SIGN_IN_BOUND * 1000:.0f} ms",
        ),
        "breaker never opened by a flood": (opens == 0, f"opened {opens} time(s) vs 0"),
    }
    return Section(
        key="flood",
        title="A flood of bogus tokens (uvicorn + LWAMiddleware)",
        method=method,
        headers=[
            "configuration",
            "floods x requests",
            "flood statuses",
            "LWA token-info calls (most in a flood)",
            "legitimate first sign-ins",
            "/health",
            "breaker opened",
        ],
        rows=[_row(label, results) for label, results in measured.items()],
        meaning=meaning,
        chart={
            "legitimate first sign-in during a flood, worst": worst * 1000,
            "/health during a flood, worst": health_worst * 1000,
        },
        chart_unit="milliseconds",
        targets=targets,
    )


if __name__ == "__main__":  # run.py runs them with the others
    quick = "--quick" in sys.argv[1:]
    print_section(flood_section(quick) if "flood" in sys.argv[1:] else section(quick))
