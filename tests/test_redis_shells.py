"""Both shells with the shared Redis cache, through real servers (uvicorn, wsgiref) against
the emulator and a real ``redis-server``: instances share one verification (and one
rejection) with zero extra LWA calls, keys and values hold no token text, every key's TTL
is within the token's remaining life, an L2 hit fills L1 with the remaining time, values
planted by hand (a victim's identity without the fleet's MAC or with a wrong one, one dated
ahead, another client's ``aud``, garbage) are refused or ignored, key rotation, apps with
different secrets never reading each other's entries, a shared cache without
``secret_key`` refused at construction, any Redis error
(down, OOM, auth) leaves requests served through memory and LWA with one WARNING, Redis is
used again once it answers, the async client is one per event loop, and our clients are
closed on shutdown while a client passed in stays the caller's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import websockets

from lwa_middleware import (
    ConfigurationError,
    LWAMiddleware,
    LWASettings,
    LWAWSGILogin,
    LWAWSGIMiddleware,
)
from lwa_middleware.core.l2 import L2Stats
from lwa_middleware.core.revocation import POLL_INTERVAL
from lwa_middleware.emulator import Emulator, serve, serve_wsgi
from lwa_middleware.upstream.verifier import AsyncVerifier, Verifier
from redis_fixtures import (
    SECRET,
    Middleware,
    RedisServer,
    Shell,
    free_port,
    l2_key,
    redis_server_fixture,
    shell_fixture,
    signed,
)

from conftest import OTHER_CLIENT, FakeClock, assert_error, bearer, inner_app, wsgi_whoami

__all__ = ["redis_server_fixture", "shell_fixture"]  # the fixtures, imported to register them

KEY_SHAPE = re.compile(rb"lwa:v2:[0-9a-f]{64}")
VALUE_SHAPE = re.compile(rb'[A-Za-z0-9_-]{43}\{"v":2,.*\}', re.DOTALL)
OLD_SECRET = "redis-tests-old-fleet-secret"
VICTIM = "amzn1.account.VICTIM"


def stats(middleware: Middleware) -> L2Stats:
    return middleware.verifier.authority.l2.stats


def test_two_instances_share_one_verification(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer
) -> None:
    (first, _), (second, other) = (
        shell(redis_url=redis_server.url),
        shell(redis_url=redis_server.url),
    )
    user, token = emu.mint_for(name="Ada")
    assert http.get(first + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 1, "profile": 1}
    for _ in range(3):
        body = http.get(second + "/me", headers=bearer(token)).json()
        assert (body["user"], body["name"], body["email"]) == (user.user_id, "Ada", user.email)
    assert emu.calls == {"tokeninfo": 1, "profile": 1}  # zero extra LWA calls
    assert stats(other).hits == 1  # then L1


def test_asgi_and_wsgi_share_one_verification(
    protected: Callable[..., str],
    wsgi_protected: Callable[..., str],
    emu: Emulator,
    http: httpx.Client,
    redis_server: RedisServer,
) -> None:
    options = {"redis_url": redis_server.url, "secret_key": SECRET}
    asgi, wsgi = protected(**options), wsgi_protected(**options)
    user, token = emu.mint_for(name="Ada")
    assert http.get(wsgi + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert http.get(asgi + "/me", headers=bearer(token)).json()["principal"] == user.user_id
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_route_scopes_checked_on_an_l2_hit(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer
) -> None:
    first, _ = shell(redis_url=redis_server.url)
    second, _ = shell(redis_url=redis_server.url, require_scopes={"/zip/*": "postal_code"})
    _, token = emu.mint_for(name="Ada", scopes=("profile",))
    assert http.get(first + "/me", headers=bearer(token)).status_code == 200
    assert_error(http.get(second + "/zip/1", headers=bearer(token)), "insufficient_scope", 401)
    assert http.get(second + "/me", headers=bearer(token)).status_code == 200
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_rejection_shared_for_negative_ttl(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer, emu_url: str
) -> None:
    (first, _), (second, _) = (shell(redis_url=redis_server.url, negative_ttl=30) for _ in "ab")
    bogus = "Atza|" + "q" * 400
    assert_error(http.get(first + "/me", headers=bearer(bogus)), "invalid_token", 400)
    assert emu.calls["tokeninfo"] == 1
    assert_error(http.get(second + "/me", headers=bearer(bogus)), "invalid_token", 400)
    assert emu.calls["tokeninfo"] == 1
    ttl = redis_server.client().pttl(l2_key(emu_url, bogus))
    assert 0 < ttl <= 30_000


def test_a_rejection_without_negative_ttl_deletes_the_shared_identity(
    shell: Shell,
    emu: Emulator,
    http: httpx.Client,
    redis_server: RedisServer,
    emu_url: str,
    clock: FakeClock,
) -> None:
    """With ``negative_ttl=0`` no rejection is written over a revoked token's identity: it is
    deleted instead, so no worker can serve it later (stale-if-error) once LWA rejected it."""
    url, _ = shell(redis_url=redis_server.url, negative_ttl=0, cache_ttl=5, stale_if_error=600)
    _, token = emu.mint_for(name="Ada")
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    key = l2_key(emu_url, token)
    assert redis_server.client().get(key) is not None
    emu.revoke(token)
    clock.advance(6)
    assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_token", 400)
    assert redis_server.client().get(key) is None


def test_foreign_audience_verdict_is_not_shared(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer, emu_url: str
) -> None:
    """A token issued to another app is refused, but that verdict is this app's only: an
    app of that other client sharing the Redis must still accept it."""
    url, _ = shell(redis_url=redis_server.url)
    theirs, _ = shell(redis_url=redis_server.url, client_ids=[OTHER_CLIENT])
    user = emu.add_user(name="Ada")
    token = emu.mint(user.user_id, client_id=OTHER_CLIENT)
    assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_token", 400)
    assert redis_server.client().get(l2_key(emu_url, token)) is None
    assert http.get(theirs + "/me", headers=bearer(token)).json()["user"] == user.user_id


def test_keys_and_values_hold_no_token_and_ttls_within_the_tokens_life(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer, emu_url: str
) -> None:
    url, _ = shell(redis_url=redis_server.url, cache_ttl=3600, expiry_leeway=10)
    minted: list[tuple[str, float]] = []  # token, latest possible expiry
    for lifetime in (30, 120, 900, 3600, 7200):
        _, token = emu.mint_for(name="Ada", lifetime=lifetime)
        minted.append((token, time.time() + lifetime))
        assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    bogus = "Atza|" + "z" * 400
    assert_error(http.get(url + "/me", headers=bearer(bogus)), "invalid_token", 400)
    client = redis_server.client()
    keys = sorted(client.scan_iter(match="*"))
    assert len(keys) == len(minted) + 1
    tokens = [token for token, _ in minted] + [bogus]
    for key in keys:
        assert KEY_SHAPE.fullmatch(key), key
        value = client.get(key)
        assert VALUE_SHAPE.fullmatch(value), value[:60]
        for token in tokens:
            for piece in (token, token[5:], token[-40:], token[100:140]):
                assert piece.encode() not in key and piece.encode() not in value
        assert b"Atza" not in value
    now = time.time()
    for token, expires in minted:
        ttl = client.pttl(l2_key(emu_url, token))
        assert 0 < ttl <= (expires - now) * 1000
        assert ttl <= 3600_000
    assert 0 < client.pttl(l2_key(emu_url, bogus)) <= 30_000


def test_l2_hit_fills_l1_with_the_remaining_ttl(
    shell: Shell, emu: Emulator, clock: FakeClock, http: httpx.Client, redis_server: RedisServer
) -> None:
    (first, _), (second, _) = (shell(redis_url=redis_server.url, cache_ttl=60) for _ in "ab")
    _, token = emu.mint_for(name="Ada")
    assert http.get(first + "/me", headers=bearer(token)).status_code == 200
    clock.advance(50)
    assert http.get(second + "/me", headers=bearer(token)).status_code == 200
    assert emu.calls["tokeninfo"] == 1  # from L2, 10 s left
    clock.advance(11)  # a fresh 60 s in L1 would still hold it; the entry's end does not
    assert http.get(second + "/me", headers=bearer(token)).status_code == 200
    assert emu.calls["tokeninfo"] == 2


def _body(user_id: str, aud: str, now: float) -> dict[str, Any]:
    """A value's JSON written by hand, in the format (what an intruder or another app could
    write)."""
    return {
        "v": 2,
        "k": "i",
        "at": now,
        "d": now + 300,
        "token_info": {
            "user_id": user_id,
            "aud": aud,
            "app_id": None,
            "iss": "https://www.amazon.com",
            "expires_at": now + 3600,
            "issued_at": now,
        },
        "profile": {"user_id": user_id, "name": "Mallory", "email": "m@example.com"},
    }


def test_value_of_the_fleet_naming_another_clients_aud_is_refused(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer, emu_url: str
) -> None:
    url, middleware = shell(redis_url=redis_server.url)
    user, token = emu.mint_for(name="Ada")  # a real token of ours, at LWA
    client = redis_server.client()
    key = l2_key(emu_url, token)
    client.set(key, signed(key, _body(user.user_id, OTHER_CLIENT, time.time())), px=60_000)
    for _ in range(2):
        assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_token", 400)
    assert emu.calls == {"tokeninfo": 0, "profile": 0}
    assert stats(middleware).refused == 2
    client.delete(key)
    assert http.get(url + "/me", headers=bearer(token)).json()["name"] == "Ada"


def _forgery(kind: str, key: bytes, aud: str) -> bytes:
    """A victim's identity, this app's ``aud``, as an intruder who can write to Redis plants
    it: without a MAC, with a bad one, with another secret's, or with another key's."""
    body = _body(VICTIM, aud, time.time())
    data = json.dumps(body).encode()
    return {
        "no_mac": data,
        "bad_mac": b"A" * 43 + data,
        "wrong_secret": signed(key, body, secret=OLD_SECRET),
        "other_key": signed(key[:-4] + b"0000", body),
    }[kind]


def _victim_refused(http: httpx.Client, url: str, token: str) -> None:
    response = http.get(url + "/me", headers=bearer(token))
    assert_error(response, "invalid_token", 400)  # LWA's own verdict on the token
    assert VICTIM not in response.text


@pytest.mark.parametrize("forgery", ["no_mac", "bad_mac", "wrong_secret", "other_key"])
def test_a_planted_victim_identity_never_signs_anyone_in(
    shell: Shell,
    emu: Emulator,
    http: httpx.Client,
    redis_server: RedisServer,
    emu_url: str,
    forgery: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 17's attack: a value planted under the key of a token LWA never issued, naming
    the victim and this app's client ID, no TTL. It is a miss (counted, one WARNING), and
    the token goes to LWA, which refuses it."""
    caplog.set_level(logging.WARNING, logger="lwa_middleware")
    url, middleware = shell(redis_url=redis_server.url, negative_ttl=0)
    client = redis_server.client()
    token = "Atza|" + "IwOGYzYTlmM2YxOTQ5MGE3YmNmMDFkNTVk" * 10  # never issued
    key = l2_key(emu_url, token)
    for attempt in range(2):
        client.set(key, _forgery(forgery, key, emu.client_id))  # no TTL
        _victim_refused(http, url, token)
        assert emu.calls["tokeninfo"] == attempt + 1  # asked LWA each time (no rejection cached)
        assert client.get(key) is None  # LWA's verdict removed it (negative_ttl=0: DEL)
    assert stats(middleware).unauthenticated == 2 and stats(middleware).hits == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "MAC" in warnings[0].getMessage()
    assert token[5:40] not in caplog.text
    if shell.kind == "asgi":  # the WebSocket handshake too
        client.set(key, _forgery(forgery, key, emu.client_id))
        ws_url = url.replace("http://", "ws://") + "/ws"
        assert asyncio.run(_ws_status(ws_url, token)) == 400
        assert stats(middleware).unauthenticated == 3 and emu.calls["tokeninfo"] == 3
    assert middleware.stats()["cache"]["l2"]["hit"] == 0


