"""Metrics, without I/O: the one small :class:`Recorder` the core and the shells call.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

:class:`Stats` (the default) keeps plain counters and LWA latency histograms in memory;
its :meth:`Stats.snapshot` is what ``stats()`` on both middlewares returns (JSON-safe).
:class:`NullRecorder` records nothing; :class:`FanOut` sends every event to several
recorders (``Stats`` and :class:`~lwa_middleware.integrations.prometheus.PrometheusRecorder`).

Labels come only from fixed sets, so a metric can never carry a user, a token or a path:
every recorder passes its label values through :func:`label` (or :func:`status_label`),
and anything outside the set becomes ``"other"``.

"""

from __future__ import annotations

import itertools
import threading
from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final, Literal, Protocol, get_args

from lwa_middleware.core.errors import (
    AccessDenied,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAError,
    Overloaded,
)
from lwa_middleware.core.protocol import HTTPResponse, TransportFailure

__all__ = [
    "BREAKER_STATES",
    "CACHE_LEVELS",
    "ENDPOINTS",
    "ERROR_CODES",
    "LABELS",
    "LATENCY_BUCKETS",
    "OTHER",
    "OUTCOMES",
    "TRANSPORT_STATUSES",
    "CacheLevel",
    "Endpoint",
    "FanOut",
    "NullRecorder",
    "Outcome",
    "Recorder",
    "Stats",
    "error_code",
    "label",
    "outcome_of",
    "status_label",
    "status_of",
]

Outcome = Literal[
    "ok",
    "invalid_token",
    "insufficient_scope",
    "invalid_request",
    "server_error",
    "overloaded",
    "stale",
    "access_denied",
]
CacheLevel = Literal["l1", "l2"]
Endpoint = Literal["tokeninfo", "profile", "token"]

#: What a label value outside its set becomes.
OTHER: Final = "other"
OUTCOMES: Final[tuple[str, ...]] = get_args(Outcome)
CACHE_LEVELS: Final[tuple[str, ...]] = get_args(CacheLevel)
ENDPOINTS: Final[tuple[str, ...]] = get_args(Endpoint)
#: LWA's documented error codes (``LWAError.error``).
ERROR_CODES: Final = (
    "invalid_request",
    "invalid_token",
    "insufficient_scope",
    "access_denied",
    "ServerError",
)
BREAKER_STATES: Final = ("closed", "half_open", "open")
#: ``lwa_call`` statuses besides an HTTP status code (``"100"`` … ``"599"``).
TRANSPORT_STATUSES: Final = ("timeout", "error")
#: Upper bounds (seconds) of the LWA latency histogram's buckets (``timeout`` is 5 s).
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_ENDPOINTS = frozenset(ENDPOINTS)
_STATES = frozenset(BREAKER_STATES)
_STATUSES = frozenset({str(code) for code in range(100, 600)} | set(TRANSPORT_STATUSES))


def label(value: object, allowed: Collection[str]) -> str:
    """``value`` when it is one of ``allowed``, else ``"other"`` (never user data)."""
    if type(value) is str and value in allowed:
        return value
    return OTHER


def status_label(status: object) -> str:
    """An ``lwa_call`` status: an HTTP code (``"100"``-``"599"``, given as int or str),
    ``"timeout"`` or ``"error"``; anything else is ``"other"``."""
    if type(status) is int:
        status = str(status)
    return label(status, _STATUSES)


def status_of(outcome: HTTPResponse | TransportFailure) -> str:
    """The ``lwa_call`` status of one attempt: its HTTP code, ``"timeout"``, or ``"error"``."""
    if isinstance(outcome, TransportFailure):
        return "timeout" if outcome.kind == "timeout" else "error"
    return status_label(outcome.status)


def outcome_of(error: BaseException | None) -> Outcome:
    """The verification outcome for a result (``None``: ``ok``; a stale answer is
    ``"stale"``, which the caller knows and passes itself)."""
    if error is None:
        return "ok"
    if isinstance(error, Overloaded):
        return "overloaded"
    if isinstance(error, InvalidToken):
        return "invalid_token"
    if isinstance(error, InsufficientScope):
        return "insufficient_scope"
    if isinstance(error, AccessDenied):
        return "access_denied"  # verified, and refused by the access policy
    if isinstance(error, InvalidRequest):
        return "invalid_request"
    if isinstance(error, LWAError) and error.error == "invalid_request":
        return "invalid_request"  # CrossSiteRequest: the forgery check's 403
    return "server_error"


def error_code(error: BaseException) -> str:
    """The ``errors`` label for an error: its LWA code (``ServerError`` for a non-LWA one)."""
    return error.error if isinstance(error, LWAError) else "ServerError"


