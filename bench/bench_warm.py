"""The warm path, and what it saves: the "warm" section of ``run.py``, and the warm/cold script.

Part 1, the warm path, in process (no server, no network): the same prebuilt ``GET /me``
with a bearer token goes N times through each variant, round after round, the variants
interleaved (the order rotates every round); each round gives µs per request of

* a bare ASGI app, Starlette's ``AuthenticationMiddleware`` with an in-memory dict backend,
  ``LWAMiddleware`` whose cache already holds the token (verified once against the emulator),
  the token in each of its carriers;
* the access-policy variants: the same inner app with a 1,001-rule ``allow`` list on ``/*``
  (1,000 ``user:`` rules of other customers and the ``domain:`` rule that admits the
  benchmark's customer, so each request takes the slower branch: the email's domain looked
  up after the user id missed), once as keyword options and once as a ``policy_file`` (its
  once-a-second look included);
* the ``user_loader`` variants: the app's own user (a Starlette ``SimpleUser``, cached by
  user id after the first request), so each timed request also takes the loader's cache
  lookup and puts the user on the request;
* a bare WSGI app and ``LWAWSGIMiddleware``, warm the same way.

Part 2, the cold path, over HTTP: requests per second of an app that verifies every request
the documented way (token-info, then profile, no cache) and of ``LWAMiddleware`` warm, both
served by uvicorn, with the LWA emulator playing Amazon; each server is its own process.

``section(quick)`` is part 1 for ``run.py``. Run alone, from the repository root:
``python bench/bench_warm.py`` (both parts, about a minute), ``--quick`` (a few seconds:
what ``tests/test_bench_smoke.py`` runs), ``--rounds N``, ``--lwa-latency-ms 80`` to give
the emulator Amazon's latency in part 2. ``bench/README.md`` explains every number.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

from common import (
    DictBearerBackend,
    EmulatorControl,
    LoadResult,
    Section,
    ServerProcess,
    Summary,
    asgi_status,
    http_scope,
    inner_app,
    load,
    minted,
    paired_differences,
    per_call_ns,
    profile_asgi,
    progress,
    table,
    time_asgi,
    time_wsgi,
    wsgi_app,
    wsgi_environ,
    wsgi_status,
)
from starlette.authentication import SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.types import ASGIApp

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.core.cache import KeyMaker

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
import argparse
import importlib.util
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field

# Part 1: the warm path, in process --------------------------------------------------------


BARE_ASGI = "bare ASGI app"
STARLETTE = "Starlette AuthenticationMiddleware (dict backend)"
LWA_ASGI = "LWAMiddleware (warm)"
LWA_AMZ = "LWAMiddleware (warm, x-amz-access-token)"
LWA_COOKIE = "LWAMiddleware (warm, cookie)"
LWA_COOKIES = "LWAMiddleware (warm, cookie among 5)"
LWA_POLICY = "LWAMiddleware (warm, 1,001-rule allow list)"
LWA_POLICY_FILE = "LWAMiddleware (warm, the 1,001 rules in a policy_file)"
LWA_USER = "LWAMiddleware (warm, user_loader)"
BARE_WSGI = "bare WSGI app"
LWA_WSGI = "LWAWSGIMiddleware (warm)"
LWA_WSGI_POLICY = "LWAWSGIMiddleware (warm, 1,001-rule allow list)"
LWA_WSGI_USER = "LWAWSGIMiddleware (warm, user_loader)"
#: The access policy of the policy variants: 1,000 other customers and the benchmark's
#: customer's domain (the emulator's default user is ada@example.com).
POLICY_RULES = [f"user:amzn1.account.BENCH{i:04d}" for i in range(1000)] + ["domain:example.com"]

#: Each variant and the bare app its overhead is measured against.
BASELINES = {
    BARE_ASGI: BARE_ASGI,
    STARLETTE: BARE_ASGI,
    LWA_ASGI: BARE_ASGI,
    LWA_AMZ: BARE_ASGI,
    LWA_COOKIE: BARE_ASGI,
    LWA_COOKIES: BARE_ASGI,
    LWA_POLICY: BARE_ASGI,
    LWA_POLICY_FILE: BARE_ASGI,
    LWA_USER: BARE_ASGI,
    BARE_WSGI: BARE_WSGI,
    LWA_WSGI: BARE_WSGI,
    LWA_WSGI_POLICY: BARE_WSGI,
    LWA_WSGI_USER: BARE_WSGI,
}
#: Chart labels.
SHORT = {
    STARLETTE: "Starlette auth",
    LWA_ASGI: "LWA Bearer",
    LWA_AMZ: "LWA x-amz",
    LWA_COOKIE: "LWA cookie",
    LWA_COOKIES: "LWA 5 cookies",
    LWA_POLICY: "LWA 1,001 rules",
    LWA_POLICY_FILE: "LWA policy_file",
    LWA_USER: "LWA user_loader",
    LWA_WSGI: "LWA WSGI",
    LWA_WSGI_POLICY: "LWA WSGI 1,001 rules",
    LWA_WSGI_USER: "LWA WSGI user_loader",
}
#: How each ASGI variant's request carries the token (``common.token_header``).
CARRIER = {LWA_AMZ: "amz", LWA_COOKIE: "cookie", LWA_COOKIES: "cookies5"}
#: The LWA variants' targets: warm overhead at most this many times Starlette's.
TARGETS = {
    LWA_ASGI: 1.0,
    LWA_AMZ: 1.2,
    LWA_COOKIE: 1.2,
    LWA_COOKIES: 1.2,
    LWA_POLICY: 1.2,
    LWA_POLICY_FILE: 1.2,
}


async def measure_warm_paths(
    inner: ASGIApp, lwa_url: str, client_id: str, token: str, *, rounds: int, batch: int
) -> dict[str, list[float]]:
    """ns per request of every variant, one figure per round (the order rotates each round).

    Each variant must answer the prebuilt request with 200 first; that request also puts
    the token into both LWA middlewares' caches (one verification against the emulator).
    """
    users = {token: SimpleUser("Ada Lovelace")}
    common: dict[str, Any] = {"client_ids": [client_id], "api_base_url": lwa_url}
    allow = {"/*": POLICY_RULES}
    folder = tempfile.TemporaryDirectory(prefix="lwa-bench-")
    policy_file = os.path.join(folder.name, "policy.json")
    with open(policy_file, "w") as file:
        json.dump({"allow": allow}, file)
    lwa = LWAMiddleware(inner, **common)
    lwa_policy = LWAMiddleware(inner, allow=allow, **common)
    lwa_policy_file = LWAMiddleware(inner, policy_file=policy_file, **common)
    app_user = SimpleUser("Ada Lovelace")  # the app's own user of the customer

    async def load_user(identity: Any) -> SimpleUser:
        return app_user

    lwa_user = LWAMiddleware(inner, user_loader=load_user, **common)
    lwa_wsgi = LWAWSGIMiddleware(wsgi_app, **common)
    lwa_wsgi_policy = LWAWSGIMiddleware(wsgi_app, allow=allow, **common)
    lwa_wsgi_user = LWAWSGIMiddleware(wsgi_app, user_loader=lambda identity: app_user, **common)
    asgi: dict[str, ASGIApp] = {
        BARE_ASGI: inner,
        STARLETTE: AuthenticationMiddleware(inner, backend=DictBearerBackend(users)),
        LWA_ASGI: lwa,
        LWA_AMZ: lwa,
        LWA_COOKIE: lwa,
        LWA_COOKIES: lwa,
        LWA_POLICY: lwa_policy,
        LWA_POLICY_FILE: lwa_policy_file,
        LWA_USER: lwa_user,
    }
    wsgi: dict[str, WSGIApplication] = {
        BARE_WSGI: wsgi_app,
        LWA_WSGI: lwa_wsgi,
        LWA_WSGI_POLICY: lwa_wsgi_policy,
        LWA_WSGI_USER: lwa_wsgi_user,
    }
    scopes = {name: http_scope(token, CARRIER.get(name, "bearer")) for name in asgi}
    environ = wsgi_environ(token)
    try:
        for name, app in asgi.items():
            status = await asgi_status(app, scopes[name])
            if status != 200:
                raise SystemExit(f"{name} answered {status}, not 200")
        for name, wapp in wsgi.items():
            line = wsgi_status(wapp, environ)
            if not line.startswith("200"):
                raise SystemExit(f"{name} answered {line!r}, not 200")
        names = [*asgi, *wsgi]
        timings: dict[str, list[float]] = {name: [] for name in names}
        gc.collect()
        gc.freeze()  # setup's objects out of the collector's way: every batch starts equal
        for round_ in range(-1, rounds):  # round -1 warms up and is not kept
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                if name in asgi:
                    ns = await time_asgi(asgi[name], scopes[name], batch)
                else:
                    ns = time_wsgi(wsgi[name], environ, batch)
                if round_ >= 0:
                    timings[name].append(ns)
        return timings
    finally:
        gc.unfreeze()
        for middleware in (lwa, lwa_policy, lwa_policy_file, lwa_user):
            await middleware.verifier.aclose()
        lwa_wsgi.close()
        lwa_wsgi_policy.close()
        lwa_wsgi_user.close()
        folder.cleanup()


def overhead_ns(timings: dict[str, list[float]], name: str) -> float:
    """The median over rounds of (variant - its bare app) in the same round, in ns."""
    return Summary.of(paired_differences(timings[name], timings[BASELINES[name]])).median


def _rows(timings: dict[str, list[float]]) -> list[list[str]]:
    rows = []
    for name, base_name in BASELINES.items():
        own = Summary.of([ns / 1000 for ns in timings[name]])
        base = Summary.of([ns / 1000 for ns in timings[base_name]])
        overhead, times = "-", "1.00x"
        if name != base_name:
            extra = Summary.of(
                [d / 1000 for d in paired_differences(timings[name], timings[base_name])]
            )
            overhead = f"+{extra.median:.2f} ({extra.p10:.2f}..{extra.p90:.2f})"
            times = f"{own.median / base.median:.2f}x"
        rows.append(
            [name, f"{own.median:.2f}", f"{own.p10:.2f}", f"{own.p90:.2f}", overhead, times]
        )
    return rows


HEADERS = ["variant", "median", "p10", "p90", "overhead (p10..p90)", "vs bare"]


def ratios(timings: dict[str, list[float]]) -> dict[str, float]:
    """Each LWA variant's warm overhead over Starlette's (the targets' figure)."""
    starlette = overhead_ns(timings, STARLETTE)
    return {name: overhead_ns(timings, name) / starlette for name in TARGETS}


def report_warm_paths(timings: dict[str, list[float]], *, rounds: int, batch: int) -> None:
    """Print part 1: a row per variant and the LWA / Starlette overhead ratios."""
    print(
        f"\n== Warm path, in process: {rounds} rounds x {batch} requests per variant, "
        "interleaved; µs per request =="
    )
    print(table(HEADERS, _rows(timings)))
    starlette = overhead_ns(timings, STARLETTE)
    for name, ratio in ratios(timings).items():
        label = "LWAMiddleware" if name == LWA_ASGI else name
        print(
            f"{label} warm overhead / Starlette AuthenticationMiddleware overhead: "
            f"{ratio:.2f}x ({overhead_ns(timings, name) / 1000:.2f} µs vs "
            f"{starlette / 1000:.2f} µs; target ≤ {TARGETS[name]:.1f}x)"
        )
    print(policy_line(timings))
    print(user_line(timings))


def user_line(timings: dict[str, list[float]]) -> str:
    """What a ``user_loader`` adds to the warm path once its user is cached, per shell."""
    asgi = (overhead_ns(timings, LWA_USER) - overhead_ns(timings, LWA_ASGI)) / 1000
    wsgi = (overhead_ns(timings, LWA_WSGI_USER) - overhead_ns(timings, LWA_WSGI)) / 1000
    return (
        f"A user_loader adds {asgi:+.2f} µs per request under ASGI and {wsgi:+.2f} µs under "
        "WSGI once its user is cached: one dict lookup by user id and the user put on the "
        "request (the loader itself is not called)."
    )


def policy_line(timings: dict[str, list[float]]) -> str:
    """What the 1,001-rule access policy adds to the warm path, per shell."""
    added = {
        name: (overhead_ns(timings, name) - overhead_ns(timings, base)) / 1000
        for name, base in (
            (LWA_POLICY, LWA_ASGI),
            (LWA_POLICY_FILE, LWA_ASGI),
            (LWA_WSGI_POLICY, LWA_WSGI),
        )
    }
    return (
        f"A 1,001-rule access policy adds {added[LWA_POLICY]:+.2f} µs per request under ASGI "
        f"({added[LWA_POLICY_FILE]:+.2f} µs when the rules come from a watched policy_file) "
        f"and {added[LWA_WSGI_POLICY]:+.2f} µs under WSGI: a few set lookups per request, "
        "whatever the number of rules (the route's rules are resolved once and memoised)."
    )


def warm_section(
    timings: dict[str, list[float]], *, rounds: int, batch: int, key_ns: float
) -> Section:
    """The report's "warm" section from measured timings."""
    starlette = overhead_ns(timings, STARLETTE)
    chart = {
        SHORT[name]: overhead_ns(timings, name) / 1000
        for name, base in BASELINES.items()
        if name != base
    }
    targets = {
        f"{name} vs Starlette": (
            ratio <= TARGETS[name],
            f"{ratio:.2f}x ({overhead_ns(timings, name) / 1000:.2f} µs vs "
            f"{starlette / 1000:.2f} µs) vs ≤ {TARGETS[name]:.1f}x",
        )
        for name, ratio in ratios(timings).items()
    }
    return Section(
        key="warm",
        title="Warm path, in process",
        method=(
            f"No server, no network: each variant is called {batch} times per round with a "
            f"prebuilt request (uvicorn's scope shape, six headers, a 405-character token), "
            f"{rounds} rounds, the variants' order rotating every round. `overhead` is the "
            "variant minus its bare app in the same round (median over rounds, µs per "
            "request). The LWA variants' token is cached (verified once against the "
            "emulator before timing), so every timed request is a cache hit with expiry, "
            "audience and scopes checked. Starlette's `AuthenticationMiddleware` with a "
            "backend that looks the bearer token up in a dict is the cheapest authentication "
            "an ASGI app can have: the yardstick."
        ),
        headers=HEADERS,
        rows=_rows(timings),
        meaning=[
            f"A cached sign-in costs {overhead_ns(timings, LWA_ASGI) / 1000:.2f} µs per "
            "request under ASGI: a worker spends "
            f"{overhead_ns(timings, LWA_ASGI) / 10_000:.2f}% of a core per 1,000 requests a "
            "second on it.",
            f"About {key_ns / 1000:.2f} µs of it is the SHA-256 of the token that keys the "
            "cache (measured alone in this run); the token is never a key itself.",
            policy_line(timings),
            user_line(timings),
        ],
        chart=chart,
        chart_unit="µs added per request (warm)",
        targets=targets,
    )


def section(quick: bool) -> Section:
    """Measure the warm path (its own emulator process to warm the caches) as a Section."""
    rounds, batch = (6, 200) if quick else (150, 2000)
    emulator = ServerProcess("emulator")
    try:
        url = emulator.ready()
        client_id, token = minted(url)
        progress(f"warm: {rounds} rounds x {batch} requests per variant")
        timings = asyncio.run(
            measure_warm_paths(inner_app("raw"), url, client_id, token, rounds=rounds, batch=batch)
        )
        key_ns = per_call_ns(KeyMaker(url), token, 10_000 if quick else 200_000)
    finally:
        emulator.stop()
    return warm_section(timings, rounds=rounds, batch=batch, key_ns=key_ns)


def report_building_blocks(token: str, n: int) -> None:
    """Print, for context, what a dict and a ``TTLCache`` lookup, the SHA-256 cache key and
    a clock read cost (``cachetools`` is optional: its line is skipped when absent)."""
    keymaker = KeyMaker("https://api.amazon.com")
    key = keymaker(token)
    print(f"\n== Context: one call, ns (best of 5 x {n}, loop cost subtracted) ==")
    dict_get = per_call_ns({key: object()}.get, key, n)
    rows = [["dict.get", f"{dict_get:.0f}", ""]]
    try:
        from cachetools import TTLCache
    except ImportError:
        pass
    else:
        ttl: TTLCache[bytes, object] = TTLCache(maxsize=10_000, ttl=300)
        ttl[key] = object()
        ttl_get = per_call_ns(ttl.get, key, n)
        rows.append(["cachetools.TTLCache.get", f"{ttl_get:.0f}", f"{ttl_get / dict_get:.0f}x"])
    rows.append(["SHA-256 cache key of the token", f"{per_call_ns(keymaker, token, n):.0f}", ""])
    rows.append(["time.time()", f"{per_call_ns(lambda _: time.time(), None, n):.0f}", ""])
    print(table(["operation", "ns", "vs dict.get"], rows))


# Part 2: per-request verification vs LWAMiddleware warm, both served by uvicorn ----------


PER_REQUEST = "per-request verification (uvicorn)"
WARM_SERVED = "LWAMiddleware warm (uvicorn)"


@dataclass
class Served:
    """One measured server and what its batches gave (CPU in µs per request)."""

    server: ServerProcess
    url: str
    results: list[LoadResult] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    emulator_cpu: list[float] = field(default_factory=list)


def _cpu(server: ServerProcess, emulator: ServerProcess) -> tuple[float, float] | None:
    app, lwa = server.cpu_seconds(), emulator.cpu_seconds()
    return None if app is None or lwa is None else (app, lwa)


async def measure_throughput(
    servers: dict[str, Served],
    emulator: ServerProcess,
    token: str,
    *,
    requests: int,
    concurrency: int,
    rounds: int,
    seconds: float,
) -> None:
    """Fill each :class:`Served` with ``rounds`` batches, the order alternating each round."""
    for served in servers.values():  # warm-up: connections, caches, the first verification
        await load(served.url, token, min(requests, 4 * concurrency), concurrency, seconds)
    names = list(servers)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            served = servers[name]
            before = _cpu(served.server, emulator)
            result = await load(served.url, token, requests, concurrency, seconds)
            after = _cpu(served.server, emulator)
            served.results.append(result)
            if before is not None and after is not None and result.requests:
                served.server_cpu.append((after[0] - before[0]) * 1e6 / result.requests)
                served.emulator_cpu.append((after[1] - before[1]) * 1e6 / result.requests)


def _median(values: list[float]) -> str:
    return f"{Summary.of(values).median:.0f}" if values else "n/a"


def report_throughput(servers: dict[str, Served]) -> None:
    """Print part 2: a row per server, the speed-up and the server-side CPU per request."""
    rows = []
    for name, served in servers.items():
        rps = [r.rps for r in served.results]
        rows.append(
            [
                name,
                f"{Summary.of(rps).median:.0f}",
                f"{min(rps):.0f}..{max(rps):.0f}",
                str(sum(r.requests for r in served.results)),
                str(sum(r.failures for r in served.results)),
                _median(served.server_cpu),
                _median(served.emulator_cpu),
                f"{max(r.client_cpu / r.seconds for r in served.results):.0%}",
            ]
        )
    header = ["variant", "req/s", "range", "requests", "non-200"]
    print(table([*header, "app CPU µs/req", "LWA CPU µs/req", "client CPU"], rows))
    cold, warm = servers[PER_REQUEST], servers[WARM_SERVED]
    cold_rps = Summary.of([r.rps for r in cold.results]).median
    warm_rps = Summary.of([r.rps for r in warm.results]).median
    print(f"warm is {warm_rps / cold_rps:.1f}x faster than per-request verification")
    if cold.server_cpu and warm.server_cpu:
        cold_cpu = Summary.of(cold.server_cpu).median + Summary.of(cold.emulator_cpu).median
        warm_cpu = Summary.of(warm.server_cpu).median + Summary.of(warm.emulator_cpu).median
        # /proc counts CPU in 10 ms ticks: a quick run's warm server may show none at all.
        times = f"{cold_cpu / warm_cpu:.1f}x" if warm_cpu else "warm: under one tick"
        print(
            f"server-side CPU per request (app + LWA): per-request verification "
            f"{cold_cpu:.0f} µs, warm {warm_cpu:.0f} µs ({times})"
        )
    print(
        "('client CPU' is the load generator's, 100% = one core: near 100% means its "
        "req/s is the client's limit, not the server's)"
    )
    if importlib.util.find_spec("sniffio") is None:
        print(
            "note: sniffio is not installed, so httpcore retries `import sniffio` on every "
            "async request: the load generator and AsyncLWAClient pay for failed imports"
        )


# The script ---------------------------------------------------------------------------------


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
        client_id, token = minted(lwa_url)
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
            control = EmulatorControl(lwa_url)
            control.set_latency(args.lwa_latency_ms / 1000)
            control.close()
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
