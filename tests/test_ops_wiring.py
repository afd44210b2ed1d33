"""The operations wiring, both shells, through real servers (uvicorn, wsgiref) against the
emulator (whose faults play LWA failing) and the shared fake clock: the circuit breaker
opens after consecutive failures and then answers ``ServerError`` with ``Retry-After``
without calling LWA, probes once after its window and closes on success, and never counts
``invalid_token`` against LWA; stale-if-error answers an identity expired within the window
while LWA fails, marked ``stale`` for the app, never past the token's expiry, never for a
token LWA rejected, never when off, also from the Redis L2 (whose TTL covers the window);
``stats()``; a Prometheus recorder given as ``recorder=``; OpenTelemetry spans (one cold
request has them, a warm one has none; ``enduser.id`` only with ``trace_user_id``).

The first tests drive the verifiers directly (``httpx.MockTransport``), as the wiring plan
did: the breaker, stale answers and the counters in one scenario per shell.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lwa_middleware import ConfigurationError, LWAMiddleware, LWASettings, LWAWSGIMiddleware
from lwa_middleware.core.breaker import CircuitOpen
from lwa_middleware.core.errors import InvalidToken, LWAUnavailable, Overloaded
from lwa_middleware.core.metrics import Stats
from lwa_middleware.core.stale import is_stale
from lwa_middleware.core.verification import Authority
from lwa_middleware.emulator import Emulator, ServerHandle, serve, serve_wsgi
from lwa_middleware.integrations.prometheus import (
    PrometheusRecorder,
    metrics_app,
    metrics_wsgi_app,
)
from lwa_middleware.login import LWALogin
from lwa_middleware.upstream import verifier as verifier_module
from lwa_middleware.upstream.token_client import AsyncTokenClient, TokenClient
from lwa_middleware.upstream.tracing import (
    ATTR_CACHE,
    ATTR_ERROR_TYPE,
    ATTR_OUTCOME,
    ATTR_STATUS_CODE,
    ATTR_USER_ID,
    SPAN_PROFILE,
    SPAN_TOKENINFO,
    SPAN_VERIFY,
    Tracer,
)
from lwa_middleware.upstream.verifier import AsyncVerifier, Verifier, _copy
from redis_fixtures import SECRET, RedisServer, body_of, redis_server_fixture

from conftest import SHELLS, FakeClock, Teardown, assert_error, bearer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["redis_server_fixture"]  # the fixture, imported to register it

Middleware = LWAMiddleware | LWAWSGIMiddleware

# The verifiers directly (the wiring plan's trial) ----------------------------------------

CLIENT = "amzn1.application-oa2-client.ours"
A = "Atza|" + "A1b2-_" * 60
B = "Atza|" + "B2c3-_" * 60


class Upstream:
    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.mode == "down":
            return httpx.Response(503)
        if self.mode == "invalid":
            return httpx.Response(400, json={"error": "invalid_token"})
        if request.url.path.endswith("tokeninfo"):
            return httpx.Response(
                200, json={"user_id": "amzn1.account.U", "aud": CLIENT, "exp": 3600, "iat": 1}
            )
        return httpx.Response(200, json={"user_id": "amzn1.account.U", "name": "N"})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


SETTINGS = LWASettings(
    client_ids=(CLIENT,),
    cache_ttl=60,
    stale_if_error=120,
    breaker_failures=2,
    breaker_open_seconds=10,
)


def scenario(verify: Any, upstream: Upstream, clock: Clock, stats: Any) -> None:
    t0 = clock.now
    assert not is_stale(verify(A))
    clock.now = t0 + 61  # A's L1 entry expired a second ago
    upstream.mode = "down"
    answer = verify(A)
    assert is_stale(answer) and answer.stale
    with pytest.raises(LWAUnavailable):
        verify(B)  # never cached: nothing stale to serve; the 2nd failure opens the breaker
    assert stats()["breaker"]["state"] == "open"
    calls = upstream.calls
    clock.now = t0 + 62
    assert verify(A).stale  # CircuitOpen, then stale
    with pytest.raises(CircuitOpen) as caught:
        verify(B)
    assert caught.value.retry_after == 9
    assert upstream.calls == calls  # no LWA call while open
    clock.now = t0 + 72
    upstream.mode = "ok"
    assert not verify(A).stale  # the probe: closes
    assert stats()["breaker"]["state"] == "closed"
    # A rejected token is never served stale.
    clock.now = t0 + 72 + 61
    upstream.mode = "invalid"
    with pytest.raises(InvalidToken):
        verify(A)
    upstream.mode = "down"
    with pytest.raises(InvalidToken):  # the rejection cache answers (negative_ttl)
        verify(A)
    view = stats()
    assert json.loads(json.dumps(view)) == view
    assert view["stale_answers"] == 2
    assert view["cache"]["l1"]["miss"] >= 5
    assert view["lwa_calls"]["tokeninfo"]["503"] >= 2
    assert view["lwa_calls"]["profile"]["200"] >= 2
    assert view["breaker"]["changes"] == 3 and view["breaker"]["opens"] == 1


def test_sync_verifier() -> None:
    upstream, clock = Upstream(), Clock()
    verifier = Verifier(SETTINGS, clock=clock, transport=httpx.MockTransport(upstream))
    scenario(verifier.verify, upstream, clock, verifier.stats)


def test_async_verifier() -> None:
    upstream, clock = Upstream(), Clock()

    async def main() -> None:
        verifier = AsyncVerifier(SETTINGS, clock=clock, transport=httpx.MockTransport(upstream))
        try:
            await async_scenario(verifier, upstream, clock)
        finally:
            await verifier.aclose()

    asyncio.run(main())


async def async_scenario(verifier: AsyncVerifier, upstream: Upstream, clock: Clock) -> None:
    t0 = clock.now
    assert not is_stale(await verifier.verify(A))
    clock.now = t0 + 61
    upstream.mode = "down"
    assert (await verifier.verify(A)).stale
    with pytest.raises(LWAUnavailable):
        await verifier.verify(B)
    assert verifier.stats()["breaker"]["state"] == "open"
    # Concurrent misses for A while open: all stale, no LWA call.
    calls = upstream.calls
    clock.now = t0 + 62
    answers = await asyncio.gather(*(verifier.verify(A) for _ in range(20)))
    assert all(a.stale for a in answers) and upstream.calls == calls
    clock.now = t0 + 72
    upstream.mode = "ok"
    assert not (await verifier.verify(A)).stale
    assert verifier.stats()["breaker"]["state"] == "closed"
    assert verifier.stats()["stale_answers"] == 21


def test_waiters_copy_keeps_retry_after() -> None:
    """A waiter on a shared flight gets its own copy of the leader's error, countdown kept."""
    copy = _copy(CircuitOpen(retry_after=7))
    assert isinstance(copy, CircuitOpen) and copy.retry_after == 7
    overloaded, unavailable = _copy(Overloaded()), _copy(LWAUnavailable())
    assert isinstance(overloaded, Overloaded) and overloaded.retry_after == 1
    assert isinstance(unavailable, LWAUnavailable) and unavailable.retry_after is None