async def _ws_status(url: str, token: str) -> int:
    try:
        async with websockets.connect(url, additional_headers=bearer(token)) as ws:
            return 101 if await ws.recv() else 0  # pragma: no cover - must be refused
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


def test_the_same_value_with_the_fleets_mac_is_believed(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer, emu_url: str
) -> None:
    """The control of the test above (it can fail): signed with the fleet's secret, the
    planted value is what a worker of the fleet wrote, and it is believed."""
    url, _ = shell(redis_url=redis_server.url)
    token = "Atza|" + "IwOGYzYTlmM2YxOTQ5MGE3YmNmMDFkNTVk" * 10
    key = l2_key(emu_url, token)
    redis_server.client().set(key, signed(key, _body(VICTIM, emu.client_id, time.time())))
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == VICTIM
    assert emu.calls["tokeninfo"] == 0


def test_a_value_dated_ahead_is_refused_and_none_outlives_cache_ttl(
    shell: Shell,
    emu: Emulator,
    http: httpx.Client,
    redis_server: RedisServer,
    emu_url: str,
    clock: FakeClock,
) -> None:
    """A value with the fleet's MAC (a worker whose clock is ten years ahead, or a leaked
    secret): dated ahead, it is refused; with an end (``d``) and an expiry ten years ahead
    but written now, it lives in L1 ``cache_ttl`` from the reader's now at most, so once
    the key is gone from Redis the worker asks LWA again ``cache_ttl`` later."""
    url, middleware = shell(redis_url=redis_server.url, cache_ttl=60, negative_ttl=0)
    client = redis_server.client()
    decade = 10 * 365 * 86400.0
    token = "Atza|" + "ZmFyLWZ1dHVyZS1kYXRlZC12YWx1ZQ" * 10  # never issued
    key = l2_key(emu_url, token)
    ahead = _body(VICTIM, emu.client_id, clock() + decade)
    client.set(key, signed(key, ahead))
    _victim_refused(http, url, token)
    assert stats(middleware).future == 1
    long_lived = _body(VICTIM, emu.client_id, clock())
    long_lived["d"] = long_lived["token_info"]["expires_at"] = clock() + decade
    client.set(key, signed(key, long_lived))
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == VICTIM
    client.delete(key)
    clock.advance(59)
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == VICTIM  # L1
    calls = emu.calls["tokeninfo"]
    clock.advance(1.5)  # 60.5 s after it was read: past this worker's cache_ttl
    _victim_refused(http, url, token)
    assert emu.calls["tokeninfo"] == calls + 1