class Recorder(Protocol):
    """What the core and the shells report. Label arguments outside their sets are
    recorded as ``"other"``. A recorder must be cheap and must not raise.

    Each method records nothing here: a class that names ``Recorder`` as its base inherits
    that for the events it does not record (:class:`NullRecorder` records none)."""

    def verification(self, outcome: str) -> None:
        """A verification ended: one of :data:`OUTCOMES`."""
        return

    def cache(self, level: CacheLevel, hit: bool) -> None:
        """An L1 or L2 lookup hit or missed."""
        return

    def l1_hit(self) -> None:
        """A request answered on the warm path: ``cache("l1", True)`` and
        ``verification("ok")`` in one call (the warm path affords one)."""
        return

    def lwa_call(self, endpoint: Endpoint, status: str, seconds: float) -> None:
        """One HTTP attempt to LWA (a retry is another call): its status and duration."""
        return

    def error(self, code: str) -> None:
        """An error answered to a client: one of :data:`ERROR_CODES`."""
        return

    def breaker_state(self, state: str) -> None:
        """The circuit breaker is now in ``state`` (one of :data:`BREAKER_STATES`)."""
        return

    def stale_served(self) -> None:
        """A stale identity was answered (stale-if-error)."""
        return

    def fanout_rejected(self) -> None:
        """A verification found no slot to call LWA (``Overloaded``)."""
        return

    def redis_error(self) -> None:
        """The L2 (Redis) failed a command."""
        return

    def l2_malformed(self) -> None:
        """An L2 entry was dropped: no good MAC, dated ahead, malformed, oversized, or of
        another format."""
        return


class NullRecorder(Recorder):
    """Records nothing."""

    __slots__ = ()


class _Histogram:
    """Counts per bucket (not cumulative), the sum and the count."""

    __slots__ = ("buckets", "count", "counts", "total")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last: +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.count += 1

    def view(self) -> dict[str, Any]:
        """Cumulative buckets keyed by their bound (``le``), as Prometheus shows them."""
        cumulative: dict[str, int] = {}
        running = 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            cumulative[bound] = running
        return {"buckets": cumulative, "count": self.count, "sum": self.total}


def _read(counter: itertools.count[int]) -> int:
    """How many times ``next()`` was called on ``counter`` (its repr is ``count(n)``)."""
    return int(repr(counter)[6:-1])


def _counters(names: Iterable[str]) -> dict[str, itertools.count[int]]:
    return {name: itertools.count() for name in names}


