"""Section "cold" of ``bench/run.py``: what a token the cache does not hold yet costs.

Against ``LWAMiddleware`` served by uvicorn (``bench_servers.py``, kind ``warm``), the LWA
emulator answering after 20 ms:

* **bursts**: 50, then 500 concurrent requests carrying ONE new token, each on its own
  kept-alive connection; the emulator's call counts (``/_emulator/calls``) show how many
  LWA calls the burst cost (single flight: 1 token-info + 1 profile), the wall time how long
  the last request waited, in LWA round trips (wall time / 20 ms);
* **a stream of distinct new tokens**, minted in advance (``/_emulator/tokens``), sent by 32
  workers: verifications per second, server CPU per verification (``/proc/<pid>/stat``).

The load generator is raw asyncio sockets in this process (a prebuilt ``GET``, a minimal
response reader), cheaper than an HTTP client library, so the burst's wall time is mostly the
server's. Every loop is bounded in count and time; tokens are never printed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from bench_apps import PATH
from bench_http import LWA_LATENCY, EmulatorControl, median, settle
from bench_report import Section, print_section, progress
from bench_servers import ServerProcess

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


def percentile(values: list[float], fraction: float) -> float:
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
    p50, p99 = percentile(s.latencies, 0.5) * 1000, percentile(s.latencies, 0.99) * 1000
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


if __name__ == "__main__":
    print_section(section("--quick" in sys.argv[1:]))  # run.py runs it with the others
