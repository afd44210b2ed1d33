"""The shared verification cache's policy (L2, on Redis), without I/O.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

Every worker of a fleet keeps its own in-memory cache (L1, :mod:`lwa_middleware.core.cache`);
behind it, the L2 lets them share what LWA said about a token. This module holds only the
rules (no redis import, no clock read: ``now`` is passed in); the Redis I/O is
:mod:`lwa_middleware.upstream.redis_store`, the verdicts are
:class:`~lwa_middleware.core.verification.Authority`'s.

- **Keys**: ``{redis_prefix}:v2:{hex}``, where ``hex`` is the L1 key (SHA-256 of the API
  base URL, a NUL and the token) hex-encoded: the token itself is never in Redis.
  ``v2`` is the value format's version: a new format gets new keys, so old and new workers
  never read each other's values. The cross-worker lock of a cold token is
  ``{redis_prefix}:v2:lock:{hex}``.
- **Values**: the MAC, then compact JSON, at most :data:`MAX_VALUE_BYTES` in all. The MAC
  (:data:`TAG_CHARS` characters of unpadded URL-safe base64) is HMAC-SHA-256 over the key
  and the JSON, under the ``"shared-cache"`` key of :class:`~lwa_middleware.core.keys.KeyRing`
  (derived from ``secret_key``: the newest secret signs, any one is accepted). The JSON:
  ``v`` (the format, 2), ``k`` (``"i"``: an identity, ``"r"``: a rejection), ``at`` (when
  LWA was asked, by the writer's clock), ``d`` (when the entry ends, epoch seconds); an
  identity adds :meth:`Identity.to_json <lwa_middleware.core.models.Identity.to_json>`'s
  ``token_info`` and ``profile`` (what LWA answered, never the token), a rejection ``e``
  (its description).
- **TTL**: Redis expires a key at the entry's end, in whole milliseconds rounded *down*
  (``SET ... PX``): an identity at min(``at + cache_ttl``, the token's expiry -
  ``expiry_leeway``) — with ``stale_if_error``, up to that many seconds later (never past
  the token's expiry) while ``d`` keeps the fresh end —, a rejection ``negative_ttl``
  after ``at``. An identity is written with
  ``NX``, so a re-write never extends it; a rejection overwrites (a revoked token's
  identity, still held for a worker with a longer ``cache_ttl``, is replaced).
- **Reading**: the MAC is checked first (nothing unauthenticated is even parsed); then the
  value is decoded strictly: anything unauthenticated, malformed, oversized or of another
  version is ignored (a miss) and counted in :class:`L2Stats`. The reader trusts nothing
  about time it did not decide (:class:`~lwa_middleware.core.verification.Authority`): an entry
  dated ahead of its own clock by more than ``expiry_leeway`` is refused, and one it takes
  lives in L1 until min(``d``, ``at + cache_ttl``, its *own* ``now + cache_ttl``, the
  token's expiry - leeway): never a fresh life, never one the writer chose.
- **Failures**: :class:`Backoff` decides when Redis may be called: always while it answers;
  after a failure, not for ``redis_backoff`` seconds, then by one probing request at a time
  until it answers again.

"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeAlias

from lwa_middleware.core.cache import Rejected
from lwa_middleware.core.errors import InvalidToken
from lwa_middleware.core.keys import KeyRing
from lwa_middleware.core.models import Identity, TokenInfo
from lwa_middleware.core.protocol import profile_from_data

#: The value format (and the ``v2`` in every key). 2: every value carries a MAC.
FORMAT_VERSION = 2
#: The largest value written or read (MAC included): an identity is about 0.6 KiB.
MAX_VALUE_BYTES = 16 * 1024
#: The MAC's length at the head of a value: 32 bytes in unpadded URL-safe base64.
TAG_CHARS = 43
#: The key purpose of the values' MAC (:class:`~lwa_middleware.core.keys.KeyRing`).
PURPOSE = "shared-cache"
#: The longest rejection description kept (LWA's, already short and printable).
MAX_DESCRIPTION = 300
#: Pauses (seconds) between two looks at L2 while another worker verifies a cold token;
#: the last one repeats.
LOCK_POLL = (0.005, 0.005, 0.01)
#: The longest a cold token's lock lives (and so the longest another worker waits on it):
#: a verification slower than this (or a worker that died holding the lock) only costs the
#: waiters their own LWA call, as without the lock.
MAX_LOCK_SECONDS = 1.0


@dataclass(slots=True)
class L2Stats:
    """What the shared cache did, counted (plain ints: a lost increment under threads is
    harmless). ``unauthenticated + malformed + oversized + wrong_version + future`` values
    were ignored."""

    hits: int = 0
    #: Rejections found (the request was answered ``invalid_token``).
    negative_hits: int = 0
    misses: int = 0
    #: Entries found but ended for this worker's own ``cache_ttl``/leeway (a miss).
    stale: int = 0
    #: Identities refused on re-check: not issued to this app, or expired.
    refused: int = 0
    #: Values whose MAC is missing or wrong (written without this app's ``secret_key``:
    #: another app, a worker with another secret, or anyone else who can write to Redis).
    unauthenticated: int = 0
    #: Authenticated values dated ahead of this worker's clock by more than its leeway.
    future: int = 0
    malformed: int = 0
    oversized: int = 0
    wrong_version: int = 0
    writes: int = 0
    #: Redis calls that failed (timeout, connection, any error).
    errors: int = 0
    #: Redis calls not made because of the back-off after a failure.
    skipped: int = 0
    #: Cold tokens waited for while another worker held their lock.
    waits: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Write:
    """One ``SET key value PX px [NX]`` to make, or (``delete``) one ``DEL key``."""

    key: bytes
    value: bytes
    px: int
    nx: bool
    delete: bool = False

    def __repr__(self) -> str:
        if self.delete:
            return "Write(delete)"
        return f"Write(px={self.px}, nx={self.nx}, {len(self.value)} bytes)"


@dataclass(frozen=True, slots=True)
class Found:
    """A decoded value: an identity (``rejection`` is ``None``) or a rejection's description;
    ``at`` and ``deadline`` as written."""

    identity: Identity | None
    rejection: str | None
    at: float
    deadline: float


#: Why a value read was not used: none there, or one of the counted reasons.
Dropped: TypeAlias = Literal["miss", "oversized", "unauthenticated", "malformed", "wrong_version"]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _optional_text(value: Any) -> bool:
    return value is None or _text(value)


def _floor_ms(seconds: float) -> float:
    """``seconds`` (epoch) rounded down to the millisecond."""
    return math.floor(seconds * 1000) / 1000


def _tag(text: bytes) -> bytes:
    """A MAC's bytes from its base64 text (``b""`` when it is not base64)."""
    try:
        return base64.urlsafe_b64decode(text + b"=")
    except (binascii.Error, ValueError):
        return b""


