"""LWAWSGIMiddleware's verification and cache through a threaded WSGI server against the
emulator: warm tokens make no LWA call, concurrent cold requests make one, a failure is
shared only with its waiters, users are never mixed up across threads, every fault fails
closed and recovers, expiry is never outlived, revocation is seen after the TTL and
``invalid_token`` is cached for ``negative_ttl`` (the clock is shared with the emulator)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lwa_middleware.emulator import Emulator

from conftest import FakeClock, ServeWSGI, assert_error, bearer

FAULT_KINDS = ["500", "503", "429", "hang", "non_json", "missing_fields", "reset"]


def burst(count: int, send: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """``send(i)`` from ``count`` threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def job(i: int) -> httpx.Response:
        barrier.wait()
        return send(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(job, range(count)))


def many_connections() -> httpx.Client:
    return httpx.Client(timeout=10, limits=httpx.Limits(max_connections=64))


def test_warm_token_makes_no_lwa_call(
    wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
) -> None:
    url = wsgi_protected()
    user, token = emu.mint_for(name="Ada")
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 1, "profile": 1}
    for _ in range(25):
        assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_route_scopes_rechecked_on_a_cache_hit(
    wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
) -> None:
    url = wsgi_protected(require_scopes={"/zip/*": "postal_code"})
    _, token = emu.mint_for(name="Ada", scopes=("profile",))
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    assert_error(http.get(url + "/zip/1", headers=bearer(token)), "insufficient_scope", 401)
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_thirty_threads_one_new_token_one_call(wsgi_protected: ServeWSGI, emu: Emulator) -> None:
    url = wsgi_protected()
    user, token = emu.mint_for(name="Ada")
    emu.latency(0.2)
    with many_connections() as client:
        responses = burst(30, lambda _: client.get(url + "/me", headers=bearer(token)))
    assert [r.status_code for r in responses] == [200] * 30
    assert {r.json()["user"] for r in responses} == {user.user_id}
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_failure_shared_only_with_its_waiters(
    wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
) -> None:
    url = wsgi_protected()
    user, token = emu.mint_for(name="Ada")
    emu.latency(0.2)
    emu.fault("429", endpoint="tokeninfo")  # never retried: one call is one request
    with many_connections() as client:
        failed = burst(30, lambda _: client.get(url + "/me", headers=bearer(token)))
    for response in failed:
        assert_error(response, "ServerError", 500)
    assert emu.calls == {"tokeninfo": 1, "profile": 0}
    # The failure is not kept: the next request makes its own call.
    assert_error(http.get(url + "/me", headers=bearer(token)), "ServerError", 500)
    assert emu.calls == {"tokeninfo": 2, "profile": 0}
    emu.clear_faults()
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 3, "profile": 1}


def test_many_users_never_mixed_up(wsgi_protected: ServeWSGI, emu: Emulator) -> None:
    url = wsgi_protected()
    users = [emu.mint_for(name=f"User {i}", email=f"u{i}@example.com") for i in range(20)]
    emu.latency(0.01)
    jobs = [users[(i * 7) % len(users)] for i in range(200)]
    with many_connections() as client, ThreadPoolExecutor(max_workers=40) as pool:
        responses = list(
            pool.map(lambda job: client.get(url + "/me", headers=bearer(job[1])), jobs)
        )
    for (user, _), response in zip(jobs, responses):
        body = response.json()
        assert body["user"] == user.user_id
        assert body["remote_user"] == user.user_id
        assert body["name"] == user.name
        assert body["email"] == user.email
    assert emu.calls == {"tokeninfo": len(users), "profile": len(users)}


@pytest.mark.parametrize("endpoint", ["*", "profile"])
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_fails_closed_then_recovers(
    wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client, kind: str, endpoint: str
) -> None:
    url = wsgi_protected(timeout=0.3)
    user, token = emu.mint_for(name="Ada")
    emu.fault(kind, endpoint=endpoint)
    for style_url in (url, wsgi_protected(timeout=0.3, error_style="rfc6750")):
        assert_error(http.get(style_url + "/me", headers=bearer(token)), "ServerError", 500)
    emu.clear_faults()
    response = http.get(url + "/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["user"] == user.user_id


def test_one_quick_retry_survives_one_failure(
    wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
) -> None:
    url = wsgi_protected()
    user, token = emu.mint_for(name="Ada")
    emu.fault("500", endpoint="tokeninfo", times=1)
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 2, "profile": 1}


def test_expiry_never_outlived(
    wsgi_protected: ServeWSGI, emu: Emulator, clock: FakeClock, http: httpx.Client
) -> None:
    url = wsgi_protected(cache_ttl=3600, expiry_leeway=10)
    _, token = emu.mint_for(name="Ada", lifetime=120)
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    clock.advance(100)  # 20 s left: still inside the cache entry (its TTL is 110 s)
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    assert emu.calls["tokeninfo"] == 1
    clock.advance(15)  # 5 s left, inside the leeway: the entry is gone, LWA is asked again
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    assert emu.calls["tokeninfo"] == 2
    clock.advance(6)  # expired: LWA says so, and nothing cached says otherwise
    assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_token", 400)


def test_expired_token_never_served_from_cache(
    wsgi_protected: ServeWSGI, emu: Emulator, clock: FakeClock, http: httpx.Client
) -> None:
    """With no leeway and a long TTL, a request after expiry never gets the cached identity:
    LWA is asked again (failing here, so the answer is a 500, never a 200)."""
    url = wsgi_protected(cache_ttl=3600, expiry_leeway=0)
    _, token = emu.mint_for(name="Ada", lifetime=60)
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    clock.advance(60)
    emu.fault("500")
    assert_error(http.get(url + "/me", headers=bearer(token)), "ServerError", 500)
    emu.clear_faults()
    assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_token", 400)


def test_revocation_seen_after_ttl(
    wsgi_protected: ServeWSGI, emu: Emulator, clock: FakeClock, http: httpx.Client
) -> None:
    url = wsgi_protected(cache_ttl=30)
    _, token = emu.mint_for(name="Ada")
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    emu.revoke(token)
    clock.advance(29)
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200  # still cached
    clock.advance(1)
    assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_token", 400)
    assert emu.calls["tokeninfo"] == 2


def test_invalid_token_cached_for_negative_ttl(
    wsgi_protected: ServeWSGI, emu: Emulator, clock: FakeClock, http: httpx.Client
) -> None:
    url = wsgi_protected(negative_ttl=30)
    bad = "Atza|" + "q" * 400
    for _ in range(3):
        assert_error(http.get(url + "/me", headers=bearer(bad)), "invalid_token", 400)
    assert emu.calls["tokeninfo"] == 1
    clock.advance(29)
    assert_error(http.get(url + "/me", headers=bearer(bad)), "invalid_token", 400)
    assert emu.calls["tokeninfo"] == 1
    clock.advance(1)
    assert_error(http.get(url + "/me", headers=bearer(bad)), "invalid_token", 400)
    assert emu.calls["tokeninfo"] == 2


def test_foreign_audience_cached_negatively(
    wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
) -> None:
    url = wsgi_protected()
    user = emu.add_user(name="Ada")
    foreign = emu.mint(user.user_id, client_id="amzn1.application-oa2-client.someone-else")
    for _ in range(3):
        assert_error(http.get(url + "/me", headers=bearer(foreign)), "invalid_token", 400)
    assert emu.calls == {"tokeninfo": 1, "profile": 0}  # its profile is never fetched
