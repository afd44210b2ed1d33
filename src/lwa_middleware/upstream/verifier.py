"""``AsyncVerifier`` and ``Verifier``: the I/O and single-flight shells around :class:`Authority`.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

They only fetch (token-info ∥ profile for async; token-info then profile for sync, so no
thread hop is needed) and make concurrent misses for one token share one upstream call. A
failure is shared only with the requests that waited on that call. Every verdict is
:class:`~lwa_middleware.core.verification.Authority`'s.

``timeout`` is a deadline for the whole verification: waiting for a slot (at most
``max_concurrent_verifications`` verifications call LWA at once, see
:mod:`lwa_middleware.core.admission` and :mod:`lwa_middleware.upstream.slots`), waiting on another
request's call for the same token, and both LWA calls (the clients hold each call to the
time left, whatever LWA does). A slot handed over with less than half of ``timeout`` left
is given back unused (:func:`~lwa_middleware.core.breaker.call_budget`): ``Overloaded``, no call.

Async clients belong to the loop that created them, so :class:`AsyncVerifier` keeps one
client (and one in-flight table, and one Redis client) per event loop.

With a shared cache (``redis_url``, or a client passed as ``redis=``), a cold token is
looked up in Redis by the single flight's leader before LWA is asked, and LWA's verdict is
written back (:mod:`lwa_middleware.upstream.redis_store`); Redis failing only skips that step.

Sign-out's revocations (:mod:`lwa_middleware.core.revocation`) are the ``revocations`` passed in
(a sign-in's, shared with it) or the verifier's own. With a shared cache and ``secret_key``
they are kept in step with the fleet's by a sync on the same Redis client
(:mod:`lwa_middleware.upstream.revocation_store`: a task per event loop, a thread for the blocking
verifier), whose first read a cold verification waits for (briefly) in a new worker.

Both verifiers run one cold verification's steps (``_cold``: written once, driven by
:mod:`lwa_middleware.upstream.steps`); they differ in how they wait and call.

Operations: one :class:`~lwa_middleware.core.breaker.CircuitBreaker` per verifier (one
``api_base_url``, one host; off with ``breaker_failures=0``) is asked before a slot is
taken and told every call's outcome (only LWA's own failures count: never a request the
fan-out limit refused, nor one that ran out of time waiting for a slot); a verification
that fails because LWA is failing (or the breaker is open) is answered stale when
:meth:`Authority.fallback <lwa_middleware.core.verification.Authority.fallback>` allows it
(``stale_if_error``). Every event goes to a :class:`~lwa_middleware.core.metrics.Stats` (what
:meth:`stats` shows) and to the ``recorder`` passed in; a cold verification is an
``lwa.verify`` span.

"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import httpx

from lwa_middleware.core.breaker import CircuitBreaker, call_budget, host_of
from lwa_middleware.core.errors import ConfigurationError, LWAError, LWAUnavailable, Overloaded
from lwa_middleware.core.l2 import Backoff
from lwa_middleware.core.metrics import FanOut, Recorder, Stats
from lwa_middleware.core.models import Identity
from lwa_middleware.core.revocation import RevocationFeed, Revocations
from lwa_middleware.core.settings import LWASettings
from lwa_middleware.core.verification import Authority
from lwa_middleware.upstream.client import AsyncLWAClient, LWAClient
from lwa_middleware.upstream.redis_store import (
    AsyncRedisStore,
    RedisStore,
    async_client,
    check_client,
    load_redis,
    sync_client,
)
from lwa_middleware.upstream.revocation_store import AsyncRevocationSync, RevocationSync, ready_wait
from lwa_middleware.upstream.slots import AsyncSlots, Slots
from lwa_middleware.upstream.steps import Steps, arun, run
from lwa_middleware.upstream.tracing import SPAN_VERIFY, SpanHandle, Tracer
from lwa_middleware.upstream.transport import Budget

Clock = Callable[[], float]
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)

TIMED_OUT = "Login with Amazon timed out."
SHARED_CACHE_NEEDS_SECRET = (
    "a shared cache (redis_url, LWA_REDIS_URL or redis=) needs secret_key (LWA_SECRET_KEY): "
    "every value in Redis carries a MAC keyed by it, so that whoever can write to Redis "
    "cannot sign anyone in; give every worker of the fleet the same secret_key (e.g. "
    "secrets.token_urlsafe(32)). Setting it also makes cookie tokens need a signature"
)


def _copy(error: BaseException) -> BaseException:
    """A fresh instance for a waiter, so one exception object is never raised twice."""
    if isinstance(error, LWAError):
        copy = type(error)(error.description)
        copy.retry_after = error.retry_after  # CircuitOpen's countdown, for every waiter
        return copy
    return error


@dataclass
class _LoopState:
    client: AsyncLWAClient
    slots: AsyncSlots
    flights: dict[bytes, asyncio.Future[Identity]] = field(default_factory=dict)
    redis: AsyncRedisStore | None = None
    revocations: AsyncRevocationSync | None = None


class _VerifierBase(Generic[TransportT]):
    """What both verifiers share: the options, the :class:`Authority`, the clock, the first
    step of every verification (a cache hit, or a token fit to send to LWA) and the steps
    of a cold one (the shared cache, then LWA).

    ``transport`` is an ``httpx`` transport for the LWA calls (a sync one for
    :class:`Verifier`, an async one for :class:`AsyncVerifier`); ``redis`` a Redis client
    of the same kind, instead of ``redis_url``; ``recorder`` gets every event besides the
    built-in counters; ``revocations`` are a sign-in's (shared with it), else the
    verifier's own.
    """

    def __init__(
        self,
        settings: LWASettings,
        *,
        clock: Clock = time.time,
        transport: TransportT | None = None,
        redis: Any = None,
        recorder: Recorder | None = None,
        tracer: Tracer | None = None,
        revocations: Revocations | None = None,
    ) -> None:
        self.settings = settings
        #: The counters :meth:`stats` shows; a ``recorder`` passed in gets every event too.
        self.counters = Stats()
        self.recorder: Recorder = (
            self.counters if recorder is None else FanOut(self.counters, recorder)
        )
        #: What the shells' warm path calls for each hit (bound once): the counters' own
        #: C-level count when they are the only recorder.
        self.count_l1_hit: Callable[[], object] = (
            self.counters.count_l1_hit if recorder is None else self.recorder.l1_hit
        )
        self.authority = Authority(settings, recorder=self.recorder, revocations=revocations)
        #: Sign-out's revoked keys (shared with ``login=``'s sign-in when there is one).
        self.revocations = self.authority.revocations
        self.clock = clock
        #: Spans (``lwa.verify``, ``lwa.tokeninfo``, ...): OpenTelemetry's global provider
        #: unless a tracer is given; no-ops while none is set.
        self.tracer = (
            tracer if tracer is not None else Tracer(record_user_id=settings.trace_user_id)
        )
        #: One breaker per verifier: one Authority talks to one api_base_url (one host).
        self.breaker: CircuitBreaker | None = (
            CircuitBreaker(
                settings.breaker_failures,
                settings.breaker_open_seconds,
                on_change=self._breaker_changed,
                name=host_of(settings.api_base_url),
            )
            if settings.breaker_failures
            else None
        )
        #: When Redis may be called (shared by every loop's client).
        self.redis_backoff = Backoff(settings.redis_backoff)
        self._setup(transport, redis)

    def _setup(self, transport: TransportT | None, redis: Any) -> None:
        """Set up the shell's clients (or what makes them)."""
        raise NotImplementedError

    def _breaker_changed(self, old: str, new: str) -> None:
        self.recorder.breaker_state(new)

    def _shared_cache(self, client: Any, *, asynchronous: bool) -> bool:
        """Whether a shared cache is configured (``redis_url`` or a client passed in);
        refuses both at once, one without ``secret_key`` (its values' MAC is keyed by it:
        never an unauthenticated mode), a client of the wrong kind, and a URL without
        redis-py."""
        settings = self.settings
        if client is None and settings.redis_url is None:
            return False
        if client is not None and settings.redis_url is not None:
            raise ConfigurationError("pass redis_url or a redis client, not both")
        if settings.secret_key is None:
            raise ConfigurationError(SHARED_CACHE_NEEDS_SECRET)
        if client is not None:
            check_client(client, asynchronous=asynchronous)
        else:
            load_redis()
        return True

    def _attach(self, shared: bool) -> bool:
        """Attach the L1 cache to the revocations (and, with a shared cache and
        ``secret_key``, this verifier's sync, woken by :meth:`kick`); whether to sync."""
        sync = shared and bool(self.settings.secret_keys)
        authority = self.authority
        self.revocations.attach(authority.cache, authority.key, self.kick if sync else None)
        return sync

    def _feed(self) -> RevocationFeed:
        settings = self.settings
        return RevocationFeed(settings.redis_prefix, settings.secret_keys, self.revocations)

    def _sync_options(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "backoff": Backoff(settings.redis_backoff),
            "clock": self.clock,
            "wait": ready_wait(settings.redis_timeout),
        }

    def kick(self) -> None:
        """Wake the revocation sync (this process revoked something)."""

    def _slot_options(self) -> tuple[int, int]:
        settings = self.settings
        return settings.max_concurrent_verifications, settings.max_queued_verifications

    def _call_budget(self, budget: Budget) -> float:
        """The time the LWA calls get, in a slot just taken; ``Overloaded`` (nothing sent,
        nothing counted against LWA) when less than a real budget is left."""
        left = call_budget(budget.remaining(), self.settings.timeout)
        if left is None:
            raise self._overloaded()
        return left

    def _overloaded(self) -> Overloaded:
        """The error for a request that found no slot in time, or too late to call LWA
        (logged, rate-limited)."""
        error = Overloaded()
        self.recorder.fanout_rejected()
        self.authority.outage(error, self.clock())
        return error

    def _guard(self, now: float) -> None:
        """Before calling LWA: :class:`~lwa_middleware.core.breaker.CircuitOpen` while the
        breaker is open (or another request is its half-open probe)."""
        if self.breaker is not None:
            self.breaker.before_call(now)

    def _report(self, error: BaseException | None) -> None:
        """After a call let through by :meth:`_guard`: its outcome, for the breaker."""
        if self.breaker is not None:
            self.breaker.record(self.clock(), error)

    def _rescue(self, key: bytes, error: LWAUnavailable) -> Identity:
        """stale-if-error: the stale identity for a verification LWA failed (or the breaker
        refused), else ``error`` raised. ``Overloaded`` (our own cap) never gets here."""
        identity = self.authority.fallback(key, error, self.clock())
        if identity is None:
            raise error
        return identity

    def _cold(
        self,
        sync: AsyncRevocationSync | RevocationSync | None,
        store: AsyncRedisStore | RedisStore | None,
        at_lwa: Callable[[float], Any],
        key: bytes,
        now: float,
        budget: Budget,
        span: SpanHandle,
    ) -> Steps[Identity]:
        """The leader's verification of a cold token, as steps: the fleet's sign-outs first
        in a new worker, then the shared cache, else LWA (``at_lwa(now)``, whose verdict is
        then shared)."""
        authority = self.authority
        if sync is not None and not sync.loaded:  # a new worker: the fleet's sign-outs first
            yield sync.ready
            authority.refuse_revoked(key, self.clock())
        if store is None:
            return (yield partial(at_lwa, now))  # type: ignore[no-any-return]
        identity, locked = yield partial(store.consult, key, budget)
        if identity is not None:
            span.set_cache("l2")
            return identity  # type: ignore[no-any-return]
        now = self.clock()
        try:
            identity = yield partial(at_lwa, now)
        except Exception as error:  # a cancellation is not a verdict: nothing is written
            yield partial(
                store.publish, key, authority.l2_write(key, error, now, self.clock()), locked
            )
            raise
        yield partial(
            store.publish, key, authority.l2_write(key, identity, now, self.clock()), locked
        )
        return identity  # type: ignore[no-any-return]

    def _settled(self, span: SpanHandle, identity: Identity) -> Identity:
        span.set_outcome("stale" if identity.stale else "ok")
        span.set_user_id(identity.user_id)  # dropped unless the tracer records user ids
        return identity

    def stats(self) -> dict[str, Any]:
        """What this verifier counted, JSON-safe: :meth:`Stats.snapshot
        <lwa_middleware.core.metrics.Stats.snapshot>`, the breaker's state (``enabled``,
        ``consecutive_failures``, ``opens``, ``retry_after``, ...), ``l1_entries`` (held in
        memory, stale-if-error's included) and the shared cache's counts (``l2``)."""
        view = self.counters.snapshot()
        breaker = self.breaker
        if breaker is None:
            view["breaker"] = {**view["breaker"], "enabled": False}
        else:
            view["breaker"] = {
                **view["breaker"],
                **breaker.snapshot(self.clock()),
                "enabled": True,
            }
        view["l1_entries"] = len(self.authority.cache)
        view["l2"] = self.authority.l2.stats.as_dict()
        view["revocations"] = {
            **self.revocations.stats.as_dict(),
            "held": len(self.revocations),
        }
        return view

    def cached_raw(self, token: bytes) -> Identity | None:
        """The cached identity for a token's bytes (no I/O, no await); ``None`` on a miss.

        Raises ``InvalidToken`` for a cached rejection or a token that expired while cached.
        """
        identity = self.authority.lookup_raw(token, self.clock())
        if identity is not None:
            self.recorder.cache("l1", True)
        return identity

    def _lookup(self, token: str) -> tuple[bytes, float, Identity | None]:
        """``(key, now, cached identity or None)``; on a miss the token passed the local check."""
        authority = self.authority
        now = self.clock()
        key = authority.key(token)
        identity = authority.cached(key, now)
        self.recorder.cache("l1", identity is not None)
        if identity is None:
            authority.admit(token)
        return key, now, identity


