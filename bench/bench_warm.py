"""Part 1: the warm path, in process, the variants interleaved round by round.

The access-policy variants wrap the same inner app with a 1,001-rule ``allow`` list on
``/*`` (1,000 ``user:`` rules of other customers and the ``domain:`` rule that admits the
benchmark's customer, so each request takes the slower branch: the email's domain looked
up after the user id missed), once as keyword options and once as a ``policy_file`` (its
once-a-second look included). The ``user_loader`` variants add the app's own user (a
Starlette ``SimpleUser``, cached by user id after the first request), so each timed request
also takes the loader's cache lookup and puts the user on the request.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

from bench_apps import DictBearerBackend, http_scope, inner_app, wsgi_app, wsgi_environ
from bench_micro import asgi_status, per_call_ns, time_asgi, time_wsgi, wsgi_status
from bench_report import Section, progress
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
#: How each ASGI variant's request carries the token (``bench_apps.token_header``).
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


def warm_section(timings: dict[str, list[float]], *, rounds: int, batch: int) -> Section:
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
            f"A cached sign-in costs {overhead_ns(timings, LWA_ASGI) / 1000:.1f} µs per "
            "request under ASGI: a worker spends "
            f"{overhead_ns(timings, LWA_ASGI) / 10_000:.2f}% of a core per 1,000 requests a "
            "second on it.",
            "About 0.65 µs of it is the SHA-256 of the token that keys the cache "
            "(OpenSSL 3's per-call cost on Python 3.11); the token is never a key itself.",
            policy_line(timings),
            user_line(timings),
        ],
        chart=chart,
        chart_unit="µs added per request (warm)",
        targets=targets,
    )


def section(quick: bool) -> Section:
    """Measure the warm path (its own emulator process to warm the caches) as a Section."""
    from bench_servers import ServerProcess
    from warm_path import prepare_emulator

    rounds, batch = (6, 200) if quick else (150, 2000)
    emulator = ServerProcess("emulator")
    try:
        url = emulator.ready()
        client_id, token = prepare_emulator(url)
        progress(f"warm: {rounds} rounds x {batch} requests per variant")
        timings = asyncio.run(
            measure_warm_paths(inner_app("raw"), url, client_id, token, rounds=rounds, batch=batch)
        )
    finally:
        emulator.stop()
    return warm_section(timings, rounds=rounds, batch=batch)


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


def main() -> None:
    """``python bench/bench_warm.py [--quick]``: this section alone."""
    import sys

    from bench_report import print_section

    print_section(section("--quick" in sys.argv))


if __name__ == "__main__":
    main()
