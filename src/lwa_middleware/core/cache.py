"""The in-memory caches (L1): verified identities, and apart from them, rejected tokens.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

Pure: ``now`` is passed in. :class:`MemoryCache` holds identities; its reads are one
``dict.get`` and a comparison (a ``cachetools.TTLCache`` lookup costs ~100x a dict lookup,
about 1.5-2.5 µs, measured by ``bench/bench_warm.py``), writes take a lock so threads and
event loops can share the cache. Eviction is incremental: each insert drops a couple of
expired entries from the old end, and an insert into a full cache evicts the oldest
inserted entry, so no insert pauses the event loop to clean up many.

:class:`RejectionCache` holds LWA's ``invalid_token`` verdicts for ``negative_ttl`` in its
own bounded ``cachetools.TTLCache``, so a flood of bogus tokens can fill only that one and
never evicts a verified identity. It is read only after a miss of the identity cache: off
the warm path.

Keys are SHA-256 digests (:func:`cache_key`); the token itself is never stored.

"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from typing import Generic, TypeVar

from cachetools import TTLCache

from lwa_middleware.core.models import Identity


@dataclass(frozen=True, slots=True)
class Rejected:
    """A negative entry: LWA said ``invalid_token`` (or the audience was not ours).

    ``until`` (epoch seconds) ends it before the rejection cache's own ``ttl`` would: set for
    a rejection read from the shared cache (L2), which has only its remaining time left.
    """

    description: str
    until: float | None = None


Entry = Identity | Rejected
E = TypeVar("E")


class KeyMaker:
    """SHA-256 of the API base URL and the token: ``sha256(base_url + NUL + token)``."""

    __slots__ = ("prefix",)

    def __init__(self, api_base_url: str) -> None:
        #: What precedes the token in the hashed bytes.
        self.prefix = api_base_url.encode() + b"\x00"

    def __call__(self, token: str) -> bytes:
        # One concatenation beats copying a primed hash object (~0.3 µs on the warm path).
        return self.raw(token.encode())

    def raw(self, token: bytes) -> bytes:
        """The key of a token given as its UTF-8 bytes (the same key as ``self(token)``)."""
        return sha256(self.prefix + token).digest()


def cache_key(api_base_url: str, token: str) -> bytes:
    """The cache key of a token for one LWA API (a one-off :class:`KeyMaker`)."""
    return KeyMaker(api_base_url)(token)


class MemoryCache(Generic[E]):
    """Bounded map ``key → (deadline, entry)``; entries past their deadline are misses.

    ``MemoryCache[Identity]`` is the identity cache (L1). Eviction is incremental, so no
    insert pays for many: every insert first drops up to :attr:`PURGE` expired (or already
    deleted) entries from the old end, and an insert into a full cache then evicts the
    oldest inserted entry. ``_order`` holds the keys in insertion order (a key deleted
    since stays there until it reaches the old end, and is then skipped).
    """

    __slots__ = ("_data", "_lock", "_order", "grace", "maxsize")

    #: Expired or deleted entries dropped from the old end on each insert, at most.
    PURGE = 2
    #: Deleted keys skipped at most per eviction, before the oldest entry is found by the
    #: dict's own order instead (a rare fallback that scans the dict's removed slots).
    SKIP = 64

    def __init__(self, maxsize: int = 10_000, grace: float = 0.0) -> None:
        self.maxsize = maxsize
        #: Seconds an entry is kept past its deadline (a miss, but ``peek`` still sees it:
        #: stale-if-error); ``0`` drops it at its deadline.
        self.grace = grace
        self._data: dict[bytes, tuple[float, E]] = {}
        self._order: deque[bytes] = deque()
        self._lock = threading.Lock()

    def get(self, key: bytes, now: float) -> E | None:
        """The live entry for ``key``, or ``None``."""
        item = self._data.get(key)
        if item is None:
            return None
        if now >= item[0]:
            if now >= item[0] + self.grace:
                self.delete(key)
            return None
        return item[1]

    def peek(self, key: bytes) -> tuple[float, E] | None:
        """``(deadline, entry)`` for ``key``, live or not (the caller compares the deadline)."""
        return self._data.get(key)

    @property
    def peeker(self) -> Callable[[bytes], tuple[float, E] | None]:
        """:meth:`peek` as the table's own ``get`` (no Python frame), for a hot path that
        binds it once (the table is never replaced, only cleared)."""
        return self._data.get

    def set(self, key: bytes, entry: E, deadline: float, now: float) -> None:
        """Store ``entry`` until ``deadline`` (epoch seconds, kept ``grace`` s more); an entry
        past its deadline and grace stores nothing."""
        if deadline + self.grace <= now:
            return
        with self._lock:
            data = self._data
            self._purge(now)
            if key not in data:
                if len(data) >= self.maxsize:
                    self._evict()
                order = self._order
                order.append(key)
                if len(order) > 2 * self.maxsize + self.SKIP:
                    # Deleted keys piled up behind a long-lived oldest entry: start over
                    # from the live keys (rare: it takes maxsize deletes in between).
                    self._order = deque(data)
                    self._order.append(key)
            data[key] = (deadline, entry)

    def delete(self, key: bytes) -> None:
        """Forget ``key`` (no error when absent)."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()
            self._order.clear()

    def __len__(self) -> int:
        return len(self._data)

    def _purge(self, now: float) -> None:
        """Drop up to :attr:`PURGE` expired or deleted entries from the old end."""
        data, order = self._data, self._order
        for _ in range(self.PURGE):
            if not order:
                return
            key = order[0]
            item = data.get(key)
            if item is not None:
                if item[0] + self.grace > now:
                    return  # the oldest entry is live: nothing more to purge cheaply
                del data[key]
            order.popleft()

    def _evict(self) -> None:
        """Remove the oldest inserted entry (the cache is full)."""
        data, order = self._data, self._order
        for _ in range(self.SKIP):
            if not order:
                break
            key = order.popleft()
            if data.pop(key, None) is not None:
                return
        if data:  # only deleted keys at the old end: the dict knows its oldest
            del data[next(iter(data))]


class RejectionCache:
    """Bounded ``key → Rejected`` for a fixed ``ttl`` (a ``cachetools.TTLCache`` whose clock is
    the ``now`` each call passes in); ``ttl=0`` caches nothing. Thread-safe."""

    __slots__ = ("_cache", "_lock", "_now", "maxsize", "ttl")

    def __init__(self, maxsize: int = 10_000, ttl: float = 30) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._now = 0.0
        self._cache: TTLCache[bytes, Rejected] = TTLCache(maxsize, ttl, timer=self._timer)
        self._lock = threading.Lock()

    def _timer(self) -> float:
        return self._now

    def get(self, key: bytes, now: float) -> Rejected | None:
        """The live rejection for ``key``, or ``None``."""
        if not self.ttl:
            return None
        with self._lock:
            self._now = now
            rejected = self._cache.get(key)
        if rejected is not None and rejected.until is not None and now >= rejected.until:
            return None
        return rejected

    def set(self, key: bytes, entry: Rejected, now: float) -> None:
        """Remember ``entry`` for ``ttl`` seconds from ``now``."""
        if not self.ttl:
            return
        with self._lock:
            self._now = now
            self._cache[key] = entry

    def delete(self, key: bytes) -> None:
        """Forget ``key`` (no error when absent)."""
        with self._lock:
            self._cache.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)