def test_overloaded_is_never_answered_stale() -> None:
    """``Overloaded`` is our own fan-out cap, not LWA failing: no stale answer for it."""
    upstream, clock = Upstream(), Clock()
    verifier = Verifier(SETTINGS, clock=clock, transport=httpx.MockTransport(upstream))
    verifier.verify(A)
    clock.now += 61
    authority: Authority = verifier.authority
    key = authority.key(A)
    assert authority.fallback(key, Overloaded(), clock.now) is None
    assert authority.fallback(key, InvalidToken(), clock.now) is None
    assert authority.fallback(key, LWAUnavailable(), clock.now) is not None
    assert authority.fallback(key, CircuitOpen(), clock.now) is not None


def test_l1_keeps_expired_entries_only_as_misses() -> None:
    """Within the window an expired entry stays in L1, but every normal lookup misses it."""
    upstream, clock = Upstream(), Clock()
    verifier = Verifier(SETTINGS, clock=clock, transport=httpx.MockTransport(upstream))
    verifier.verify(A)
    authority = verifier.authority
    key = authority.key(A)
    clock.now += 61
    assert authority.cached(key, clock.now) is None
    assert verifier.cached_raw(A.encode()) is None
    assert authority.cache.peek(key) is not None  # kept for stale-if-error
    clock.now += 120
    assert authority.cached(key, clock.now) is None
    assert authority.cache.peek(key) is None  # past the window: gone


# Through real servers --------------------------------------------------------------------


async def echo(request: Request) -> JSONResponse:
    identity = request.scope.get("lwa")
    return JSONResponse(
        {
            "user": None if identity is None else identity.user_id,
            "stale": None if identity is None else identity.stale,
        }
    )


