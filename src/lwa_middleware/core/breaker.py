"""A circuit breaker per LWA host, without I/O: ``now`` is passed in, nothing is awaited.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

After ``failure_threshold`` consecutive upstream failures (:func:`is_upstream_failure`)
the breaker **opens**: for
``open_seconds`` every verification that would call LWA fails fast with
:class:`CircuitOpen` (``ServerError`` 500 with ``Retry-After``). Then it is **half open**:
exactly one caller (the probe) is let through, the others still get :class:`CircuitOpen`;
the probe's success closes the breaker, its failure opens it for another window. A probe
that never reports (its request was cancelled) frees the probe slot after ``open_seconds``
too, so the breaker cannot wedge half open.

**Only LWA's own failures count** (an attacker's flood must not lock everyone out): an
answer of 5xx or 429, a connection error, an unusable answer, or a call that ran out of time
in flight although it started with a real budget. A call is sent only with a real budget,
at least :data:`MIN_CALL_SHARE` of ``timeout`` left (:func:`call_budget`); with less it is
not sent at all (``Overloaded``: it could hardly succeed, and its timeout would say nothing
about LWA), so every timeout of a call sent is LWA's. Never counted: a request refused by
the local fan-out limit, one that ran out of time waiting in its queue, one with too little
time left to be sent (each :class:`~lwa_middleware.core.errors.Overloaded`), and
:class:`CircuitOpen` (no call made). LWA answering ``invalid_token`` (or
``insufficient_scope``, ``invalid_request``; for a token request any of its documented
grant errors, ``invalid_grant``...) is LWA working fine: it counts as a success. The one
rule, :meth:`CircuitBreaker.record` with :func:`call_budget`, serves every caller sharing a
breaker: the verifiers and the sign-in's token calls
(:class:`~lwa_middleware.upstream.token_client.TokenClient` and its async twin). State changes are
logged at WARNING on the
``lwa_middleware`` logger (the breaker's name, usually the LWA host, never a token) and
reported to ``on_change(old, new)``.

One :class:`~lwa_middleware.core.verification.Authority` talks to one ``api_base_url``, so one
breaker per verifier is one breaker per host for that verifier; :class:`BreakerRegistry`
shares one breaker per host between several verifiers (or the sign-in's token calls) of a
process.

Thread-safe (a small lock, taken only off the closed fast path), so the sync shell's
threads can share a breaker; in the async shell the lock is never contended.

"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from lwa_middleware.core.errors import ConfigurationError, LWAError, LWAUnavailable
from lwa_middleware.core.grants import GrantError, GrantUnavailable

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "MIN_CALL_SHARE",
    "OPEN",
    "BreakerRegistry",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "call_budget",
    "is_upstream_failure",
]

logger = logging.getLogger("lwa_middleware")

BreakerState = Literal["closed", "open", "half_open"]
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"

ChangeHook = Callable[[str, str], None]

#: A call to LWA is sent only with at least this share of its ``timeout`` left: a real
#: budget, so that its running out of time in flight is LWA's failure, never the queue's.
MIN_CALL_SHARE = 0.5


class CircuitOpen(LWAUnavailable):
    """LWA has been failing: verification is refused without calling it, for a short while.

    Renders as ``ServerError`` 500 with ``Retry-After: retry_after`` (``render_error``
    reads the instance's ``retry_after``). The signature keeps ``description`` first, as
    every :class:`~lwa_middleware.core.errors.LWAError`, so ``type(error)(error.description)``
    (the verifier's copy for single-flight waiters) still builds one (``retry_after=1``).
    """

    default_description = "Login with Amazon is failing; verification is paused briefly."

    def __init__(self, description: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(description)
        self.retry_after: int = max(1, int(retry_after))


def is_upstream_failure(error: BaseException | None) -> bool:
    """Whether ``error`` counts against LWA: :class:`~lwa_middleware.core.errors.LWAUnavailable`
    or, for a token request, :class:`~lwa_middleware.core.grants.GrantUnavailable` (connect
    errors, timeouts in flight, 5xx, 429, unusable answers), but not :class:`CircuitOpen`
    (our own refusal, no call was made) nor
    :class:`~lwa_middleware.core.errors.Overloaded` (our fan-out limit: no call was made)."""
    if isinstance(error, LWAUnavailable):
        return not isinstance(error, CircuitOpen)
    return isinstance(error, GrantUnavailable)


def call_budget(left: float | None, timeout: float) -> float | None:
    """The time a call to LWA gets: ``left`` (what remains of the request's deadline, ``None``
    when spent) when it is a real budget, at least :data:`MIN_CALL_SHARE` of ``timeout``;
    else ``None``: do not send it (answer ``Overloaded``, count nothing). A request that
    waited in the fan-out queue for most of its deadline would only time out in flight, and
    be taken for LWA failing."""
    if left is None or left < timeout * MIN_CALL_SHARE:
        return None
    return left


def _retry_after(seconds: float) -> int:
    """Whole seconds for ``Retry-After``, at least 1."""
    return max(1, math.ceil(seconds))


class CircuitBreaker:
    """Closed → open (after consecutive failures) → half open (one probe) → closed or open.

    ``before_call(now)`` before calling LWA (raises :class:`CircuitOpen`), then one of
    ``record_success(now)``, ``record_failure(now)`` or ``abandon(now)`` — or
    ``record(now, error)``, which picks the right one for an outcome.
    """

    __slots__ = (
        "_failures",
        "_lock",
        "_opened_at",
        "_probe_since",
        "_state",
        "failure_threshold",
        "name",
        "on_change",
        "open_seconds",
        "opens",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        open_seconds: float = 10.0,
        on_change: ChangeHook | None = None,
        *,
        name: str = "LWA",
    ) -> None:
        if (
            isinstance(failure_threshold, bool)
            or not isinstance(failure_threshold, int)
            or failure_threshold < 1
        ):
            raise ConfigurationError(
                f"failure_threshold must be a whole number >= 1, got {failure_threshold!r}"
            )
        if (
            isinstance(open_seconds, bool)
            or not isinstance(open_seconds, (int, float))
            or not math.isfinite(open_seconds)
            or open_seconds <= 0
        ):
            raise ConfigurationError(f"open_seconds must be a number > 0, got {open_seconds!r}")
        self.failure_threshold = failure_threshold
        self.open_seconds = float(open_seconds)
        self.on_change = on_change
        #: Named in log lines (the LWA host); never a token.
        self.name = name
        #: How many times the breaker opened (for stats).
        self.opens = 0
        self._state: BreakerState = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_since: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        """``"closed"``, ``"open"`` or ``"half_open"`` (as last changed; an open breaker
        whose window has passed turns half open at the next :meth:`before_call`)."""
        return self._state

    def before_call(self, now: float) -> None:
        """Let a call to LWA through, or raise :class:`CircuitOpen` with ``retry_after``."""
        if self._state == CLOSED:  # the fast path: no lock
            return
        change: tuple[str, str] | None = None
        with self._lock:
            state = self._state
            if state == OPEN:
                left = self._opened_at + self.open_seconds - now
                if left > 0:
                    raise CircuitOpen(retry_after=_retry_after(left))
                self._state, self._probe_since = HALF_OPEN, now
                change = (OPEN, HALF_OPEN)
            elif state == HALF_OPEN:
                since = self._probe_since
                if since is not None:
                    left = since + self.open_seconds - now
                    if left > 0:
                        raise CircuitOpen(retry_after=_retry_after(left))
                # No probe in flight, or it never reported: this caller is the probe.
                self._probe_since = now
        if change is not None:
            self._changed(*change)

    def record_success(self, now: float) -> None:
        """LWA answered (even ``invalid_token``): reset the count; close if not closed."""
        if self._state == CLOSED and self._failures == 0:  # the fast path: no lock
            return
        with self._lock:
            old = self._state
            self._state, self._failures, self._probe_since = CLOSED, 0, None
        if old != CLOSED:
            self._changed(old, CLOSED)

    def record_failure(self, now: float) -> None:
        """An upstream failure: count it (closed), or open again (half open). A failure
        reported while open (a call that began before it opened) changes nothing."""
        change: tuple[str, str, int] | None = None
        with self._lock:
            state = self._state
            if state == CLOSED:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    change = self._open(now, CLOSED)
            elif state == HALF_OPEN:
                self._failures += 1
                change = self._open(now, HALF_OPEN)
        if change is not None:
            self._changed(*change)

    def abandon(self, now: float) -> None:
        """A call let through ended with no verdict on LWA (cancelled, overloaded, a bug):
        free the probe slot now rather than after ``open_seconds``. Only the half-open
        probe is in flight then, so at worst a late caller frees it for one extra probe."""
        if self._state != HALF_OPEN:
            return
        with self._lock:
            if self._state == HALF_OPEN:
                self._probe_since = None

    def record(self, now: float, error: BaseException | None) -> None:
        """Report a call's outcome: ``None`` or LWA's own verdict (``invalid_token``,
        ``invalid_grant``, …) is a success, :func:`is_upstream_failure` a failure,
        :class:`CircuitOpen` nothing (no call was made), anything else (cancellation,
        ``Overloaded``: no slot, or too little time left to send; a bug) abandons."""
        if error is None:
            self.record_success(now)
        elif isinstance(error, CircuitOpen):
            return
        elif is_upstream_failure(error):
            self.record_failure(now)
        elif isinstance(error, GrantError) or (
            isinstance(error, LWAError) and _is_lwa_verdict(error)
        ):
            self.record_success(now)
        else:
            self.abandon(now)

    def retry_after(self, now: float) -> int | None:
        """Seconds until a call may be let through, or ``None`` when one may be now."""
        state, opened_at, since = self._state, self._opened_at, self._probe_since
        if state == OPEN:
            left = opened_at + self.open_seconds - now
        elif state == HALF_OPEN and since is not None:
            left = since + self.open_seconds - now
        else:
            return None
        return _retry_after(left) if left > 0 else None

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-safe view for ``stats()``: state, consecutive failures, times opened,
        the settings, and (given ``now``) ``retry_after``."""
        with self._lock:
            view: dict[str, Any] = {
                "state": self._state,
                "consecutive_failures": self._failures,
                "opens": self.opens,
                "failure_threshold": self.failure_threshold,
                "open_seconds": self.open_seconds,
            }
        if now is not None:
            view["retry_after"] = self.retry_after(now)
        return view

    def _open(self, now: float, old: BreakerState) -> tuple[str, str, int]:
        """Open for a window from ``now`` (lock held); returns the change to report."""
        self._state, self._opened_at, self._probe_since = OPEN, now, None
        self.opens += 1
        return (old, OPEN, self._failures)

    def _changed(self, old: str, new: str, failures: int = 0) -> None:
        """Log a state change and tell ``on_change`` (outside the lock)."""
        if new == OPEN:
            logger.warning(
                "LWA circuit breaker for %s: %s -> %s after %d consecutive failure(s); "
                "failing fast for %gs",
                self.name,
                old,
                new,
                failures,
                self.open_seconds,
            )
        else:
            logger.warning("LWA circuit breaker for %s: %s -> %s", self.name, old, new)
        hook = self.on_change
        if hook is not None:
            try:
                hook(old, new)
            except Exception:
                logger.exception("LWA circuit breaker on_change hook failed")

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state!r})"


