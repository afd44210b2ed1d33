"""The shared cache's sans-IO core (``lwa_middleware.l2`` and ``Authority``'s L2 verdicts),
with ``now`` passed in: key format, compact values without the token, TTLs rounded down and
bounded by the token's expiry, strict decoding (malformed, oversized, other versions
ignored and counted), every L2 hit re-checked like an LWA answer (audience, expiry), L1
filled with the entry's remaining time, and the back-off after a Redis failure."""

from __future__ import annotations

import json
import math
from hashlib import sha256
from typing import Any

import pytest

from lwa_middleware import Identity, InvalidToken, LWASettings, LWAUnavailable, Profile, TokenInfo
from lwa_middleware.cache import Rejected, RejectionCache, cache_key
from lwa_middleware.l2 import MAX_VALUE_BYTES, Backoff, L2Codec, Write
from lwa_middleware.verification import EXPIRED, WRONG_AUDIENCE, Authority

CLIENT = "amzn1.application-oa2-client.ours"
OTHER = "amzn1.application-oa2-client.someone-else"
APP = "amzn1.application.ours"
API = "https://api.amazon.com"
TOKEN = "Atza|" + "A1b2-_" * 60
NOW = 1_000_000.0


def identity(
    aud: str = CLIENT, expires_at: float = NOW + 3600, app_id: str | None = None
) -> Identity:
    info = TokenInfo("amzn1.account.U", aud, app_id, "https://www.amazon.com", expires_at, NOW)
    raw = {"user_id": "amzn1.account.U", "name": "Ada", "email": "ada@example.com"}
    return Identity.build(info, Profile("amzn1.account.U", "Ada", "ada@example.com", raw=raw))


def authority(**options: Any) -> Authority:
    return Authority(LWASettings.build(None, {"client_ids": [CLIENT], **options}))


KEY = cache_key(API, TOKEN)


def written(
    a: Authority, outcome: Identity | BaseException, at: float = NOW, now: float = NOW
) -> Write:
    write = a.l2_write(KEY, outcome, at, now)
    assert write is not None
    return write


class TestKeysAndValues:
    def test_key_is_the_l1_digest_in_hex_under_a_versioned_prefix(self) -> None:
        codec = L2Codec("lwa", timeout=5.0)
        digest = sha256(API.encode() + b"\x00" + TOKEN.encode()).digest()
        assert digest == KEY
        assert codec.key(KEY) == b"lwa:v1:" + KEY.hex().encode()
        assert codec.lock_key(KEY) == b"lwa:v1:lock:" + KEY.hex().encode()
        assert L2Codec("app-7.prod", 5.0).key(KEY).startswith(b"app-7.prod:v1:")
        assert TOKEN.encode() not in codec.key(KEY)

    def test_identity_value_is_compact_json_without_the_token(self) -> None:
        write = written(authority(), identity())
        assert write.key == b"lwa:v1:" + KEY.hex().encode()
        assert write.nx  # a re-write never extends an entry
        assert b" " not in write.value.replace(b"Ada", b"")  # no padding
        assert b"Atza" not in write.value and TOKEN.encode()[5:30] not in write.value
        data = json.loads(write.value)
        assert set(data) == {"v", "k", "at", "d", "token_info", "profile"}
        assert (data["v"], data["k"]) == (1, "i")
        assert data["token_info"]["aud"] == CLIENT
        assert len(write.value) < 1024
        assert "px=" in repr(write) and "Ada" not in repr(write)

    def test_ttl_is_the_entry_ttl_rounded_down(self) -> None:
        a = authority(cache_ttl=300, expiry_leeway=10)
        assert written(a, identity(expires_at=NOW + 3600)).px == 300_000
        # 100.0007 s to expiry, leeway 10: 90.0007 s, rounded down to 90_000 ms.
        write = written(a, identity(expires_at=NOW + 100.0007))
        assert write.px == 90_000
        # Written 2.5 s after LWA answered: 2.5 s less.
        assert written(a, identity(), now=NOW + 2.5).px == 297_500

    def test_ttl_never_past_the_token_expiry(self) -> None:
        a = authority(cache_ttl=3600, expiry_leeway=0)
        for left in (0.0015, 1.0, 59.9999, 3599.5):
            px = written(a, identity(expires_at=NOW + left)).px
            assert px <= left * 1000
            assert px == math.floor(left * 1000) or px == math.floor(left * 1000) - 1

    def test_nothing_written_without_time_left(self) -> None:
        a = authority(expiry_leeway=10)
        assert a.l2_write(KEY, identity(expires_at=NOW + 10), NOW, NOW) is None
        assert authority(cache_ttl=0).l2_write(KEY, identity(), NOW, NOW) is None
        assert a.l2_write(KEY, identity(), NOW, NOW + 400) is None

    def test_rejection_written_for_negative_ttl_and_overwrites(self) -> None:
        a = authority(negative_ttl=30)
        write = written(a, InvalidToken("The access token has been revoked."))
        assert write.px == 30_000 and not write.nx
        assert json.loads(write.value) == {
            "v": 1,
            "k": "r",
            "at": NOW,
            "d": NOW + 30,
            "e": "The access token has been revoked.",
        }

    @pytest.mark.parametrize(
        "outcome",
        [
            InvalidToken(WRONG_AUDIENCE),  # a verdict about this app only
            LWAUnavailable("Login with Amazon timed out."),  # transport errors never
            RuntimeError("boom"),
        ],
    )
    def test_not_shared(self, outcome: BaseException) -> None:
        assert authority().l2_write(KEY, outcome, NOW, NOW) is None

    def test_negative_ttl_zero_deletes_instead_of_writing_a_rejection(self) -> None:
        a = authority(negative_ttl=0)
        write = a.l2_write(KEY, InvalidToken(), NOW, NOW)
        assert write is not None and write.delete and write.key == a.l2.key(KEY)
        assert repr(write) == "Write(delete)"

    def test_oversized_identity_not_written_and_counted(self) -> None:
        a = authority()
        big = {"user_id": "amzn1.account.U", "blob": "x" * MAX_VALUE_BYTES}
        info = TokenInfo("amzn1.account.U", CLIENT, None, None, NOW + 3600, None)
        fat = Identity.build(info, Profile("amzn1.account.U", raw=big))
        assert a.l2_write(KEY, fat, NOW, NOW) is None
        assert a.l2.stats.oversized == 1