def asgi_echo() -> Starlette:
    return Starlette(routes=[Route("/{path:path}", echo)])


def wsgi_echo(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    identity = environ.get("lwa")
    body = {
        "user": None if identity is None else identity.user_id,
        "stale": None if identity is None else identity.stale,
    }
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(body).encode()]


Start = Callable[..., tuple[str, Middleware]]


def _stop_and_close(handle: ServerHandle, middleware: LWAWSGIMiddleware) -> None:
    handle.stop()
    middleware.close()


@pytest.fixture(params=SHELLS)
def start(
    request: pytest.FixtureRequest,
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    teardown_later: Teardown,
) -> Iterator[Start]:
    """``start(**options) -> (base URL, middleware)``: the echo app behind one shell's
    middleware (``asgi``: uvicorn with lifespan; ``wsgi``: threaded wsgiref)."""
    kind: str = request.param
    stops: list[Callable[[], None]] = []

    def run(**options: Any) -> tuple[str, Middleware]:
        defaults: dict[str, Any] = {
            "client_ids": [emu.client_id],
            "api_base_url": emu_url,
            "clock": clock,
        }
        options = defaults | options
        middleware: Middleware
        if kind == "asgi":
            middleware = LWAMiddleware(asgi_echo(), **options)
            handle = serve(middleware, lifespan="on")
            stops.append(handle.stop)
        else:
            middleware = LWAWSGIMiddleware(wsgi_echo, **options)
            handle = serve_wsgi(middleware)
            stops.append(functools.partial(_stop_and_close, handle, middleware))
        return handle.url, middleware

    yield run
    for stop in stops:
        teardown_later(stop)


def get(http: httpx.Client, url: str, token: str) -> httpx.Response:
    return http.get(url + "/me", headers=bearer(token))


def ok(response: httpx.Response, user: str, *, stale: bool = False) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"user": user, "stale": stale}


def bogus(i: int) -> str:
    """A well-formed token LWA never issued (``invalid_token``)."""
    return f"Atza|bogus{i}" + "z" * 400


class TestBreaker:
    def test_opens_fails_fast_probes_and_closes(
        self, start: Start, emu: Emulator, clock: FakeClock, http: httpx.Client
    ) -> None:
        url, app = start(breaker_failures=3, breaker_open_seconds=10)
        user, token = emu.mint_for(name="Ada")
        bob, other = emu.mint_for(name="Bob")
        emu.fault("503")
        for _ in range(3):  # three consecutive failures
            response = get(http, url, token)
            assert_error(response, "ServerError", 500)
            assert "retry-after" not in response.headers  # LWA failing: no countdown
        assert app.stats()["breaker"]["state"] == "open"
        calls = emu.calls
        for candidate in (token, other):  # open: refused without calling LWA
            response = get(http, url, candidate)
            assert_error(response, "ServerError", 500)
            assert 1 <= int(response.headers["retry-after"]) <= 10
        assert emu.calls == calls
        clock.advance(10)  # half open: one probe, which fails (the fault is still on)
        assert_error(get(http, url, token), "ServerError", 500)
        assert emu.calls["tokeninfo"] > calls["tokeninfo"]
        assert app.stats()["breaker"]["state"] == "open"
        calls = emu.calls
        response = get(http, url, token)  # open again, for another window
        assert_error(response, "ServerError", 500)
        assert "retry-after" in response.headers and emu.calls == calls
        emu.clear_faults()
        clock.advance(10)
        ok(get(http, url, token), user.user_id)  # the probe succeeds: closed
        ok(get(http, url, other), bob.user_id)
        breaker = app.stats()["breaker"]
        assert breaker["state"] == "closed" and breaker["enabled"]
        assert breaker["opens"] == 2 and breaker["consecutive_failures"] == 0
        # closed>open, open>half_open, half_open>open, open>half_open, half_open>closed
        assert breaker["changes"] == 5
        assert breaker["retry_after"] is None

    def test_invalid_token_is_a_success(
        self, start: Start, emu: Emulator, http: httpx.Client
    ) -> None:
        url, app = start(breaker_failures=2)
        for i in range(5):  # LWA answering invalid_token is LWA working: never opens
            assert_error(get(http, url, bogus(i)), "invalid_token", 400)
        assert emu.calls["tokeninfo"] == 5
        emu.fault("503")
        assert_error(get(http, url, bogus(10)), "ServerError", 500)  # one failure
        assert app.stats()["breaker"]["consecutive_failures"] == 1
        emu.clear_faults()
        assert_error(get(http, url, bogus(11)), "invalid_token", 400)  # resets the count
        emu.fault("503")
        assert_error(get(http, url, bogus(12)), "ServerError", 500)
        breaker = app.stats()["breaker"]
        assert breaker["state"] == "closed" and breaker["consecutive_failures"] == 1
        assert breaker["opens"] == 0

    def test_off_with_zero(self, start: Start, emu: Emulator, http: httpx.Client) -> None:
        url, app = start(breaker_failures=0)
        _, token = emu.mint_for(name="Ada")
        emu.fault("503", endpoint="tokeninfo")
        for i in range(8):
            assert_error(get(http, url, token), "ServerError", 500)
            assert emu.calls["tokeninfo"] == 2 * (i + 1)  # every request asks (one retry)
        breaker = app.stats()["breaker"]
        assert breaker == {"state": "closed", "changes": 0, "enabled": False}


