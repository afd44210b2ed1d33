"""The revocation feed's I/O: each worker's sync with the fleet's list in Redis.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

:class:`RevocationSync` (one daemon thread per process, for the blocking
:class:`~lwa_middleware.upstream.verifier.Verifier`) and :class:`AsyncRevocationSync` (one task per
event loop, for :class:`~lwa_middleware.upstream.verifier.AsyncVerifier`) run
:meth:`RevocationFeed.tick <lwa_middleware.core.revocation.RevocationFeed.tick>` every
:data:`~lwa_middleware.core.revocation.POLL_INTERVAL` seconds, and at once when this process
revoked something (:meth:`kick`). Every decision is the feed's; these only run its Redis
calls, on the shared cache's own client, off every request's path: the warm path never
waits for Redis.

A worker's first verification of a cold token (and its first refresh) waits for the first
read of the fleet's list, at most about twice ``redis_timeout``; a Redis that fails never
fails a request: the call is counted, the sync backs off for ``redis_backoff`` seconds
(one WARNING per outage), what this process revoked stays held here and is published once
Redis answers again.

"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import KW_ONLY, dataclass
from functools import partial
from typing import Any

from lwa_middleware.core.l2 import Backoff
from lwa_middleware.core.revocation import POLL_INTERVAL, Call, RevocationFeed
from lwa_middleware.upstream.steps import Steps, arun, run

logger = logging.getLogger("lwa_middleware")

Clock = Callable[[], float]


def _described(error: BaseException) -> str:
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _unreachable(error: BaseException) -> bool:
    """Whether ``error`` says Redis cannot be reached (redis-py's ``ConnectionError`` and
    ``TimeoutError``, their subclasses such as a failed ``AUTH``, or the socket's own)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return isinstance(error, OSError) or bool(names & {"ConnectionError", "TimeoutError"})


@dataclass(eq=False, repr=False)
class _SyncBase:
    """The feed, the client (the shared cache's: never closed here), the back-off, the
    counts and the log lines."""

    feed: RevocationFeed
    client: Any
    _: KW_ONLY
    #: When Redis may be called, on the monotonic clock (pacing I/O, not judging entries).
    backoff: Backoff
    #: The middleware's clock: when entries end.
    clock: Clock
    #: The longest a request waits for the first read of the fleet's list.
    wait: float
    interval: float = POLL_INTERVAL

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.feed!r}, loaded={self.feed.loaded})"

    def _begin(self) -> float | None:
        """The monotonic clock at the start of a round, ``None`` while the back-off skips it."""
        started = time.monotonic()
        if self.backoff.allows(started):
            return started
        self.feed.stats.skipped += 1
        return None

    def _failed(self, error: Exception) -> None:
        """Count a failed round and back off. Once per outage it is logged: at INFO when
        Redis cannot be reached (the shared cache warns about that itself), at WARNING for
        anything else (an ACL without the sync's commands, a key of another type, ...)."""
        self.feed.stats.errors += 1
        if self.backoff.failed(time.monotonic()) == "new":
            level = logging.INFO if _unreachable(error) else logging.WARNING
            logger.log(
                level,
                "revocations: Redis is failing (%s): sign-outs hold in this process and "
                "are shared once it answers; next try in %g s",
                _described(error),
                self.backoff.seconds,
            )

    def _succeeded(self, started: float) -> None:
        if self.backoff.succeeded(started):
            logger.info("revocations: Redis answers again")


class RevocationSync(_SyncBase):
    """The sync of a blocking client: a daemon thread, started on first need in each
    process (a fork, e.g. gunicorn's ``--preload``, starts its own)."""

    def __init__(self, feed: RevocationFeed, client: Any, **options: Any) -> None:
        super().__init__(feed, client, **options)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._loaded = threading.Event()

    @property
    def loaded(self) -> bool:
        """Whether this process read the fleet's list at least once (or tried)."""
        return self._pid == os.getpid() and self._loaded.is_set()

    def ensure_started(self) -> None:
        """Start the thread if this process has none running."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            return
        with self._lock:
            thread = self._thread
            if thread is not None and self._pid == os.getpid() and thread.is_alive():
                return
            if self._stop.is_set():
                return  # closed
            if self._pid != os.getpid():  # a new process: the parent's state means nothing
                self._wake, self._loaded = threading.Event(), threading.Event()
                self.feed.cursor = None
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="lwa-revocations", daemon=True)
            self._thread.start()

    def kick(self) -> None:
        """Run a round now (this process revoked something)."""
        self.ensure_started()
        self._wake.set()

    def ready(self) -> None:
        """Wait (at most :attr:`wait` seconds) for the first read of the fleet's list."""
        if not self.loaded:
            self.ensure_started()
            self._loaded.wait(self.wait)

    def run_once(self) -> None:
        """One round (never raises: a failure is counted and backs off)."""
        started = self._begin()
        if started is None:
            return
        try:
            run(_on(self.client, self.feed.tick(self.clock())))
        except Exception as error:  # any Redis failure: go on without it
            self._failed(error)
            return
        self._succeeded(started)

    def _run(self) -> None:
        wake, loaded = self._wake, self._loaded
        while not self._stop.is_set():
            try:
                self.run_once()
            finally:
                loaded.set()
            wake.wait(self.interval)
            wake.clear()

    def close(self) -> None:
        """Stop the thread (the client is the shared cache's: closed with it)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(5)


def _on(client: Any, plan: Generator[Call, Any, None]) -> Steps[None]:
    """A feed round's calls, each made on ``client``, as steps (run by either shell)."""
    try:
        call = next(plan)
        while True:
            try:
                result = yield partial(call, client)
            except Exception as error:
                call = plan.throw(error)
            else:
                call = plan.send(result)
    except StopIteration:
        return


class AsyncRevocationSync(_SyncBase):
    """The sync of an asyncio client: a task of one event loop."""

    def __init__(self, feed: RevocationFeed, client: Any, **options: Any) -> None:
        super().__init__(feed, client, **options)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._loaded = asyncio.Event()
        self._closed = False

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def start(self) -> None:
        """Start the task in the running loop (once)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def kick(self) -> None:
        """Run a round now (this process revoked something)."""
        self.start()
        self._wake.set()

    async def ready(self) -> None:
        """Wait (at most :attr:`wait` seconds) for the first read of the fleet's list."""
        if self._loaded.is_set():
            return
        self.start()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._loaded.wait(), self.wait)

    async def run_once(self) -> None:
        """One round (never raises but a cancellation)."""
        started = self._begin()
        if started is None:
            return
        try:
            await arun(_on(self.client, self.feed.tick(self.clock())))
        except Exception as error:  # any Redis failure: go on without it
            self._failed(error)
            return
        self._succeeded(started)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            finally:
                self._loaded.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()

    async def aclose(self) -> None:
        """Stop the task (the client is the shared cache's: closed with it)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def ready_wait(redis_timeout: float) -> float:
    """How long a request waits for a worker's first read of the fleet's list: two Redis
    calls (the stream's last id, the first page of the set) and a little more."""
    return 2 * redis_timeout + 0.05