class TestReading:
    def test_round_trip_fills_l1_with_the_remaining_time(self) -> None:
        writer = authority(cache_ttl=300)
        original = identity()
        value = written(writer, original).value
        reader = authority(cache_ttl=300)
        hit = reader.from_l2(KEY, value, NOW + 200)
        assert hit == original and hit.scopes == original.scopes
        deadline, entry = reader.cache.peek(KEY) or (0.0, None)
        assert entry == original
        assert deadline == NOW + 300  # not NOW + 200 + 300: the entry's end
        assert reader.l2.stats.hits == 1

    def test_reader_bounds_by_its_own_cache_ttl_and_leeway(self) -> None:
        value = written(authority(cache_ttl=300), identity(expires_at=NOW + 3600)).value
        short = authority(cache_ttl=30)
        assert short.from_l2(KEY, value, NOW + 10) is not None
        assert (short.cache.peek(KEY) or (0.0,))[0] == NOW + 30
        assert authority(cache_ttl=30).from_l2(KEY, value, NOW + 31) is None  # stale for it
        value = written(authority(expiry_leeway=0), identity(expires_at=NOW + 100)).value
        careful = authority(expiry_leeway=50)
        careful.from_l2(KEY, value, NOW)
        assert (careful.cache.peek(KEY) or (0.0,))[0] == NOW + 50

    def test_str_values_work_too(self) -> None:  # a client with decode_responses=True
        value = written(authority(), identity()).value.decode()
        assert authority().from_l2(KEY, value, NOW) == identity()

    def test_entry_past_its_end_is_a_miss(self) -> None:
        value = written(authority(cache_ttl=60), identity()).value
        reader = authority(cache_ttl=600)
        assert reader.from_l2(KEY, value, NOW + 60) is None
        assert reader.l2.stats.stale == 1 and reader.cache.peek(KEY) is None

    def test_another_clients_audience_is_refused(self) -> None:
        value = written(authority(client_ids=[OTHER]), identity(aud=OTHER)).value
        reader = authority()
        with pytest.raises(InvalidToken) as caught:
            reader.from_l2(KEY, value, NOW)
        assert caught.value.description == WRONG_AUDIENCE
        assert reader.l2.stats.refused == 1
        assert reader.cache.peek(KEY) is None

    def test_app_id_accepted_when_configured(self) -> None:
        value = written(authority(client_ids=[OTHER]), identity(aud=OTHER, app_id=APP)).value
        assert authority(app_ids=[APP]).from_l2(KEY, value, NOW) is not None
        with pytest.raises(InvalidToken):
            authority().from_l2(KEY, value, NOW)

    def test_expired_token_refused(self) -> None:
        body = json.loads(written(authority(), identity()).value)
        body["token_info"]["expires_at"] = NOW - 1  # planted: Redis would not hold it
        with pytest.raises(InvalidToken) as caught:
            authority().from_l2(KEY, json.dumps(body).encode(), NOW)
        assert caught.value.description == EXPIRED

    def test_rejection_shared_with_its_remaining_time(self) -> None:
        value = written(authority(negative_ttl=30), InvalidToken("revoked")).value
        reader = authority(negative_ttl=30)
        with pytest.raises(InvalidToken) as caught:
            reader.from_l2(KEY, value, NOW + 20)
        assert caught.value.description == "revoked"
        assert reader.rejections.get(KEY, NOW + 29.9) == Rejected("revoked", NOW + 30)
        assert reader.rejections.get(KEY, NOW + 30) is None  # the entry's end, not now + 30
        assert reader.l2.stats.negative_hits == 1
        off = authority(negative_ttl=0)
        assert off.from_l2(KEY, value, NOW + 1) is None  # negative caching off here

    def test_planted_rejection_text_is_checked(self) -> None:
        body = {"v": 1, "k": "r", "at": NOW, "d": NOW + 30, "e": "Atza|leaked\x00"}
        with pytest.raises(InvalidToken) as caught:
            authority().from_l2(KEY, json.dumps(body).encode(), NOW)
        assert caught.value.description == InvalidToken.default_description

    def test_miss(self) -> None:
        a = authority()
        assert a.from_l2(KEY, None, NOW) is None
        assert a.l2.stats.misses == 1