class AsyncVerifier(_VerifierBase[httpx.AsyncBaseTransport]):
    """Verifies tokens for ASGI apps: L1 cache, then one shared LWA round trip per token."""

    def _setup(self, transport: httpx.AsyncBaseTransport | None, redis: Any) -> None:
        self._transport = transport
        #: A ``redis.asyncio`` client passed in (the caller's: never closed here).
        self._redis_client = redis
        self._redis = self._shared_cache(redis, asynchronous=True)
        self._sync = self._attach(self._redis)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None or state.client.is_closed:
            # Forget the clients of loops that have closed (their connections cannot be used
            # again, and their transports would keep those loops alive).
            for old in [old for old in self._loops if old.is_closed()]:
                del self._loops[old]
            client = AsyncLWAClient(
                self.settings.api_base_url,
                timeout=self.settings.timeout,
                transport=self._transport,
                recorder=self.recorder,
                tracer=self.tracer,
            )
            state = self._loops[loop] = _LoopState(client, AsyncSlots(*self._slot_options()))
            if self._redis:
                owned = self._redis_client is None
                state.redis = AsyncRedisStore(
                    async_client(self.settings) if owned else self._redis_client,
                    owned=owned,
                    authority=self.authority,
                    backoff=self.redis_backoff,
                    clock=self.clock,
                    tracer=self.tracer,
                )
                if self._sync:
                    state.revocations = AsyncRevocationSync(
                        self._feed(), state.redis.client, **self._sync_options()
                    )
                    state.revocations.start()
        return state

    async def start(self) -> None:
        """Open this loop's client now rather than on the first miss (lifespan startup)."""
        self._state()

    def kick(self) -> None:
        """Wake the revocation sync of the running loop (started if need be), or of every
        loop when called from outside one."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            for loop, state in list(self._loops.items()):
                if state.revocations is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(state.revocations.kick)
            return
        sync = self._state().revocations
        if sync is not None:
            sync.kick()

    async def revocations_ready(self) -> None:
        """Wait (briefly) for this loop's first read of the fleet's revocations."""
        sync = self._state().revocations
        if sync is not None and not sync.loaded:
            await sync.ready()

    async def verify(self, token: str, budget: Budget | None = None) -> Identity:
        """The identity for ``token`` (cached or fetched), or an ``LWAError``; ``budget``
        (default: ``timeout`` from now) is the deadline of the whole verification."""
        key, now, identity = self._lookup(token)
        if identity is not None:
            return identity
        with self.tracer.span(SPAN_VERIFY, {"lwa.cache": "none"}) as span:
            try:
                identity = await self._miss(key, token, now, budget, span)
            except LWAUnavailable as error:  # LWA failing, or the breaker open
                identity = self._rescue(key, error)
            return self._settled(span, identity)

    async def _miss(
        self, key: bytes, token: str, now: float, budget: Budget | None, span: SpanHandle
    ) -> Identity:
        """An L1 miss: follow the token's flight, or lead it (L2, then LWA)."""
        if budget is None:
            budget = Budget(self.settings.timeout)
        state = self._state()
        flight = state.flights.get(key)
        if flight is not None:
            return await self._follow(flight, token, budget)
        flight = asyncio.get_running_loop().create_future()
        state.flights[key] = flight
        try:
            at_lwa = partial(self._at_lwa, state, key, token, budget=budget)
            identity = await arun(
                self._cold(state.revocations, state.redis, at_lwa, key, now, budget, span)
            )
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except BaseException as error:
            flight.set_exception(error)
            flight.exception()  # mark retrieved: a flight nobody waited on is not an error
            raise
        else:
            flight.set_result(identity)
            return identity
        finally:
            del state.flights[key]

    async def _at_lwa(
        self, state: _LoopState, key: bytes, token: str, now: float, *, budget: Budget
    ) -> Identity:
        """Token-info ∥ profile in a slot, within the deadline; the verdict is Authority's
        (the breaker is asked first, and told the outcome on every way out)."""
        self._guard(now)
        slots = state.slots
        try:
            try:
                await slots.take(budget)
            except Overloaded:
                raise self._overloaded() from None
            try:
                left = self._call_budget(budget)
                info, profile = await asyncio.gather(
                    state.client.tokeninfo(token, now=now, timeout=left),
                    state.client.profile(token, timeout=left),
                    return_exceptions=True,
                )
            finally:
                slots.give()
            identity = self.authority.settle(key, info, profile, now)
        except BaseException as error:  # a verdict, a failure, a cancellation: the breaker
            self._report(error)  # counts a failure, a success, or frees the probe
            raise
        self._report(None)
        return identity

    async def _follow(
        self, flight: asyncio.Future[Identity], token: str, budget: Budget
    ) -> Identity:
        """Wait (within this request's deadline) for the call another request leads."""
        left = budget.remaining()
        if left is None:
            raise LWAUnavailable(TIMED_OUT)
        try:
            return await asyncio.wait_for(asyncio.shield(flight), left)
        except asyncio.TimeoutError:
            raise LWAUnavailable(TIMED_OUT) from None
        except asyncio.CancelledError:
            if not flight.cancelled():
                raise  # this request itself was cancelled
            # The leading request went away: lead anew, within this request's deadline.
            return await self.verify(token, budget)
        except LWAError as error:
            raise _copy(error) from None

    async def aclose(self) -> None:
        """Close the clients of the running loop (clients of other loops close with them);
        a Redis client passed in is the caller's, and stays open."""
        loop = asyncio.get_running_loop()
        state = self._loops.pop(loop, None)
        if state is not None:
            if state.revocations is not None:
                await state.revocations.aclose()
            try:
                await state.client.aclose()
            finally:
                if state.redis is not None:
                    await state.redis.aclose()


