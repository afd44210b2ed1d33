"""Memory per cached identity and incremental eviction (issue "Speed").

What LWA repeats in every answer is shared (``aud``/``app_id``/``iss``, scope sets, profile
key names, the user id once per identity), ``Profile.raw`` is stored compactly yet still
reads as the whole JSON object, the Starlette pair is built once per identity and the
credentials are shared per scope set; every sharing table is bounded. ``MemoryCache``
evicts a couple of entries per insert, never a burst, and never serves an expired entry.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import pickle
import random
import tracemalloc
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from lwa_middleware import Identity, LWAMiddleware, MemoryCache, Profile
from lwa_middleware.core import credentials as lwa_credentials
from lwa_middleware.core import models
from lwa_middleware.core.protocol import HTTPResponse, parse_profile, parse_tokeninfo

NOW = 1_750_000_000.0
CLIENT = "amzn1.application-oa2-client.0123456789abcdef0123456789abcdef"
APP = "amzn1.application.fedcba9876543210fedcba9876543210"
ISS = "https://www.amazon.com"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def answer(body: dict[str, Any]) -> HTTPResponse:
    return HTTPResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())


def lwa_answers(rng: random.Random, i: int) -> tuple[str, HTTPResponse, HTTPResponse]:
    """A token and LWA's token-info and profile answers for it, as fresh JSON bytes."""
    token = "Atza|" + "".join(rng.choices(_ALPHABET + "abcdefghij-_", k=400))
    user_id = "amzn1.account." + "".join(rng.choices(_ALPHABET, k=28))
    info = {"iss": ISS, "user_id": user_id, "aud": CLIENT, "app_id": APP, "exp": 3600, "iat": 1}
    profile = {
        "user_id": user_id,
        "name": f"Customer Number{i}",
        "email": f"customer.number{i}@example.com",
        "postal_code": f"{10_000 + i % 89_999}",
    }
    return token, answer(info), answer(profile)


def tokeninfo(**fields: Any) -> HTTPResponse:
    body = {"iss": ISS, "user_id": "amzn1.account.U", "aud": CLIENT, "app_id": APP, "exp": 60}
    return answer({**body, **fields})


async def trivial_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def scope_for(token: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/me",
        "raw_path": b"/me",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
    }


async def receive_nothing() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def no_http(request: httpx.Request) -> httpx.Response:
    raise AssertionError("the test must never call LWA")


# Memory per identity, end to end -------------------------------------------------------


def test_memory_per_cached_identity_is_bounded() -> None:
    """5,000 identities through settle and one warm request each: < 1,200 B per identity
    (everything retained: entry, key, parsed answers, the Starlette pair); it was ~2,100."""
    n = 5_000
    rng = random.Random(5)
    people = [lwa_answers(rng, i) for i in range(n + 1)]
    middleware = LWAMiddleware(
        trivial_app,
        client_ids=[CLIENT],
        cache_maxsize=n + 1,
        clock=lambda: NOW,
        transport=httpx.MockTransport(no_http),
    )
    authority = middleware.verifier.authority
    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def fill(batch: list[tuple[str, HTTPResponse, HTTPResponse]]) -> None:
        for token, info, profile in batch:
            parsed = parse_tokeninfo(info, NOW), parse_profile(profile)
            authority.settle(authority.key(token), *parsed, NOW)
        for token, _, _ in batch:
            await middleware(scope_for(token), receive_nothing, send)

    asyncio.run(fill(people[:1]))  # one-time allocations stay out of the figure
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        asyncio.run(fill(people[1:]))
        gc.collect()
        per_identity = (tracemalloc.get_traced_memory()[0] - start) / n
    finally:
        tracemalloc.stop()
    assert statuses == [200] * (n + 1)
    assert len(authority.cache) == n + 1
    assert per_identity < 1_200, f"{per_identity:.0f} B per cached identity"


# Sharing -------------------------------------------------------------------------------