class TestStaleIfError:
    def test_served_within_the_window_while_lwa_fails(
        self, start: Start, emu: Emulator, clock: FakeClock, http: httpx.Client
    ) -> None:
        url, app = start(cache_ttl=60, stale_if_error=120, breaker_failures=0)
        user, token = emu.mint_for(name="Ada")
        ok(get(http, url, token), user.user_id)
        clock.advance(61)  # the entry expired a second ago; LWA goes down
        emu.fault("503")
        for _ in range(3):
            ok(get(http, url, token), user.user_id, stale=True)  # the app sees .stale
        view = app.stats()
        assert view["stale_answers"] == 3 and view["verifications"]["stale"] == 3
        assert view["errors"]["ServerError"] == 0
        clock.advance(119)  # 180 s past the deadline: past the window
        assert_error(get(http, url, token), "ServerError", 500)
        emu.clear_faults()
        ok(get(http, url, token), user.user_id)  # LWA back: fresh again
        ok(get(http, url, token), user.user_id)  # and warm
        assert app.stats()["stale_answers"] == 3

    def test_an_expired_entry_is_never_answered_while_lwa_works(
        self, start: Start, emu: Emulator, clock: FakeClock, http: httpx.Client
    ) -> None:
        """Kept in L1 for the window, an expired entry is still a miss on the warm path and
        the full path: LWA is asked, and its answer (fresh) is what the app gets."""
        url, app = start(cache_ttl=60, stale_if_error=120)
        user, token = emu.mint_for(name="Ada")
        ok(get(http, url, token), user.user_id)
        clock.advance(61)
        assert app.stats()["l1_entries"] == 1  # held, for stale-if-error only
        ok(get(http, url, token), user.user_id)
        assert emu.calls == {"tokeninfo": 2, "profile": 2}
        emu.revoke(token)
        clock.advance(61)
        assert_error(get(http, url, token), "invalid_token", 400)  # not the kept entry
        assert app.stats()["stale_answers"] == 0

    def test_never_past_the_tokens_expiry(
        self, start: Start, emu: Emulator, clock: FakeClock, http: httpx.Client
    ) -> None:
        url, _ = start(cache_ttl=3600, expiry_leeway=10, stale_if_error=600, breaker_failures=0)
        user, token = emu.mint_for(name="Ada", lifetime=100)
        ok(get(http, url, token), user.user_id)
        clock.advance(95)  # inside the leeway: the entry ended, the token has 5 s left
        emu.fault("500")
        ok(get(http, url, token), user.user_id, stale=True)
        clock.advance(6)  # past the token's own expiry: no one can vouch for it
        assert_error(get(http, url, token), "ServerError", 500)

    def test_never_for_a_rejected_token(
        self, start: Start, emu: Emulator, clock: FakeClock, http: httpx.Client
    ) -> None:
        url, app = start(cache_ttl=60, negative_ttl=30, stale_if_error=600, breaker_failures=0)
        user, token = emu.mint_for(name="Ada")
        ok(get(http, url, token), user.user_id)
        emu.revoke(token)
        clock.advance(61)
        assert_error(get(http, url, token), "invalid_token", 400)  # LWA says revoked
        emu.fault("503")
        assert_error(get(http, url, token), "invalid_token", 400)  # the rejection answers
        clock.advance(31)  # the rejection ended; the identity was dropped with it
        assert_error(get(http, url, token), "ServerError", 500)
        assert app.stats()["stale_answers"] == 0

    def test_off_by_default(
        self, start: Start, emu: Emulator, clock: FakeClock, http: httpx.Client
    ) -> None:
        url, app = start(cache_ttl=60)
        user, token = emu.mint_for(name="Ada")
        ok(get(http, url, token), user.user_id)
        clock.advance(61)
        emu.fault("503")
        assert_error(get(http, url, token), "ServerError", 500)
        assert app.stats()["stale_answers"] == 0
        assert app.stats()["l1_entries"] == 0  # nothing kept past its deadline

    def test_breaker_open_serves_stale_and_refuses_the_rest(
        self, start: Start, emu: Emulator, clock: FakeClock, http: httpx.Client
    ) -> None:
        url, app = start(cache_ttl=60, stale_if_error=120, breaker_failures=2)
        user, token = emu.mint_for(name="Ada")
        _, cold = emu.mint_for(name="Bob")  # never verified: nothing to answer stale
        ok(get(http, url, token), user.user_id)
        clock.advance(61)
        emu.fault("503")
        ok(get(http, url, token), user.user_id, stale=True)  # failure 1
        assert_error(get(http, url, cold), "ServerError", 500)  # failure 2: opens
        calls = emu.calls
        for _ in range(3):
            ok(get(http, url, token), user.user_id, stale=True)  # CircuitOpen, then stale
        response = get(http, url, cold)
        assert_error(response, "ServerError", 500)
        assert 1 <= int(response.headers["retry-after"]) <= 10
        assert emu.calls == calls  # no LWA call while open
        assert app.stats()["stale_answers"] == 4

    def test_concurrent_requests_while_open_all_stale(
        self, start: Start, emu: Emulator, clock: FakeClock
    ) -> None:
        url, app = start(cache_ttl=60, stale_if_error=120, breaker_failures=1)
        user, token = emu.mint_for(name="Ada")
        with httpx.Client(base_url=url, timeout=10) as client:
            ok(client.get("/me", headers=bearer(token)), user.user_id)
            clock.advance(61)
            emu.fault("503")
            ok(client.get("/me", headers=bearer(token)), user.user_id, stale=True)  # opens
            calls = emu.calls
            with ThreadPoolExecutor(max_workers=20) as pool:
                responses = list(
                    pool.map(lambda _: client.get("/me", headers=bearer(token)), range(40))
                )
        for response in responses:
            ok(response, user.user_id, stale=True)
        assert emu.calls == calls
        assert app.stats()["stale_answers"] == 41


