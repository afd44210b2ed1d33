"""Part 1: the warm path, in process, five variants interleaved round by round."""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING

from bench_apps import DictBearerBackend, http_scope, wsgi_app, wsgi_environ
from bench_micro import asgi_status, per_call_ns, time_asgi, time_wsgi, wsgi_status
from bench_stats import Summary, paired_differences, table
from starlette.authentication import SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.types import ASGIApp

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.cache import KeyMaker

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

BARE_ASGI = "bare ASGI app"
STARLETTE = "Starlette AuthenticationMiddleware (dict backend)"
LWA_ASGI = "LWAMiddleware (warm)"
BARE_WSGI = "bare WSGI app"
LWA_WSGI = "LWAWSGIMiddleware (warm)"

#: Each variant and the bare app its overhead is measured against.
BASELINES = {
    BARE_ASGI: BARE_ASGI,
    STARLETTE: BARE_ASGI,
    LWA_ASGI: BARE_ASGI,
    BARE_WSGI: BARE_WSGI,
    LWA_WSGI: BARE_WSGI,
}


async def measure_warm_paths(
    inner: ASGIApp, lwa_url: str, client_id: str, token: str, *, rounds: int, batch: int
) -> dict[str, list[float]]:
    """ns per request of every variant, one figure per round (the order rotates each round).

    Each variant must answer the prebuilt request with 200 first; that request also puts
    the token into both LWA middlewares' caches (one verification against the emulator).
    """
    users = {token: SimpleUser("Ada Lovelace")}
    lwa = LWAMiddleware(inner, client_ids=[client_id], api_base_url=lwa_url)
    lwa_wsgi = LWAWSGIMiddleware(wsgi_app, client_ids=[client_id], api_base_url=lwa_url)
    asgi: dict[str, ASGIApp] = {
        BARE_ASGI: inner,
        STARLETTE: AuthenticationMiddleware(inner, backend=DictBearerBackend(users)),
        LWA_ASGI: lwa,
    }
    wsgi: dict[str, WSGIApplication] = {BARE_WSGI: wsgi_app, LWA_WSGI: lwa_wsgi}
    scope, environ = http_scope(token), wsgi_environ(token)
    try:
        for name, app in asgi.items():
            status = await asgi_status(app, scope)
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
                    ns = await time_asgi(asgi[name], scope, batch)
                else:
                    ns = time_wsgi(wsgi[name], environ, batch)
                if round_ >= 0:
                    timings[name].append(ns)
        return timings
    finally:
        gc.unfreeze()
        await lwa.verifier.aclose()
        lwa_wsgi.close()


def overhead_ns(timings: dict[str, list[float]], name: str) -> float:
    """The median over rounds of (variant - its bare app) in the same round, in ns."""
    return Summary.of(paired_differences(timings[name], timings[BASELINES[name]])).median


def report_warm_paths(timings: dict[str, list[float]], *, rounds: int, batch: int) -> None:
    """Print part 1: a row per variant and the LWA / Starlette overhead ratio."""
    print(
        f"\n== Warm path, in process: {rounds} rounds x {batch} requests per variant, "
        "interleaved; µs per request =="
    )
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
    print(table(["variant", "median", "p10", "p90", "overhead (p10..p90)", "vs bare"], rows))
    lwa, starlette = overhead_ns(timings, LWA_ASGI), overhead_ns(timings, STARLETTE)
    print(
        f"LWAMiddleware warm overhead / Starlette AuthenticationMiddleware overhead: "
        f"{lwa / starlette:.2f}x ({lwa / 1000:.2f} µs vs {starlette / 1000:.2f} µs)"
    )


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
