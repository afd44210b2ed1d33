"""Sign-out's revocations, without I/O: what is revoked, for how long, and how a revocation
travels between the workers of a fleet.

``POST /auth/logout`` (:mod:`lwa_middleware.login`) revokes two things, by hash only:

* the session's **access token**, by its cache key (:class:`~lwa_middleware.cache.KeyMaker`:
  SHA-256 of the API base URL, a NUL and the token), until the token expires (as the cache
  knows it, else :data:`ACCESS_TOKEN_MAX_LIFETIME` from now): refused from any carrier
  (cookie, ``Authorization: Bearer``, ``x-amz-access-token``, the query, a WebSocket);
* the **session**, by :func:`session_key` of the id sealed in the refresh cookie at sign-in
  and carried across refreshes, until the session would have ended (``session_max_age``
  after sign-in): no refresh cookie of that session (a copy taken before a refresh rotated
  the refresh token included) is ever refreshed again.

:class:`Revocations` holds one process's revoked keys (bounded, thread-safe). It is consulted
only where nothing is cached yet: an L1 miss, and right after an identity is stored (a
revocation stores the key first, then evicts it from every attached L1 cache, so a
verification racing with it either sees the key or has its entry evicted). The warm path
stays one dict lookup.

With a shared cache, :class:`RevocationFeed` carries revocations between workers. In Redis:

* ``{redis_prefix}:revocations:v1``, a sorted set: every live revocation, scored by when it
  ends (``ZREMRANGEBYSCORE`` drops the ended ones at each publish): what a worker loads at
  start, or after it lost track (no successful read for :data:`RELOAD_AFTER` seconds);
* ``{redis_prefix}:revocations:v1:feed``, a stream of the same entries as they are added
  (``MAXLEN ~`` :data:`FEED_MAXLEN`, the key expiring :data:`FEED_TTL` after the last add):
  what a worker polls every :data:`POLL_INTERVAL` seconds (``XREAD`` after the last id seen).

Each entry is ``kind.key.until_ms.tag``: ``tag`` is HMAC-SHA-256 under the ``revocations``
key of ``secret_key`` (:class:`~lwa_middleware.keys.KeyRing`: the newest signs, any
verifies) over the set's name and the three fields. An entry that fails it is ignored and
counted (a WARNING at most once a minute); one that ended is skipped. :meth:`tick` is one
round of a worker's sync as a generator of Redis calls, which the shells
(:mod:`lwa_middleware.revocation_store`) run on a blocking or an asyncio client alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import logging
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from lwa_middleware.cache import KeyMaker
from lwa_middleware.grants import MAX_EXPIRES_IN
from lwa_middleware.keys import KeyRing
from lwa_middleware.models import Identity

logger = logging.getLogger("lwa_middleware")

#: An access token revoked by sign-out.
ACCESS = "a"
#: A session revoked by sign-out (its refresh cookie, whatever refresh token it holds).
SESSION = "s"
KINDS = (ACCESS, SESSION)
#: How long an access token whose expiry is not known is kept revoked: the longest
#: ``expires_in`` a grant may carry (LWA's access tokens live 3600 s).
ACCESS_TOKEN_MAX_LIFETIME = MAX_EXPIRES_IN
#: The longest a revocation may last (``session_max_age`` is at most 400 days).
MAX_REVOCATION_SECONDS = 401 * 24 * 3600
#: The most revocations one process holds; past it the soonest to end is dropped (counted,
#: logged). About 200 bytes each.
DEFAULT_MAX_REVOCATIONS = 100_000
#: Revocations waiting to be published, at most (Redis down for long: the oldest go).
MAX_OUTBOX = 10_000
#: Seconds between two polls of the feed (a revocation reaches every worker within one
#: second: a poll, plus a Redis round trip).
POLL_INTERVAL = 0.5
#: Entries read per Redis call; pages read per poll at most.
PAGE = 1000
MAX_PAGES = 20
#: The stream's length, roughly (``XADD ... MAXLEN ~``).
FEED_MAXLEN = 100_000
#: Seconds the stream lives after its last entry.
FEED_TTL = 3600
#: A worker that read nothing for this long reloads the whole set (it may have missed
#: entries the stream no longer holds).
RELOAD_AFTER = 60.0
#: At most one WARNING about entries failing their MAC (or dropped) per this many seconds.
WARNING_INTERVAL = 60.0
#: The longest entry read.
MAX_ENTRY_CHARS = 160
_SESSION_LABEL = b"lwa-middleware.session\x00"
_TAG_CHARS = 43  # 32 bytes, URL-safe base64 without padding

#: One Redis call: given the client, its result (or, for an asyncio client, an awaitable).
Call = Callable[[Any], Any]


def session_key(session_id: str) -> bytes:
    """The revocation key of a session: SHA-256 of a label and the id sealed in its
    refresh cookie (the id itself never leaves the cookie)."""
    return hashlib.sha256(_SESSION_LABEL + session_id.encode()).digest()


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revoked key (a hash, never a token) of a ``kind``, until ``until`` (epoch s)."""

    kind: str
    key: bytes
    until: float

    def __repr__(self) -> str:
        return f"Revocation({self.kind!r}, {self.key.hex()[:12]}, until={self.until:.0f})"