@pytest.fixture
def fresh_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty sharing tables, so other tests' values neither fill nor pre-seed them."""
    monkeypatch.setattr(models, "_texts", {})
    monkeypatch.setattr(models, "_scope_sets", dict(models._scope_sets))
    monkeypatch.setattr(lwa_credentials, "_shared_credentials", {})


@pytest.mark.usefixtures("fresh_tables")
def test_repeated_token_info_values_are_shared() -> None:
    first = parse_tokeninfo(tokeninfo(), NOW)
    second = parse_tokeninfo(tokeninfo(), NOW)  # decoded from other bytes: other strings
    assert first == second
    assert first.aud is second.aud
    assert first.app_id is second.app_id
    assert first.iss is second.iss
    assert first.user_id is not second.user_id  # per customer: not in a table
    assert parse_tokeninfo(tokeninfo(app_id=None), NOW).app_id is None


@pytest.mark.usefixtures("fresh_tables")
def test_scope_sets_are_shared_per_distinct_set() -> None:
    info = parse_tokeninfo(tokeninfo(), NOW)
    full = {"user_id": "amzn1.account.U", "name": "Ada", "postal_code": "98101"}
    a = Identity.build(info, parse_profile(answer(full)))
    b = Identity.build(info, parse_profile(answer(full)))
    c = Identity.build(info, parse_profile(answer({"user_id": "amzn1.account.U", "name": "A"})))
    d = Identity.build(info, parse_profile(answer({"user_id": "amzn1.account.U"})))
    assert a.scopes is b.scopes
    assert a.scopes == {"profile", "profile:user_id", "postal_code"}
    assert c.scopes == {"profile", "profile:user_id"} and c.scopes is not a.scopes
    assert d.scopes == {"profile:user_id"} and d.scopes is not c.scopes
    # An identity built by hand gets the shared set too.
    assert Identity(info, a.profile, frozenset({"profile:user_id"})).scopes is d.scopes


def test_identity_holds_its_user_id_once() -> None:
    info = parse_tokeninfo(tokeninfo(), NOW)
    profile = parse_profile(answer({"user_id": "amzn1.account.U", "name": "Ada"}))
    assert profile.user_id is not info.user_id  # two answers, two strings
    identity = Identity.build(info, profile)
    assert identity.user_id == "amzn1.account.U"
    assert identity.profile.user_id is identity.token_info.user_id
    assert identity.profile.raw["user_id"] is identity.token_info.user_id


@pytest.mark.parametrize(
    "body",
    [
        {
            "user_id": "amzn1.account.U",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "postal_code": "98101",
            "favorite_color": "green",
        },
        # Amazon's documented order, and unknown fields in between.
        {"user_id": "amzn1.account.U", "email": "a@example.com", "name": "Ada", "x": [1]},
        {"extra": {"nested": True}, "user_id": "amzn1.account.U", "name": "Ada"},
        # Values the typed fields do not hold as they are: kept verbatim.
        {"user_id": "amzn1.account.U", "name": "", "email": None, "postal_code": 98101},
        {"user_id": "amzn1.account.U"},
    ],
)
def test_profile_raw_is_the_whole_json_object(body: dict[str, Any]) -> None:
    profile = parse_profile(answer(body))
    assert profile.raw == body
    assert list(profile.raw) == list(body)  # in LWA's order
    assert json.dumps(profile.raw) == json.dumps(body)
    profile.raw.clear()  # type: ignore[attr-defined]  # a copy: the profile keeps its own
    assert profile.raw == body


def test_legacy_profile_shape_still_parses() -> None:
    body = {
        "Profile": {
            "CustomerId": "amzn1.account.U",
            "Name": "Ada Lovelace",
            "PrimaryEmail": "ada@example.com",
            "PostalCode": "98101",
            "Extra": 1,
        },
        "RequestId": "r-9",
    }
    profile = parse_profile(answer(body))
    assert (profile.user_id, profile.name, profile.email, profile.postal_code) == (
        "amzn1.account.U",
        "Ada Lovelace",
        "ada@example.com",
        "98101",
    )
    assert profile.raw == body
    assert profile.scopes == {"profile", "profile:user_id", "postal_code"}


