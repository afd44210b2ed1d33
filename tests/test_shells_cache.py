"""Both shells' verification and cache against the emulator: warm tokens make no LWA call,
concurrent cold requests make one, a failure is shared only with its waiters, users are
never mixed up, every fault fails closed and recovers, one quick retry, expiry is never
outlived, revocation is seen after the TTL and rejections are cached for ``negative_ttl``
(the clock is shared with the emulator).

Each test runs once per shell (the ``served`` fixture in ``conftest.py``); concurrent
requests come from client threads (it is HTTP either way).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lwa_middleware.emulator import Emulator

from conftest import FakeClock, Served, assert_error, bearer

FAULT_KINDS = ["500", "503", "429", "hang", "non_json", "missing_fields", "reset"]


def concurrently(url: str, tokens: list[str]) -> list[httpx.Response]:
    """GET ``/me`` once per token, from up to fifty threads at once."""
    limits = httpx.Limits(max_connections=64)
    with (
        httpx.Client(base_url=url, timeout=10, limits=limits) as client,
        ThreadPoolExecutor(max_workers=min(len(tokens), 50)) as pool,
    ):
        return list(pool.map(lambda token: client.get("/me", headers=bearer(token)), tokens))


def test_warm_token_makes_no_lwa_call(served: Served, emu: Emulator, http: httpx.Client) -> None:
    url = served()
    user, token = emu.mint_for(name="Ada")
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 1, "profile": 1}
    for _ in range(25):
        assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_route_scopes_rechecked_on_a_cache_hit(
    served: Served, emu: Emulator, http: httpx.Client
) -> None:
    url = served(require_scopes={"/zip/*": "postal_code"})
    _, token = emu.mint_for(name="Ada", scopes=("profile",))
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    assert_error(http.get(url + "/zip/1", headers=bearer(token)), "insufficient_scope", 401)
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_foreign_audience_cached_negatively(
    served: Served, emu: Emulator, http: httpx.Client
) -> None:
    url = served()
    user = emu.add_user(name="Ada")
    foreign = emu.mint(user.user_id, client_id="amzn1.application-oa2-client.someone-else")
    for _ in range(3):
        assert_error(http.get(url + "/me", headers=bearer(foreign)), "invalid_token", 400)
    # WSGI never fetches its profile; ASGI fetched it alongside token-info, once.
    profile = 1 if served.profile_with_token_info else 0
    assert emu.calls == {"tokeninfo": 1, "profile": profile}


def test_concurrent_cold_requests_make_one_call(served: Served, emu: Emulator) -> None:
    url = served()
    user, token = emu.mint_for(name="Ada")
    emu.latency(1.0)  # wide: all fifty must arrive while the first call is out
    responses = concurrently(url, [token] * 50)
    assert [r.status_code for r in responses] == [200] * 50
    assert {r.json()["user"] for r in responses} == {user.user_id}
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


@pytest.mark.parametrize(
    ("kind", "tries"),
    [pytest.param("429", 1, id="429-not-retried"), pytest.param("503", 2, id="503-retried")],
)
def test_failure_shared_only_with_its_waiters(
    served: Served, emu: Emulator, http: httpx.Client, kind: str, tries: int
) -> None:
    url = served()
    user, token = emu.mint_for(name="Ada")
    profile = 1 if served.profile_with_token_info else 0  # ASGI asks for it alongside
    emu.latency(1.0)
    emu.fault(kind, endpoint="tokeninfo")
    for response in concurrently(url, [token] * 30):
        assert_error(response, "ServerError", 500)
    assert emu.calls == {"tokeninfo": tries, "profile": profile}  # one flight for thirty
    emu.latency(0)
    # The failure is not kept: the next request makes its own call.
    assert_error(http.get(url + "/me", headers=bearer(token)), "ServerError", 500)
    assert emu.calls == {"tokeninfo": 2 * tries, "profile": 2 * profile}
    emu.clear_faults()
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 2 * tries + 1, "profile": 2 * profile + 1}


def test_many_users_never_mixed_up(served: Served, emu: Emulator) -> None:
    url = served()
    users = [emu.mint_for(name=f"User {i}", email=f"u{i}@example.com") for i in range(40)]
    emu.latency(0.02)
    jobs = [users[(i * 7) % len(users)] for i in range(200)]
    responses = concurrently(url, [token for _, token in jobs])
    for (user, _), response in zip(jobs, responses):
        body = response.json()
        assert body["user"] == user.user_id
        assert body["principal"] == user.user_id
        assert body["name"] == user.name
        assert body["email"] == user.email
    assert emu.calls == {"tokeninfo": len(users), "profile": len(users)}


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_fails_closed_then_recovers(
    served: Served, emu: Emulator, http: httpx.Client, kind: str
) -> None:
    urls = [served(timeout=0.3), served(timeout=0.3, error_style="rfc6750")]
    user, token = emu.mint_for(name="Ada")
    for endpoint in ("*", "profile"):
        emu.fault(kind, endpoint=endpoint)
        for url in urls:
            response = http.get(url + "/me", headers=bearer(token))
            assert response.status_code == 500, (endpoint, url)
            assert_error(response, "ServerError", 500)
        emu.clear_faults()
    for url in urls:
        response = http.get(url + "/me", headers=bearer(token))
        assert response.status_code == 200
        assert response.json()["user"] == user.user_id


def test_one_quick_retry_survives_one_failure(
    served: Served, emu: Emulator, http: httpx.Client
) -> None:
    url = served()
    user, token = emu.mint_for(name="Ada")
    emu.fault("500", endpoint="tokeninfo", times=1)
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 2, "profile": 1}


def test_expiry_never_outlived(
    served: Served, emu: Emulator, clock: FakeClock, http: httpx.Client
) -> None:
    url = served(cache_ttl=3600, expiry_leeway=10)
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
    served: Served, emu: Emulator, clock: FakeClock, http: httpx.Client
) -> None:
    """With no leeway and a long TTL, a request after expiry never gets the cached identity:
    LWA is asked again (failing here, so the answer is a 500, never a 200)."""
    url = served(cache_ttl=3600, expiry_leeway=0)
    _, token = emu.mint_for(name="Ada", lifetime=60)
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    clock.advance(60)
    emu.fault("500")
    assert_error(http.get(url + "/me", headers=bearer(token)), "ServerError", 500)
    emu.clear_faults()
    assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_token", 400)


def test_revocation_seen_after_ttl(
    served: Served, emu: Emulator, clock: FakeClock, http: httpx.Client
) -> None:
    url = served(cache_ttl=30)
    _, token = emu.mint_for(name="Ada")
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    emu.revoke(token)
    clock.advance(29)
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200  # still cached
    clock.advance(1)
    assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_token", 400)
    assert emu.calls["tokeninfo"] == 2


def test_invalid_token_cached_for_negative_ttl(
    served: Served, emu: Emulator, clock: FakeClock, http: httpx.Client
) -> None:
    url = served(negative_ttl=30)
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