class TestStaleFromRedis:
    def test_another_worker_answers_stale_from_l2(
        self,
        start: Start,
        emu: Emulator,
        clock: FakeClock,
        http: httpx.Client,
        redis_server: RedisServer,
    ) -> None:
        options: dict[str, Any] = {
            "cache_ttl": 60,
            "stale_if_error": 120,
            "breaker_failures": 0,
            "redis_url": redis_server.url,
            "secret_key": SECRET,
        }
        (first, _), (second, other) = start(**options), start(**options)
        user, token = emu.mint_for(name="Ada")
        ok(get(http, first, token), user.user_id)
        keys = redis_server.client().keys("lwa:v2:*")
        keys = [key for key in keys if b":lock:" not in key]
        assert len(keys) == 1
        # Redis keeps the entry past its fresh end (60 s) for the window (120 s more).
        ttl = redis_server.client().pttl(keys[0])
        assert 170_000 < ttl <= 180_000
        value = body_of(redis_server.client().get(keys[0]))
        assert value["d"] - value["at"] == pytest.approx(60, abs=0.01)  # the fresh end
        clock.advance(61)
        emu.fault("503")
        # The second worker never saw the token: L2's expired entry, answered stale.
        ok(get(http, second, token), user.user_id, stale=True)
        view = other.stats()
        assert view["stale_answers"] == 1
        assert view["l2"]["stale"] >= 1 and view["l2"]["hits"] == 0
        assert view["cache"]["l2"]["hit"] == 0 and view["cache"]["l2"]["miss"] >= 1

    def test_an_expired_l2_entry_is_never_a_fresh_hit(
        self,
        start: Start,
        emu: Emulator,
        clock: FakeClock,
        http: httpx.Client,
        redis_server: RedisServer,
    ) -> None:
        options: dict[str, Any] = {
            "cache_ttl": 60,
            "stale_if_error": 120,
            "redis_url": redis_server.url,
            "secret_key": SECRET,
        }
        (first, _), (second, other) = start(**options), start(**options)
        user, token = emu.mint_for(name="Ada")
        ok(get(http, first, token), user.user_id)
        assert emu.calls["tokeninfo"] == 1
        clock.advance(61)  # the L2 entry is still in Redis, past its fresh end
        ok(get(http, second, token), user.user_id)  # LWA is asked, not L2 believed
        assert emu.calls["tokeninfo"] == 2
        assert other.stats()["l2"]["hits"] == 0

    def test_retention_never_past_the_tokens_expiry(
        self, start: Start, emu: Emulator, http: httpx.Client, redis_server: RedisServer
    ) -> None:
        url, _ = start(
            cache_ttl=3600,
            expiry_leeway=10,
            stale_if_error=600,
            redis_url=redis_server.url,
            secret_key=SECRET,
        )
        user, token = emu.mint_for(name="Ada", lifetime=100)
        ok(get(http, url, token), user.user_id)
        client = redis_server.client()
        (key,) = [key for key in client.keys("lwa:v2:*") if b":lock:" not in key]
        assert 95_000 < client.pttl(key) <= 100_000  # the token's expiry, not 90 + 600 s