def test_profile_keeps_its_dataclass_behaviour() -> None:
    profile = parse_profile(answer({"user_id": "amzn1.account.U", "name": "Ada", "x": 1}))
    assert profile == Profile("amzn1.account.U", "Ada")  # raw is not compared
    assert hash(profile) == hash(Profile("amzn1.account.U", "Ada"))
    assert Profile("amzn1.account.U").raw == {}
    assert Profile("amzn1.account.U", "Ada", raw={"user_id": "amzn1.account.U"}).raw == {
        "user_id": "amzn1.account.U"
    }
    assert "raw={'user_id': 'amzn1.account.U', 'name': 'Ada', 'x': 1}" in repr(profile)
    assert pickle.loads(pickle.dumps(profile)).raw == profile.raw
    with pytest.raises(AttributeError):
        profile.name = "Eve"  # type: ignore[misc]


def test_identity_round_trips_through_json_and_pickle() -> None:
    info = parse_tokeninfo(tokeninfo(), NOW)
    body = {"user_id": "amzn1.account.U", "name": "Ada", "x": 1}
    identity = Identity.build(info, parse_profile(answer(body)))
    assert identity.to_json()["profile"] == body
    clone = pickle.loads(pickle.dumps(identity))
    assert clone == identity and clone.profile.raw == body


# Bounded tables ------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_tables")
def test_text_table_is_bounded() -> None:
    for i in range(100_000):
        iss = f"https://issuer-{i}.example"
        assert parse_tokeninfo(tokeninfo(iss=iss), NOW).iss == iss
    assert len(models._texts) <= models.TEXT_TABLE_LIMIT
    # What the table holds is still shared; what came after it filled is still right.
    assert parse_tokeninfo(tokeninfo(), NOW).aud == CLIENT


@pytest.mark.usefixtures("fresh_tables")
def test_scope_and_credentials_tables_are_bounded() -> None:
    info = parse_tokeninfo(tokeninfo(), NOW)
    profile = Profile("amzn1.account.U")
    memo = lwa_credentials.CredentialsMemo()
    for i in range(1_000):
        scopes = frozenset({"profile:user_id", f"custom:{i}"})
        identity = Identity(info, profile, scopes)
        assert identity.scopes == scopes
        assert list(memo(identity)[1].scopes) == sorted(scopes)
    assert len(models._scope_sets) <= models.SCOPE_TABLE_LIMIT
    assert len(lwa_credentials._shared_credentials) <= lwa_credentials.SHARED_CREDENTIALS_LIMIT


# The Starlette pair ------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_tables")
def test_starlette_pair_is_built_once_per_identity() -> None:
    info = parse_tokeninfo(tokeninfo(), NOW)
    memo = lwa_credentials.CredentialsMemo()
    a = Identity.build(info, Profile("amzn1.account.U", "Ada"))
    b = Identity.build(info, Profile("amzn1.account.U", "Bob"))
    user_a, auth_a = memo(a)
    assert isinstance(user_a, lwa_credentials.LWAUser) and user_a.lwa is a
    assert memo(a)[0] is user_a  # every request of this identity: the same objects
    assert lwa_credentials.CredentialsMemo()(a)[0] is user_a  # kept with the identity
    user_b, auth_b = memo(b)
    assert isinstance(user_b, lwa_credentials.LWAUser) and user_b.lwa is b
    assert auth_b is auth_a  # one read-only credentials object per scope set
    # A copy is a new identity: it builds its own pair, naming itself.
    for clone in (copy.copy(a), pickle.loads(pickle.dumps(a))):
        user = memo(clone)[0]
        assert isinstance(user, lwa_credentials.LWAUser) and user.lwa is clone


# MemoryCache: incremental eviction -----------------------------------------------------


def test_every_insert_into_a_full_cache_removes_only_a_few() -> None:
    n = 50_000
    cache: MemoryCache[int] = MemoryCache(maxsize=n)
    rng = random.Random(1)
    for i in range(n):  # a few short-lived entries among long-lived ones
        cache.set(rng.randbytes(32), i, NOW + (5 if i % 7 == 0 else 300), NOW)
    assert len(cache) == n
    most = 0
    for i in range(n):
        now = NOW + i * 1e-3
        before = len(cache)
        cache.set(rng.randbytes(32), i, now + 300, now)
        removed = before + 1 - len(cache)
        most = max(most, removed)
        assert len(cache) <= n
    assert most <= MemoryCache.PURGE + 1


