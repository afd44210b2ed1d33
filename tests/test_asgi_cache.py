"""LWAMiddleware's verification and cache through uvicorn against the emulator: warm tokens
make no LWA call, concurrent cold requests make one, expiry is never outlived, revocation is
seen after the TTL, users are never mixed up, faults fail closed and recover."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from lwa_middleware.emulator import Emulator

from conftest import FakeClock, ServeProtected, bearer

pytestmark = pytest.mark.anyio


def test_profile_attached(protected: ServeProtected, emu: Emulator) -> None:
    url = protected()
    user, token = emu.mint_for(
        name="Ada Lovelace", email="ada@example.com", scopes=("profile", "postal_code")
    )
    body = httpx.get(url + "/me", headers=bearer(token)).json()
    assert body == {
        "user": user.user_id,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "postal_code": "98101",
        "scopes": ["postal_code", "profile", "profile:user_id"],
        "authenticated": True,
        "display_name": "Ada Lovelace",
        "aud": emu.client_id,
    }


def test_user_id_scope_only(protected: ServeProtected, emu: Emulator) -> None:
    url = protected(require_scopes={"/ids/*": "profile:user_id", "/names/*": "profile"})
    user, token = emu.mint_for(name="Ada", scopes=("profile:user_id",))
    body = httpx.get(url + "/ids/1", headers=bearer(token)).json()
    assert body["user"] == user.user_id and body["name"] is None
    assert body["scopes"] == ["profile:user_id"]
    assert httpx.get(url + "/names/1", headers=bearer(token)).status_code == 401
    _, full = emu.mint_for(name="Bob", scopes=("profile",))
    assert httpx.get(url + "/ids/1", headers=bearer(full)).status_code == 200  # ⊇ user_id


def test_warm_token_makes_no_lwa_call(protected: ServeProtected, emu: Emulator) -> None:
    url = protected()
    _, token = emu.mint_for(name="Ada")
    assert httpx.get(url + "/me", headers=bearer(token)).status_code == 200
    assert emu.calls == {"tokeninfo": 1, "profile": 1}
    with httpx.Client(base_url=url, headers=bearer(token)) as client:
        for _ in range(25):
            assert client.get("/me").status_code == 200
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_app_id_accepted_when_configured(protected: ServeProtected, emu: Emulator) -> None:
    user = emu.add_user(name="Ada")
    mobile = emu.mint(user.user_id, client_id="amzn1.application-oa2-client.mobile")
    strict = protected()
    assert httpx.get(strict + "/me", headers=bearer(mobile)).status_code == 400
    lenient = protected(app_ids=[emu.app_id])
    assert httpx.get(lenient + "/me", headers=bearer(mobile)).json()["user"] == user.user_id


async def test_concurrent_cold_requests_make_one_call(
    protected: ServeProtected, emu: Emulator
) -> None:
    url = protected()
    _, token = emu.mint_for(name="Ada")
    emu.latency(0.3)
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=60)) as client:
        responses = await asyncio.gather(
            *(client.get("/me", headers=bearer(token)) for _ in range(50))
        )
    assert [r.status_code for r in responses] == [200] * 50
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


async def test_failure_shared_only_with_its_waiters(
    protected: ServeProtected, emu: Emulator
) -> None:
    url = protected()
    _, token = emu.mint_for(name="Ada")
    emu.latency(0.3)
    emu.fault("503")
    async with httpx.AsyncClient(base_url=url) as client:
        failed = await asyncio.gather(
            *(client.get("/me", headers=bearer(token)) for _ in range(10))
        )
        assert {r.status_code for r in failed} == {500}
        calls_during_failure = emu.calls["tokeninfo"]
        assert calls_during_failure <= 2  # one call (+ its one quick retry) for ten requests
        emu.clear_faults()
        recovered = await client.get("/me", headers=bearer(token))
    assert recovered.status_code == 200  # the failure was not cached
    assert emu.calls["tokeninfo"] == calls_during_failure + 1


def test_expiry_never_outlived(protected: ServeProtected, emu: Emulator, clock: FakeClock) -> None:
    url = protected(cache_ttl=3600, expiry_leeway=10)
    _, token = emu.mint_for(name="Ada", lifetime=120)
    assert httpx.get(url + "/me", headers=bearer(token)).status_code == 200
    clock.advance(100)  # 20 s left: still inside the cache entry (TTL 110 s)
    assert httpx.get(url + "/me", headers=bearer(token)).status_code == 200
    assert emu.calls["tokeninfo"] == 1
    clock.advance(15)  # 5 s left, inside the leeway: the entry is gone, LWA is asked again
    assert httpx.get(url + "/me", headers=bearer(token)).status_code == 200
    assert emu.calls["tokeninfo"] == 2
    clock.advance(6)  # expired: LWA says so, and nothing cached says otherwise
    response = httpx.get(url + "/me", headers=bearer(token))
    assert response.status_code == 400 and response.json()["error"] == "invalid_token"


def test_expired_token_never_served_from_cache(
    protected: ServeProtected, emu: Emulator, clock: FakeClock
) -> None:
    """With a leeway of 0 and a long TTL, a request after expiry never gets the cached
    identity: LWA is asked again (here it is failing, so the answer is a 500, never a 200)."""
    url = protected(cache_ttl=3600, expiry_leeway=0)
    _, token = emu.mint_for(name="Ada", lifetime=60)
    assert httpx.get(url + "/me", headers=bearer(token)).status_code == 200
    clock.advance(61)
    emu.fault("500")
    response = httpx.get(url + "/me", headers=bearer(token))
    assert response.status_code == 500 and response.json()["error"] == "ServerError"
    emu.clear_faults()
    response = httpx.get(url + "/me", headers=bearer(token))
    assert response.status_code == 400 and response.json()["error"] == "invalid_token"


def test_revocation_seen_after_ttl(
    protected: ServeProtected, emu: Emulator, clock: FakeClock
) -> None:
    url = protected(cache_ttl=30)
    _, token = emu.mint_for(name="Ada")
    assert httpx.get(url + "/me", headers=bearer(token)).status_code == 200
    emu.revoke(token)
    clock.advance(10)
    assert httpx.get(url + "/me", headers=bearer(token)).status_code == 200  # cached
    clock.advance(25)
    response = httpx.get(url + "/me", headers=bearer(token))
    assert response.status_code == 400 and response.json()["error"] == "invalid_token"


def test_invalid_token_cached_for_negative_ttl(
    protected: ServeProtected, emu: Emulator, clock: FakeClock
) -> None:
    url = protected(negative_ttl=30)
    bad = "Atza|" + "q" * 400
    for _ in range(3):
        assert httpx.get(url + "/me", headers=bearer(bad)).status_code == 400
    assert emu.calls["tokeninfo"] == 1
    clock.advance(31)
    assert httpx.get(url + "/me", headers=bearer(bad)).status_code == 400
    assert emu.calls["tokeninfo"] == 2


async def test_many_users_never_mixed_up(protected: ServeProtected, emu: Emulator) -> None:
    url = protected()
    users = [emu.mint_for(name=f"User {i}", email=f"u{i}@example.com") for i in range(40)]
    emu.latency(0.02)
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=50)) as client:
        jobs = [users[i % len(users)] for i in range(200)]
        responses = await asyncio.gather(*(client.get("/me", headers=bearer(t)) for _, t in jobs))
    for (user, _), response in zip(jobs, responses):
        body = response.json()
        assert body["user"] == user.user_id
        assert body["name"] == user.name and body["email"] == user.email
    assert emu.calls["tokeninfo"] == len(users)


@pytest.mark.parametrize(
    "kind", ["500", "503", "429", "hang", "non_json", "missing_fields", "reset"]
)
def test_every_fault_fails_closed_then_recovers(
    protected: ServeProtected, emu: Emulator, kind: str
) -> None:
    url = protected(timeout=0.5)
    user, token = emu.mint_for(name="Ada")
    emu.fault(kind)
    response = httpx.get(url + "/me", headers=bearer(token), timeout=10)
    assert response.status_code == 500
    assert response.json()["error"] == "ServerError"
    assert "www-authenticate" not in response.headers
    emu.clear_faults()
    response = httpx.get(url + "/me", headers=bearer(token))
    assert response.status_code == 200 and response.json()["user"] == user.user_id


def test_one_quick_retry_survives_one_failure(protected: ServeProtected, emu: Emulator) -> None:
    url = protected()
    user, token = emu.mint_for(name="Ada")
    emu.fault("500", endpoint="tokeninfo", times=1)
    response = httpx.get(url + "/me", headers=bearer(token))
    assert response.status_code == 200 and response.json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 2, "profile": 1}


def test_profile_without_user_id_fails_closed(protected: ServeProtected, emu: Emulator) -> None:
    url = protected()
    _, token = emu.mint_for(name="Ada")
    emu.fault("missing_fields", endpoint="profile")
    response = httpx.get(url + "/me", headers=bearer(token))
    assert response.status_code == 500
