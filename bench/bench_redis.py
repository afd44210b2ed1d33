"""The shared Redis cache (L2): what a hit costs, and what it saves a fleet of workers.

``python bench/bench_redis.py [--quick] [--tokens N] [--lwa-latency-ms MS]`` prints three
tables (every server on 127.0.0.1, each in its own process: the LWA emulator, a
``redis-server`` on a free port, the workers):

1. **L2 hit vs LWA call**, in process: one verification of a token L1 does not hold (L1 is
   cleared before each), answered by Redis (``GET`` + decode + checks + L1 fill), beside the
   same verification answered by the emulator (token-info and profile, no added latency:
   Amazon's own round trips add ~50-100 ms to that); ``Verifier`` (redis-py) and
   ``AsyncVerifier`` (``redis.asyncio``); µs per verification, median and p90. Also the
   Redis memory of one cached identity (``MEMORY USAGE``).
2. **Cold start of 4 workers**: four uvicorn processes with ``LWAMiddleware``, every
   measured token new to all of them (each worker has verified only a few warm-up tokens
   of its own, so its connections are open), the emulator answering after
   ``--lwa-latency-ms`` (20). Every token is asked for once by each worker: the (token,
   worker) pairs in random order from 16 concurrent senders (**spread**: what a restart of
   the fleet sees), or each token's four requests at the same instant (**simultaneous**:
   the worst case). LWA calls per token (token-info calls / tokens) and the latency of
   those requests (p50, p99), without Redis, with Redis, and with Redis and the
   cross-worker lock (``SET NX PX``, the others polling L2).
3. The lock's verdict: LWA calls per token and latency, with vs without it.

``--part 1`` runs part 1 only (a few seconds), ``--part 2`` parts 2 and 3. Every value in
Redis carries its MAC (keyed by ``secret_key``, which a shared cache needs): part 1's L2 hit
includes checking it; a random secret is made for each run.

``python bench/bench_redis.py worker`` is what the benchmark starts for each worker
(settings from ``LWA_*`` variables; ``BENCH_REDIS_LOCK=0`` turns the lock off). Tokens are
never printed; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from common import PATH, EmulatorControl, ServerProcess, percentile, raw_app, table

from lwa_middleware import LWASettings
from lwa_middleware.upstream.verifier import AsyncVerifier, Verifier

WORKERS = 4
SENDERS = 16
#: Tokens asked for at once in the simultaneous run (each by every worker at once).
SIMULTANEOUS = 1
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
VARIANTS = ("no Redis", "Redis", "Redis + lock")
#: The fleet's secret_key for this run (the values' MAC is keyed by it).
SECRET = secrets.token_urlsafe(32)


# Servers -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_server() -> Iterator[str]:
    """A ``redis-server`` on a free port of 127.0.0.1, for the benchmark's duration."""
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="bench-redis-")
    process = subprocess.Popen(
        [
            *(REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", folder, "--loglevel", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    import redis

    probe = redis.Redis(port=port, socket_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if probe.ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        probe.close()
        process.kill()
        process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def serve_worker() -> None:
    """``worker``: serve ``LWAMiddleware`` (settings from ``LWA_*``) on a free port; print
    its URL; run until stdin closes."""
    import uvicorn

    from lwa_middleware import LWAMiddleware
    from lwa_middleware.upstream import redis_store

    redis_store.LOCK = os.environ.get("BENCH_REDIS_LOCK", "1") == "1"
    app = LWAMiddleware(raw_app, settings=LWASettings.from_env())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    # A long keep-alive: a connection the load generator left idle while the machine was
    # busy must not be closed just as it is used again.
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        log_config=None,
        timeout_keep_alive=120,
    )
    server = uvicorn.Server(config)

    def exit_with_parent() -> None:
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=exit_with_parent, daemon=True).start()
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


class Worker:
    """One worker process (``serve_worker``)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )

    def ready(self, timeout: float = 30.0) -> str:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        readable, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline().strip() if readable else ""
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError("a worker did not start")
        return line

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


@contextmanager
def workers(count: int, env: dict[str, str]) -> Iterator[list[str]]:
    """``count`` fresh workers (empty L1); their URLs."""
    started = [Worker(env) for _ in range(count)]
    try:
        yield [worker.ready() for worker in started]
    finally:
        for worker in started:
            worker.stop()


# Part 1: an L2 hit beside an LWA call ---------------------------------------------------


@dataclass
class Timing:
    name: str
    samples: list[float]  # µs

    def row(self) -> list[str]:
        return [
            self.name,
            f"{percentile(self.samples, 0.5):.0f}",
            f"{percentile(self.samples, 0.9):.0f}",
        ]


def _time_sync(verifier: Verifier, token: str, rounds: int) -> list[float]:
    verifier.verify(token)  # warm-up: connections, and the L2 entry when there is one
    samples = []
    for _ in range(rounds):
        verifier.authority.cache.clear()
        start = time.perf_counter_ns()
        verifier.verify(token)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


async def _time_async(verifier: AsyncVerifier, token: str, rounds: int) -> list[float]:
    await verifier.verify(token)
    samples = []
    for _ in range(rounds):
        verifier.authority.cache.clear()
        start = time.perf_counter_ns()
        await verifier.verify(token)
        samples.append((time.perf_counter_ns() - start) / 1000)
    await verifier.aclose()
    return samples


def hit_cost(lwa: str, client_id: str, redis_url: str, token: str, rounds: int) -> None:
    """Print part 1."""
    base = LWASettings(client_ids=[client_id], api_base_url=lwa)
    shared = LWASettings(
        client_ids=[client_id], api_base_url=lwa, redis_url=redis_url, secret_key=SECRET
    )
    rows: list[Timing] = []
    for name, settings in (("L2 hit (Redis)", shared), ("LWA call (emulator)", base)):
        verifier = Verifier(settings)
        try:
            rows.append(Timing(f"{name}, Verifier", _time_sync(verifier, token, rounds)))
        finally:
            verifier.close()
        samples = asyncio.run(_time_async(AsyncVerifier(settings), token, rounds))
        rows.append(Timing(f"{name}, AsyncVerifier", samples))
    print(table(["one verification L1 misses", "µs p50", "µs p90"], [r.row() for r in rows]))
    for kind in ("Verifier", "AsyncVerifier"):
        hit = percentile(next(r for r in rows if r.name == f"L2 hit (Redis), {kind}").samples, 0.5)
        call = next(r for r in rows if r.name == f"LWA call (emulator), {kind}")
        print(
            f"{kind}: an L2 hit costs {hit:.0f} µs, {percentile(call.samples, 0.5) / hit:.1f}x "
            "less than the emulator's (local, no latency) token-info + profile"
        )
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        key = next(iter(client.scan_iter(match="lwa:v2:*", count=1000)))
        value = client.get(key) or b""
        print(
            f"Redis memory of one cached identity: {client.memory_usage(key)} bytes "
            f"(MEMORY USAGE; value {len(value)} bytes, key {len(key)} bytes)"
        )
    finally:
        client.close()


# Part 2: cold start of 4 workers ---------------------------------------------------------


@dataclass
class Cold:
    """One variant's run: LWA calls per token and the requests' latencies (ms)."""

    variant: str
    scenario: str
    calls_per_token: float
    latencies: list[float]
    failures: int

    def row(self) -> list[str]:
        return [
            f"{self.variant}, {self.scenario}",
            f"{self.calls_per_token:.2f}",
            f"{percentile(self.latencies, 0.5):.1f}",
            f"{percentile(self.latencies, 0.99):.1f}",
            str(self.failures),
        ]


async def _send(client: httpx.AsyncClient, url: str, token: str, out: list[float]) -> bool:
    start = time.perf_counter()
    response = await client.get(url + PATH, headers={"authorization": f"Bearer {token}"})
    out.append((time.perf_counter() - start) * 1000)
    return response.status_code == 200


async def _open_connections(client: httpx.AsyncClient, urls: Sequence[str]) -> None:
    """Open connections to every worker (requests without a token: no LWA call)."""
    await asyncio.gather(*(client.get(url + PATH) for url in urls for _ in range(SENDERS)))


async def _warm_workers(urls: Sequence[str], warmup: Sequence[str]) -> None:
    """Each worker verifies a few warm-up tokens of its own, so its connections to LWA and
    Redis are open before the measured run (whose LWA calls are counted from zero)."""
    per = len(warmup) // len(urls)
    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(
            *(
                client.get(url + PATH, headers={"authorization": f"Bearer {token}"})
                for i, url in enumerate(urls)
                for token in warmup[i * per : (i + 1) * per]
            )
        )


async def _spread(urls: Sequence[str], tokens: Sequence[str], seed: int) -> tuple[list[float], int]:
    """Every (token, worker) pair once, in random order, from :data:`SENDERS` senders."""
    pairs = [(token, url) for token in tokens for url in urls]
    random.Random(seed).shuffle(pairs)
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=SENDERS * len(urls))
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await _open_connections(client, urls)
        queue = iter(pairs)

        async def sender() -> None:
            nonlocal failures
            for token, url in queue:
                if not await _send(client, url, token, latencies):
                    failures += 1

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
    return latencies, failures


async def _simultaneous(urls: Sequence[str], tokens: Sequence[str]) -> tuple[list[float], int]:
    """:data:`SIMULTANEOUS` tokens at a time, each asked of every worker at once."""
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=SENDERS * len(urls))
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await _open_connections(client, urls)
        for i in range(0, len(tokens), SIMULTANEOUS):
            batch = tokens[i : i + SIMULTANEOUS]
            results = await asyncio.gather(
                *(_send(client, url, token, latencies) for token in batch for url in urls)
            )
            failures += results.count(False)
    return latencies, failures


def cold_start(
    control: EmulatorControl,
    lwa: str,
    client_id: str,
    redis_url: str,
    tokens: int,
    rounds: int,
    count: int = WORKERS,
) -> list[Cold]:
    """Part 2: every variant and scenario, ``rounds`` times (fresh workers each time)."""
    import redis

    flush = redis.Redis.from_url(redis_url)
    results: list[Cold] = []
    try:
        for round_ in range(rounds):
            for variant in VARIANTS:
                env = {"LWA_CLIENT_IDS": client_id, "LWA_API_BASE_URL": lwa}
                if variant != "no Redis":
                    env["LWA_REDIS_URL"] = redis_url
                    env["LWA_SECRET_KEY"] = SECRET
                env["BENCH_REDIS_LOCK"] = "1" if variant == "Redis + lock" else "0"
                with workers(count, env) as urls:
                    for scenario in ("spread", "simultaneous"):
                        minted = [control.mint() for _ in range(tokens)]
                        warmup = [control.mint() for _ in range(2 * count)]
                        flush.flushall()
                        asyncio.run(_warm_workers(urls, warmup))
                        control.reset_calls()
                        run = (
                            _spread(urls, minted, round_)
                            if scenario == "spread"
                            else _simultaneous(urls, minted)
                        )
                        latencies, failures = asyncio.run(run)
                        calls = control.calls()["tokeninfo"]
                        cold = Cold(variant, scenario, calls / tokens, latencies, failures)
                        results.append(cold)
                        print(f"  {cold.row()}", file=sys.stderr, flush=True)
    finally:
        flush.close()
    return results


def _merge(results: list[Cold]) -> list[Cold]:
    """One row per variant and scenario (rounds pooled)."""
    merged: dict[tuple[str, str], Cold] = {}
    counts: dict[tuple[str, str], int] = {}
    for result in results:
        key = (result.variant, result.scenario)
        if key not in merged:
            merged[key] = Cold(result.variant, result.scenario, 0.0, [], 0)
            counts[key] = 0
        row = merged[key]
        row.calls_per_token += result.calls_per_token
        row.latencies.extend(result.latencies)
        row.failures += result.failures
        counts[key] += 1
    for key, row in merged.items():
        row.calls_per_token /= counts[key]
    return list(merged.values())


def report_cold(results: list[Cold], latency_ms: float) -> None:
    """Print parts 2 and 3."""
    rows = _merge(results)
    header = ["variant, scenario", "LWA calls/token", "ms p50", "ms p99", "failures"]
    print(table(header, [row.row() for row in rows]))
    by = {(row.variant, row.scenario): row for row in rows}
    for scenario in ("spread", "simultaneous"):
        none, plain, lock = (by[(variant, scenario)] for variant in VARIANTS)
        print(
            f"{scenario}: LWA calls per token {none.calls_per_token:.2f} without Redis, "
            f"{plain.calls_per_token:.2f} with Redis, {lock.calls_per_token:.2f} with Redis "
            "and the lock"
        )
    plain, lock = by[("Redis", "simultaneous")], by[("Redis + lock", "simultaneous")]
    saved = plain.calls_per_token / lock.calls_per_token if lock.calls_per_token else 0.0
    p50 = percentile(lock.latencies, 0.5) - percentile(plain.latencies, 0.5)
    p99 = percentile(lock.latencies, 0.99) - percentile(plain.latencies, 0.99)
    print(
        f"lock (simultaneous cold requests, LWA latency {latency_ms:g} ms): {saved:.1f}x fewer "
        f"LWA calls per token; p50 {p50:+.1f} ms, p99 {p99:+.1f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=("bench", "worker"), default="bench")
    parser.add_argument(
        "--quick", action="store_true", help="small counts, 2 workers (~10 s): a smoke run"
    )
    parser.add_argument("--workers", type=int, help=f"worker processes (default {WORKERS})")
    parser.add_argument("--tokens", type=int, help="tokens per cold-start run")
    parser.add_argument("--rounds", type=int, help="cold-start rounds (fresh workers each)")
    parser.add_argument("--hits", type=int, help="timed verifications in part 1")
    parser.add_argument("--lwa-latency-ms", type=float, default=20.0)
    parser.add_argument(
        "--part", choices=("1", "2", "all"), default="all", help="1: the L2 hit; 2: parts 2-3"
    )
    args = parser.parse_args(argv)
    if args.mode == "worker":
        serve_worker()
        return
    tokens = args.tokens or (4 if args.quick else 100)
    rounds = args.rounds or (1 if args.quick else 3)
    hits = args.hits or (50 if args.quick else 2000)
    count = args.workers or (2 if args.quick else WORKERS)
    emulator = ServerProcess("emulator")
    try:
        lwa = emulator.ready()
        control = EmulatorControl(lwa)
        client_id = control.client_id()
        with redis_server() as redis_url:
            if args.part in ("1", "all"):
                print("part 1: an L2 hit beside an LWA call (in process)", file=sys.stderr)
                hit_cost(lwa, client_id, redis_url, control.mint(), hits)
                print()
            if args.part == "1":
                control.close()
                return
            print(
                f"part 2: cold start of {count} uvicorn workers, {tokens} tokens, "
                f"{rounds} round(s), LWA latency {args.lwa_latency_ms:g} ms",
                file=sys.stderr,
            )
            control.set_latency(args.lwa_latency_ms / 1000)
            results = cold_start(control, lwa, client_id, redis_url, tokens, rounds, count)
            report_cold(results, args.lwa_latency_ms)
        control.close()
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
