"""How many verifications may call LWA at once, and who waits for a slot: no I/O.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

A flood of distinct tokens (bogus or not) must not pile thousands of calls into the HTTP
pool and freeze the worker, so each verifier holds at most ``max_concurrent_verifications``
LWA round trips at once. Beyond that, up to ``max_queued_verifications`` requests wait for a
slot, each only as long as its own deadline allows; the shells turn a wait that runs out
into :class:`~lwa_middleware.core.errors.Overloaded` (``ServerError`` with ``Retry-After``).

A freed slot goes to the **newest** waiter (LIFO), and a full queue pushes out its
**oldest** waiter: under a burst, the request that arrived last has the most of its
deadline left, so it is the one most likely to be answered in time, and a legitimate
sign-in arriving during a flood is not stuck behind hundreds of requests that will time out
anyway. With no burst the queue is empty and the order does not matter.

:class:`Admission` is the bookkeeping only; a waiter is whatever the shell wakes (an
``asyncio.Future``, a ``threading.Event``). Not thread-safe: the sync shell holds a lock.

"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from lwa_middleware.core.errors import Overloaded

W = TypeVar("W")


class Admission(Generic[W]):
    """Slots for concurrent verifications and a bounded, newest-first queue of waiters."""

    __slots__ = ("_waiting", "active", "limit", "queue_limit")

    def __init__(self, limit: int, queue_limit: int) -> None:
        self.limit = limit
        self.queue_limit = queue_limit
        #: Slots in use (a slot handed to a waiter counts from the moment it is handed).
        self.active = 0
        self._waiting: deque[W] = deque()

    @property
    def waiting(self) -> int:
        """How many waiters are queued."""
        return len(self._waiting)

    def acquire(self) -> bool:
        """Take a free slot now (``True``), or ``False`` when the caller must :meth:`enqueue`."""
        if self.active < self.limit and not self._waiting:
            self.active += 1
            return True
        return False

    def enqueue(self, waiter: W) -> W | None:
        """Queue ``waiter``; returns the oldest waiter it pushed out of a full queue (the
        shell fails that one with ``Overloaded``). Raises ``Overloaded`` when no one may wait."""
        if self.queue_limit == 0:
            raise Overloaded()
        evicted = self._waiting.popleft() if len(self._waiting) >= self.queue_limit else None
        self._waiting.append(waiter)
        return evicted

    def release(self) -> W | None:
        """Give a slot back. Returns the waiter it is handed to (the newest; it now owns the
        slot and the shell wakes it), or ``None`` when the slot is free again."""
        if self._waiting:
            return self._waiting.pop()
        self.active -= 1
        return None

    def withdraw(self, waiter: W) -> bool:
        """Remove a waiter that gave up; ``False`` when it was no longer queued (handed a
        slot, or pushed out)."""
        try:
            self._waiting.remove(waiter)
        except ValueError:
            return False
        return True
