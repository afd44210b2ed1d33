"""The async LWA client's own cost: CPU µs per GET by HTTP stack, at concurrency 1 and 50.

Every variant sends the same ``GET /auth/o2/tokeninfo`` (our headers, a valid emulator
token) to the LWA emulator, which runs in another process (uvicorn, ``common.py``), and
reads the whole answer. The figure is this process's CPU time (``time.process_time()``:
user + system, every thread) over a batch, divided by the GETs it made; the server's CPU
is not in it. The variants:

* ``httpx`` (httpx.AsyncClient with the options the sync client ships, on httpcore's pool);
* ``httpx + AiohttpTransport`` (httpx's API on aiohttp's connection pool, ``httpx-aiohttp``);
* ``httpx2`` (httpx's successor, when installed);
* ``aiohttp`` (one ``aiohttp.ClientSession`` used directly), and again with
  ``trust_env=True`` (how aiohttp would read proxies from the environment);
* ``AsyncLWAClient.tokeninfo`` as shipped: the same GET plus token checks, the sans-IO
  exchange, JSON parsing and the :class:`~lwa_middleware.core.models.TokenInfo`.

Each variant's client is built once and kept (a warm connection pool, as in a server). A
round runs a batch through every variant at each concurrency, the variant order rotating
every round; each batch follows an untimed wave of ``concurrency`` GETs (the server closes
idle connections after 5 s, so the pool is refilled outside the timing). Concurrency ``c``
is ``c`` tasks each sending its next GET as soon as the last one is answered.

Run from the repository root: ``python bench/bench_client.py`` (2,000 GETs per variant and
concurrency, about half a minute on 2 cores), ``--quick`` (100, a few seconds), ``--gets N``,
``--rounds N``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from common import Section, ServerProcess, minted, print_section, progress

from lwa_middleware.core.protocol import tokeninfo_request
from lwa_middleware.upstream.client import HTTPX_OPTIONS, AsyncLWAClient
from lwa_middleware.upstream.transport import ssl_context

CONCURRENCIES = (1, 50)
TARGET_CONCURRENCY = 50
TARGET_US = 200.0
#: No batch runs longer than this, whatever the stack does (the GETs done so far count).
BATCH_SECONDS = 30.0
SHIPPED = "AsyncLWAClient.tokeninfo"

Get = Callable[[], Awaitable[bool]]


@dataclass
class Stack:
    """One measured variant: ``get()`` sends one GET and says whether it got a 200."""

    name: str
    get: Get
    close: Callable[[], Awaitable[None]]
    #: Concurrency -> µs of CPU per GET, one figure per round.
    cpu: dict[int, list[float]] = field(default_factory=dict)
    #: Concurrency -> GETs per second (wall clock), one figure per round.
    rate: dict[int, list[float]] = field(default_factory=dict)
    failures: int = 0
    #: The library's own client (the figure held to the target).
    shipped: bool = False


def _httpx_stack(name: str, client: Any, url: str, headers: dict[str, str]) -> Stack:
    """A variant driving an httpx-style ``AsyncClient`` (httpx, httpx2, their transports)."""

    async def get() -> bool:
        response = await client.get(url, headers=headers)
        return bool(response.status_code == 200 and response.content)

    return Stack(name, get, client.aclose)


def _aiohttp_stack(url: str, headers: dict[str, str], *, trust_env: bool = False) -> Stack:
    """aiohttp used directly: one session, a pool of 100 as ``AsyncLWAClient`` has.

    ``trust_env=True`` is how aiohttp reads proxies from the environment, as httpx does by
    default: it looks them (and ``~/.netrc``) up in worker threads on every request.
    """
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100, ssl=ssl_context()), trust_env=trust_env
    )

    async def get() -> bool:
        async with session.get(url, headers=headers, allow_redirects=False) as response:
            body = await response.read()
        return response.status == 200 and bool(body)

    name = "aiohttp, trust_env=True" if trust_env else "aiohttp (ClientSession directly)"
    return Stack(name, get, session.close)


def _shipped_stack(base_url: str, token: str) -> Stack:
    """Our client as it ships (its name says which stack it sends with)."""
    client = AsyncLWAClient(base_url, timeout=10.0)
    sender = type(client._http).__name__.removesuffix("Sender").lower()

    async def get() -> bool:
        info = await client.tokeninfo(token)
        return bool(info.user_id)

    return Stack(f"{SHIPPED} (as shipped: {sender})", get, client.aclose, shipped=True)


def build_stacks(base_url: str, token: str) -> list[Stack]:
    """Every variant that can run here (inside the running loop: some bind to it)."""
    request = tokeninfo_request(base_url, token)
    url, headers = request.url, dict(request.headers)
    stacks = [
        _httpx_stack(
            "httpx AsyncClient (httpcore pool)", httpx.AsyncClient(**HTTPX_OPTIONS), url, headers
        )
    ]
    try:
        transport_module: Any = importlib.import_module("httpx_aiohttp")
    except ImportError:
        progress("httpx-aiohttp is not installed: no 'httpx + AiohttpTransport' row")
    else:
        transport = transport_module.AiohttpTransport(
            verify=ssl_context(), limits=httpx.Limits(max_connections=100)
        )
        client = httpx.AsyncClient(transport=transport, follow_redirects=False)
        stacks.append(_httpx_stack("httpx + AiohttpTransport", client, url, headers))
    try:
        httpx2: Any = importlib.import_module("httpx2")
    except ImportError:
        progress("httpx2 is not installed: no 'httpx2' row")
    else:
        limits = httpx2.Limits(
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=60
        )
        client2 = httpx2.AsyncClient(limits=limits, verify=ssl_context(), follow_redirects=False)
        stacks.append(_httpx_stack("httpx2 AsyncClient", client2, url, headers))
    stacks.append(_aiohttp_stack(url, headers))
    stacks.append(_aiohttp_stack(url, headers, trust_env=True))
    stacks.append(_shipped_stack(base_url, token))
    return stacks


async def run_batch(stack: Stack, gets: int, concurrency: int) -> tuple[int, float, float]:
    """``gets`` GETs through ``stack`` by ``concurrency`` tasks: ``(done, cpu s, wall s)``."""
    remaining = gets
    done = 0
    stop_at = time.perf_counter() + BATCH_SECONDS

    async def worker() -> None:
        nonlocal remaining, done
        while remaining > 0 and time.perf_counter() < stop_at:
            remaining -= 1
            try:
                ok = await stack.get()
            except Exception:  # counted: a stack that fails is reported, not hidden
                ok = False
            done += 1
            if not ok:
                stack.failures += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.process_time() - cpu, time.perf_counter() - wall


async def measure(base_url: str, token: str, *, gets: int, rounds: int) -> list[Stack]:
    """Every stack at every concurrency, ``rounds`` interleaved rounds of ``gets // rounds``."""
    stacks = build_stacks(base_url, token)
    per_batch = max(1, gets // rounds)
    try:
        for stack in stacks:  # imports, first connections
            for concurrency in CONCURRENCIES:
                await run_batch(stack, 2 * concurrency, concurrency)
            stack.failures = 0
        for round_ in range(rounds):
            shift = round_ % len(stacks)
            for stack in stacks[shift:] + stacks[:shift]:
                for concurrency in CONCURRENCIES:
                    await run_batch(stack, concurrency, concurrency)  # refill the pool
                    gc.collect()
                    done, cpu, wall = await run_batch(stack, per_batch, concurrency)
                    if done:
                        stack.cpu.setdefault(concurrency, []).append(cpu * 1e6 / done)
                        stack.rate.setdefault(concurrency, []).append(done / wall)
            progress(f"client stacks: round {round_ + 1}/{rounds} done")
    finally:
        for stack in stacks:
            await stack.close()
    return stacks


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _range(values: Sequence[float]) -> str:
    return f"{min(values):,.0f}..{max(values):,.0f}" if values else "n/a"


def build_section(stacks: list[Stack], *, gets: int, rounds: int) -> Section:
    """The report section from measured stacks."""
    rows = []
    chart: dict[str, float] = {}
    for stack in stacks:
        one = stack.cpu.get(1, [])
        many = stack.cpu.get(TARGET_CONCURRENCY, [])
        rows.append(
            [
                stack.name,
                _cell(_median(one)),
                _cell(_median(many)),
                _range(many),
                _cell(_median(stack.rate.get(TARGET_CONCURRENCY, []))),
                str(stack.failures),
            ]
        )
        if many:
            chart[stack.name] = round(statistics.median(many), 1)

    def figure(stack: Stack | None) -> float | None:
        return None if stack is None else _median(stack.cpu.get(TARGET_CONCURRENCY, []))

    def named(prefix: str) -> Stack | None:
        return next((stack for stack in stacks if stack.name.startswith(prefix)), None)

    shipped = figure(next(stack for stack in stacks if stack.shipped))
    httpx_figure = figure(named("httpx AsyncClient"))
    adapter, direct = figure(named("httpx + AiohttpTransport")), figure(named("aiohttp ("))
    meaning = []
    if shipped is not None:
        meaning.append(
            f"At concurrency {TARGET_CONCURRENCY}, `AsyncLWAClient` spends about {shipped:,.0f} µs "
            f"of CPU per LWA request; a cold verification makes two (token-info and profile), "
            f"so a cache miss costs the app about {2 * shipped:,.0f} µs of client CPU."
        )
    if shipped is not None and httpx_figure is not None and shipped > 0:
        meaning.append(
            f"That is {httpx_figure / shipped:.1f}x less than httpx's {httpx_figure:,.0f} µs on "
            "httpcore 1.0's pool, whose bookkeeping grows with the requests queued on it."
        )
    if adapter is not None and direct is not None:
        meaning.append(
            f"httpx on aiohttp's pool (`httpx-aiohttp`) keeps httpx's API but spends about "
            f"{adapter:,.0f} µs, aiohttp used directly {direct:,.0f} µs: httpx's own request "
            "and response objects cost more than the pool under them, so `AsyncLWAClient` "
            "sends with aiohttp directly (and with httpx only on a transport the caller gives)."
        )
    meaning.append(
        "Cache hits make no LWA request: these figures only matter for the first request of "
        "each token (and for a flood of unknown tokens, which the admission limit bounds)."
    )
    met = shipped is not None and shipped <= TARGET_US
    method = (
        "Client CPU per `GET /auth/o2/tokeninfo` (our headers, a valid token) sent to the LWA "
        "emulator, which runs in another process (uvicorn on 127.0.0.1), so its CPU is not "
        "counted: `time.process_time()` of the client process over a batch, divided by the "
        "GETs. Concurrency *c* is *c* tasks each sending the next GET as soon as its last is "
        f"answered. {gets:,} GETs per stack and concurrency in {rounds} interleaved round(s) "
        "(the stack order rotates each round), each batch after an untimed wave that refills "
        "the connection pool; each client is built once and kept, as a server keeps it. "
        "Figures are medians of the rounds' µs per GET; the range is over rounds. "
        "`AsyncLWAClient.tokeninfo` adds the token checks, the sans-IO exchange, the deadline "
        "and JSON parsing to the GET. GETs/s is what one emulator process sharing the "
        "machine answered, not a throughput claim."
    )
    return Section(
        key="client",
        title="LWA client: CPU per GET by HTTP stack",
        method=method,
        headers=[
            "stack",
            "µs CPU/GET, c=1",
            f"µs CPU/GET, c={TARGET_CONCURRENCY}",
            f"range, c={TARGET_CONCURRENCY}",
            f"GETs/s, c={TARGET_CONCURRENCY}",
            "failed GETs",
        ],
        rows=rows,
        meaning=meaning,
        chart=chart,
        chart_unit="µs CPU per GET",
        targets={
            f"client CPU per GET at concurrency {TARGET_CONCURRENCY}": (
                met,
                f"{_cell(shipped)} µs vs ≤ {TARGET_US:.0f} µs",
            )
        },
    )


def section(quick: bool, *, gets: int | None = None, rounds: int | None = None) -> Section:
    """Start the emulator in its own process, measure every stack, return the section."""
    gets = gets or (100 if quick else 2000)
    rounds = rounds or (1 if quick else 4)
    emulator = ServerProcess("emulator")
    try:
        url = emulator.ready()
        _, token = minted(url)
        stacks = asyncio.run(measure(url, token, gets=gets, rounds=rounds))
    finally:
        emulator.stop()
    return build_section(stacks, gets=gets, rounds=rounds)


def main(argv: Sequence[str] | None = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 GETs per stack, one round")
    parser.add_argument("--gets", type=int, help="GETs per stack and concurrency (2000; 100)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (4; quick 1)")
    args = parser.parse_args(argv)
    for name in ("gets", "rounds"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be positive")
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print_section(section(args.quick, gets=args.gets, rounds=args.rounds))


if __name__ == "__main__":
    main()
