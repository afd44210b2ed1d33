"""The verification rules, without I/O: what a cache hit means, what LWA's answers mean.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

:class:`Authority` is shared by the async and sync verifiers. On every cache hit it
re-checks expiry (and the route's scopes are checked by :func:`authorize` on every
request); on a miss the shells fetch token-info and profile and hand the outcomes to
:meth:`Authority.settle`, which checks the audience (``aud`` in ``client_ids``, or
``app_id`` in ``app_ids``), that both answers speak of one customer, and caches the
verdict: TTL = min(``cache_ttl``, seconds to expiry - ``expiry_leeway``); LWA's
``invalid_token`` for ``negative_ttl`` in a cache of its own (so rejections never evict an
identity); transport errors never. Before any call to LWA, :meth:`Authority.admit` rejects
locally what cannot be an LWA access token. LWA failing (unreachable, timing out, 5xx) is
logged at WARNING, at most once per :data:`OUTAGE_LOG_INTERVAL` seconds.

The shared cache (L2, :mod:`lwa_middleware.core.l2`) is consulted only on the full path, after
:meth:`Authority.admit`: :meth:`Authority.from_l2` believes only a value whose MAC (keyed by
``secret_key``) is good, refuses one dated ahead of this worker's clock by more than
``expiry_leeway``, re-checks the rest as it checks an LWA answer (audience against this
app's ``client_ids``/``app_ids``, expiry), and fills L1 for the entry's remaining time as
this worker counts it (never past ``now + cache_ttl``, nor the token's expiry - leeway).
A value that fails the MAC, or is dated ahead, is a miss, counted and logged at WARNING at
most once per :data:`OUTAGE_LOG_INTERVAL`. :meth:`Authority.l2_write` says what an outcome
leaves in Redis (an identity, or LWA's ``invalid_token``; never a transport error, never a
verdict about this app's audience, which another app sharing the Redis may not share).

stale-if-error (``stale_if_error`` seconds, :mod:`lwa_middleware.core.stale`): L1 keeps an
identity that long past its deadline (a miss for every normal lookup), Redis keeps it that
long past its fresh deadline (never past the token's expiry; the value keeps the fresh
deadline, so a reader still sees it end on time), and :meth:`Authority.fallback` answers it,
marked stale, only for a verification that failed because LWA is failing (or the circuit
breaker is open), never for a token LWA rejected, never past the token's own expiry.

Sign-out's revocations (:mod:`lwa_middleware.core.revocation`) are consulted where nothing is
cached yet: on an L1 miss (before the rejections, L2 and LWA), and right after an identity
is stored in L1 (a revocation racing with the verification evicts it, or is seen here);
never on the warm path, which a revocation empties by evicting the key.

"""

from __future__ import annotations

import logging

from lwa_middleware.core.cache import KeyMaker, MemoryCache, Rejected, RejectionCache
from lwa_middleware.core.errors import InsufficientScope, InvalidToken, LWAError, LWAUnavailable
from lwa_middleware.core.keys import KeyRing
from lwa_middleware.core.l2 import PURPOSE, Found, L2Codec, Write, rejected
from lwa_middleware.core.metrics import NullRecorder, Recorder
from lwa_middleware.core.models import Identity, Profile, TokenInfo
from lwa_middleware.core.revocation import Revocations
from lwa_middleware.core.settings import LWASettings
from lwa_middleware.core.stale import StalePolicy
from lwa_middleware.core.tokens import validate_token

logger = logging.getLogger("lwa_middleware")

EXPIRED = "The access token has expired."
WRONG_AUDIENCE = "The access token was not issued to this application."
NOT_AN_ACCESS_TOKEN = "The access token is not a Login with Amazon access token."
REVOKED = "The access token was revoked (its session was signed out)."
#: What every LWA access token begins with (Amazon documents the ``Atza|`` prefix).
ACCESS_TOKEN_PREFIX = "Atza|"
#: At most one WARNING about LWA failing per this many seconds (the rest are counted); the
#: same for shared-cache values refused as unauthenticated or dated ahead.
OUTAGE_LOG_INTERVAL = 60.0
#: Why a shared-cache value was not believed, as the WARNING says it (no token, no value).
UNTRUSTED = {
    "unauthenticated": "its MAC is missing or wrong (written without this app's secret_key: "
    "another app, a worker with another secret_key, or anyone else who can write to Redis)",
    "future": "it is dated ahead of this worker's clock by more than expiry_leeway (a clock "
    "off in the fleet, or a forgery)",
}