class _Flight:
    __slots__ = ("done", "error", "identity")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.identity: Identity | None = None
        self.error: BaseException | None = None


class Verifier(_VerifierBase[httpx.BaseTransport]):
    """Verifies tokens for WSGI apps: thread-safe L1 cache and single flight, no event loop."""

    def _setup(self, transport: httpx.BaseTransport | None, redis: Any) -> None:
        settings = self.settings
        self.redis: RedisStore | None = None
        #: The revocation sync (a thread, started on first need), with a shared cache.
        self.sync: RevocationSync | None = None
        if self._shared_cache(redis, asynchronous=False):
            self.redis = RedisStore(
                sync_client(settings) if redis is None else redis,
                owned=redis is None,
                authority=self.authority,
                backoff=self.redis_backoff,
                clock=self.clock,
                tracer=self.tracer,
            )
            if self._attach(True):
                self.sync = RevocationSync(self._feed(), self.redis.client, **self._sync_options())
        else:
            self._attach(False)
        self.client = LWAClient(
            settings.api_base_url,
            timeout=settings.timeout,
            transport=transport,
            recorder=self.recorder,
            tracer=self.tracer,
        )
        self._flights: dict[bytes, _Flight] = {}
        self._lock = threading.Lock()
        #: At most ``max_concurrent_verifications`` calls at once, shared by the threads.
        self.slots = Slots(*self._slot_options())

    def kick(self) -> None:
        """Wake the revocation sync (started if need be)."""
        if self.sync is not None:
            self.sync.kick()

    def revocations_ready(self) -> None:
        """Wait (briefly) for this process's first read of the fleet's revocations."""
        if self.sync is not None:
            self.sync.ready()

    def verify(self, token: str) -> Identity:
        """The identity for ``token`` (cached or fetched), or an ``LWAError``."""
        key, now, identity = self._lookup(token)
        if identity is not None:
            return identity
        with self.tracer.span(SPAN_VERIFY, {"lwa.cache": "none"}) as span:
            try:
                identity = self._miss(key, token, now, span)
            except LWAUnavailable as error:  # LWA failing, or the breaker open
                identity = self._rescue(key, error)
            return self._settled(span, identity)

    def _miss(self, key: bytes, token: str, now: float, span: SpanHandle) -> Identity:
        """An L1 miss: wait for the token's flight, or lead it (L2, then LWA)."""
        budget = Budget(self.settings.timeout)
        authority = self.authority
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                # A leader may have stored the verdict since our miss: look once more.
                identity = authority.cached(key, now)
                if identity is not None:
                    return identity
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            if not flight.done.wait(budget.remaining() or 0):
                raise LWAUnavailable(TIMED_OUT)
            if flight.error is not None:
                raise _copy(flight.error) from None
            assert flight.identity is not None
            return flight.identity
        try:
            at_lwa = partial(self._at_lwa, key, token, budget=budget)
            flight.identity = run(self._cold(self.sync, self.redis, at_lwa, key, now, budget, span))
            return flight.identity
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def _at_lwa(self, key: bytes, token: str, now: float, *, budget: Budget) -> Identity:
        """Token-info, then profile, in a slot, within the deadline (the breaker is asked
        first, and told the outcome on every way out)."""
        self._guard(now)
        slots = self.slots
        try:
            try:
                slots.take(budget)
            except Overloaded:
                raise self._overloaded() from None
            try:
                self._call_budget(budget)
                identity = self._fetch(key, token, now, budget)
            finally:
                slots.give()
        except BaseException as error:
            self._report(error)
            raise
        self._report(None)
        return identity

    def _fetch(self, key: bytes, token: str, now: float, budget: Budget) -> Identity:
        """Token-info, then (if it is ours) profile, both within the request's deadline."""
        left = budget.remaining()
        info: Any = (
            LWAUnavailable(TIMED_OUT)
            if left is None
            else _outcome(lambda: self.client.tokeninfo(token, now=now, timeout=left))
        )
        self.authority.check_token_info(key, info, now)
        left = budget.remaining()
        profile: Any = (
            LWAUnavailable(TIMED_OUT)
            if left is None
            else _outcome(lambda: self.client.profile(token, timeout=left))
        )
        return self.authority.settle(key, info, profile, now)

    def close(self) -> None:
        """Close the connection pool (and the Redis client, if we built it)."""
        if self.sync is not None:
            self.sync.close()
        try:
            self.client.close()
        finally:
            if self.redis is not None:
                self.redis.close()


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except LWAError as error:
        return error
