"""Every LWA fault through both shells: the documented error in time, the circuit breaker
(opens after ``breaker_failures`` consecutive failures, then no call reaches LWA, a probe
after the window closes it), stale-if-error (an identity whose entry just expired is served
``stale`` while LWA fails, only within the window, never past the token's expiry, never for
a token LWA rejected; off: 500) and recovery.

Each test runs once per shell: ``LWAMiddleware`` under uvicorn, ``LWAWSGIMiddleware`` under
a threaded wsgiref server, against the session's emulator and its fake clock (the clock is
the middlewares' too, so the cache TTL, the stale window and the breaker's window are moved
past by ``clock.advance``, not waited for). The apps echo ``identity.stale``
(``echo_apps``). ``no call reaches LWA`` is read from the emulator's ``calls``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest
from echo_apps import asgi_echo, wsgi_echo

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.emulator import Emulator, serve, serve_wsgi

from conftest import SHELLS, FakeClock, Teardown, assert_error, bearer

#: Every fault the emulator injects (``FaultKind``), each an LWA failure.
FAULTS = ["500", "503", "429", "hang", "trickle", "trickle_body", "non_json", "missing_fields",
          "reset"]  # fmt: skip
#: The faults whose answer never comes (or comes a byte every 0.4 s): cut at ``timeout``.
SLOW = {"hang", "trickle", "trickle_body"}

TIMEOUT = 1.0
#: A verification's deadline is ``timeout``; what a loaded machine adds on top (the
#: emulator's hang lasts 3 s, a trickled answer ~80 s: a missed deadline fails).
MARGIN = 1.2
#: An answer that made no LWA call (cache, breaker open) takes far less than ``timeout``.
QUICK = 0.9

CACHE_TTL = 60
STALE_WINDOW = 20
BREAKER_FAILURES = 3
BREAKER_WINDOW = 100


@dataclass
class Shell:
    """One middleware served on 127.0.0.1: its base URL and the middleware (``stats()``)."""

    url: str
    middleware: Any
    kind: str


Start = Callable[..., Shell]


def _stop_and_close(handle: Any, middleware: LWAWSGIMiddleware) -> None:
    handle.stop()
    middleware.close()


@pytest.fixture(params=SHELLS)
def shell(
    request: pytest.FixtureRequest,
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    teardown_later: Teardown,
) -> Iterator[Start]:
    """``shell(**options) -> Shell``: the echo app behind one shell's middleware (same
    emulator and clock for both), once per shell."""
    kind: str = request.param
    stops: list[Callable[[], None]] = []

    def start(**options: Any) -> Shell:
        options.setdefault("client_ids", [emu.client_id])
        options.setdefault("api_base_url", emu_url)
        options.setdefault("clock", clock)
        if kind == "asgi":
            middleware: Any = LWAMiddleware(asgi_echo, **options)
            handle = serve(middleware, lifespan="on")
            stops.append(handle.stop)
        else:
            middleware = LWAWSGIMiddleware(wsgi_echo, **options)
            handle = serve_wsgi(middleware)
            stops.append(partial(_stop_and_close, handle, middleware))
        return Shell(handle.url, middleware, kind)

    yield start
    for stop in stops:
        teardown_later(stop)


def timed_get(http: httpx.Client, url: str, token: str) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    response = http.get(url + "/me", headers=bearer(token))
    return response, time.monotonic() - began


def lwa_calls(emu: Emulator) -> int:
    return sum(emu.calls.values())


def assert_identity(response: httpx.Response, user_id: str, *, stale: bool) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"] == user_id
    assert body["stale"] is stale, body


def assert_breaker_open(response: httpx.Response) -> None:
    """500 ``ServerError`` (documented body) with a ``Retry-After`` within the window."""
    assert_error(response, "ServerError", 500)
    assert "retry-after" in response.headers, dict(response.headers)
    assert 1 <= int(response.headers["retry-after"]) <= BREAKER_WINDOW


def stats_of(shell: Shell) -> dict[str, Any]:
    stats = shell.middleware.stats()
    json.dumps(stats)  # JSON-serialisable
    return dict(stats)


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_breaker_stale_recovery(
    shell: Start, emu: Emulator, clock: FakeClock, http: httpx.Client, fault: str
) -> None:
    common = {
        "timeout": TIMEOUT,
        "cache_ttl": CACHE_TTL,
        "breaker_failures": BREAKER_FAILURES,
        "breaker_open_seconds": BREAKER_WINDOW,
    }
    with_stale = shell(stale_if_error=STALE_WINDOW, **common)
    without = shell(stale_if_error=0, **common)
    ada, a = emu.mint_for(name="Ada")
    cid, c = emu.mint_for(name="Cid")  # never verified before the fault: nothing to serve
    for s in (with_stale, without):
        assert_identity(http.get(s.url + "/me", headers=bearer(a)), ada.user_id, stale=False)

    emu.fault(fault)
    clock.advance(CACHE_TTL + 1)  # Ada's entries expired a second ago

    # Failure 1 of each: LWA is asked (and fails) in time; with stale-if-error Ada is
    # answered from her expired entry, marked stale; without, the documented 500.
    calls = lwa_calls(emu)
    response, seconds = timed_get(http, with_stale.url, a)
    assert_identity(response, ada.user_id, stale=True)
    assert seconds < TIMEOUT + MARGIN, seconds
    assert lwa_calls(emu) > calls, "LWA was not asked: the stale answer needs LWA to fail"
    calls = lwa_calls(emu)
    response, seconds = timed_get(http, without.url, a)
    assert_error(response, "ServerError", 500)
    assert seconds < TIMEOUT + MARGIN, seconds
    assert lwa_calls(emu) > calls

    # Failures 2 and 3 (a cold token): each reaches LWA and is answered 500 in time.
    for _ in range(BREAKER_FAILURES - 1):
        calls = lwa_calls(emu)
        response, seconds = timed_get(http, with_stale.url, c)
        assert_error(response, "ServerError", 500)
        assert seconds < TIMEOUT + MARGIN, seconds
        assert lwa_calls(emu) > calls, "the breaker opened before breaker_failures failures"

    # Open: fail fast with Retry-After, no call to LWA; Ada still served stale.
    snapshot = emu.calls
    response, seconds = timed_get(http, with_stale.url, c)
    assert_breaker_open(response)
    assert seconds < QUICK, seconds
    response, seconds = timed_get(http, with_stale.url, a)
    assert_identity(response, ada.user_id, stale=True)
    assert seconds < QUICK, seconds
    assert emu.calls == snapshot
    stats = stats_of(with_stale)
    assert stats["breaker"]["state"] == "open", stats["breaker"]
    assert stats["verifications"]["stale"] >= 2, stats["verifications"]
    assert stats["verifications"]["server_error"] >= BREAKER_FAILURES - 1

    # Past the stale window (breaker still open): no longer served, the breaker's 500.
    clock.advance(STALE_WINDOW)
    assert_breaker_open(http.get(with_stale.url + "/me", headers=bearer(a)))
    assert emu.calls == snapshot

    # The fault clears, but until the window passes nothing reaches LWA.
    emu.clear_faults()
    assert_breaker_open(http.get(with_stale.url + "/me", headers=bearer(c)))
    assert emu.calls == snapshot

    # Past the window: the probe reaches LWA, succeeds, closes the breaker; all recover.
    clock.advance(BREAKER_WINDOW)
    assert_identity(http.get(with_stale.url + "/me", headers=bearer(c)), cid.user_id, stale=False)
    assert lwa_calls(emu) > sum(snapshot.values())
    assert stats_of(with_stale)["breaker"]["state"] == "closed"
    calls = lwa_calls(emu)
    assert_identity(http.get(with_stale.url + "/me", headers=bearer(a)), ada.user_id, stale=False)
    assert lwa_calls(emu) > calls  # Ada verified afresh, not her stale entry
    assert_identity(http.get(without.url + "/me", headers=bearer(a)), ada.user_id, stale=False)
    calls = lwa_calls(emu)
    for token, user in ((a, ada), (c, cid)):
        response = http.get(with_stale.url + "/me", headers=bearer(token))
        assert_identity(response, user.user_id, stale=False)
    assert lwa_calls(emu) == calls  # cached again


def test_stale_never_past_the_tokens_expiry(
    shell: Start, emu: Emulator, clock: FakeClock, http: httpx.Client
) -> None:
    """Entry deadline min(60, 100 - 10) = 60 s; window 60 s: at 95 s the entry is 35 s past
    its deadline (inside the window) and the token valid 5 s more: stale; at 101 s the
    token itself has expired: 500, though the window has 19 s left."""
    s = shell(cache_ttl=60, expiry_leeway=10, stale_if_error=60, breaker_failures=0)
    ada, a = emu.mint_for(name="Ada", lifetime=100)
    assert_identity(http.get(s.url + "/me", headers=bearer(a)), ada.user_id, stale=False)
    emu.fault("503")
    clock.advance(95)
    assert_identity(http.get(s.url + "/me", headers=bearer(a)), ada.user_id, stale=True)
    clock.advance(6)
    assert_error(http.get(s.url + "/me", headers=bearer(a)), "ServerError", 500)


def test_stale_never_for_a_rejected_token(
    shell: Start, emu: Emulator, clock: FakeClock, http: httpx.Client
) -> None:
    """LWA rejected the token (revoked) once its entry expired: while the rejection is
    cached, a failing LWA never brings the old identity back."""
    s = shell(cache_ttl=60, negative_ttl=30, stale_if_error=60, breaker_failures=0)
    ada, a = emu.mint_for(name="Ada")
    assert_identity(http.get(s.url + "/me", headers=bearer(a)), ada.user_id, stale=False)
    emu.revoke(a)
    clock.advance(61)
    assert_error(http.get(s.url + "/me", headers=bearer(a)), "invalid_token", 400)
    emu.fault("503")
    for step in (0, 10, 10):
        clock.advance(step)
        response = http.get(s.url + "/me", headers=bearer(a))
        assert response.status_code != 200, response.text
        assert_error(response, "invalid_token", 400)


def test_invalid_token_never_counts_as_a_failure(
    shell: Start, emu: Emulator, http: httpx.Client
) -> None:
    """One real failure, then ten tokens LWA rejects (each asked of LWA), with
    ``breaker_failures=2``: the breaker stays closed and a good token still verifies."""
    s = shell(breaker_failures=2, breaker_open_seconds=BREAKER_WINDOW)
    emu.fault("500", endpoint="tokeninfo", times=2)  # one request: the call and its retry
    assert_error(http.get(s.url + "/me", headers=bearer("Atza|x" + "f" * 400)), "ServerError", 500)
    for i in range(10):
        calls = emu.calls["tokeninfo"]
        bogus = f"Atza|{i:03d}" + "b" * 400
        assert_error(http.get(s.url + "/me", headers=bearer(bogus)), "invalid_token", 400)
        assert emu.calls["tokeninfo"] == calls + 1
    ada, a = emu.mint_for(name="Ada")
    assert_identity(http.get(s.url + "/me", headers=bearer(a)), ada.user_id, stale=False)
    stats = stats_of(s)
    assert stats["breaker"]["state"] == "closed"
    assert stats["verifications"]["invalid_token"] >= 10
    assert stats["verifications"]["ok"] >= 1


def test_breaker_off(shell: Start, emu: Emulator, http: httpx.Client) -> None:
    """``breaker_failures=0``: ten failures in a row, each still asks LWA."""
    s = shell(breaker_failures=0)
    emu.fault("503")
    for i in range(10):
        calls = emu.calls["tokeninfo"]
        response = http.get(s.url + "/me", headers=bearer(f"Atza|{i:03d}" + "o" * 400))
        assert_error(response, "ServerError", 500)
        assert emu.calls["tokeninfo"] > calls
