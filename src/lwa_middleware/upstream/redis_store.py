"""The shared verification cache's I/O: Redis behind the in-memory cache, for both shells.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

:class:`RedisStore` (redis-py, for :class:`~lwa_middleware.upstream.verifier.Verifier`; its
connection pool is thread-safe) and :class:`AsyncRedisStore` (``redis.asyncio``, for
:class:`~lwa_middleware.upstream.verifier.AsyncVerifier`, one per event loop) only move bytes: every
key, value, TTL and verdict is :mod:`lwa_middleware.core.l2`'s and
:class:`~lwa_middleware.core.verification.Authority`'s. Both consult Redis on a cold token only
(an L1 miss, after the token passed the local checks, inside the worker's single flight):

1. ``GET`` the entry: a hit is believed only with a good MAC (keyed by ``secret_key``,
   which a shared cache requires), re-checked by :meth:`Authority.from_l2
   <lwa_middleware.core.verification.Authority.from_l2>` (time by this worker's clock,
   audience, expiry) and ends the verification;
2. on a miss, ``SET lock NX PX`` (one whole verification at most): the worker that takes
   the lock asks LWA; another one polls L2 briefly (``GET`` + ``EXISTS lock``) and asks
   LWA itself only if no entry appears before the lock goes or its time runs out;
3. after LWA's answer, one pipeline writes the entry (``SET ... PX ... NX``) and frees the
   lock.

Redis is never needed for correctness: any error (down, slow, full, OOM, garbage, auth)
makes the call count as failed, and the request goes on through memory and LWA. Every
call is bounded by ``redis_timeout`` (redis-py retries disabled), and after a failure no
call is made for ``redis_backoff`` seconds (:class:`~lwa_middleware.core.l2.Backoff`), then one
request probes; one WARNING per outage (the error's class and message: never a token,
which Redis never sees), one INFO when Redis answers again.

redis-py is imported only when a store is built (the ``redis`` extra). A client passed in
(``redis=``) belongs to the caller: it is used as it is and never closed here.

"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from types import ModuleType
from typing import Any, Final

from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.l2 import Backoff, Write
from lwa_middleware.core.models import Identity
from lwa_middleware.core.settings import LWASettings
from lwa_middleware.core.verification import Authority
from lwa_middleware.upstream.steps import Steps, arun, run
from lwa_middleware.upstream.tracing import SPAN_REDIS, Tracer
from lwa_middleware.upstream.transport import Budget

logger = logging.getLogger("lwa_middleware")

Clock = Callable[[], float]

INSTALL_HINT = "pip install 'lwa-middleware[redis]'"
#: Whether a worker that misses L2 takes the cold token's lock (see bench/bench_redis.py).
LOCK = True
#: The name our own clients give their connections (``CLIENT LIST`` shows it).
CLIENT_NAME = "lwa-middleware"


class _Down:
    """The outcome of a Redis call that was not made or failed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DOWN"


DOWN: Final = _Down()
_NO_TRACING: Final = Tracer(enabled=False)


def load_redis() -> ModuleType:
    """The ``redis`` package, or a :class:`ConfigurationError` saying how to install it."""
    try:
        return importlib.import_module("redis")
    except ImportError:
        raise ConfigurationError(f"the shared Redis cache needs redis-py: {INSTALL_HINT}") from None


def is_async_client(client: object) -> bool:
    """Whether ``client`` is an asyncio redis-py client (its commands are awaited)."""
    execute = getattr(type(client), "execute_command", None)
    if execute is None:
        raise ConfigurationError(
            "redis must be a redis-py client (redis.Redis, redis.asyncio.Redis, a "
            f"RedisCluster or a Sentinel master), got {type(client).__name__}"
        )
    return inspect.iscoroutinefunction(execute)