class L2Codec:
    """Keys, values and TTLs of the shared cache for one settings object (and its counts).

    ``keys`` is the ``"shared-cache"`` :class:`~lwa_middleware.core.keys.KeyRing` of the fleet's
    ``secret_key``; without one (no ``secret_key``: a shared cache is then refused at
    construction) nothing is written and nothing read is believed."""

    __slots__ = ("_keys", "_prefix", "lock_ms", "stats")

    def __init__(self, prefix: str, timeout: float, keys: KeyRing | None = None) -> None:
        self._keys = keys
        self._prefix = f"{prefix}:v{FORMAT_VERSION}:".encode()
        #: A cold token's lock lives this long (ms): one verification, at most 1 s.
        self.lock_ms = max(1, math.ceil(min(timeout, MAX_LOCK_SECONDS) * 1000))
        self.stats = L2Stats()

    def key(self, digest: bytes) -> bytes:
        """The Redis key of an L1 key (the token's SHA-256 digest)."""
        return self._prefix + digest.hex().encode()

    def lock_key(self, digest: bytes) -> bytes:
        """The Redis key of a cold token's cross-worker lock."""
        return self._prefix + b"lock:" + digest.hex().encode()

    def pauses(self, limit: float) -> list[float]:
        """The pauses of a wait for another worker's verification, ``limit`` seconds at most
        in all (the request's time left, the lock's life)."""
        limit = min(limit, self.lock_ms / 1000)
        out: list[float] = []
        total = 0.0
        for i in range(10_000):
            pause = LOCK_POLL[min(i, len(LOCK_POLL) - 1)]
            if total + pause > limit:
                break
            out.append(pause)
            total += pause
        return out

    # Writing -----------------------------------------------------------------------------

    def _write(
        self, digest: bytes, body: dict[str, Any], deadline: float, now: float, *, nx: bool
    ) -> Write | None:
        px = math.floor((deadline - now) * 1000)
        if px < 1 or self._keys is None:
            return None
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) + TAG_CHARS > MAX_VALUE_BYTES:
            self.stats.oversized += 1
            return None
        key = self.key(digest)
        tag = base64.urlsafe_b64encode(self._keys.mac(key, data)).rstrip(b"=")
        return Write(key, tag + data, px, nx)

    def identity(
        self,
        digest: bytes,
        identity: Identity,
        at: float,
        deadline: float,
        now: float,
        *,
        keep_until: float | None = None,
    ) -> Write | None:
        """The write of a verified identity (asked of LWA at ``at``, cached until
        ``deadline``), or ``None`` when nothing is left of its time or it is too big.

        ``keep_until`` (stale-if-error: :meth:`StalePolicy.retain_until
        <lwa_middleware.core.stale.StalePolicy.retain_until>`) makes Redis keep the key until
        then, while the value still says ``deadline``: a reader takes it as a miss past
        ``deadline``, but may answer it stale while LWA fails."""
        deadline = _floor_ms(deadline)
        expires = deadline if keep_until is None else max(deadline, _floor_ms(keep_until))
        body = {
            "v": FORMAT_VERSION,
            "k": "i",
            "at": _floor_ms(at),
            "d": deadline,
            **identity.to_json(),
        }
        if math.floor((deadline - now) * 1000) < 1:  # nothing left of its fresh time
            return None
        return self._write(digest, body, expires, now, nx=True)

    def rejection(
        self, digest: bytes, description: str, at: float, ttl: float, now: float
    ) -> Write | None:
        """The write of LWA's ``invalid_token`` verdict (asked at ``at``) for ``ttl`` s."""
        deadline = _floor_ms(at + ttl)
        body = {"v": FORMAT_VERSION, "k": "r", "at": _floor_ms(at), "d": deadline}
        body["e"] = description[:MAX_DESCRIPTION]
        return self._write(digest, body, deadline, now, nx=False)

    def forget(self, digest: bytes) -> Write:
        """The ``DEL`` of a key whose identity must not outlive LWA's rejection of the token
        (when ``negative_ttl`` is 0 and so no rejection is written over it)."""
        return Write(self.key(digest), b"", 0, False, delete=True)

    # Reading -----------------------------------------------------------------------------

    def decode(self, digest: bytes, raw: bytes | str | None) -> Found | Dropped:
        """The entry in the value read from Redis for an L1 key (``digest``), or why there
        is none to use (counted: ``"miss"``, ``"oversized"``, ``"unauthenticated"``,
        ``"malformed"``, ``"wrong_version"``). The MAC is checked before anything else."""
        stats = self.stats
        if raw is None:
            stats.misses += 1
            return "miss"
        if isinstance(raw, str):  # a client with decode_responses=True
            raw = raw.encode("utf-8", "surrogatepass")
        if len(raw) > MAX_VALUE_BYTES:
            stats.oversized += 1
            return "oversized"
        tag, data = raw[:TAG_CHARS], raw[TAG_CHARS:]
        keys = self._keys
        if keys is None or not keys.check(_tag(tag), self.key(digest), data):
            stats.unauthenticated += 1
            return "unauthenticated"
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            body = None
        if not isinstance(body, dict) or "v" not in body:
            stats.malformed += 1
            return "malformed"
        if body["v"] != FORMAT_VERSION or isinstance(body["v"], bool):
            stats.wrong_version += 1
            return "wrong_version"
        found = self._entry(body)
        if found is None:
            stats.malformed += 1
            return "malformed"
        return found

    @staticmethod
    def _entry(data: dict[str, Any]) -> Found | None:
        at, deadline, kind = _number(data.get("at")), _number(data.get("d")), data.get("k")
        if at is None or deadline is None:
            return None
        if kind == "r":
            text = data.get("e")
            description = (
                text
                if isinstance(text, str)
                and text.strip()
                and text.isprintable()
                and len(text) <= MAX_DESCRIPTION
                and "Atz" not in text
                else InvalidToken.default_description
            )
            return Found(None, description, at, deadline)
        if kind != "i":
            return None
        identity = _identity(data.get("token_info"), data.get("profile"))
        return None if identity is None else Found(identity, None, at, deadline)