def test_oldest_inserted_go_first() -> None:
    cache: MemoryCache[int] = MemoryCache(maxsize=100)
    for i in range(250):
        cache.set(i.to_bytes(4, "big"), i, NOW + 300, NOW)
    assert len(cache) == 100
    assert [cache.get(i.to_bytes(4, "big"), NOW) for i in range(150, 250)] == list(range(150, 250))
    assert all(cache.peek(i.to_bytes(4, "big")) is None for i in range(150))


def test_expired_entries_are_purged_as_inserts_go_by() -> None:
    cache: MemoryCache[int] = MemoryCache(maxsize=1_000)
    for i in range(500):
        cache.set(i.to_bytes(4, "big"), i, NOW + 10, NOW)
    for i in range(500, 600):  # the first 500 have expired: each insert drops two of them
        cache.set(i.to_bytes(4, "big"), i, NOW + 300, NOW + 20)
    assert len(cache) == 500 - 2 * 100 + 100
    for i in range(600, 800):
        cache.set(i.to_bytes(4, "big"), i, NOW + 300, NOW + 20)
    assert len(cache) == 300  # every expired one gone, though the cache was never full


def test_deleted_keys_do_not_pile_up() -> None:
    """Deletes behind a long-lived oldest entry leave keys in the insertion order; they
    are dropped (skipped, or the order rebuilt), so the cache stays bounded."""
    n = 100
    cache: MemoryCache[int] = MemoryCache(maxsize=n)
    cache.set(b"first", 0, NOW + 10_000, NOW)
    for i in range(10_000):
        key = i.to_bytes(4, "big")
        cache.set(key, i, NOW + 300, NOW)
        cache.delete(key)
        assert len(cache._order) <= 2 * n + MemoryCache.SKIP + 1
    assert cache.get(b"first", NOW) == 0
    for i in range(3 * n):  # a full cache still evicts the oldest live entries
        cache.set(b"k%d" % i, i, NOW + 300, NOW)
        assert len(cache) <= n
    assert cache.get(b"k%d" % (3 * n - 1), NOW) == 3 * n - 1
    cache.clear()
    assert len(cache) == 0 and not cache._order


def test_a_full_cache_of_deleted_keys_still_evicts() -> None:
    cache: MemoryCache[int] = MemoryCache(maxsize=10)
    for i in range(10):
        cache.set(b"a%d" % i, i, NOW + 300, NOW)
    for i in range(9):  # the oldest nine deleted, then re-inserted: the order lists them twice
        cache.delete(b"a%d" % i)
        cache.set(b"a%d" % i, i, NOW + 300, NOW)
    for i in range(100):
        cache.set(b"b%d" % i, i, NOW + 300, NOW)
        assert len(cache) <= 10
    assert cache.get(b"b99", NOW) == 99


def test_bounded_and_never_serves_expired_entries() -> None:
    """Random sets, gets, deletes and clock steps: the cache never holds more than maxsize
    and never answers an entry at or past its deadline."""
    rng = random.Random(42)
    maxsize = 64
    cache: MemoryCache[tuple[int, float]] = MemoryCache(maxsize=maxsize)
    now = NOW
    for step in range(20_000):
        key = rng.randrange(200).to_bytes(2, "big")
        roll = rng.random()
        if roll < 0.5:
            deadline = now + rng.uniform(-1, 30)
            cache.set(key, (step, deadline), deadline, now)
        elif roll < 0.9:
            found = cache.get(key, now)
            if found is not None:
                assert now < found[1]
            item = cache.peek(key)
            if item is not None:
                assert item[0] == item[1][1]
        elif roll < 0.97:
            cache.delete(key)
        else:
            now += rng.uniform(0, 5)
        assert len(cache) <= maxsize
