"""stale-if-error, without I/O: when an identity whose cache entry just expired may still be
served because LWA is failing (or the circuit breaker is open).

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

Opt-in (``stale_if_error`` seconds; ``0``/``None`` never serves stale). While a verification
that would call LWA fails with :class:`~lwa_middleware.core.errors.LWAUnavailable` (which
includes the breaker's :class:`~lwa_middleware.core.breaker.CircuitOpen`), an identity whose L1
or L2 entry expired less than ``stale_if_error`` seconds ago is answered instead of the
error, but

- never at or past the token's own ``expires_at`` (no leeway: LWA said it is valid until
  then, and past it no one can vouch for it), and
- never for a token LWA has rejected (a live entry in the rejection cache).

A stale answer is marked: it is a :class:`StaleIdentity` (an :class:`Identity` subclass
whose ``stale`` is ``True``), and the shells count it (``Recorder.stale_served``).
:class:`StalePolicy` is the verdict; :meth:`StalePolicy.retain_until` says how long a
cache must keep an entry past its deadline so the verdict has something to serve.

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from lwa_middleware.core.cache import MemoryCache, RejectionCache
from lwa_middleware.core.errors import ConfigurationError, LWAUnavailable
from lwa_middleware.core.models import Identity

__all__ = [
    "StaleIdentity",
    "StalePolicy",
    "StaleReason",
    "StaleVerdict",
    "is_stale",
    "may_serve_stale",
    "stale_verdict",
]

StaleReason = Literal["stale", "fresh", "disabled", "too_old", "token_expired", "rejected"]


@dataclass(frozen=True, slots=True)
class StaleVerdict:
    """Whether an entry may be served stale (``serve``), why (``reason``), and how long ago
    its cache entry expired (``age``, seconds; ``0`` for a live one)."""

    serve: bool
    reason: StaleReason
    age: float = 0.0


_FRESH: Final = StaleVerdict(False, "fresh")
_DISABLED: Final = StaleVerdict(False, "disabled")
_REJECTED: Final = StaleVerdict(False, "rejected")


def stale_verdict(
    entry_deadline: float,
    token_expires_at: float,
    now: float,
    stale_if_error: float | None,
    *,
    rejected: bool = False,
) -> StaleVerdict:
    """May an entry stored until ``entry_deadline`` (its L1 deadline, or the L2 entry's
    fresh-until) for a token valid until ``token_expires_at`` be served stale at ``now``?

    ``serve`` only when the entry has expired (a live entry is ``"fresh"``: the normal hit
    path answers it), less than ``stale_if_error`` seconds ago, ``now < token_expires_at``,
    and LWA has not rejected the token (``rejected``).
    """
    if not stale_if_error or stale_if_error <= 0:
        return _DISABLED
    if rejected:
        return _REJECTED
    age = now - entry_deadline
    if age < 0:
        return _FRESH
    if now >= token_expires_at:
        return StaleVerdict(False, "token_expired", age)
    if age >= stale_if_error:
        return StaleVerdict(False, "too_old", age)
    return StaleVerdict(True, "stale", age)


def may_serve_stale(error: BaseException) -> bool:
    """Whether a verification's failure is one stale-if-error covers: LWA failing
    (unreachable, timed out, 5xx, 429, unusable answer) or the breaker open. LWA's own
    verdicts (``invalid_token``, …) and ``Overloaded`` (our fan-out cap) are not."""
    return isinstance(error, LWAUnavailable)


class StaleIdentity(Identity):
    """An identity answered stale (stale-if-error): equal in every field to the cached one,
    ``stale`` is ``True``. ``isinstance(x, Identity)`` holds, so every reader of
    ``scope["lwa"]`` / ``environ["lwa"]`` keeps working."""

    __slots__ = ()

    #: Marks a stale answer (``Identity.stale`` is ``False``).
    stale: ClassVar[bool] = True

    @classmethod
    def of(cls, identity: Identity) -> StaleIdentity:
        """``identity``, marked stale (a new object; the cached one is left as it is)."""
        if isinstance(identity, StaleIdentity):
            return identity
        return cls(token_info=identity.token_info, profile=identity.profile, scopes=identity.scopes)


def is_stale(identity: Identity) -> bool:
    """Whether ``identity`` was answered stale (works before and after ``Identity.stale``)."""
    return isinstance(identity, StaleIdentity)


class StalePolicy:
    """The stale-if-error policy for one ``stale_if_error`` setting (``0`` or ``None``: off)."""

    __slots__ = ("window",)

    def __init__(self, stale_if_error: float | None = 0) -> None:
        if stale_if_error is None:
            stale_if_error = 0
        if (
            isinstance(stale_if_error, bool)
            or not isinstance(stale_if_error, (int, float))
            or not stale_if_error >= 0
            or stale_if_error == float("inf")
        ):
            raise ConfigurationError(
                f"stale_if_error must be a finite number of seconds >= 0, got {stale_if_error!r}"
            )
        #: Seconds past an entry's deadline it may still be served while LWA fails.
        self.window = float(stale_if_error)

    @property
    def enabled(self) -> bool:
        """Whether stale answers may be served at all."""
        return self.window > 0

    def verdict(
        self, entry_deadline: float, identity: Identity, now: float, *, rejected: bool = False
    ) -> StaleVerdict:
        """:func:`stale_verdict` for a cached identity."""
        return stale_verdict(
            entry_deadline, identity.token_info.expires_at, now, self.window, rejected=rejected
        )

    def serve(
        self,
        entry_deadline: float,
        identity: Identity,
        now: float,
        error: BaseException,
        *,
        rejected: bool = False,
    ) -> StaleIdentity | None:
        """The stale answer for a failed verification, or ``None`` when ``error`` must be
        answered (not a failure stale-if-error covers, or the verdict says no)."""
        if self.window <= 0 or not may_serve_stale(error):
            return None
        if not self.verdict(entry_deadline, identity, now, rejected=rejected).serve:
            return None
        return StaleIdentity.of(identity)

    def from_cache(
        self,
        cache: MemoryCache[Identity],
        rejections: RejectionCache,
        key: bytes,
        now: float,
        error: BaseException,
    ) -> StaleIdentity | None:
        """The stale answer the L1 still holds for ``key`` (``cache.peek``: live or not),
        unless ``rejections`` holds a live rejection for it; ``None`` when there is none
        or it may not be served. One ``peek`` and one rejection lookup: only ever on a
        failed verification, never on the warm path."""
        if self.window <= 0 or not may_serve_stale(error):
            return None
        item = cache.peek(key)
        if item is None:
            return None
        deadline, identity = item
        rejected = rejections.get(key, now) is not None
        return self.serve(deadline, identity, now, error, rejected=rejected)

    def retain_until(self, entry_deadline: float, token_expires_at: float) -> float:
        """How long a cache keeps an entry so it can be served stale: its deadline plus the
        window, but never past the token's own expiry (and never less than the deadline)."""
        if self.window <= 0:
            return entry_deadline
        return max(entry_deadline, min(entry_deadline + self.window, token_expires_at))

    def __repr__(self) -> str:
        return f"StalePolicy(stale_if_error={self.window:g})"