def test_apps_with_different_secrets_never_read_each_others_entries(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer
) -> None:
    """Two apps (one client ID, one prefix, one Redis) with different ``secret_key``s: each
    verifies with LWA itself, and counts the other's entries as unauthenticated."""
    ours, mine = shell(redis_url=redis_server.url)
    theirs, their = shell(redis_url=redis_server.url, secret_key=OLD_SECRET)
    user, token = emu.mint_for(name="Ada")
    other_user, other_token = emu.mint_for(name="Bob")
    assert http.get(ours + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert http.get(theirs + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert http.get(theirs + "/me", headers=bearer(other_token)).json()["user"] == (
        other_user.user_id
    )
    assert http.get(ours + "/me", headers=bearer(other_token)).json()["user"] == (
        other_user.user_id
    )
    assert emu.calls == {"tokeninfo": 4, "profile": 4}
    assert stats(mine).hits == stats(their).hits == 0
    assert stats(mine).unauthenticated == stats(their).unauthenticated == 1


def test_key_rotation(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer
) -> None:
    """``secret_key`` as a list, newest first: the writer signs with the new secret; a
    reader holding [new, old] accepts its entries (and the old ones), a reader holding only
    the old one refuses them."""
    new = "redis-tests-new-fleet-secret"
    writer, _ = shell(redis_url=redis_server.url, secret_key=[new, OLD_SECRET])
    rotated, rotated_mw = shell(redis_url=redis_server.url, secret_key=[new, OLD_SECRET])
    stale, stale_mw = shell(redis_url=redis_server.url, secret_key=OLD_SECRET)
    user, token = emu.mint_for(name="Ada")
    assert http.get(writer + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert http.get(rotated + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls["tokeninfo"] == 1 and stats(rotated_mw).hits == 1
    assert http.get(stale + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls["tokeninfo"] == 2 and stats(stale_mw).unauthenticated == 1
    # An entry made by a worker not yet given the new secret: still accepted by [new, old].
    old_user, old_token = emu.mint_for(name="Bob")
    assert http.get(stale + "/me", headers=bearer(old_token)).json()["user"] == old_user.user_id
    rotated_mw.verifier.authority.cache.clear()
    assert http.get(rotated + "/me", headers=bearer(old_token)).json()["user"] == (old_user.user_id)
    assert emu.calls["tokeninfo"] == 3 and stats(rotated_mw).hits == 2


GARBAGE = {
    "garbage": b"\x00\xffnot json at all",
    "wrong_version": json.dumps({"v": 1, "k": "i", "whatever": 1}).encode(),
    "oversized": b'{"v":2,"pad":"' + b"x" * 20_000 + b'"}',
    "wrong_shape": b'{"v":2,"k":"i","at":1,"d":2,"token_info":[],"profile":{}}',
}


def test_garbage_values_are_ignored_and_counted(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer, emu_url: str
) -> None:
    """With the fleet's MAC (a bug of ours, or a leaked secret) or without."""
    url, middleware = shell(redis_url=redis_server.url)
    client = redis_server.client()
    for name, value in GARBAGE.items():
        for sign in (True, False):
            user, token = emu.mint_for(name=name)
            key = l2_key(emu_url, token)
            client.set(key, signed(key, value) if sign else value, px=60_000)
            assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    counts = stats(middleware)
    assert (counts.malformed, counts.wrong_version, counts.oversized) == (2, 1, 2)
    assert counts.unauthenticated == 3
    assert emu.calls["tokeninfo"] == 2 * len(GARBAGE)


def test_single_flight_makes_one_redis_get(
    shell: Shell, emu: Emulator, redis_server: RedisServer
) -> None:
    url, _ = shell(redis_url=redis_server.url)
    _, token = emu.mint_for(name="Ada")
    client = redis_server.client()
    client.config_resetstat()
    emu.latency(0.5)
    with httpx.Client(base_url=url, timeout=10) as http, ThreadPoolExecutor(20) as pool:
        codes = list(
            pool.map(lambda _: http.get("/me", headers=bearer(token)).status_code, range(20))
        )
    assert codes == [200] * 20
    assert client.info("commandstats")["cmdstat_get"]["calls"] == 1
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_two_instances_asked_at_once_make_one_lwa_call(
    shell: Shell, emu: Emulator, redis_server: RedisServer
) -> None:
    """The cross-worker lock: cold requests to two instances at the same instant."""
    urls = [shell(redis_url=redis_server.url)[0] for _ in range(2)]
    _, token = emu.mint_for(name="Ada")
    emu.latency(0.3)
    with httpx.Client(timeout=10) as http, ThreadPoolExecutor(8) as pool:
        jobs = [urls[i % 2] + "/me" for i in range(8)]
        codes = list(pool.map(lambda u: http.get(u, headers=bearer(token)).status_code, jobs))
    assert codes == [200] * 8
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and "Redis" in r.getMessage()]


def test_redis_down_serves_through_memory_and_lwa_then_recovers(
    shell: Shell,
    emu: Emulator,
    http: httpx.Client,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
    emu_url: str,
) -> None:
    caplog.set_level(logging.INFO, logger="lwa_middleware")
    port = free_port()  # nothing listens there yet
    url, middleware = shell(redis_url=f"redis://127.0.0.1:{port}/0", redis_backoff=0.3)
    tokens = []
    for i in range(4):
        user, token = emu.mint_for(name=f"User {i}")
        tokens.append(token)
        assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    counts = stats(middleware)
    assert counts.errors == 1 and counts.skipped >= 3  # no call during the back-off
    assert len(_warnings(caplog)) == 1
    server = RedisServer(tmp_path, port).start()
    try:
        time.sleep(0.35)  # the back-off ends: the next cold token probes, and succeeds
        _, token = emu.mint_for(name="Back")
        assert http.get(url + "/me", headers=bearer(token)).status_code == 200
        assert server.client().get(l2_key(emu_url, token)) is not None
        assert any("answers again" in r.getMessage() for r in caplog.records)
        assert len(_warnings(caplog)) == 1
    finally:
        server.terminate()
    text = caplog.text
    for token in tokens:
        assert token not in text and token[5:40] not in text


@pytest.mark.parametrize("fault", ["oom", "auth", "wrongtype"])
def test_redis_errors_never_fail_a_request(
    shell: Shell,
    emu: Emulator,
    http: httpx.Client,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    emu_url: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="lwa_middleware")
    url, middleware = shell(redis_url=redis_server.url, redis_backoff=0)
    admin = redis_server.client()
    user, token = emu.mint_for(name="Ada")
    if fault == "oom":
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
    elif fault == "auth":
        admin.config_set("requirepass", "s3cret")
        # connections made before (the revocation sync's) must authenticate again
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    else:
        admin.rpush(l2_key(emu_url, token), b"x")  # GET on a list: WRONGTYPE
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert stats(middleware).errors >= 1
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert token not in caplog.text and "s3cret" not in caplog.text
    if fault == "auth":
        admin.execute_command("AUTH", "s3cret")
        admin.config_set("requirepass", "")
    elif fault == "oom":
        admin.config_set("maxmemory", 0)


#: The ACL docs/deployment.md gives: the key prefix and the commands used, nothing else.
ACL = [
    *("on", ">pw-of-lwa", "~lwa:*", "+get", "+set", "+del", "+exists", "+client|setname"),
    *("+zadd", "+zrevrangebyscore", "+zremrangebyscore", "+xadd", "+xread", "+xrevrange"),
    *("+sadd", "+smembers", "+expire"),
]


def test_a_least_privilege_acl_user_is_enough(
    shell: Shell, emu: Emulator, http: httpx.Client, redis_server: RedisServer, emu_url: str
) -> None:
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "lwa", *ACL)
    url = f"redis://lwa:pw-of-lwa@127.0.0.1:{redis_server.port}/0"
    (first, one), (second, two) = shell(redis_url=url), shell(redis_url=url)
    user, token = emu.mint_for(name="Ada")
    for base in (first, second, first):
        assert http.get(base + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 1, "profile": 1}
    assert admin.get(l2_key(emu_url, token)) is not None
    assert stats(one).errors == stats(two).errors == 0
    time.sleep(2.5 * POLL_INTERVAL)  # the revocation sync's first polls (XREAD) too
    for middleware in (one, two):  # the sync's commands are in the ACL
        revocations = middleware.stats()["revocations"]
        assert revocations["reloads"] >= 1 and revocations["errors"] == 0, revocations


def test_settings_and_clients_checked_at_construction(redis_server: RedisServer) -> None:
    options: dict[str, Any] = {"client_ids": ["amzn1.application-oa2-client.x"]}
    options["secret_key"] = SECRET
    sync_client = redis.Redis.from_url(redis_server.url)
    async_client = redis.asyncio.Redis.from_url(redis_server.url)
    with pytest.raises(ConfigurationError, match="asyncio Redis client"):
        LWAMiddleware(inner_app(), redis=sync_client, **options)
    with pytest.raises(ConfigurationError, match="blocking Redis client"):
        LWAWSGIMiddleware(wsgi_whoami, redis=async_client, **options)
    with pytest.raises(ConfigurationError, match="not both"):
        LWAWSGIMiddleware(wsgi_whoami, redis=sync_client, redis_url=redis_server.url, **options)
    with pytest.raises(ConfigurationError, match="redis-py client"):
        LWAWSGIMiddleware(wsgi_whoami, redis=object(), **options)
    sync_client.close()


def test_a_missing_redis_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    with pytest.raises(ConfigurationError, match=r"pip install 'lwa-middleware\[redis\]'"):
        LWAWSGIMiddleware(
            wsgi_whoami,
            client_ids=["amzn1.application-oa2-client.x"],
            redis_url="redis://127.0.0.1:1/0",
            secret_key=SECRET,
        )


def test_a_shared_cache_needs_secret_key(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a silent unauthenticated mode: ``redis_url``, ``LWA_REDIS_URL`` or a client
    passed as ``redis=``, in both shells and both verifiers, without ``secret_key``."""
    options: dict[str, Any] = {"client_ids": ["amzn1.application-oa2-client.x"]}
    url = redis_server.url
    sync_client = redis.Redis.from_url(url)
    async_client = redis.asyncio.Redis.from_url(url)
    monkeypatch.setenv("LWA_CLIENT_IDS", "amzn1.application-oa2-client.x")
    monkeypatch.setenv("LWA_REDIS_URL", url)
    monkeypatch.delenv("LWA_SECRET_KEY", raising=False)
    from_env = LWASettings.from_env()
    attempts: list[Callable[[], object]] = [
        lambda: LWAMiddleware(inner_app(), redis_url=url, **options),
        lambda: LWAWSGIMiddleware(wsgi_whoami, redis_url=url, **options),
        lambda: LWAMiddleware(inner_app(), settings=from_env),
        lambda: LWAWSGIMiddleware(wsgi_whoami, settings=from_env),
        lambda: LWAMiddleware(inner_app(), redis=async_client, **options),
        lambda: LWAWSGIMiddleware(wsgi_whoami, redis=sync_client, **options),
        lambda: AsyncVerifier(LWASettings(**options), redis=async_client),
        lambda: Verifier(LWASettings(**options, redis_url=url)),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigurationError, match="needs secret_key") as caught:
            attempt()
        assert url not in str(caught.value)
    assert _ours(redis_server) == 0  # refused before any connection
    monkeypatch.setenv("LWA_SECRET_KEY", SECRET)
    LWAWSGIMiddleware(wsgi_whoami, settings=LWASettings.from_env()).close()
    # With login=, the middleware takes the sign-in's secret_key when given none.
    login = LWAWSGILogin(
        options["client_ids"][0], redirect_uri="https://shop.example/cb", secret_key=SECRET
    )
    shared = LWAWSGIMiddleware(wsgi_whoami, redis_url=url, login=login, **options)
    assert shared.verifier.authority.l2.key(b"k") == b"lwa:v2:6b"
    shared.close()
    sync_client.close()


def _ours(server: RedisServer) -> int:
    """Connections of our own clients (named) the server holds."""
    return sum(1 for c in server.client().client_list() if c.get("name") == "lwa-middleware")


def _wait_for(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_our_clients_close_on_shutdown(
    emu: Emulator, emu_url: str, http: httpx.Client, redis_server: RedisServer
) -> None:
    _, token = emu.mint_for(name="Ada")
    options: dict[str, Any] = {
        "client_ids": [emu.client_id],
        "api_base_url": emu_url,
        "redis_url": redis_server.url,
        "secret_key": SECRET,
    }
    asgi = serve(LWAMiddleware(inner_app(), **options), lifespan="on")
    wsgi_middleware = LWAWSGIMiddleware(wsgi_whoami, **options)
    wsgi = serve_wsgi(wsgi_middleware)
    for url in (asgi.url, wsgi.url):
        assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    assert _ours(redis_server) == 2
    asgi.stop()  # lifespan shutdown
    assert _wait_for(lambda: _ours(redis_server) == 1)
    wsgi.stop()
    wsgi_middleware.close()
    assert _wait_for(lambda: _ours(redis_server) == 0)


def test_a_client_passed_in_stays_open(
    emu: Emulator, emu_url: str, http: httpx.Client, redis_server: RedisServer
) -> None:
    _, token = emu.mint_for(name="Ada")
    options: dict[str, Any] = {
        "client_ids": [emu.client_id],
        "api_base_url": emu_url,
        "secret_key": SECRET,
    }
    sync_client = redis.Redis.from_url(redis_server.url)
    middleware = LWAWSGIMiddleware(wsgi_whoami, redis=sync_client, **options)
    handle = serve_wsgi(middleware)
    assert http.get(handle.url + "/me", headers=bearer(token)).status_code == 200
    handle.stop()
    middleware.close()
    assert sync_client.ping() and sync_client.get(l2_key(emu_url, token)) is not None
    sync_client.close()

    async def main() -> bool:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        verifier = AsyncVerifier(LWASettings(**options), redis=client)
        assert (await verifier.verify(token)).profile.name == "Ada"
        await verifier.aclose()
        alive = bool(await client.ping())
        await client.aclose()
        return alive

    assert asyncio.run(main())
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_one_async_client_per_event_loop(
    emu: Emulator, emu_url: str, redis_server: RedisServer
) -> None:
    settings = LWASettings(
        client_ids=[emu.client_id],
        api_base_url=emu_url,
        redis_url=redis_server.url,
        secret_key=SECRET,
    )
    verifier = AsyncVerifier(settings)
    _, token = emu.mint_for(name="Ada")
    seen: list[Any] = []

    async def once() -> None:
        verifier.authority.cache.clear()  # a cold token for this loop: Redis is asked
        assert (await verifier.verify(token)).profile.name == "Ada"
        store = verifier._state().redis
        assert store is not None
        seen.append(store.client)

    asyncio.run(once())  # the loop closes without aclose: its client is simply forgotten
    asyncio.run(once())

    async def last() -> None:
        await once()
        await verifier.aclose()

    asyncio.run(last())
    assert len({id(client) for client in seen}) == 3
    assert emu.calls == {"tokeninfo": 1, "profile": 1}
    assert verifier.authority.l2.stats.hits == 2


def test_sync_verifier_threads_share_one_pool(
    emu: Emulator, emu_url: str, redis_server: RedisServer
) -> None:
    settings = LWASettings(
        client_ids=[emu.client_id],
        api_base_url=emu_url,
        redis_url=redis_server.url,
        secret_key=SECRET,
    )
    verifier = Verifier(settings)
    users = [emu.mint_for(name=f"User {i}") for i in range(30)]
    try:
        with ThreadPoolExecutor(10) as pool:
            found = list(pool.map(lambda pair: verifier.verify(pair[1]).user_id, users))
        assert found == [user.user_id for user, _ in users]
        verifier.authority.cache.clear()
        with ThreadPoolExecutor(10) as pool:
            again = list(pool.map(lambda pair: verifier.verify(pair[1]).user_id, users))
        assert again == found
        assert verifier.authority.l2.stats.hits == 30
    finally:
        verifier.close()
    assert emu.calls == {"tokeninfo": 30, "profile": 30}


def test_a_redis_cluster_client(emu: Emulator, emu_url: str, tmp_path: Any) -> None:
    """A one-node Redis Cluster (every slot on it), with redis-py's cluster clients."""
    bus = ("--cluster-port", str(free_port()))  # not port + 10000, which may not exist
    cluster = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", *bus)
    server = RedisServer(tmp_path, None, *cluster).start()
    try:
        admin = server.client()
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        assert _wait_for(lambda: admin.cluster("info")["cluster_state"] == "ok")
        settings = LWASettings(client_ids=[emu.client_id], api_base_url=emu_url, secret_key=SECRET)
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=server.port)
        first, second = Verifier(settings, redis=client), Verifier(settings, redis=client)
        _, token = emu.mint_for(name="Ada")
        assert first.verify(token).user_id == second.verify(token).user_id
        assert second.authority.l2.stats.hits == 1
        client.close()

        async def main() -> None:
            aclient = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=server.port)
            verifier = AsyncVerifier(settings, redis=aclient)
            assert (await verifier.verify(token)).profile.name == "Ada"
            assert verifier.authority.l2.stats.hits == 1
            await verifier.aclose()
            await aclient.aclose()

        asyncio.run(main())
        assert emu.calls == {"tokeninfo": 1, "profile": 1}
    finally:
        server.terminate()