def check_client(client: object, *, asynchronous: bool) -> None:
    """Refuse a client of the wrong kind for a shell (sync for ASGI, or async for WSGI)."""
    if is_async_client(client) != asynchronous:
        if asynchronous:
            raise ConfigurationError(
                "LWAMiddleware (ASGI) needs an asyncio Redis client (redis.asyncio.Redis, "
                "redis.asyncio.RedisCluster), not a blocking redis.Redis"
            )
        raise ConfigurationError(
            "LWAWSGIMiddleware (WSGI) needs a blocking Redis client (redis.Redis, "
            "redis.RedisCluster), not a redis.asyncio one"
        )


def _options(settings: LWASettings, retry: Any) -> dict[str, Any]:
    """The connection options of a client we build: short timeouts, no retries."""
    return {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "retry": retry,
        "health_check_interval": 0,
        "client_name": CLIENT_NAME,
    }


def sync_client(settings: LWASettings) -> Any:
    """A redis-py client for ``redis_url`` (``redis://``, ``rediss://``, ``unix://``)."""
    redis = load_redis()
    backoff = importlib.import_module("redis.backoff")
    retry = importlib.import_module("redis.retry").Retry(backoff.NoBackoff(), 0)
    assert settings.redis_url is not None
    return redis.from_url(settings.redis_url, **_options(settings, retry))


def async_client(settings: LWASettings) -> Any:
    """A ``redis.asyncio`` client for ``redis_url`` (it belongs to the running loop)."""
    load_redis()
    aioredis = importlib.import_module("redis.asyncio")
    backoff = importlib.import_module("redis.backoff")
    retry = importlib.import_module("redis.asyncio.retry").Retry(backoff.NoBackoff(), 0)
    assert settings.redis_url is not None
    return aioredis.from_url(settings.redis_url, **_options(settings, retry))