@dataclass(slots=True)
class RevocationStats:
    """What the revocations did, counted (plain ints: a lost increment is harmless)."""

    #: Revoked here (sign-outs served by this process).
    revoked: int = 0
    #: Published to Redis / learned from it (new to this process).
    published: int = 0
    learned: int = 0
    #: Entries read from Redis and ignored: their MAC failed / they were unreadable.
    bad_mac: int = 0
    malformed: int = 0
    #: Dropped because the process held :data:`DEFAULT_MAX_REVOCATIONS` (the soonest to end).
    dropped: int = 0
    #: Whole reloads of the set from Redis.
    reloads: int = 0
    #: Redis calls that failed / were not made (the back-off after a failure).
    errors: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Evictable(Protocol):
    """An L1 cache, as the revocations see it."""

    def delete(self, key: bytes) -> None: ...

    def peek(self, key: bytes) -> tuple[float, Identity] | None: ...


class Revocations:
    """One process's revoked keys, shared by the sign-in (which revokes) and the verifiers
    and refreshers (which refuse): bounded, thread-safe, no I/O.

    Each verifier :meth:`attach`\\ es its L1 cache (evicted on every revocation, and asked
    for a token's expiry), its key maker (the access key is the cache's) and, with a shared
    cache, a ``kick`` that wakes its sync; what this process revokes then waits in an
    outbox until a sync publishes it.
    """

    __slots__ = (
        "_caches",
        "_default_keys",
        "_feeds",
        "_heap",
        "_kicks",
        "_lock",
        "_makers",
        "_outbox",
        "_until",
        "_warned_at",
        "maxsize",
        "stats",
    )

    def __init__(self, maxsize: int = DEFAULT_MAX_REVOCATIONS, api_base_url: str = "") -> None:
        self.maxsize = maxsize
        self.stats = RevocationStats()
        self._until: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._caches: list[Evictable] = []
        #: Key makers of the attached verifiers, by prefix; the sign-in's own API when none.
        self._makers: dict[bytes, KeyMaker] = {}
        self._default_keys = KeyMaker(api_base_url) if api_base_url else None
        self._kicks: list[Callable[[], None]] = []
        self._feeds = 0
        self._outbox: deque[Revocation] = deque(maxlen=MAX_OUTBOX)
        self._warned_at: float | None = None

    def __len__(self) -> int:
        return len(self._until)

    def __repr__(self) -> str:
        return f"Revocations({len(self)} held)"

    # Wiring ------------------------------------------------------------------------------

    def attach(
        self,
        cache: Evictable,
        key_maker: KeyMaker,
        kick: Callable[[], None] | None = None,
    ) -> None:
        """A verifier's L1 cache and key maker; ``kick`` (a shared cache's sync) is called
        after each revocation here, and makes revocations wait in the outbox for it."""
        with self._lock:
            self._caches.append(cache)
            self._makers.setdefault(key_maker.prefix, key_maker)
            if kick is not None:
                self._kicks.append(kick)
                self._feeds += 1

    # Reading (the verifiers' cold path, the refreshers) ------------------------------------

    def holds(self, key: bytes, now: float) -> bool:
        """Whether ``key`` is revoked at ``now`` (one dict lookup)."""
        until = self._until.get(key)
        return until is not None and now < until

    # Revoking ----------------------------------------------------------------------------

    def revoke(
        self,
        now: float,
        *,
        access_token: str | None = None,
        session: tuple[bytes, float] | None = None,
    ) -> list[Revocation]:
        """Sign-out: revoke ``access_token`` (by the key of every attached verifier, until
        its expiry as a cache knows it, else :data:`ACCESS_TOKEN_MAX_LIFETIME` from now)
        and ``session`` (``(session_key, until)``); held here at once, then published."""
        entries: list[Revocation] = []
        if access_token is not None:
            makers = list(self._makers.values())
            if not makers and self._default_keys is not None:
                makers = [self._default_keys]
            for maker in makers:
                key = maker(access_token)
                entries.append(Revocation(ACCESS, key, self._expiry(key, now)))
        if session is not None:
            entries.append(Revocation(SESSION, session[0], session[1]))
        added = self._add(entries, now)
        self.stats.revoked += len(added)
        if added and self._feeds:
            with self._lock:
                self._outbox.extend(added)
        for kick in list(self._kicks):
            try:
                kick()
            except Exception:  # a sync that cannot be woken polls on its own
                logger.debug("could not wake the revocation sync", exc_info=True)
        return added

    def _expiry(self, key: bytes, now: float) -> float:
        for cache in self._caches:
            item = cache.peek(key)
            if item is not None:
                expires_at = item[1].token_info.expires_at
                if expires_at > now:
                    return min(expires_at, now + ACCESS_TOKEN_MAX_LIFETIME)
        return now + ACCESS_TOKEN_MAX_LIFETIME

    def learn(self, entries: Iterable[Revocation], now: float) -> int:
        """Hold revocations read from the fleet's list; how many were new here."""
        added = self._add(entries, now)
        self.stats.learned += len(added)
        return len(added)

    def _add(self, entries: Iterable[Revocation], now: float) -> list[Revocation]:
        """Hold ``entries`` (the live ones, unless already held as long), then evict their
        keys from every attached cache: held first, evicted second (see the module)."""
        added: list[Revocation] = []
        dropped = 0
        with self._lock:
            until_of, heap = self._until, self._heap
            self._purge(now)
            for entry in entries:
                if entry.until <= now or until_of.get(entry.key, -1.0) >= entry.until:
                    continue
                until_of[entry.key] = entry.until
                heapq.heappush(heap, (entry.until, entry.key))
                added.append(entry)
                while len(until_of) > self.maxsize:
                    dropped += self._pop_soonest()
            if len(heap) > 2 * len(until_of) + 64:  # re-revoked keys left old heap rows
                self._heap = [(until, key) for key, until in until_of.items()]
                heapq.heapify(self._heap)
        for entry in added:
            for cache in self._caches:
                cache.delete(entry.key)
        if dropped:
            self.stats.dropped += dropped
            self.warn(now, f"{dropped} revocation(s) dropped: more than {self.maxsize} held")
        return added

    def _purge(self, now: float) -> None:
        """Forget the revocations that ended (under the lock)."""
        heap, until_of = self._heap, self._until
        while heap and heap[0][0] <= now:
            until, key = heapq.heappop(heap)
            if until_of.get(key) == until:
                del until_of[key]

    def _pop_soonest(self) -> int:
        """Drop the revocation that ends first (under the lock); 1 if one was dropped."""
        heap, until_of = self._heap, self._until
        while heap:
            until, key = heapq.heappop(heap)
            if until_of.get(key) == until:
                del until_of[key]
                return 1
        return 0

    def warn(self, now: float, message: str) -> None:
        """A WARNING, at most one per :data:`WARNING_INTERVAL` (the counts say the rest)."""
        last = self._warned_at
        if last is None or not 0 <= now - last < WARNING_INTERVAL:
            self._warned_at = now
            logger.warning("revocations: %s", message)

    # The outbox (a shared cache's sync) ----------------------------------------------------

    def take_outbox(self) -> list[Revocation]:
        """The revocations to publish (taken: :meth:`requeue` them if publishing fails)."""
        with self._lock:
            taken = list(self._outbox)
            self._outbox.clear()
        return taken

    def requeue(self, entries: Sequence[Revocation]) -> None:
        """Put back revocations that could not be published (before any newer ones)."""
        with self._lock:
            newer = list(self._outbox)
            self._outbox.clear()
            self._outbox.extend(entries)
            self._outbox.extend(newer)

    def clear(self) -> None:
        """Forget everything held (tests)."""
        with self._lock:
            self._until.clear()
            self._heap.clear()
            self._outbox.clear()


