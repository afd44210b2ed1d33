"""Sign-out's revocations, without I/O: what is revoked, for how long, and how a revocation
travels between the workers of a fleet.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

``POST /auth/logout`` (:mod:`lwa_middleware.login`) revokes two things, by hash only:

* the session's **access tokens**, each by its cache key (:class:`~lwa_middleware.core.cache.
  KeyMaker`: SHA-256 of the API base URL, a NUL and the token), until it expires: the one
  in the cookie (its expiry as a cache knows it, else :data:`ACCESS_TOKEN_MAX_LIFETIME`
  from now) and every one issued to the session, at sign-in or by a refresh, whoever
  refreshed (:meth:`Revocations.link`): refused from any carrier (cookie,
  ``Authorization: Bearer``, ``x-amz-access-token``, the query, a WebSocket);
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
  what a worker polls every :data:`POLL_INTERVAL` seconds (``XREAD`` after the last id seen);
* ``{redis_prefix}:revocations:v1:s:{session key hex}``, a set per session: the access
  tokens issued to it (expiring with the last of them), which the worker that revokes the
  session reads and revokes in turn. The worker that issued one also revokes it when it
  learns the session was revoked (a link published after the sign-out read the set).

Each entry is ``kind.key.until_ms.tag``: ``tag`` is HMAC-SHA-256 under the ``revocations``
key of ``secret_key`` (:class:`~lwa_middleware.core.keys.KeyRing`: the newest signs, any
verifies) over the name of the key it is written under and the three fields. An entry
that fails it is ignored and
counted (a WARNING at most once a minute); one that ended is skipped. :meth:`tick` is one
round of a worker's sync as a generator of Redis calls, which the shells
(:mod:`lwa_middleware.upstream.revocation_store`) run on a blocking or an asyncio client alike.

"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import logging
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from lwa_middleware.core.cache import KeyMaker
from lwa_middleware.core.grants import MAX_EXPIRES_IN
from lwa_middleware.core.keys import KeyRing
from lwa_middleware.core.models import Identity

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
#: Entries are removed from the set this long after they ended (a fleet's clocks differ).
ENDED_MARGIN = 60.0
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
    #: Links (an access token issued to a session) published to Redis.
    links: int = 0
    #: Whole reloads of the set from Redis.
    reloads: int = 0
    #: Redis calls that failed / were not made (the back-off after a failure).
    errors: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Link:
    """An access token issued to a session (at sign-in or by a refresh): revoked with it."""

    session: bytes
    entry: Revocation


#: What waits to be published: a revocation, or a session's link to an access token.
Outgoing = Revocation | Link


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

    Every access token the sign-in issues (at sign-in, and at each refresh) is
    :meth:`link`\\ ed to its session: revoking the session revokes them too, so a copy of
    the refresh cookie refreshed by someone else before the sign-out (or racing it) leaves
    them no access token either. The links are kept here until the tokens expire (and, with
    a shared cache, in Redis, for the worker that signs the session out).
    """

    __slots__ = (
        "_caches",
        "_default_keys",
        "_feeds",
        "_heap",
        "_kicks",
        "_links",
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
        self._links: OrderedDict[bytes, list[Revocation]] = OrderedDict()
        self._lock = threading.Lock()
        self._caches: list[Evictable] = []
        #: Key makers of the attached verifiers, by prefix; the sign-in's own API when none.
        self._makers: dict[bytes, KeyMaker] = {}
        self._default_keys = KeyMaker(api_base_url) if api_base_url else None
        self._kicks: list[Callable[[], None]] = []
        self._feeds = 0
        self._outbox: deque[Outgoing] = deque(maxlen=MAX_OUTBOX)
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

    def _access(self, token: str, until: float | None, now: float) -> list[Revocation]:
        """``token``'s revocations: by the key of every attached verifier (the sign-in's API
        when none), until ``until`` (else as a cache knows it, else the longest a token
        lives)."""
        makers = list(self._makers.values())
        if not makers and self._default_keys is not None:
            makers = [self._default_keys]
        entries = []
        for maker in makers:
            key = maker(token)
            entries.append(
                Revocation(ACCESS, key, self._expiry(key, now) if until is None else until)
            )
        return entries

    def _expiry(self, key: bytes, now: float) -> float:
        for cache in self._caches:
            item = cache.peek(key)
            if item is not None:
                expires_at = item[1].token_info.expires_at
                if expires_at > now:
                    return min(expires_at, now + ACCESS_TOKEN_MAX_LIFETIME)
        return now + ACCESS_TOKEN_MAX_LIFETIME

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
        """Sign-out: revoke ``access_token`` (until it expires, as a cache knows it, else
        :data:`ACCESS_TOKEN_MAX_LIFETIME` from now) and ``session`` (``(session_key,
        until)``) with the access tokens linked to it; held here at once, then published."""
        entries = [] if access_token is None else self._access(access_token, None, now)
        if session is not None:
            entries.append(Revocation(SESSION, session[0], session[1]))
        added, linked = self._add(entries, now)
        self.stats.revoked += len(added) + len(linked)
        self._publish([*added, *linked])
        return [*added, *linked]

    def link(self, session: bytes, access_token: str, until: float, now: float) -> None:
        """``access_token`` (living until ``until``) was issued to ``session``: revoked with
        it (at once when it already is: a refresh that raced the sign-out)."""
        entries = self._access(access_token, until, now)
        with self._lock:
            revoked = self.holds(session, now)
            if not revoked:
                kept = [entry for entry in self._links.pop(session, ()) if entry.until > now]
                self._links[session] = kept + entries
                while len(self._links) > self.maxsize:
                    self._links.popitem(last=False)
                if self._feeds:
                    self._outbox.extend(Link(session, entry) for entry in entries)
        if revoked:
            added, _ = self._add(entries, now)
            self.stats.revoked += len(added)
            self._publish(added)
        else:
            self._kick()

    def revoke_entries(self, entries: Iterable[Revocation], now: float) -> None:
        """Revoke (and publish) entries found elsewhere: the tokens a session signed out
        here had been issued by other workers (their links in Redis)."""
        added, linked = self._add(entries, now)
        self.stats.revoked += len(added) + len(linked)
        self._publish([*added, *linked])

    def learn(self, entries: Iterable[Revocation], now: float) -> int:
        """Hold revocations read from the fleet's list; how many were new here. Access
        tokens this process linked to a session learnt revoked are revoked (and published)."""
        added, linked = self._add(entries, now)
        self.stats.learned += len(added)
        self.stats.revoked += len(linked)
        self._publish(linked)
        return len(added)

    def _publish(self, entries: Sequence[Revocation]) -> None:
        if entries and self._feeds:
            with self._lock:
                self._outbox.extend(entries)
        self._kick()

    def _kick(self) -> None:
        for kick in list(self._kicks):
            try:
                kick()
            except Exception:  # a sync that cannot be woken polls on its own
                logger.debug("could not wake the revocation sync", exc_info=True)

    def _add(
        self, entries: Iterable[Revocation], now: float
    ) -> tuple[list[Revocation], list[Revocation]]:
        """Hold ``entries`` (the live ones, unless already held as long) and the access
        tokens linked to a session among them, then evict their keys from every attached
        cache: held first, evicted second (see the module). What was added: the entries,
        and the linked tokens."""
        added: list[Revocation] = []
        linked: list[Revocation] = []
        dropped = 0
        with self._lock:
            self._purge(now)
            for entry in entries:
                if self._hold(entry, now):
                    added.append(entry)
                    if entry.kind == SESSION:
                        for token in self._links.pop(entry.key, ()):
                            if self._hold(token, now):
                                linked.append(token)
            while len(self._until) > self.maxsize:
                dropped += self._pop_soonest()
            if len(self._heap) > 2 * len(self._until) + 64:  # re-revoked keys' old rows
                self._heap = [(until, key) for key, until in self._until.items()]
                heapq.heapify(self._heap)
        for entry in (*added, *linked):
            for cache in self._caches:
                cache.delete(entry.key)
        if dropped:
            self.stats.dropped += dropped
            self.warn(now, f"{dropped} revocation(s) dropped: more than {self.maxsize} held")
        return added, linked

    def _hold(self, entry: Revocation, now: float) -> bool:
        """Hold one entry (under the lock); whether it is new (or now lasts longer)."""
        if entry.until <= now or self._until.get(entry.key, -1.0) >= entry.until:
            return False
        self._until[entry.key] = entry.until
        heapq.heappush(self._heap, (entry.until, entry.key))
        return True

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

    def take_outbox(self) -> list[Outgoing]:
        """What to publish (taken: :meth:`requeue` it if publishing fails)."""
        with self._lock:
            taken = list(self._outbox)
            self._outbox.clear()
        return taken

    def requeue(self, items: Sequence[Outgoing]) -> None:
        """Put back what could not be published (before anything newer)."""
        with self._lock:
            newer = list(self._outbox)
            self._outbox.clear()
            self._outbox.extend(items)
            self._outbox.extend(newer)

    def clear(self) -> None:
        """Forget everything held (tests)."""
        with self._lock:
            self._until.clear()
            self._heap.clear()
            self._links.clear()
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

    def links_of(self, session: bytes) -> bytes:
        """The set of the access tokens issued to ``session`` (its revocation key)."""
        return self.zset + b":s:" + session.hex().encode("ascii")

    # Entries -----------------------------------------------------------------------------

    def encode(self, entry: Revocation, domain: bytes | None = None) -> bytes:
        """``kind.key.until_ms.tag`` (ASCII); the MAC covers ``domain`` too (the key the
        entry is written under: the set's name, or a session's links')."""
        body = f"{entry.kind}.{entry.key.hex()}.{int(entry.until * 1000)}"
        tag = self._ring.mac(domain or self.zset, body.encode("ascii"))
        return f"{body}.{_b64(tag)}".encode("ascii")

    def decode(self, raw: Any, now: float, domain: bytes | None = None) -> Revocation | None:
        """The revocation an entry (written under ``domain``) holds; ``None`` when it ended,
        is unreadable or fails its MAC (those two counted)."""
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
        if not self._ring.check(tag, domain or self.zset, body):
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
        read), else the stream after :attr:`cursor`; then publish what that reading
        revoked here (tokens this process issued to sessions signed out elsewhere).
        Yields each Redis call and gets its result back; a call that fails is thrown in
        (and out again, the outbox kept)."""
        yield from self._send(now)
        if self.cursor is None or now - self._read_at > RELOAD_AFTER:
            stream = self.stream
            last = yield lambda client: client.xrevrange(stream, "+", "-", count=1)
            cursor = last[0][0] if last else b"0-0"
            offset = 0
            while offset < self.revocations.maxsize:
                members = yield _page(self.zset, now, offset)
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
        yield from self._send(now)

    def _send(self, now: float) -> Generator[Call, Any, None]:
        """Publish the outbox; a session revoked here also reads its links from Redis (the
        tokens other workers issued to it), which are revoked and published in turn."""
        for _ in range(3):
            outbox = self.revocations.take_outbox()
            if not outbox:
                return
            call, sessions = self._publish(outbox, now)
            try:
                results = yield call
            except BaseException:
                self.revocations.requeue(outbox)
                raise
            self.stats.published += sum(isinstance(item, Revocation) for item in outbox)
            self.stats.links += sum(isinstance(item, Link) for item in outbox)
            linked = []
            for name, members in zip(
                sessions, results[len(results) - len(sessions) :], strict=True
            ):
                for raw in members or ():
                    entry = self.decode(raw, now, domain=name)
                    if entry is not None and entry.kind == ACCESS:
                        linked.append(entry)
            if linked:
                self.revocations.revoke_entries(linked, now)

    def _publish(self, items: Sequence[Outgoing], now: float) -> tuple[Call, list[bytes]]:
        """One pipeline: each revocation into the set and the stream, each link into its
        session's set; the ended revocations out of the set; the keys' lifetimes renewed;
        last, the links of each session revoked (their names are returned)."""
        revoked: list[tuple[bytes, float]] = []
        links: list[tuple[bytes, bytes, int]] = []
        sessions: list[bytes] = []
        for item in items:
            if isinstance(item, Link):
                name = self.links_of(item.session)
                ttl = max(1, math.ceil(item.entry.until - now))
                links.append((name, self.encode(item.entry, domain=name), ttl))
            else:
                revoked.append((self.encode(item), item.until))
                if item.kind == SESSION:
                    sessions.append(self.links_of(item.key))
        zset, stream = self.zset, self.stream

        def call(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for member, until in revoked:
                pipe.zadd(zset, {member: until})
                pipe.xadd(stream, {b"e": member}, maxlen=FEED_MAXLEN, approximate=True)
            for name, member, ttl in links:
                pipe.sadd(name, member)
                pipe.expire(name, ttl)
            pipe.zremrangebyscore(zset, "-inf", now - ENDED_MARGIN)
            pipe.expire(zset, MAX_REVOCATION_SECONDS)
            pipe.expire(stream, FEED_TTL)
            for name in sessions:
                pipe.smembers(name)
            return pipe.execute()

        return call, sessions
