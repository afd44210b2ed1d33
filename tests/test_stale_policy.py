"""The stale-if-error policy (pure, fake clock) and the stale mark on identities."""

from __future__ import annotations

import pickle

import pytest

from lwa_middleware.core.breaker import CircuitOpen
from lwa_middleware.core.cache import MemoryCache, Rejected, RejectionCache
from lwa_middleware.core.errors import ConfigurationError, InvalidToken, LWAUnavailable, Overloaded
from lwa_middleware.core.models import Identity, Profile, TokenInfo
from lwa_middleware.core.stale import (
    StaleIdentity,
    StalePolicy,
    is_stale,
    may_serve_stale,
    stale_verdict,
)

NOW = 1_000_000.0
DEADLINE = NOW - 10  # the cache entry expired 10 s ago


def identity(expires_at: float = NOW + 600) -> Identity:
    info = TokenInfo("amzn1.account.U", "client", None, None, expires_at, NOW - 3000)
    return Identity.build(info, Profile("amzn1.account.U", raw={"user_id": "amzn1.account.U"}))


class TestVerdict:
    def test_within_the_window(self) -> None:
        verdict = stale_verdict(DEADLINE, NOW + 600, NOW, 60)
        assert verdict.serve and verdict.reason == "stale" and verdict.age == 10

    @pytest.mark.parametrize("window", [0, None, -5])
    def test_disabled(self, window: float | None) -> None:
        verdict = stale_verdict(DEADLINE, NOW + 600, NOW, window)
        assert not verdict.serve and verdict.reason == "disabled"

    def test_past_the_window(self) -> None:
        assert stale_verdict(DEADLINE, NOW + 600, NOW, 10).reason == "too_old"  # exactly
        assert stale_verdict(DEADLINE, NOW + 600, NOW, 9).reason == "too_old"
        assert stale_verdict(DEADLINE, NOW + 600, NOW, 10.001).serve

    def test_never_past_the_tokens_own_expiry(self) -> None:
        assert stale_verdict(DEADLINE, NOW, NOW, 3600).reason == "token_expired"  # no leeway
        assert stale_verdict(DEADLINE, NOW - 1, NOW, 3600).reason == "token_expired"
        assert stale_verdict(DEADLINE, NOW + 0.001, NOW, 3600).serve

    def test_never_for_a_rejected_token(self) -> None:
        verdict = stale_verdict(DEADLINE, NOW + 600, NOW, 60, rejected=True)
        assert not verdict.serve and verdict.reason == "rejected"

    def test_a_live_entry_is_fresh_not_stale(self) -> None:
        verdict = stale_verdict(NOW + 1, NOW + 600, NOW, 60)
        assert not verdict.serve and verdict.reason == "fresh"

    def test_expired_exactly_at_the_deadline_is_stale(self) -> None:
        verdict = stale_verdict(NOW, NOW + 600, NOW, 60)
        assert verdict.serve and verdict.age == 0


class TestWhichFailures:
    @pytest.mark.parametrize(
        "error", [LWAUnavailable("Login with Amazon timed out."), CircuitOpen(retry_after=3)]
    )
    def test_lwa_failing_or_breaker_open(self, error: BaseException) -> None:
        assert may_serve_stale(error)

    @pytest.mark.parametrize("error", [InvalidToken(), Overloaded(), ValueError("bug")])
    def test_not_for_lwa_verdicts_or_local_errors(self, error: BaseException) -> None:
        assert not may_serve_stale(error)


class TestPolicy:
    def test_serve_marks_the_answer(self) -> None:
        policy = StalePolicy(60)
        cached = identity()
        answer = policy.serve(DEADLINE, cached, NOW, LWAUnavailable())
        assert answer is not None and is_stale(answer) and answer.stale
        assert isinstance(answer, Identity)
        assert (answer.token_info, answer.profile, answer.scopes) == (
            cached.token_info,
            cached.profile,
            cached.scopes,
        )
        assert not is_stale(cached)  # the cached identity is left as it was

    def test_serve_refuses(self) -> None:
        policy = StalePolicy(60)
        cached = identity()
        assert policy.serve(DEADLINE, cached, NOW, InvalidToken()) is None
        assert policy.serve(DEADLINE, cached, NOW, LWAUnavailable(), rejected=True) is None
        assert policy.serve(NOW - 61, cached, NOW, LWAUnavailable()) is None
        assert policy.serve(DEADLINE, identity(expires_at=NOW), NOW, LWAUnavailable()) is None
        assert StalePolicy(0).serve(DEADLINE, cached, NOW, LWAUnavailable()) is None
        assert not StalePolicy(None).enabled

    def test_retain_until(self) -> None:
        policy = StalePolicy(60)
        assert policy.retain_until(NOW, NOW + 600) == NOW + 60
        assert policy.retain_until(NOW, NOW + 30) == NOW + 30  # never past the token's expiry
        assert policy.retain_until(NOW, NOW - 5) == NOW  # never less than the deadline
        assert StalePolicy(0).retain_until(NOW, NOW + 600) == NOW

    @pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "60"])
    def test_bad_setting(self, bad: object) -> None:
        with pytest.raises(ConfigurationError):
            StalePolicy(bad)  # type: ignore[arg-type]

    def test_repr(self) -> None:
        assert repr(StalePolicy(30)) == "StalePolicy(stale_if_error=30)"


class TestFromCache:
    def test_an_expired_l1_entry_still_held_is_served(self) -> None:
        cache: MemoryCache[Identity] = MemoryCache(10)
        rejections = RejectionCache(10, 30)
        cached = identity()
        cache.set(b"k", cached, DEADLINE, DEADLINE - 100)
        policy = StalePolicy(60)
        answer = policy.from_cache(cache, rejections, b"k", NOW, LWAUnavailable())
        assert answer is not None and answer.stale and answer.token_info is cached.token_info
        assert policy.from_cache(cache, rejections, b"other", NOW, LWAUnavailable()) is None
        assert policy.from_cache(cache, rejections, b"k", NOW, InvalidToken()) is None
        assert StalePolicy(0).from_cache(cache, rejections, b"k", NOW, LWAUnavailable()) is None

    def test_never_for_a_token_in_the_rejection_cache(self) -> None:
        cache: MemoryCache[Identity] = MemoryCache(10)
        rejections = RejectionCache(10, 30)
        cache.set(b"k", identity(), DEADLINE, DEADLINE - 100)
        rejections.set(b"k", Rejected("revoked"), NOW - 1)
        assert StalePolicy(60).from_cache(cache, rejections, b"k", NOW, LWAUnavailable()) is None


class TestStaleIdentity:
    def test_of_is_idempotent_and_survives_pickling(self) -> None:
        answer = StaleIdentity.of(identity())
        assert StaleIdentity.of(answer) is answer
        copy = pickle.loads(pickle.dumps(answer))
        assert type(copy) is StaleIdentity and copy.stale and copy == answer

    def test_it_is_frozen_and_slotted(self) -> None:
        answer = StaleIdentity.of(identity())
        with pytest.raises((AttributeError, TypeError)):
            answer.scopes = frozenset()  # type: ignore[misc]
        assert not hasattr(answer, "__dict__")
