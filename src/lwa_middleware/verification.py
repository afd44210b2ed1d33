"""The verification rules, without I/O: what a cache hit means, what LWA's answers mean.

:class:`Authority` is shared by the async and sync verifiers. On every cache hit it
re-checks expiry (and the route's scopes are checked by :func:`authorize` on every
request); on a miss the shells fetch token-info and profile and hand the outcomes to
:meth:`Authority.settle`, which checks the audience (``aud`` in ``client_ids``, or
``app_id`` in ``app_ids``), that both answers speak of one customer, and caches the
verdict: TTL = min(``cache_ttl``, seconds to expiry - ``expiry_leeway``); LWA's
``invalid_token`` for ``negative_ttl``; transport errors never.
"""

from __future__ import annotations

import logging

from lwa_middleware.cache import KeyMaker, MemoryCache, Rejected
from lwa_middleware.errors import InsufficientScope, InvalidToken, LWAError, LWAUnavailable
from lwa_middleware.models import Identity, Profile, TokenInfo
from lwa_middleware.settings import LWASettings
from lwa_middleware.tokens import validate_token

logger = logging.getLogger("lwa_middleware")

EXPIRED = "The access token has expired."
WRONG_AUDIENCE = "The access token was not issued to this application."


def fingerprint(key: bytes) -> str:
    """A short, non-reversible label for logs (a prefix of the key's hash, not the token)."""
    return key.hex()[:12]


def authorize(identity: Identity, required: frozenset[str]) -> Identity:
    """``identity`` when it holds every required scope, else :class:`InsufficientScope`."""
    if required and not required <= identity.scopes:
        missing = required - identity.scopes
        raise InsufficientScope(
            f"The access token lacks the scope(s) this resource requires: "
            f"{' '.join(sorted(missing))}.",
            required=required,
        )
    return identity


class Authority:
    """The sans-IO core of verification for one settings object (and its L1 cache)."""

    __slots__ = ("_app_ids", "_client_ids", "cache", "key", "settings")

    def __init__(self, settings: LWASettings, cache: MemoryCache | None = None) -> None:
        self.settings = settings
        self.cache = cache if cache is not None else MemoryCache(settings.cache_maxsize)
        self.key = KeyMaker(settings.api_base_url)
        self._client_ids = frozenset(settings.client_ids)
        self._app_ids = frozenset(settings.app_ids)

    def cached(self, key: bytes, now: float) -> Identity | None:
        """The cached identity, ``None`` on a miss; raises ``InvalidToken`` for a cached
        rejection or a token that expired while cached. One dict lookup (the warm path)."""
        item = self.cache.peek(key)
        if item is None:
            return None
        deadline, entry = item
        if now >= deadline:
            self.cache.delete(key)
            return None
        if type(entry) is Rejected:
            raise InvalidToken(entry.description)
        assert type(entry) is Identity
        if now >= entry.token_info.expires_at:
            self.cache.delete(key)
            raise InvalidToken(EXPIRED)
        return entry

    def lookup(self, token: str, now: float) -> Identity | None:
        """:meth:`cached` for a token."""
        return self.cached(self.key(token), now)

    def lookup_raw(self, token: bytes, now: float) -> Identity | None:
        """:meth:`cached` for a token's bytes (as a header carried it: no decoding needed).

        A live identity is answered in this frame: calling :meth:`cached` for the hit too
        costs ~0.2 µs more per request (measured), on the path every request takes.
        """
        key = self.key.raw(token)
        item = self.cache.peek(key)
        if item is not None:
            deadline, entry = item
            if now < deadline and type(entry) is Identity and now < entry.token_info.expires_at:
                return entry
        return self.cached(key, now)

    @staticmethod
    def admit(token: str) -> str:
        """The local character check before a token is ever sent to LWA."""
        return validate_token(token)

    def check_token_info(
        self, key: bytes, info: TokenInfo | BaseException, now: float
    ) -> TokenInfo:
        """Token-info's verdict: the info when it is ours, else the error (cached if final)."""
        if isinstance(info, BaseException):
            raise self.fail(key, info, now)
        if info.aud not in self._client_ids and (
            info.app_id is None or info.app_id not in self._app_ids
        ):
            raise self.fail(key, InvalidToken(WRONG_AUDIENCE), now)
        return info

    def settle(
        self,
        key: bytes,
        info: TokenInfo | BaseException,
        profile: Profile | BaseException,
        now: float,
    ) -> Identity:
        """Both answers' verdict: a cached :class:`Identity`, or the error to answer."""
        info = self.check_token_info(key, info, now)
        if isinstance(profile, BaseException):
            raise self.fail(key, profile, now)
        if profile.user_id != info.user_id:
            raise self.fail(
                key, LWAUnavailable("Login with Amazon's answers disagree on the customer."), now
            )
        identity = Identity.build(info, profile)
        settings = self.settings
        deadline = min(now + settings.cache_ttl, info.expires_at - settings.expiry_leeway)
        self.cache.set(key, identity, deadline, now)
        return identity

    def fail(self, key: bytes, error: BaseException, now: float) -> BaseException:
        """The error to raise for a failed verification; ``invalid_token`` is cached."""
        if isinstance(error, InvalidToken):
            self.cache.set(key, Rejected(error.description), now + self.settings.negative_ttl, now)
        if not isinstance(error, LWAError):
            logger.exception(
                "unexpected error during verification (cache key %s)",
                fingerprint(key),
                exc_info=error,
            )
            return LWAUnavailable()
        # Only our error code and a prefix of the cache key's hash: never the token, nor
        # LWA's free text.
        logger.info("verification refused: %s (cache key %s)", error.error, fingerprint(key))
        return error
