"""Waiting for a slot to call LWA: the async and sync shells of
:mod:`lwa_middleware.core.admission`.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

:class:`AsyncSlots` (one per event loop: its waiters are that loop's futures) and
:class:`Slots` (threads) hold at most ``limit`` calls at once and a bounded queue of
waiters, newest first (:class:`~lwa_middleware.core.admission.Admission` decides who goes, who is
pushed out). A waiter waits only while its :class:`~lwa_middleware.upstream.transport.Budget`
allows, and a slot it was handed as it gave up is passed on, never leaked.
:meth:`take` raises :class:`~lwa_middleware.core.errors.Overloaded` (``ServerError`` with
``Retry-After``) when no slot came in time; the callers count and log it.

Used by the verifiers (token-info and profile) and by the token clients that bound their
calls (the sign-in's ``/callback`` and the Swagger UI token proxy): one mechanism for every
call to LWA that an anonymous request can cause.

"""

from __future__ import annotations

import asyncio
import threading

from lwa_middleware.core.admission import Admission
from lwa_middleware.core.errors import Overloaded
from lwa_middleware.upstream.transport import Budget

__all__ = ["AsyncSlots", "Slots"]


class AsyncSlots:
    """Slots of one event loop (create it inside the loop whose tasks use it)."""

    __slots__ = ("admission",)

    def __init__(self, limit: int, queue_limit: int) -> None:
        self.admission: Admission[asyncio.Future[None]] = Admission(limit, queue_limit)

    async def take(self, budget: Budget) -> None:
        """A slot, waited for (newest first) only while ``budget`` allows; ``Overloaded``."""
        admission = self.admission
        if admission.acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        evicted = admission.enqueue(waiter)  # Overloaded when no one may wait
        if evicted is not None and not evicted.done():
            evicted.set_exception(Overloaded())
        try:
            await asyncio.wait_for(waiter, budget.remaining() or 0)
        except BaseException as error:
            if not admission.withdraw(waiter) and _holds_slot(waiter):
                self.give()  # handed a slot just as we gave up: pass it on
            if isinstance(error, (asyncio.TimeoutError, Overloaded)):
                raise Overloaded() from None
            raise

    def give(self) -> None:
        """Hand the slot to the newest live waiter, or free it."""
        admission = self.admission
        while (waiter := admission.release()) is not None:
            if not waiter.done():
                waiter.set_result(None)
                return


def _holds_slot(waiter: asyncio.Future[None]) -> bool:
    """Whether a waiter was handed a slot (its future holds a result)."""
    return waiter.done() and not waiter.cancelled() and waiter.exception() is None


class _Waiter:
    """A thread waiting for a slot: woken when handed one (``granted``) or pushed out."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.granted = False


class Slots:
    """Slots shared by the threads of a process (thread-safe)."""

    __slots__ = ("_lock", "admission")

    def __init__(self, limit: int, queue_limit: int) -> None:
        self.admission: Admission[_Waiter] = Admission(limit, queue_limit)
        self._lock = threading.Lock()

    def take(self, budget: Budget) -> None:
        """A slot, waited for (newest first) only while ``budget`` allows; ``Overloaded``."""
        admission = self.admission
        with self._lock:
            if admission.acquire():
                return
            waiter = _Waiter()
            evicted = admission.enqueue(waiter)  # Overloaded when no one may wait
            if evicted is not None:
                evicted.event.set()  # not granted: it fails with Overloaded
        waiter.event.wait(budget.remaining() or 0)
        with self._lock:
            if waiter.granted:
                return
            admission.withdraw(waiter)
        raise Overloaded()

    def give(self) -> None:
        """Hand the slot to the newest waiter, or free it."""
        with self._lock:
            waiter = self.admission.release()
            if waiter is not None:
                waiter.granted = True
                waiter.event.set()