class Stats:
    """The default recorder: in-memory counters and LWA latency histograms (thread-safe).

    Plain counters are ``itertools.count`` objects: ``next()`` on one is a single C call
    under the GIL, atomic without a lock (~50 ns, so an L1 hit can be counted on the warm
    path). The LWA call table and histograms, off the warm path, take a lock.

    A warm-path answer is one count (``_warm``), added to both the L1 hits and the ``ok``
    verifications when read; :attr:`count_l1_hit` is that count's own ``__next__`` (no
    Python frame: ~45 ns against ~115 ns for calling :meth:`l1_hit`), which the shells bind
    when ``Stats`` is their only recorder.
    """

    __slots__ = (
        "_breaker_changes",
        "_breaker_state",
        "_calls",
        "_errors",
        "_hits",
        "_latency",
        "_lock",
        "_misses",
        "_other_error",
        "_other_outcome",
        "_totals",
        "_verifications",
        "_warm",
        "buckets",
        "count_l1_hit",
    )

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(float(bound) for bound in buckets))
        self._lock = threading.Lock()
        self._verifications = _counters((*OUTCOMES, OTHER))
        self._other_outcome = self._verifications[OTHER]
        self._hits = _counters(CACHE_LEVELS)
        self._warm = itertools.count()
        #: :meth:`l1_hit` as a C-level callable (what the warm path binds).
        self.count_l1_hit = self._warm.__next__
        self._misses = _counters(CACHE_LEVELS)
        self._calls: dict[str, dict[str, int]] = {endpoint: {} for endpoint in ENDPOINTS}
        self._latency = {endpoint: _Histogram(self.buckets) for endpoint in ENDPOINTS}
        self._errors = _counters((*ERROR_CODES, OTHER))
        self._other_error = self._errors[OTHER]
        self._breaker_state = "closed"
        self._breaker_changes = 0
        self._totals = _counters(
            ("stale_answers", "fanout_rejections", "redis_errors", "l2_malformed")
        )

    def verification(self, outcome: str) -> None:
        """Count a verification by outcome."""
        next(self._verifications.get(outcome, self._other_outcome))

    def cache(self, level: CacheLevel, hit: bool) -> None:
        """Count an L1/L2 hit or miss (an unknown level is dropped: it has no row)."""
        counter = (self._hits if hit else self._misses).get(level)
        if counter is not None:
            next(counter)

    def l1_hit(self) -> None:
        """Count a warm-path answer: an L1 hit and an ``ok`` verification."""
        next(self._warm)

    def lwa_call(self, endpoint: Endpoint, status: str, seconds: float) -> None:
        """Count an LWA call by endpoint and status; add its duration to the histogram
        (an unknown endpoint is dropped)."""
        if endpoint not in _ENDPOINTS:
            return
        key = status_label(status)
        with self._lock:
            calls = self._calls[endpoint]
            calls[key] = calls.get(key, 0) + 1
            self._latency[endpoint].observe(max(0.0, float(seconds)))

    def error(self, code: str) -> None:
        """Count an error answered, by LWA code."""
        next(self._errors.get(code, self._other_error))

    def breaker_state(self, state: str) -> None:
        """Remember the breaker's state and count the change."""
        key = label(state, _STATES)
        with self._lock:
            if key != self._breaker_state:
                self._breaker_changes += 1
            self._breaker_state = key

    def stale_served(self) -> None:
        """Count a stale answer."""
        next(self._totals["stale_answers"])

    def fanout_rejected(self) -> None:
        """Count a verification refused for want of a slot."""
        next(self._totals["fanout_rejections"])

    def redis_error(self) -> None:
        """Count a failed Redis command."""
        next(self._totals["redis_errors"])

    def l2_malformed(self) -> None:
        """Count an unreadable L2 entry."""
        next(self._totals["l2_malformed"])

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe copy of every counter (what ``stats()`` returns)::

        {"verifications": {"ok": 3, ...}, "cache": {"l1": {"hit": 2, "miss": 1}, "l2": ...},
         "lwa_calls": {"tokeninfo": {"200": 1}, ...},
         "lwa_latency_seconds": {"tokeninfo": {"buckets": {"0.005": 0, ..., "+Inf": 1},
                                               "count": 1, "sum": 0.04}, ...},
         "errors": {"invalid_token": 0, ...}, "breaker": {"state": "closed", "changes": 0},
         "stale_answers": 0, "fanout_rejections": 0, "redis_errors": 0, "l2_malformed": 0}
        """
        with self._lock:
            calls = {endpoint: dict(sorted(c.items())) for endpoint, c in self._calls.items()}
            latency = {endpoint: h.view() for endpoint, h in self._latency.items()}
            breaker = {"state": self._breaker_state, "changes": self._breaker_changes}
        warm = _read(self._warm)
        verifications = {name: _read(c) for name, c in self._verifications.items()}
        verifications["ok"] += warm
        cache = {
            level: {"hit": _read(self._hits[level]), "miss": _read(self._misses[level])}
            for level in CACHE_LEVELS
        }
        cache["l1"]["hit"] += warm
        return {
            "verifications": verifications,
            "cache": cache,
            "lwa_calls": calls,
            "lwa_latency_seconds": latency,
            "errors": {name: _read(c) for name, c in self._errors.items()},
            "breaker": breaker,
            **{name: _read(c) for name, c in self._totals.items()},
        }


def _to_each(event: str) -> Any:
    """A :class:`FanOut` method: the event, to each recorder in turn."""

    def to_each(self: FanOut, *args: Any) -> None:
        for recorder in self.recorders:
            getattr(recorder, event)(*args)

    to_each.__name__ = to_each.__qualname__ = event
    to_each.__doc__ = "To each recorder."
    return to_each


class FanOut(Recorder):
    """Sends every event to each of ``recorders`` in turn (nested fan-outs are flattened,
    :class:`NullRecorder` dropped)."""

    __slots__ = ("recorders",)

    def __init__(self, *recorders: Recorder) -> None:
        flat: list[Recorder] = []
        for recorder in recorders:
            if isinstance(recorder, FanOut):
                flat.extend(recorder.recorders)
            elif not isinstance(recorder, NullRecorder):
                flat.append(recorder)
        self.recorders: tuple[Recorder, ...] = tuple(flat)

    verification = _to_each("verification")
    cache = _to_each("cache")
    l1_hit = _to_each("l1_hit")
    lwa_call = _to_each("lwa_call")
    error = _to_each("error")
    breaker_state = _to_each("breaker_state")
    stale_served = _to_each("stale_served")
    fanout_rejected = _to_each("fanout_rejected")
    redis_error = _to_each("redis_error")
    l2_malformed = _to_each("l2_malformed")


#: Fixed label sets, for exporters that pre-create their series.
LABELS: Final[Mapping[str, tuple[str, ...]]] = {
    "outcome": (*OUTCOMES, OTHER),
    "level": CACHE_LEVELS,
    "endpoint": ENDPOINTS,
    "code": (*ERROR_CODES, OTHER),
    "state": BREAKER_STATES,
}