# The fleet's list, in Redis ---------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _stream_entries(answer: Any) -> list[tuple[Any, Any]]:
    """``(id, fields)`` pairs of an ``XREAD`` answer (RESP2: ``[[name, entries]]``; RESP3:
    ``{name: [entries]}``)."""
    if not answer:
        return []
    if isinstance(answer, dict):
        streams = [
            value[0] if value and isinstance(value[0], list) else value for value in answer.values()
        ]
    else:
        streams = [item[1] for item in answer]
    return [(entry[0], entry[1]) for entries in streams for entry in entries]


def _field(fields_: Any, name: bytes) -> Any:
    if isinstance(fields_, dict):
        return fields_.get(name, fields_.get(name.decode()))
    if isinstance(fields_, (list, tuple)):
        for i in range(0, len(fields_) - 1, 2):
            if fields_[i] in (name, name.decode()):
                return fields_[i + 1]
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _page(zset: bytes, now: float, offset: int) -> Call:
    """``ZREVRANGEBYSCORE``: a page of the live entries, those that end last first."""
    return lambda client: client.zrevrangebyscore(zset, "+inf", now, start=offset, num=PAGE)


def _after(stream: bytes, cursor: bytes) -> Call:
    """``XREAD``: the stream's entries after ``cursor`` (no blocking)."""
    return lambda client: client.xread({stream: cursor}, count=PAGE)


