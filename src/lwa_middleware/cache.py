"""The in-memory caches (L1): verified identities, and apart from them, rejected tokens.

Pure: ``now`` is passed in. :class:`MemoryCache` holds identities; its reads are one
``dict.get`` and a comparison (a ``cachetools.TTLCache`` lookup costs ~100x a dict lookup,
about 1.5-2.5 µs, measured by ``bench/warm_path.py``), writes take a lock so threads and
event loops can share the cache. When full, expired entries are purged, then the oldest
inserted entries go first.

:class:`RejectionCache` holds LWA's ``invalid_token`` verdicts for ``negative_ttl`` in its
own bounded ``cachetools.TTLCache``, so a flood of bogus tokens can fill only that one and
never evicts a verified identity. It is read only after a miss of the identity cache: off
the warm path.

Keys are SHA-256 digests (:func:`cache_key`); the token itself is never stored.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from hashlib import sha256
from typing import Generic, TypeVar

from cachetools import TTLCache

from lwa_middleware.models import Identity


@dataclass(frozen=True, slots=True)
class Rejected:
    """A negative entry: LWA said ``invalid_token`` (or the audience was not ours)."""

    description: str


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

    ``MemoryCache[Identity]`` is the identity cache (L1)."""

    __slots__ = ("_data", "_lock", "maxsize")

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._data: dict[bytes, tuple[float, E]] = {}
        self._lock = threading.Lock()

    def get(self, key: bytes, now: float) -> E | None:
        """The live entry for ``key``, or ``None``."""
        item = self._data.get(key)
        if item is None:
            return None
        if now >= item[0]:
            self.delete(key)
            return None
        return item[1]

    def peek(self, key: bytes) -> tuple[float, E] | None:
        """``(deadline, entry)`` for ``key``, live or not (the caller compares the deadline)."""
        return self._data.get(key)

    def set(self, key: bytes, entry: E, deadline: float, now: float) -> None:
        """Store ``entry`` until ``deadline`` (epoch seconds); a past deadline stores nothing."""
        if deadline <= now:
            return
        with self._lock:
            data = self._data
            if key not in data and len(data) >= self.maxsize:
                self._evict(now)
            data[key] = (deadline, entry)

    def delete(self, key: bytes) -> None:
        """Forget ``key`` (no error when absent)."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def _evict(self, now: float) -> None:
        data = self._data
        for key in [k for k, (deadline, _) in data.items() if deadline <= now]:
            del data[key]
        overflow = len(data) - self.maxsize + 1
        if overflow > 0:
            # Evict a tenth at once so a full cache does not pay this on every insert.
            for key in list(data)[: max(overflow, self.maxsize // 10)]:
                del data[key]


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
            return self._cache.get(key)

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