def _described(error: BaseException) -> str:
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _StoreBase:
    """What both stores share: the client, the back-off, the counts and the log lines."""

    def __init__(
        self,
        client: Any,
        *,
        owned: bool,
        authority: Authority,
        backoff: Backoff,
        clock: Clock,
        lock: bool | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.client = client
        #: Whether we built the client (and so close it).
        self.owned = owned
        self.authority = authority
        self.backoff = backoff
        self.clock = clock
        #: Whether a worker missing L2 takes the cold token's lock (default: :data:`LOCK`).
        self.lock = LOCK if lock is None else lock
        self._stats = authority.l2.stats
        #: Each Redis call is an ``lwa.redis`` span (nothing when tracing is off).
        self.tracer = tracer if tracer is not None else _NO_TRACING

    def __repr__(self) -> str:
        return f"{type(self).__name__}(owned={self.owned}, down={self.backoff.down})"

    def _start(self) -> float | None:
        """The clock at the start of a call, or ``None`` when the back-off skips it."""
        now = self.clock()
        if self.backoff.allows(now):
            return now
        self._stats.skipped += 1
        return None

    def _run(self, call: Callable[[Any], Any]) -> Any:
        """``call(client)``'s result (awaited by the async store), or :data:`DOWN`."""
        raise NotImplementedError

    def _consulting(
        self, key: bytes, budget: Budget, sleep: Callable[[float], Any]
    ) -> Steps[tuple[Identity | None, bool]]:
        """:meth:`consult`'s steps: the entry; on a miss, the token's lock (when used), or
        a wait for the worker that holds it, looking again after each pause."""
        authority = self.authority
        l2 = authority.l2
        name = l2.key(key)
        raw = yield partial(self._run, lambda client: client.get(name))
        if raw is DOWN:
            return None, False
        identity = authority.from_l2(key, raw, self.clock())
        if identity is not None or not self.lock:
            return identity, False
        lock = l2.lock_key(key)
        claimed = yield partial(
            self._run, lambda client: client.set(lock, b"1", px=l2.lock_ms, nx=True)
        )
        if claimed is DOWN or claimed:
            return None, claimed is not DOWN
        self._stats.waits += 1
        for pause in l2.pauses(budget.remaining() or 0):
            yield partial(sleep, pause)
            found = yield partial(
                self._run,
                lambda client: client.pipeline(transaction=False).get(name).exists(lock).execute(),
            )
            if found is DOWN:
                break
            identity = authority.from_l2(key, found[0], self.clock())
            if identity is not None or not found[1]:
                return identity, False
        return None, False

    def _publishing(self, key: bytes, write: Write | None, locked: bool) -> Steps[None]:
        """:meth:`publish`'s step: one pipeline (the entry, the lock's release)."""
        lock = self.authority.l2.lock_key(key) if locked else None
        if write is None and lock is None:
            return
        done = yield partial(
            self._run,
            lambda client: _commands(client.pipeline(transaction=False), write, lock).execute(),
        )
        if write is not None and done is not DOWN and done[0]:
            self._stats.writes += 1

    def _succeeded(self, started: float) -> None:
        if self.backoff.succeeded(started):
            logger.info("shared cache (Redis) answers again: using it")

    def _failed(self, error: Exception) -> None:
        self._stats.errors += 1
        self.authority.recorder.redis_error()
        backoff = self.backoff
        if backoff.failed(self.clock()) == "new":
            logger.warning(
                "shared cache (Redis) is failing (%s): verifying through memory and LWA; "
                "next try in %g s",
                _described(error),
                backoff.seconds,
            )
        self._drop_idle_connections()

    def _drop_idle_connections(self) -> None:
        """Close the pool's idle connections (a Redis that restarted has lost them)."""
        pool = getattr(self.client, "connection_pool", None)
        disconnect = getattr(pool, "disconnect", None)
        if disconnect is None or inspect.iscoroutinefunction(disconnect):
            return  # an asyncio pool's connections are dropped by redis-py on error
        with contextlib.suppress(Exception):  # best effort, on a failing client
            disconnect(inuse_connections=False)


def _commands(pipe: Any, write: Write | None, lock: bytes | None) -> Any:
    if write is not None and write.delete:
        pipe.delete(write.key)
    elif write is not None:
        pipe.set(write.key, write.value, px=write.px, nx=write.nx)
    if lock is not None:
        pipe.delete(lock)
    return pipe


class RedisStore(_StoreBase):
    """The shared cache over a blocking redis-py client (thread-safe)."""

    def _run(self, call: Callable[[Any], Any]) -> Any:
        """``call(client)``'s result, or :data:`DOWN` (skipped, or failed and counted)."""
        started = self._start()
        if started is None:
            return DOWN
        try:
            with self.tracer.span(SPAN_REDIS):
                result = call(self.client)
        except Exception as error:  # any Redis failure: go on without it
            self._failed(error)
            return DOWN
        self._succeeded(started)
        return result

    def consult(self, key: bytes, budget: Budget) -> tuple[Identity | None, bool]:
        """``(identity or None, whether this worker holds the token's lock)``; raises
        ``InvalidToken`` for a shared rejection or an identity that fails the checks."""
        return run(self._consulting(key, budget, time.sleep))

    def publish(self, key: bytes, write: Write | None, locked: bool) -> None:
        """Write a verification's entry (if any) and free the lock (if held), at once."""
        run(self._publishing(key, write, locked))

    def close(self) -> None:
        """Close the client if we built it (a client passed in is the caller's)."""
        if self.owned:
            self.client.close()


class AsyncRedisStore(_StoreBase):
    """The shared cache over a ``redis.asyncio`` client (of one event loop)."""

    async def _run(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """``await call(client)``, or :data:`DOWN` (skipped, or failed and counted)."""
        started = self._start()
        if started is None:
            return DOWN
        try:
            with self.tracer.span(SPAN_REDIS):
                result = await call(self.client)
        except Exception as error:  # any Redis failure: go on without it
            self._failed(error)
            return DOWN
        self._succeeded(started)
        return result

    async def consult(self, key: bytes, budget: Budget) -> tuple[Identity | None, bool]:
        """As :meth:`RedisStore.consult`."""
        return await arun(self._consulting(key, budget, asyncio.sleep))

    async def publish(self, key: bytes, write: Write | None, locked: bool) -> None:
        """As :meth:`RedisStore.publish`."""
        await arun(self._publishing(key, write, locked))

    async def aclose(self) -> None:
        """Close the client if we built it (a client passed in is the caller's)."""
        if self.owned:
            await self.client.aclose()