def _good() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(written(authority(), identity()).value)
    return value


def _without(key: str) -> dict[str, Any]:
    body = _good()
    del body[key]
    return body


def _info(**changes: Any) -> dict[str, Any]:
    body = _good()
    body["token_info"].update(changes)
    return body


MALFORMED: list[Any] = [
    b"",
    b"not json",
    b"\xff\xfe",
    b"[1, 2]",
    b'"a string"',
    b'{"k": "i"}',  # no version
    _without("at"),
    _without("d"),
    _without("token_info"),
    {**_good(), "k": "x"},
    {**_good(), "d": "soon"},
    {**_good(), "profile": {"name": "no user id"}},
    {**_good(), "profile": {"user_id": "amzn1.account.SOMEONE-ELSE"}},
    _info(aud=""),
    _info(aud=7),
    _info(user_id=None),
    _info(expires_at="tomorrow"),
    _info(expires_at=True),
    _info(app_id=["x"]),
    _info(issued_at="yesterday"),
    b'{"v":1,"k":"i","at":NaN,"d":1e999,"token_info":{},"profile":{}}',
    b"[" * 100_000 + b"]" * 100_000,  # oversized, and too deep for json
]


class TestGarbage:
    @pytest.mark.parametrize("value", MALFORMED, ids=range(len(MALFORMED)))
    def test_malformed_ignored_and_counted(self, value: Any) -> None:
        a = authority()
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        assert a.from_l2(KEY, raw, NOW) is None
        stats = a.l2.stats
        assert stats.malformed + stats.oversized == 1
        assert a.cache.peek(KEY) is None

    @pytest.mark.parametrize("version", [0, 2, "1", True, None])
    def test_other_versions_ignored_and_counted(self, version: Any) -> None:
        a = authority()
        assert a.from_l2(KEY, json.dumps({**_good(), "v": version}).encode(), NOW) is None
        assert a.l2.stats.wrong_version == 1

    def test_oversized_ignored_and_counted(self) -> None:
        a = authority()
        body = _good()
        body["profile"]["blob"] = "x" * MAX_VALUE_BYTES
        assert a.from_l2(KEY, json.dumps(body).encode(), NOW) is None
        assert a.l2.stats.oversized == 1


class TestRejectionCacheUntil:
    def test_until_ends_a_rejection_early(self) -> None:
        cache = RejectionCache(ttl=30)
        cache.set(b"k", Rejected("x", until=110.0), now=100.0)
        assert cache.get(b"k", 109.9) is not None
        assert cache.get(b"k", 110.0) is None
        cache.set(b"j", Rejected("x"), now=100.0)
        assert cache.get(b"j", 129.9) is not None


class TestBackoff:
    def test_calls_while_up(self) -> None:
        backoff = Backoff(5.0)
        assert backoff.allows(0.0) and backoff.allows(1e9)
        assert not backoff.down

    def test_no_call_for_the_backoff_then_one_probe(self) -> None:
        backoff = Backoff(5.0)
        assert backoff.failed(100.0) == "new"
        assert backoff.down
        assert not backoff.allows(100.1)
        assert not backoff.allows(104.99)
        assert backoff.allows(105.0)  # this request probes ...
        assert not backoff.allows(105.01)  # ... the others go on without Redis
        assert backoff.failed(105.2) == "again"  # one WARNING per outage
        assert not backoff.allows(110.1)
        assert backoff.allows(110.2)
        assert backoff.succeeded(110.2)
        assert not backoff.down and backoff.allows(110.3)
        assert not backoff.succeeded(110.4)  # already up: nothing to announce

    def test_a_call_older_than_the_failure_proves_nothing(self) -> None:
        backoff = Backoff(5.0)
        backoff.failed(100.0)
        assert not backoff.succeeded(99.9)
        assert backoff.down

    def test_zero_backoff_tries_every_time(self) -> None:
        backoff = Backoff(0.0)
        backoff.failed(100.0)
        assert backoff.allows(100.0) and backoff.allows(100.0)


class TestLockPolicy:
    def test_lock_lives_one_verification(self) -> None:
        assert L2Codec("lwa", timeout=5.0).lock_ms == 1000  # at most MAX_LOCK_SECONDS
        assert L2Codec("lwa", timeout=0.3).lock_ms == 300
        assert L2Codec("lwa", timeout=0.0011).lock_ms == 2

    def test_pauses_bounded_by_the_time_left_and_the_lock(self) -> None:
        codec = L2Codec("lwa", timeout=0.2)
        assert sum(codec.pauses(10.0)) <= 0.2
        assert sum(codec.pauses(0.05)) <= 0.05
        assert codec.pauses(0.0) == []
        assert all(0 < pause <= 0.01 for pause in codec.pauses(1.0))