class Throttle:
    """At most one event in ``interval`` seconds goes through (``now`` passed in); the
    others are counted for the next one. Not locked: a rare extra line is harmless."""

    __slots__ = ("_at", "_held", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._at: float | None = None
        self._held = 0

    def due(self, now: float) -> int | None:
        """``None`` when held back, else how many were held back since the last one."""
        last = self._at
        if last is not None and 0 <= now - last < self.interval:
            self._held += 1
            return None
        held, self._held, self._at = self._held, 0, now
        return held


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

    __slots__ = (
        "_app_ids",
        "_client_ids",
        "_outage_logged_at",
        "_outages_unlogged",
        "_peek",
        "_untrusted_log",
        "cache",
        "key",
        "l2",
        "recorder",
        "rejections",
        "revocations",
        "settings",
        "stale",
    )

    def __init__(
        self,
        settings: LWASettings,
        cache: MemoryCache[Identity] | None = None,
        rejections: RejectionCache | None = None,
        recorder: Recorder | None = None,
        revocations: Revocations | None = None,
    ) -> None:
        self.settings = settings
        #: Sign-out's revoked keys (a sign-in's, shared with it, or this authority's own).
        self.revocations = (
            revocations
            if revocations is not None
            else Revocations(api_base_url=settings.api_base_url)
        )
        #: stale-if-error: how long past its deadline an identity may still be answered.
        self.stale = StalePolicy(settings.stale_if_error)
        #: Where the core reports what it does (metrics); the verifiers pass theirs.
        self.recorder: Recorder = recorder if recorder is not None else NullRecorder()
        self.cache: MemoryCache[Identity] = (
            cache
            if cache is not None
            else MemoryCache(settings.cache_maxsize, grace=self.stale.window)
        )
        self._peek = self.cache.peeker
        self.rejections = (
            rejections
            if rejections is not None
            else RejectionCache(settings.negative_maxsize, settings.negative_ttl)
        )
        self.key = KeyMaker(settings.api_base_url)
        self._client_ids = frozenset(settings.client_ids)
        self._app_ids = frozenset(settings.app_ids)
        self._outage_logged_at: float | None = None
        self._outages_unlogged = 0
        #: The shared cache's keys, values and counts (used only when Redis is configured,
        #: which needs ``secret_key``: the values' MAC is keyed by it).
        secrets = settings.secret_keys
        self.l2 = L2Codec(
            settings.redis_prefix,
            settings.timeout,
            KeyRing(secrets, PURPOSE) if secrets else None,
        )
        self._untrusted_log = {why: Throttle(OUTAGE_LOG_INTERVAL) for why in UNTRUSTED}

    def cached(self, key: bytes, now: float) -> Identity | None:
        """The cached identity, ``None`` on a miss; raises ``InvalidToken`` for a cached
        rejection or a token that expired while cached. One dict lookup (the warm path);
        the rejections are looked up only when it misses."""
        item = self.cache.peek(key)
        if item is not None:
            deadline, entry = item
            if now < deadline:
                if now >= entry.token_info.expires_at:
                    self.cache.delete(key)
                    raise InvalidToken(EXPIRED)
                return entry
            if now >= deadline + self.cache.grace:  # kept within grace: stale-if-error
                self.cache.delete(key)
        if self.revocations.holds(key, now):
            raise InvalidToken(REVOKED)
        rejected = self.rejections.get(key, now)
        if rejected is not None:
            raise InvalidToken(rejected.description)
        return None

    def lookup(self, token: str, now: float) -> Identity | None:
        """:meth:`cached` for a token."""
        return self.cached(self.key(token), now)

    def fresh(self, key: bytes, now: float) -> Identity | None:
        """The shells' warm path: the identity cached under ``key`` when its entry and its
        token are both live at ``now``; ``None`` otherwise (the full path then decides:
        a miss, an expiry, a rejection, stale-if-error). One frame, as ``peek`` was."""
        item = self._peek(key)
        if item is not None and now < item[0]:
            identity = item[1]
            if now < identity.token_info.expires_at:
                return identity
        return None

    def lookup_raw(self, token: bytes, now: float) -> Identity | None:
        """:meth:`cached` for a token's bytes (as a header carried it: no decoding needed).

        A live identity is answered in this frame: calling :meth:`cached` for the hit too
        costs ~0.2 µs more per request (measured), on the path every request takes.
        """
        key = self.key.raw(token)
        item = self._peek(key)
        if item is not None:
            deadline, entry = item
            if now < deadline and now < entry.token_info.expires_at:
                return entry
        return self.cached(key, now)

    def admit(self, token: str) -> str:
        """The local checks before a token is ever sent to LWA: its characters, and (unless
        ``check_token_prefix`` is off) the ``Atza|`` prefix of every LWA access token."""
        validate_token(token)
        if self.settings.check_token_prefix and not token.startswith(ACCESS_TOKEN_PREFIX):
            raise InvalidToken(NOT_AN_ACCESS_TOKEN)
        return token

    def check_token_info(
        self, key: bytes, info: TokenInfo | BaseException, now: float
    ) -> TokenInfo:
        """Token-info's verdict: the info when it is ours, else the error (cached if final)."""
        if isinstance(info, BaseException):
            raise self.fail(key, info, now)
        if not self.ours(info):
            raise self.fail(key, InvalidToken(WRONG_AUDIENCE), now)
        return info

    def ours(self, info: TokenInfo) -> bool:
        """Whether a token was issued to this app: ``aud`` in ``client_ids``, or ``app_id``
        in ``app_ids``."""
        return info.aud in self._client_ids or (
            info.app_id is not None and info.app_id in self._app_ids
        )

    def deadline(self, info: TokenInfo, now: float) -> float:
        """When a verdict of LWA's given at ``now`` ends: min(``cache_ttl``, the token's
        expiry - ``expiry_leeway``)."""
        settings = self.settings
        return min(now + settings.cache_ttl, info.expires_at - settings.expiry_leeway)

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
        self.cache.set(key, identity, self.deadline(info, now), now)
        self.refuse_revoked(key, now)
        return identity

    def refuse_revoked(self, key: bytes, now: float) -> None:
        """``InvalidToken`` (and the key out of L1) when sign-out revoked it. Called after
        an identity is stored: a revocation holds the key before it evicts it, so one that
        raced with this verification is either seen here or evicts what was stored."""
        if self.revocations.holds(key, now):
            self.cache.delete(key)
            raise InvalidToken(REVOKED)

    def from_l2(self, key: bytes, raw: bytes | str | None, now: float) -> Identity | None:
        """The verdict of what Redis held for ``key``: the identity (now also in L1 until
        the entry's end), ``None`` for a miss (or anything unusable: unauthenticated,
        malformed, dated ahead; counted), or ``InvalidToken`` for a rejection (now also in
        L1) or an identity that fails the checks an LWA answer must pass (not issued to
        this app, expired).

        Time is this worker's: an entry dated (``at``, or the token's ``issued_at``) more
        than ``expiry_leeway`` ahead of ``now`` is refused, and one taken ends in L1 at
        min(its ``d``, ``at`` + ``cache_ttl``, ``now`` + ``cache_ttl``, the token's expiry
        - ``expiry_leeway``) (a rejection: ``negative_ttl`` instead of ``cache_ttl``)."""
        l2 = self.l2
        recorder = self.recorder
        found = l2.decode(key, raw)
        if not isinstance(found, Found):
            if found != "miss":  # unauthenticated, malformed, ...: counted by decode
                recorder.l2_malformed()
                if found == "unauthenticated":
                    self._untrusted(found, key, now)
            recorder.cache("l2", False)
            return None
        settings = self.settings
        if self._dated_ahead(found, now):
            l2.stats.future += 1
            recorder.l2_malformed()
            self._untrusted("future", key, now)
            recorder.cache("l2", False)
            return None
        if found.identity is None:
            ttl = settings.negative_ttl
            until = min(found.deadline, found.at + ttl, now + ttl)
            if until <= now:
                l2.stats.stale += 1
                recorder.cache("l2", False)
                return None
            rejection = rejected(found, until)
            self.rejections.set(key, rejection, now)
            l2.stats.negative_hits += 1
            recorder.cache("l2", True)
            raise InvalidToken(rejection.description)
        identity = found.identity
        info = identity.token_info
        refusal = None if self.ours(info) else WRONG_AUDIENCE
        if refusal is None and now >= info.expires_at:
            refusal = EXPIRED
        if refusal is not None:
            l2.stats.refused += 1
            recorder.cache("l2", True)  # Redis answered the request (with a refusal)
            logger.info("shared cache entry refused: %s (cache key %s)", refusal, fingerprint(key))
            raise InvalidToken(refusal)
        # Never longer than this worker would keep LWA's own answer given now.
        deadline = min(found.deadline, self.deadline(info, found.at), self.deadline(info, now))
        # Past its deadline the entry is a miss, never a hit; with stale-if-error it goes to
        # L1 all the same, kept only within the window, so fallback() can answer it stale
        # if LWA fails now (set() stores nothing past deadline + window).
        self.cache.set(key, identity, deadline, now)
        self.refuse_revoked(key, now)
        if deadline <= now:
            l2.stats.stale += 1
            recorder.cache("l2", False)
            return None
        l2.stats.hits += 1
        recorder.cache("l2", True)
        return identity

    def _dated_ahead(self, found: Found, now: float) -> bool:
        """Whether an entry says it was made (``at``, or its token issued) later than ``now``
        + ``expiry_leeway``: no honest writer's clock is that far ahead of ours."""
        latest = now + self.settings.expiry_leeway
        if found.at > latest:
            return True
        identity = found.identity
        issued = None if identity is None else identity.token_info.issued_at
        return issued is not None and issued > latest

    def _untrusted(self, why: str, key: bytes, now: float) -> None:
        """Log a value refused (:data:`UNTRUSTED`) at WARNING, at most once per
        :data:`OUTAGE_LOG_INTERVAL` per worker and reason: only a prefix of the key's hash."""
        held = self._untrusted_log[why].due(now)
        if held is None:
            return
        suffix = f" ({held} more refused since the last warning)" if held else ""
        logger.warning(
            "shared cache (Redis) entry ignored: %s (cache key %s)%s",
            UNTRUSTED[why],
            fingerprint(key),
            suffix,
        )

    def l2_write(
        self, key: bytes, outcome: Identity | BaseException, at: float, now: float
    ) -> Write | None:
        """What a verification's outcome (LWA asked at ``at``) leaves in Redis at ``now``: an
        identity until its L1 deadline, LWA's ``invalid_token`` for ``negative_ttl``;
        nothing for a transport error, nor for a token issued to another app (a verdict
        about this app only)."""
        if isinstance(outcome, Identity):
            info = outcome.token_info
            deadline = self.deadline(info, at)
            # Redis keeps it past its (fresh) deadline for stale-if-error, never past expiry.
            keep = self.stale.retain_until(deadline, info.expires_at)
            return self.l2.identity(key, outcome, at, deadline, now, keep_until=keep)
        if isinstance(outcome, InvalidToken) and outcome.description != WRONG_AUDIENCE:
            if self.settings.negative_ttl:
                return self.l2.rejection(
                    key, outcome.description, at, self.settings.negative_ttl, now
                )
            # Nothing to remember the rejection by: at least forget the identity, so no
            # worker serves it stale (stale-if-error) once LWA has rejected the token.
            return self.l2.forget(key)
        return None

    def fallback(self, key: bytes, error: BaseException, now: float) -> Identity | None:
        """stale-if-error: the identity to answer instead of ``error`` (LWA failing, or the
        breaker open), marked stale; ``None`` when ``error`` must be answered (off, not a
        failure it covers, nothing held, too old, the token expired or rejected)."""
        stale = self.stale.from_cache(self.cache, self.rejections, key, now, error)
        if stale is not None:
            self.recorder.stale_served()
            logger.info("answering a stale identity (cache key %s)", fingerprint(key))
        return stale

    def fail(self, key: bytes, error: BaseException, now: float) -> BaseException:
        """The error to raise for a failed verification; ``invalid_token`` is cached."""
        if isinstance(error, InvalidToken):
            self.cache.delete(key)
            self.rejections.set(key, Rejected(error.description), now)
        elif isinstance(error, LWAUnavailable):
            self.outage(error, now)
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

    def outage(self, error: LWAError, now: float) -> None:
        """Log that LWA is failing at WARNING, at most once per :data:`OUTAGE_LOG_INTERVAL`
        (the failures in between are counted in the next line). Our description only: it
        names the kind of failure, never a token nor LWA's free text."""
        last = self._outage_logged_at
        if last is not None and 0 <= now - last < OUTAGE_LOG_INTERVAL:
            self._outages_unlogged += 1
            return
        more, self._outages_unlogged, self._outage_logged_at = self._outages_unlogged, 0, now
        suffix = f" ({more} more failure(s) since the last warning)" if more else ""
        cause = getattr(error, "cause", None)
        where = f" [{cause}]" if cause else ""
        logger.warning("LWA verification is failing: %s%s%s", error.description, where, suffix)