class TestStats:
    def test_counts(self, start: Start, emu: Emulator, http: httpx.Client) -> None:
        url, app = start()
        user, token = emu.mint_for(name="Ada")
        ok(get(http, url, token), user.user_id)  # cold
        for _ in range(3):
            ok(get(http, url, token), user.user_id)  # warm
        assert_error(http.get(url + "/me"), "invalid_request", 400)
        assert_error(get(http, url, bogus(1)), "invalid_token", 400)
        assert_error(get(http, url, bogus(1)), "invalid_token", 400)  # the rejection cache
        view = app.stats()
        assert json.loads(json.dumps(view)) == view  # JSON-safe
        assert view["verifications"]["ok"] == 4
        assert view["verifications"]["invalid_request"] == 1
        assert view["verifications"]["invalid_token"] == 2
        assert view["errors"]["invalid_request"] == 1
        assert view["errors"]["invalid_token"] == 2
        assert view["cache"]["l1"]["hit"] == 3  # the warm path's
        assert view["cache"]["l1"]["miss"] >= 2
        assert view["lwa_calls"]["tokeninfo"] == {"200": 1, "400": 1}
        assert view["lwa_calls"]["profile"]["200"] == 1
        assert view["lwa_calls"]["token"] == {}
        latency = view["lwa_latency_seconds"]["tokeninfo"]
        assert latency["count"] == 2 and latency["buckets"]["+Inf"] == 2
        assert 0 < latency["sum"] < 5
        assert view["breaker"] == {
            "state": "closed",
            "changes": 0,
            "consecutive_failures": 0,
            "opens": 0,
            "failure_threshold": 5,
            "open_seconds": 10.0,
            "retry_after": None,
            "enabled": True,
        }
        assert view["l1_entries"] == 1
        assert view["l2"]["hits"] == 0 and view["stale_answers"] == 0
        assert view["fanout_rejections"] == 0 and view["redis_errors"] == 0


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


