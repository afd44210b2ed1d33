"""The fleet's one secret and the keys every purpose derives from it (no I/O).

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

``secret_key`` is one string or bytes, or a list of them **newest first**: a rotation adds
the new secret at the front and drops the old one once nothing it signed is still in use.
Everything is signed (or sealed) with the first and accepted under any.

No purpose uses the secret itself: each derives its own key by HKDF-SHA-256 (RFC 5869,
written here on :mod:`hmac` so the shared cache needs no ``cryptography``) with a label of
its own (:data:`PURPOSES`), so a value made for one purpose (a sealed refresh cookie, a
shared-cache entry, a revocation marker) is never accepted as another.

"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import TypeAlias

from lwa_middleware.core.errors import ConfigurationError

#: What ``secret_key`` may be: one secret, or several, newest first.
SecretKey: TypeAlias = str | bytes | Sequence[str | bytes]

#: The shortest secret accepted (each of a list): every cookie's and every shared-cache
#: entry's integrity rests on it.
MIN_SECRET_BYTES = 16
#: The most secrets a rotation keeps at once.
MAX_SECRETS = 8
_DIGEST = "sha256"
_HASH_LEN = 32
#: The HKDF labels in use (one per purpose; the sign-in's sealed cookies use
#: :data:`LOGIN_SALT` with their own labels, as since their first release).
PURPOSES = ("shared-cache", "revocations")
#: The salt of the sign-in cookies' keys (kept: cookies sealed before a release still open).
LOGIN_SALT = b"lwa-middleware.login"
#: The salt of every other purpose's key.
SALT = b"lwa-middleware"


def secret_keys(secret_key: object, *, name: str = "secret_key") -> tuple[bytes, ...]:
    """``secret_key`` as a tuple of bytes, newest first; a
    :class:`~lwa_middleware.core.errors.ConfigurationError` (never naming the value) when it is
    not one secret or a non-empty list of them, each at least :data:`MIN_SECRET_BYTES`."""
    items: Sequence[object]
    if isinstance(secret_key, (str, bytes)):
        items = (secret_key,)
    elif isinstance(secret_key, Sequence) and not isinstance(secret_key, bytearray):
        items = secret_key
    else:
        items = ()
    out: list[bytes] = []
    for item in items:
        raw = item.encode() if isinstance(item, str) else item
        if not isinstance(raw, bytes) or len(raw) < MIN_SECRET_BYTES:
            out = []
            break
        out.append(raw)
    if not out or len(out) > MAX_SECRETS:
        raise ConfigurationError(
            f"{name} must be a string or bytes of at least {MIN_SECRET_BYTES} bytes (e.g. "
            f"secrets.token_urlsafe(32)), or a list of up to {MAX_SECRETS} of them, newest "
            "first (to rotate: sign with the first, accept any)"
        )
    return tuple(out)


def hkdf(secret: bytes, info: str, *, salt: bytes = SALT, length: int = _HASH_LEN) -> bytes:
    """HKDF-SHA-256 (RFC 5869): ``length`` bytes of key for ``info`` from ``secret``."""
    prk = hmac.new(salt, secret, _DIGEST).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info.encode() + bytes([counter]), _DIGEST).digest()
        out += block
        counter += 1
    return out[:length]


class KeyRing:
    """The keys of one purpose, one per secret (newest first): :meth:`mac` with the first,
    :meth:`check` against any."""

    __slots__ = ("_keys", "purpose")

    def __init__(self, secrets: Sequence[bytes], purpose: str) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown key purpose {purpose!r}")
        self.purpose = purpose
        self._keys = tuple(hkdf(secret, purpose) for secret in secrets)

    def mac(self, *parts: bytes) -> bytes:
        """HMAC-SHA-256 under the newest key over ``parts`` (each length-prefixed, so no
        two different lists of parts ever MAC the same bytes)."""
        return _mac(self._keys[0], parts)

    def check(self, tag: bytes, *parts: bytes) -> bool:
        """Whether ``tag`` is the MAC of ``parts`` under any of the keys (constant time)."""
        if len(tag) != _HASH_LEN:
            return False
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(_mac(key, parts), tag)
        return ok

    def __repr__(self) -> str:
        return f"KeyRing({self.purpose!r}, {len(self._keys)} key(s))"


def _mac(key: bytes, parts: Sequence[bytes]) -> bytes:
    h = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()