class RevocationFeed:
    """The fleet's revocation list in Redis for one ``redis_prefix`` and ``secret_key``:
    the entries' format and MAC, and each round of a worker's sync (:meth:`tick`)."""

    __slots__ = ("_read_at", "_ring", "cursor", "revocations", "stream", "zset")

    def __init__(self, prefix: str, secrets: Sequence[bytes], revocations: Revocations) -> None:
        self.zset = f"{prefix}:revocations:v1".encode()
        self.stream = self.zset + b":feed"
        self._ring = KeyRing(secrets, "revocations")
        self.revocations = revocations
        #: The last stream id read; ``None`` until the set was loaded once.
        self.cursor: bytes | None = None
        self._read_at = -float("inf")

    def __repr__(self) -> str:
        return f"RevocationFeed({self.zset.decode()!r})"

    @property
    def stats(self) -> RevocationStats:
        return self.revocations.stats

    @property
    def loaded(self) -> bool:
        """Whether the fleet's list was read at least once."""
        return self.cursor is not None

    # Entries -----------------------------------------------------------------------------

    def encode(self, entry: Revocation) -> bytes:
        """``kind.key.until_ms.tag`` (ASCII)."""
        body = f"{entry.kind}.{entry.key.hex()}.{int(entry.until * 1000)}"
        tag = self._ring.mac(self.zset, body.encode("ascii"))
        return f"{body}.{_b64(tag)}".encode("ascii")

    def decode(self, raw: Any, now: float) -> Revocation | None:
        """The revocation an entry holds, ``None`` when it ended, is unreadable or fails its
        MAC (those two counted)."""
        text = _text(raw)
        parts = text.split(".") if text is not None and len(text) <= MAX_ENTRY_CHARS else []
        if len(parts) != 4:
            self.stats.malformed += 1
            return None
        kind, key_hex, until_ms, tag_text = parts
        try:
            key = bytes.fromhex(key_hex)
            tag = base64.urlsafe_b64decode(tag_text + "=")
        except (ValueError, binascii.Error):
            key, tag = b"", b""
        if (
            kind not in KINDS
            or len(key) != 32
            or len(tag_text) != _TAG_CHARS
            or not until_ms.isdigit()
            or len(until_ms) > 15
        ):
            self.stats.malformed += 1
            return None
        body = f"{kind}.{key_hex}.{until_ms}".encode("ascii")
        if not self._ring.check(tag, self.zset, body):
            self.stats.bad_mac += 1
            self.revocations.warn(
                now,
                f"{self.stats.bad_mac} shared entr(y/ies) failed their MAC so far and were "
                "ignored: something without this app's secret_key writes under its "
                "redis_prefix",
            )
            return None
        until = int(until_ms) / 1000
        if until <= now:
            return None
        if until > now + MAX_REVOCATION_SECONDS:
            self.stats.malformed += 1
            return None
        return Revocation(kind, key, until)

    def _learn(self, raws: Iterable[Any], now: float) -> None:
        found = [entry for raw in raws if (entry := self.decode(raw, now)) is not None]
        if found:
            self.revocations.learn(found, now)

    # One round of a worker's sync ----------------------------------------------------------

    def tick(self, now: float) -> Generator[Call, Any, None]:
        """Publish what this process revoked, then read what the fleet revoked: a reload of
        the whole set the first time (and after :data:`RELOAD_AFTER` seconds without a
        read), else the stream after :attr:`cursor`. Yields each Redis call and gets its
        result back; a call that fails is thrown in (and out again, the outbox kept)."""
        outbox = self.revocations.take_outbox()
        if outbox:
            try:
                yield self._publish(outbox, now)
            except BaseException:
                self.revocations.requeue(outbox)
                raise
            self.stats.published += len(outbox)
        if self.cursor is None or now - self._read_at > RELOAD_AFTER:
            stream = self.stream
            last = yield lambda client: client.xrevrange(stream, "+", "-", count=1)
            cursor = last[0][0] if last else b"0-0"
            zset = self.zset
            offset = 0
            while offset < self.revocations.maxsize:
                members = yield _page(zset, now, offset)
                self._learn(members, now)
                if len(members) < PAGE:
                    break
                offset += PAGE
            self.cursor = cursor if isinstance(cursor, bytes) else str(cursor).encode()
            self.stats.reloads += 1
        else:
            for _ in range(MAX_PAGES):
                answer = yield _after(self.stream, self.cursor)
                entries = _stream_entries(answer)
                if entries:
                    last_id = entries[-1][0]
                    self.cursor = last_id if isinstance(last_id, bytes) else str(last_id).encode()
                    self._learn((_field(f, b"e") for _, f in entries), now)
                if len(entries) < PAGE:
                    break
        self._read_at = now

    def _publish(self, entries: Sequence[Revocation], now: float) -> Call:
        """One pipeline: each entry into the set and the stream; the ended ones out of the
        set; both keys' lifetimes renewed."""
        members = [(self.encode(entry), entry.until) for entry in entries]
        zset, stream = self.zset, self.stream

        def call(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for member, until in members:
                pipe.zadd(zset, {member: until})
                pipe.xadd(stream, {b"e": member}, maxlen=FEED_MAXLEN, approximate=True)
            pipe.zremrangebyscore(zset, "-inf", now)
            pipe.expire(zset, MAX_REVOCATION_SECONDS)
            pipe.expire(stream, FEED_TTL)
            return pipe.execute()

        return call
