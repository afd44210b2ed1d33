"""The shared cache's sans-IO core (``lwa_middleware.core.l2`` and ``Authority``'s L2 verdicts),
with ``now`` passed in (a fake clock): key format, compact values without the token, each
with its MAC (HMAC-SHA-256 over key and value, keyed from ``secret_key``), TTLs rounded
down and bounded by the token's expiry, strict decoding (unauthenticated, malformed,
oversized, other versions ignored and counted; the MAC checked first), key rotation, every
L2 hit re-checked like an LWA answer (audience, expiry), time the reader's own (L1 filled
with the entry's remaining time, never past its own ``now + cache_ttl``; entries dated
ahead refused), the once-a-minute warning, and the back-off after a Redis failure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
from hashlib import sha256
from typing import Any

import pytest

from lwa_middleware import Identity, InvalidToken, LWASettings, LWAUnavailable, Profile, TokenInfo
from lwa_middleware.core.cache import Rejected, RejectionCache, cache_key
from lwa_middleware.core.keys import KeyRing, hkdf, secret_keys
from lwa_middleware.core.l2 import MAX_VALUE_BYTES, TAG_CHARS, Backoff, L2Codec, Write
from lwa_middleware.core.verification import EXPIRED, WRONG_AUDIENCE, Authority

CLIENT = "amzn1.application-oa2-client.ours"
OTHER = "amzn1.application-oa2-client.someone-else"
APP = "amzn1.application.ours"
API = "https://api.amazon.com"
TOKEN = "Atza|" + "A1b2-_" * 60
NOW = 1_000_000.0
SECRET = "the-fleet-secret-0123456789"
OLD_SECRET = "the-old-fleet-secret-98765"


def identity(
    aud: str = CLIENT, expires_at: float = NOW + 3600, app_id: str | None = None
) -> Identity:
    info = TokenInfo("amzn1.account.U", aud, app_id, "https://www.amazon.com", expires_at, NOW)
    raw = {"user_id": "amzn1.account.U", "name": "Ada", "email": "ada@example.com"}
    return Identity.build(info, Profile("amzn1.account.U", "Ada", "ada@example.com", raw=raw))


def authority(**options: Any) -> Authority:
    options = {"client_ids": [CLIENT], "secret_key": SECRET, **options}
    return Authority(LWASettings.build(None, options))


KEY = cache_key(API, TOKEN)
REDIS_KEY = b"lwa:v2:" + KEY.hex().encode()


def ring(secret: str | list[str] = SECRET) -> KeyRing:
    return KeyRing(secret_keys(secret), "shared-cache")


def signed(body: dict[str, Any] | bytes, secret: str = SECRET, key: bytes = REDIS_KEY) -> bytes:
    """A value as a writer holding ``secret`` makes it (any JSON body, or raw bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return base64.urlsafe_b64encode(ring(secret).mac(key, data)).rstrip(b"=") + data


def body_of(value: bytes) -> dict[str, Any]:
    """The JSON of a value (after its MAC)."""
    data: dict[str, Any] = json.loads(value[TAG_CHARS:])
    return data


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
        assert codec.key(KEY) == REDIS_KEY == b"lwa:v2:" + KEY.hex().encode()
        assert codec.lock_key(KEY) == b"lwa:v2:lock:" + KEY.hex().encode()
        assert L2Codec("app-7.prod", 5.0).key(KEY).startswith(b"app-7.prod:v2:")
        assert TOKEN.encode() not in codec.key(KEY)

    def test_identity_value_is_compact_json_without_the_token(self) -> None:
        write = written(authority(), identity())
        assert write.key == REDIS_KEY
        assert write.nx  # a re-write never extends an entry
        assert b" " not in write.value.replace(b"Ada", b"")  # no padding
        assert b"Atza" not in write.value and TOKEN.encode()[5:30] not in write.value
        data = body_of(write.value)
        assert set(data) == {"v", "k", "at", "d", "token_info", "profile"}
        assert (data["v"], data["k"]) == (2, "i")
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
        assert body_of(write.value) == {
            "v": 2,
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
        body = body_of(written(authority(), identity()).value)
        body["token_info"]["expires_at"] = NOW - 1  # Redis would not hold it
        with pytest.raises(InvalidToken) as caught:
            authority().from_l2(KEY, signed(body), NOW)
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

    def test_rejection_text_is_checked(self) -> None:
        body = {"v": 2, "k": "r", "at": NOW, "d": NOW + 30, "e": "Atza|leaked\x00"}
        with pytest.raises(InvalidToken) as caught:
            authority().from_l2(KEY, signed(body), NOW)
        assert caught.value.description == InvalidToken.default_description

    def test_miss(self) -> None:
        a = authority()
        assert a.from_l2(KEY, None, NOW) is None
        assert a.l2.stats.misses == 1


def _good() -> dict[str, Any]:
    return body_of(written(authority(), identity()).value)


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
    b'{"v":2,"k":"i","at":NaN,"d":1e999,"token_info":{},"profile":{}}',
    b"[" * 8000 + b"]" * 8000,  # too deep for json
]


class TestGarbage:
    """Values with a good MAC (a writer holding the secret) but unusable all the same."""

    @pytest.mark.parametrize("value", MALFORMED, ids=range(len(MALFORMED)))
    def test_malformed_ignored_and_counted(self, value: Any) -> None:
        a = authority()
        assert a.from_l2(KEY, signed(value), NOW) is None
        stats = a.l2.stats
        assert (stats.malformed, stats.unauthenticated) == (1, 0)
        assert a.cache.peek(KEY) is None

    @pytest.mark.parametrize("version", [0, 1, 3, "2", True, None])
    def test_other_versions_ignored_and_counted(self, version: Any) -> None:
        a = authority()
        assert a.from_l2(KEY, signed({**_good(), "v": version}), NOW) is None
        assert a.l2.stats.wrong_version == 1

    def test_oversized_ignored_and_counted_before_the_mac(self) -> None:
        a = authority()
        body = _good()
        body["profile"]["blob"] = "x" * MAX_VALUE_BYTES
        assert a.from_l2(KEY, signed(body), NOW) is None
        assert a.l2.stats.oversized == 1
        assert a.from_l2(KEY, b"[" * 100_000, NOW) is None
        assert a.l2.stats.oversized == 2


def _planted(user_id: str = "amzn1.account.VICTIM") -> dict[str, Any]:
    """What an intruder with write access plants: a valid body, this app's ``aud``."""
    body = _good()
    body["token_info"]["user_id"] = body["profile"]["user_id"] = user_id
    return body


UNAUTHENTICATED: dict[str, bytes] = {
    "no_mac": json.dumps(_planted()).encode(),
    "no_mac_v1": json.dumps({**_planted(), "v": 1}).encode(),
    "garbage_mac": b"x" * TAG_CHARS + json.dumps(_planted()).encode(),
    "not_base64": b"!" * TAG_CHARS + json.dumps(_planted()).encode(),
    "short": b"abc",
    "empty": b"",
    "another_secret": signed(_planted(), secret=OLD_SECRET),
    "another_key": signed(_planted(), key=b"lwa:v2:" + b"0" * 64),  # moved from another key
    "another_prefix": signed(_planted(), key=b"other:v2:" + KEY.hex().encode()),
    "tampered": (lambda v: v[:-3] + b"X" + v[-2:])(signed(_planted())),
    "truncated_mac": signed(_planted())[1:],
    "mac_of_plain_json": base64.urlsafe_b64encode(
        hmac.new(hkdf(SECRET.encode(), "shared-cache"), REDIS_KEY + b"{}", "sha256").digest()
    ).rstrip(b"=")
    + b"{}",
}


class TestAuthentication:
    def test_the_mac_is_hmac_sha256_over_key_and_value_under_the_hkdf_key(self) -> None:
        # RFC 5869 test case 3 (SHA-256, no salt, no info): the derivation is HKDF.
        okm = hkdf(b"\x0b" * 22, "", salt=b"", length=42)
        assert okm.hex() == (
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        )
        value = written(authority(), identity()).value
        tag, data = value[:TAG_CHARS], value[TAG_CHARS:]
        key = hkdf(SECRET.encode(), "shared-cache", salt=b"lwa-middleware")
        mac = hmac.new(key, digestmod=hashlib.sha256)
        for part in (REDIS_KEY, data):
            mac.update(len(part).to_bytes(4, "big") + part)
        assert base64.urlsafe_b64decode(tag + b"=") == mac.digest()
        assert data.startswith(b'{"v":2,')

    @pytest.mark.parametrize("name", list(UNAUTHENTICATED))
    def test_a_value_without_a_good_mac_is_a_miss(self, name: str) -> None:
        a = authority()
        assert a.from_l2(KEY, UNAUTHENTICATED[name], NOW) is None
        stats = a.l2.stats
        assert stats.unauthenticated == 1
        assert stats.hits == stats.refused == stats.malformed == 0
        assert a.cache.peek(KEY) is None and a.rejections.get(KEY, NOW) is None

    def test_a_planted_rejection_is_a_miss_too(self) -> None:
        body = {"v": 2, "k": "r", "at": NOW, "d": NOW + 30, "e": "no"}
        a = authority()
        assert a.from_l2(KEY, json.dumps(body).encode(), NOW) is None
        assert a.from_l2(KEY, signed(body, secret=OLD_SECRET), NOW) is None
        assert a.l2.stats.unauthenticated == 2 and a.rejections.get(KEY, NOW) is None

    def test_the_same_value_signed_right_is_believed(self) -> None:  # the test can fail
        a = authority()
        found = a.from_l2(KEY, signed(_planted()), NOW)
        assert found is not None and found.user_id == "amzn1.account.VICTIM"

    def test_str_values_are_checked_too(self) -> None:  # decode_responses=True
        a = authority()
        assert a.from_l2(KEY, UNAUTHENTICATED["no_mac"].decode(), NOW) is None
        assert a.from_l2(KEY, "\udcff" * 50, NOW) is None  # a lone surrogate: no crash
        assert a.l2.stats.unauthenticated == 2

    def test_without_a_secret_nothing_is_written_nor_believed(self) -> None:
        bare = Authority(LWASettings(client_ids=[CLIENT]))
        assert bare.l2_write(KEY, identity(), NOW, NOW) is None
        assert bare.from_l2(KEY, signed(_good()), NOW) is None
        assert bare.l2.stats.unauthenticated == 1

    def test_apps_with_different_secrets_never_read_each_others_entries(self) -> None:
        ours = written(authority(), identity()).value
        theirs = authority(secret_key=OLD_SECRET)
        assert theirs.from_l2(KEY, ours, NOW) is None
        assert authority().from_l2(KEY, written(theirs, identity()).value, NOW) is None
        assert theirs.from_l2(KEY, written(theirs, identity()).value, NOW) is not None

    def test_key_rotation(self) -> None:
        new, both = SECRET, [SECRET, OLD_SECRET]
        rotated = authority(secret_key=both)
        value = written(rotated, identity()).value  # signed with the first (the new one)
        assert value == written(authority(secret_key=new), identity()).value
        assert rotated.from_l2(KEY, value, NOW) is not None  # [new, old] accepts
        assert authority(secret_key=new).from_l2(KEY, value, NOW) is not None
        assert authority(secret_key=[OLD_SECRET, SECRET]).from_l2(KEY, value, NOW) is not None
        old_only = authority(secret_key=OLD_SECRET)
        assert old_only.from_l2(KEY, value, NOW) is None  # only the old: refused
        assert old_only.l2.stats.unauthenticated == 1
        # An entry a not-yet-upgraded worker signed with the old secret: still accepted.
        older = written(authority(secret_key=OLD_SECRET), identity()).value
        assert authority(secret_key=both).from_l2(KEY, older, NOW) is not None
        assert authority(secret_key=new).from_l2(KEY, older, NOW) is None

    def test_one_warning_a_minute_without_token_text(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="lwa_middleware")
        a = authority()
        for offset in (0, 1, 30, 59.9):
            assert a.from_l2(KEY, UNAUTHENTICATED["no_mac"], NOW + offset) is None
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "MAC" in warnings[0].getMessage() and KEY.hex()[:12] in warnings[0].getMessage()
        assert a.from_l2(KEY, UNAUTHENTICATED["another_secret"], NOW + 61) is None
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2 and "3 more" in warnings[1].getMessage()
        assert a.l2.stats.unauthenticated == 5
        assert "Atza" not in caplog.text and TOKEN[5:40] not in caplog.text
        assert KEY.hex() not in caplog.text  # a prefix of the hash only


class TestReadersTime:
    """The reader trusts nothing about time it did not decide."""

    @pytest.mark.parametrize("field", ["at", "issued_at"])
    def test_an_entry_dated_ahead_beyond_the_leeway_is_refused(self, field: str) -> None:
        def value(ahead: float) -> bytes:
            body = _good()
            if field == "at":
                body["at"] = NOW + ahead
                body["d"] = NOW + ahead + 300
            else:
                body["token_info"]["issued_at"] = NOW + ahead
            return signed(body)

        a = authority(expiry_leeway=10)
        assert a.from_l2(KEY, value(10), NOW) is not None  # within the leeway
        a.cache.clear()
        for ahead in (10.01, 3600, 10 * 365 * 86400):
            assert a.from_l2(KEY, value(ahead), NOW) is None
            assert a.cache.peek(KEY) is None
        assert a.l2.stats.future == 3 and a.l2.stats.hits == 1

    def test_a_rejection_dated_ahead_is_refused(self) -> None:
        body = {"v": 2, "k": "r", "at": NOW + 3600, "d": NOW + 3630, "e": "no"}
        a = authority()
        assert a.from_l2(KEY, signed(body), NOW) is None
        assert a.l2.stats.future == 1 and a.rejections.get(KEY, NOW) is None

    def test_far_future_end_and_expiry_bounded_by_the_readers_cache_ttl(self) -> None:
        decade = 10 * 365 * 86400
        body = _good()
        body["d"] = NOW + decade
        body["token_info"]["expires_at"] = NOW + decade
        reader = authority(cache_ttl=60)
        assert reader.from_l2(KEY, signed(body), NOW) is not None
        deadline, _ = reader.cache.peek(KEY) or (0.0, None)
        assert deadline == NOW + 60
        # Written (at) 5 s before this reader's now, and the key already gone from Redis:
        # the worker asks again 55 s later at most, whatever the value said.
        body["at"] = NOW - 5
        reader = authority(cache_ttl=60)
        assert reader.from_l2(KEY, signed(body), NOW) is not None
        assert (reader.cache.peek(KEY) or (0.0,))[0] == NOW + 55
        assert reader.cached(KEY, NOW + 54.9) is not None
        assert reader.cached(KEY, NOW + 55) is None

    def test_an_entry_written_within_the_leeway_ahead_still_ends_by_the_readers_clock(
        self,
    ) -> None:
        body = _good()  # at NOW, d NOW + 300
        body["at"], body["d"] = NOW + 9, NOW + 309  # a writer's clock 9 s ahead
        reader = authority(cache_ttl=300, expiry_leeway=10)
        assert reader.from_l2(KEY, signed(body), NOW) is not None
        assert (reader.cache.peek(KEY) or (0.0,))[0] == NOW + 300  # not NOW + 309

    def test_a_rejection_ends_negative_ttl_from_the_readers_now_at_most(self) -> None:
        body = {"v": 2, "k": "r", "at": NOW + 5, "d": NOW + 3600, "e": "no"}
        reader = authority(negative_ttl=30)
        with pytest.raises(InvalidToken):
            reader.from_l2(KEY, signed(body), NOW)
        assert reader.rejections.get(KEY, NOW + 29.9) is not None
        assert reader.rejections.get(KEY, NOW + 30) is None


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