class TestPrometheus:
    def test_recorder_exposes_the_counters(
        self,
        start: Start,
        emu: Emulator,
        clock: FakeClock,
        http: httpx.Client,
        teardown_later: Teardown,
    ) -> None:
        registry = CollectorRegistry()
        url, app = start(
            recorder=PrometheusRecorder(registry),
            cache_ttl=60,
            stale_if_error=120,
            breaker_failures=2,
        )
        user, token = emu.mint_for(name="Ada")
        ok(get(http, url, token), user.user_id)
        ok(get(http, url, token), user.user_id)
        assert_error(get(http, url, bogus(2)), "invalid_token", 400)
        clock.advance(61)
        emu.fault("503")
        ok(get(http, url, token), user.user_id, stale=True)
        assert_error(get(http, url, bogus(3)), "ServerError", 500)  # opens the breaker
        assert sample(registry, "lwa_verifications_total", outcome="ok") == 2
        assert sample(registry, "lwa_verifications_total", outcome="stale") == 1
        assert sample(registry, "lwa_verifications_total", outcome="invalid_token") == 1
        assert sample(registry, "lwa_verifications_total", outcome="server_error") == 1
        assert sample(registry, "lwa_cache_requests_total", level="l1", result="hit") == 1
        assert sample(registry, "lwa_cache_requests_total", level="l1", result="miss") >= 3
        assert sample(registry, "lwa_upstream_requests_total", endpoint="tokeninfo", status="200")
        assert sample(registry, "lwa_upstream_requests_total", endpoint="tokeninfo", status="503")
        assert sample(registry, "lwa_upstream_latency_seconds_count", endpoint="tokeninfo") >= 4
        assert sample(registry, "lwa_errors_total", code="invalid_token") == 1
        assert sample(registry, "lwa_errors_total", code="ServerError") == 1
        assert sample(registry, "lwa_breaker_state") == 2  # open
        assert sample(registry, "lwa_stale_answers_total") == 1
        # The built-in counters saw the same events (the recorder is fanned out beside them).
        view = app.stats()
        assert view["verifications"]["ok"] == 2 and view["stale_answers"] == 1
        # And the exposition, served as the docs say.
        if isinstance(app, LWAMiddleware):
            handle = serve(metrics_app(registry))
        else:
            handle = serve_wsgi(metrics_wsgi_app(registry))
        try:
            text = http.get(handle.url + "/metrics").text
        finally:
            teardown_later(handle.stop)  # stops it now, in the background
        assert 'lwa_verifications_total{outcome="stale"} 1.0' in text
        assert "lwa_breaker_state 2.0" in text
        assert token not in text and "Atza" not in text


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


class TestSpans:
    def test_cold_request_has_spans_warm_none(
        self,
        start: Start,
        emu: Emulator,
        http: httpx.Client,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
    ) -> None:
        url, _ = start(tracer=Tracer(tracer_provider=provider))
        user, token = emu.mint_for(name="Ada")
        ok(get(http, url, token), user.user_id)
        spans = by_name(exporter)
        assert set(spans) == {SPAN_VERIFY, SPAN_TOKENINFO, SPAN_PROFILE}
        (verify,) = spans[SPAN_VERIFY]
        assert dict(verify.attributes or {}) == {ATTR_CACHE: "none", ATTR_OUTCOME: "ok"}
        for name in (SPAN_TOKENINFO, SPAN_PROFILE):
            (call,) = spans[name]
            assert call.parent is not None and call.parent.span_id == verify.context.span_id
            assert dict(call.attributes or {})[ATTR_STATUS_CODE] == 200
        exporter.clear()
        for _ in range(3):
            ok(get(http, url, token), user.user_id)  # warm: no span at all
        assert exporter.get_finished_spans() == ()

    def test_failure_and_stale_outcomes(
        self,
        start: Start,
        emu: Emulator,
        clock: FakeClock,
        http: httpx.Client,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
    ) -> None:
        url, _ = start(
            tracer=Tracer(tracer_provider=provider),
            cache_ttl=60,
            stale_if_error=120,
            breaker_failures=0,
        )
        user, token = emu.mint_for(name="Ada")
        ok(get(http, url, token), user.user_id)
        clock.advance(61)
        emu.fault("503")
        exporter.clear()
        ok(get(http, url, token), user.user_id, stale=True)
        (verify,) = by_name(exporter)[SPAN_VERIFY]
        assert dict(verify.attributes or {})[ATTR_OUTCOME] == "stale"
        exporter.clear()
        assert_error(get(http, url, bogus(4)), "ServerError", 500)
        (verify,) = by_name(exporter)[SPAN_VERIFY]
        attributes = dict(verify.attributes or {})
        assert attributes[ATTR_OUTCOME] == "server_error"
        assert attributes[ATTR_ERROR_TYPE] == "LWAUnavailable"
        assert verify.status.status_code == StatusCode.ERROR
        assert "Atza" not in json.dumps(
            [dict(span.attributes or {}) for span in exporter.get_finished_spans()]
        )

    @pytest.mark.parametrize("trace_user_id", [False, True])
    def test_user_id_only_with_trace_user_id(
        self,
        start: Start,
        emu: Emulator,
        http: httpx.Client,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
        monkeypatch: pytest.MonkeyPatch,
        trace_user_id: bool,
    ) -> None:
        # The default tracer (the setting's), on this test's provider instead of the global.
        monkeypatch.setattr(
            verifier_module, "Tracer", functools.partial(Tracer, tracer_provider=provider)
        )
        url, _ = start(trace_user_id=trace_user_id)
        user, token = emu.mint_for(name="Ada")
        ok(get(http, url, token), user.user_id)
        (verify,) = by_name(exporter)[SPAN_VERIFY]
        attributes = dict(verify.attributes or {})
        if trace_user_id:
            assert attributes[ATTR_USER_ID] == user.user_id
        else:
            assert ATTR_USER_ID not in attributes
        for span in exporter.get_finished_spans():
            if span.name != SPAN_VERIFY:
                assert ATTR_USER_ID not in dict(span.attributes or {})