def _identity(info: Any, profile_data: Any) -> Identity | None:
    """The identity of a value's ``token_info`` and ``profile``, checked field by field."""
    if not isinstance(info, dict) or not isinstance(profile_data, dict):
        return None
    if not (
        _text(info.get("user_id"))
        and _text(info.get("aud"))
        and _optional_text(info.get("app_id"))
        and _optional_text(info.get("iss"))
        and _number(info.get("expires_at")) is not None
        and (info.get("issued_at") is None or _number(info.get("issued_at")) is not None)
    ):
        return None
    profile = profile_from_data(profile_data)
    token_info = TokenInfo.from_json(info)
    if profile is None or profile.user_id != token_info.user_id:
        return None
    return Identity.build(token_info, profile)


def rejected(found: Found, until: float) -> Rejected:
    """The L1 rejection of a found rejection, ending at ``until``."""
    return Rejected(found.rejection or InvalidToken.default_description, until)


class Backoff:
    """When Redis may be called: always while it answers; after a failure, not for
    ``seconds``; then one request at a time probes it (the others go on without Redis)
    until one call succeeds. Thread-safe; ``now`` is passed in (monotonic seconds)."""

    __slots__ = ("_failed_at", "_lock", "_until", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._until: float | None = None  # None: Redis answers
        self._failed_at = -math.inf
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        """Whether the last call failed (and none has succeeded since)."""
        return self._until is not None

    def allows(self, now: float) -> bool:
        """Whether to call Redis now (a probe renews the back-off for the others)."""
        if self._until is None:
            return True
        with self._lock:
            until = self._until
            if until is None:
                return True
            if now < until:
                return False
            self._until = now + self.seconds  # this call probes; the others wait for it
            return True

    def failed(self, now: float) -> Literal["new", "again"]:
        """A call failed: back off. ``"new"`` when Redis was answering until now."""
        with self._lock:
            new = self._until is None
            self._until = now + self.seconds
            self._failed_at = now
        return "new" if new else "again"

    def succeeded(self, started: float) -> bool:
        """A call made at ``started`` succeeded: ``True`` when this ends an outage (a call
        that started before the last failure proves nothing)."""
        if self._until is None:
            return False
        with self._lock:
            if self._until is None or started < self._failed_at:
                return False
            self._until = None
            return True