def _is_lwa_verdict(error: LWAError) -> bool:
    """Whether ``error`` is an answer LWA gave (its documented 4xx codes), not a local one
    such as :class:`~lwa_middleware.core.errors.Overloaded`."""
    return error.error != "ServerError"


def host_of(api_base_url: str) -> str:
    """The ``host[:port]`` a breaker is kept for (lower case)."""
    return urlsplit(api_base_url).netloc.lower() or api_base_url


class BreakerRegistry:
    """One :class:`CircuitBreaker` per LWA host, made on first use with these options."""

    __slots__ = ("_breakers", "_lock", "failure_threshold", "on_change", "open_seconds")

    def __init__(
        self,
        failure_threshold: int = 5,
        open_seconds: float = 10.0,
        on_change: ChangeHook | None = None,
    ) -> None:
        CircuitBreaker(failure_threshold, open_seconds)  # validate now, not at first use
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.on_change = on_change
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, api_base_url: str) -> CircuitBreaker:
        """The breaker for the host of ``api_base_url`` (a URL or a bare host)."""
        host = host_of(api_base_url) if "//" in api_base_url else api_base_url.lower()
        breaker = self._breakers.get(host)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(host)
                if breaker is None:
                    breaker = self._breakers[host] = CircuitBreaker(
                        self.failure_threshold, self.open_seconds, self.on_change, name=host
                    )
        return breaker

    def snapshot(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """``host → breaker snapshot``."""
        with self._lock:
            breakers = dict(self._breakers)
        return {host: breaker.snapshot(now) for host, breaker in sorted(breakers.items())}