def test_stats_recorder_passed_in_sees_every_event(
    start: Start, emu: Emulator, http: httpx.Client
) -> None:
    """A ``Stats`` given as ``recorder=`` counts what ``stats()`` counts."""
    mine = Stats()
    url, app = start(recorder=mine)
    user, token = emu.mint_for(name="Ada")
    ok(get(http, url, token), user.user_id)
    ok(get(http, url, token), user.user_id)
    theirs = app.stats()
    for name in ("verifications", "cache", "lwa_calls", "errors"):
        assert mine.snapshot()[name] == theirs[name]


# Settings ------------------------------------------------------------------------------


class TestSettings:
    def test_defaults(self) -> None:
        settings = LWASettings(client_ids=(CLIENT,))
        assert settings.breaker_failures == 5 and settings.breaker_open_seconds == 10.0
        assert settings.stale_if_error == 0 and settings.trace_user_id is False

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("breaker_failures", -1),
            ("breaker_failures", 1.5),
            ("breaker_failures", True),
            ("breaker_open_seconds", 0),
            ("breaker_open_seconds", float("inf")),
            ("stale_if_error", -1),
            ("stale_if_error", float("nan")),
            ("stale_if_error", "30"),
            ("trace_user_id", "yes"),
            ("trace_user_id", 1),
        ],
    )
    def test_refused(self, name: str, value: Any) -> None:
        with pytest.raises(ConfigurationError, match=name):
            LWASettings(client_ids=(CLIENT,), **{name: value})

    def test_from_env(self) -> None:
        settings = LWASettings.from_env(
            {
                "LWA_CLIENT_IDS": CLIENT,
                "LWA_BREAKER_FAILURES": "0",
                "LWA_BREAKER_OPEN_SECONDS": "2.5",
                "LWA_STALE_IF_ERROR": "30",
                "LWA_TRACE_USER_ID": "on",
            }
        )
        assert settings.breaker_failures == 0 and settings.breaker_open_seconds == 2.5
        assert settings.stale_if_error == 30.0 and settings.trace_user_id is True
        with pytest.raises(ConfigurationError, match="LWA_BREAKER_FAILURES"):
            LWASettings.from_env({"LWA_CLIENT_IDS": CLIENT, "LWA_BREAKER_FAILURES": "2.5"})

    def test_breaker_off_means_no_breaker(self) -> None:
        verifier = Verifier(LWASettings(client_ids=(CLIENT,), breaker_failures=0))
        assert verifier.breaker is None
        verifier.close()


# The sign-in's token endpoint calls ------------------------------------------------------


def grant_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": "Atza|" + "n" * 400,
            "refresh_token": "Atzr|" + "r" * 400,
            "token_type": "bearer",
            "expires_in": 3600,
        },
    )


def test_token_client_counts_each_request() -> None:
    stats = Stats()
    client = TokenClient(
        "https://api.amazon.com", transport=httpx.MockTransport(grant_answer), recorder=stats
    )
    client.refresh("Atzr|" + "r" * 400, client_id=CLIENT)
    client.close()

    async def main() -> None:
        aclient = AsyncTokenClient(
            "https://api.amazon.com", transport=httpx.MockTransport(grant_answer), recorder=stats
        )
        await aclient.refresh("Atzr|" + "r" * 400, client_id=CLIENT)
        await aclient.aclose()

    asyncio.run(main())
    view = stats.snapshot()
    assert view["lwa_calls"]["token"] == {"200": 2}
    assert view["lwa_latency_seconds"]["token"]["count"] == 2


def test_login_token_client_reports_to_the_middleware() -> None:
    login = LWALogin(CLIENT, redirect_uri="https://app.example/auth/callback", secret_key="k" * 32)
    app = LWAMiddleware(asgi_echo(), client_ids=[CLIENT], login=login)
    assert app._refresh is not None and app._refresh.client.recorder is app.recorder
