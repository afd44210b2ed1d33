"""What LWA verification costs per request, warm and cold.

Part 1, the warm path, in process (no server, no network): the same prebuilt ``GET /me``
with a bearer token goes N times through each variant, round after round, the variants
interleaved (the order rotates every round); each round gives µs per request of

* a bare ASGI app, Starlette's ``AuthenticationMiddleware`` with an in-memory dict backend,
  ``LWAMiddleware`` whose cache already holds the token (verified once against the emulator);
* a bare WSGI app and ``LWAWSGIMiddleware``, warm the same way.

Part 2, the cold path, over HTTP: requests per second of an app that verifies every request
the documented way (token-info, then profile, no cache) and of ``LWAMiddleware`` warm, both
served by uvicorn, with the LWA emulator playing Amazon; each server is its own process.

Run from the repository root: ``python bench/warm_path.py`` (about a minute), ``--quick``
(a few seconds), ``--rounds N``, ``--lwa-latency-ms 80`` to give the emulator Amazon's latency
in part 2. ``bench/README.md`` explains every number.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from collections.abc import Sequence
from typing import Any

import httpx
from bench_apps import http_scope, inner_app
from bench_cold import PER_REQUEST, WARM_SERVED, Served, measure_throughput, report_throughput
from bench_micro import asgi_status, profile_asgi
from bench_servers import ServerProcess
from bench_warm import measure_warm_paths, report_building_blocks, report_warm_paths

from lwa_middleware import LWAMiddleware


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options; ``--quick`` shrinks every default, explicit counts still win."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds (the smoke test)")
    parser.add_argument("--rounds", type=int, help="warm-path rounds (150; quick 6)")
    parser.add_argument("--batch", type=int, help="requests per variant per round (2000; 200)")
    parser.add_argument("--requests", type=int, help="HTTP requests per batch (2000; 100)")
    parser.add_argument("--concurrency", type=int, help="concurrent HTTP requests (20; 10)")
    parser.add_argument("--load-rounds", type=int, help="HTTP rounds per server (2; 1)")
    parser.add_argument("--load-seconds", type=float, help="time cap of one HTTP batch (10; 1)")
    parser.add_argument(
        "--lwa-latency-ms", type=float, default=0.0, help="emulator latency in part 2 (0)"
    )
    parser.add_argument(
        "--inner", choices=("raw", "starlette"), default="raw", help="the wrapped app (raw)"
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile the warm path")
    args = parser.parse_args(argv)
    defaults = {
        "rounds": (150, 6),
        "batch": (2000, 200),
        "requests": (2000, 100),
        "concurrency": (20, 10),
        "load_rounds": (2, 1),
        "load_seconds": (10.0, 1.0),
    }
    for name, (normal, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.lwa_latency_ms < 0:
        parser.error("--lwa-latency-ms cannot be negative")
    args.lookups = 10_000 if args.quick else 200_000
    return args


def prepare_emulator(url: str) -> tuple[str, str]:
    """``(client_id, token)``: the emulator's client id and a fresh ``profile`` token."""
    with httpx.Client(base_url=url) as client:
        client_id = str(client.get("/_emulator").json()["client_id"])
        minted = client.post("/_emulator/tokens", json={"scopes": ["profile"], "lifetime": 3600})
        minted.raise_for_status()
        return client_id, str(minted.json()["access_token"])


def set_latency(url: str, seconds: float) -> None:
    """Delay every emulator answer by ``seconds``."""
    with httpx.Client(base_url=url) as client:
        client.post("/_emulator/latency", json={"seconds": seconds}).raise_for_status()


def print_profile(args: argparse.Namespace, lwa_url: str, client_id: str, token: str) -> None:
    """cProfile of the LWA warm path (its own middleware, warmed first)."""
    app: Any = LWAMiddleware(inner_app(args.inner), client_ids=[client_id], api_base_url=lwa_url)
    scope = http_scope(token)

    async def warm() -> None:
        await asgi_status(app, scope)
        await app.verifier.aclose()

    asyncio.run(warm())
    n = args.batch * 10
    print(f"\n== cProfile: {n} requests through LWAMiddleware (warm), by own time ==")
    print(profile_asgi(app, scope, n))


def main(argv: Sequence[str] | None = None) -> None:
    """Start the emulator and both app servers, run both parts, print the figures."""
    args = parse_args(argv)
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"inner app: {args.inner}"
    )
    emulator = ServerProcess("emulator")
    processes: list[ServerProcess] = []
    try:
        lwa_url = emulator.ready()
        client_id, token = prepare_emulator(lwa_url)
        common = ["--lwa", lwa_url, "--client-id", client_id, "--inner", args.inner]
        processes += [ServerProcess("per-request", *common), ServerProcess("warm", *common)]
        servers = {  # ready (and idle) before part 1's timing starts
            name: Served(process, process.ready())
            for name, process in zip((PER_REQUEST, WARM_SERVED), processes, strict=True)
        }
        timings = asyncio.run(
            measure_warm_paths(
                inner_app(args.inner),
                lwa_url,
                client_id,
                token,
                rounds=args.rounds,
                batch=args.batch,
            )
        )
        report_warm_paths(timings, rounds=args.rounds, batch=args.batch)
        report_building_blocks(token, args.lookups)
        if args.profile:
            print_profile(args, lwa_url, client_id, token)
        if args.lwa_latency_ms:
            set_latency(lwa_url, args.lwa_latency_ms / 1000)
        print(
            f"\n== Cold path over HTTP: uvicorn, up to {args.requests} requests "
            f"(or {args.load_seconds:g} s) per batch at concurrency {args.concurrency}, "
            f"{args.load_rounds} round(s), LWA emulator latency {args.lwa_latency_ms:g} ms =="
        )
        asyncio.run(
            measure_throughput(
                servers,
                emulator,
                token,
                requests=args.requests,
                concurrency=args.concurrency,
                rounds=args.load_rounds,
                seconds=args.load_seconds,
            )
        )
        report_throughput(servers)
    finally:
        for process in processes:
            process.stop()
        emulator.stop()


if __name__ == "__main__":
    main()
