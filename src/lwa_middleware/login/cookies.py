"""The sign-in cookies: names, attributes, and how each value is protected (no I/O).

Layer: ``login`` (website sign-in; see ``ARCHITECTURE.md``).

* ``cookie_name``, the session: the access token signed by
  :func:`~lwa_middleware.core.tokens.cookie_signer` (what the middlewares read); ``Path=/``,
  ``Max-Age=expires_in``.
* ``cookie_name + "_refresh"``: the session (refresh token, sign-in time, session id),
  Fernet-sealed; ``Path=/`` (every path the middleware protects may need to refresh),
  ``Max-Age`` = what remains of the session (``session_max_age`` after sign-in).
* ``cookie_name + "_login"``: the sign-in in progress (nonce, PKCE verifier, ``next``),
  Fernet-sealed; ``Path`` = the callback's, ``Max-Age=600``.

All three are ``HttpOnly; SameSite=Lax`` (the callback is a top-level ``GET`` from
Amazon: ``Lax`` cookies come along, ``Strict`` ones would not), plus ``Secure`` when
``redirect_uri`` is https. A ``__Host-`` ``cookie_name`` (which needs an https
``redirect_uri``) makes all three ``__Host-`` cookies: ``Secure``, ``Path=/``, no
``Domain``. A response that sets or clears any of them is ``Cache-Control: private,
no-store`` (:func:`with_session_cookies`): no cache keeps it, and no shared one hands its
cookies to someone else. Fernet (AES-128-CBC with HMAC-SHA256 over the whole token, and a
timestamp) both encrypts and signs: a page script, a proxy log or the customer can neither
read nor alter a sealed value. Each sealed cookie has its own key, derived from
``secret_key`` by HKDF-SHA256 with a per-purpose ``info``, so a value sealed for one
cookie never opens as another. ``cryptography`` is imported only when a sealer is built
(``pip install 'lwa-middleware[login]'``).

"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence

from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.keys import LOGIN_SALT, hkdf
from lwa_middleware.core.tokens import cookie_values

#: A Fernet token longer than this is not opened (a cookie holds at most 4096 bytes).
MAX_SEALED_CHARS = 4096
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"

Header = tuple[str, str]
#: The ``Cache-Control`` of every response that sets or clears a session cookie.
CACHE_CONTROL: Header = ("cache-control", "private, no-store")


def refresh_cookie_name(cookie_name: str) -> str:
    """The refresh cookie's name for a session cookie name."""
    return cookie_name + "_refresh"


def login_cookie_name(cookie_name: str) -> str:
    """The short-lived login cookie's name for a session cookie name."""
    return cookie_name + "_login"


def read_cookie(headers: Sequence[str], name: str) -> str | None:
    """The value of the cookie ``name`` in ``Cookie`` headers; ``None`` when it is absent
    or there more than once (a sibling domain can toss in a second one: trust neither)."""
    values = cookie_values(headers, name)
    return values[0] if len(values) == 1 else None


def set_cookie(
    name: str, value: str, *, path: str, max_age: int, secure: bool, domain: str | None = None
) -> Header:
    """A ``Set-Cookie`` header: ``HttpOnly``, ``SameSite=Lax``, ``Secure`` when asked,
    ``Domain`` when given."""
    text = f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    if domain is not None:
        text += f"; Domain={domain}"
    return ("set-cookie", text + "; Secure" if secure else text)


def clear_cookie(name: str, *, path: str, secure: bool, domain: str | None = None) -> Header:
    """A ``Set-Cookie`` header that makes the browser drop the cookie (same name, path and
    domain)."""
    text = f"{name}=; Path={path}; Max-Age=0; Expires={_EXPIRED}; HttpOnly; SameSite=Lax"
    if domain is not None:
        text += f"; Domain={domain}"
    return ("set-cookie", text + "; Secure" if secure else text)


def with_session_cookies(headers: Iterable[Header], cookies: Iterable[Header]) -> list[Header]:
    """A response's ``headers`` plus ``cookies`` (``Set-Cookie``), its own
    ``Cache-Control`` replaced by :data:`CACHE_CONTROL` (an app's ``public, max-age=…``
    must not let a cache keep the session's cookies)."""
    kept = [(name, value) for name, value in headers if name.lower() != "cache-control"]
    return [*kept, *cookies, CACHE_CONTROL]


class Sealer:
    """Fernet sealing with keys derived from ``secrets`` (newest first) for one
    ``purpose``: sealed with the first, opened with any (a rotation signs no one out);
    every timestamp is passed in (``now``), never read from a clock."""

    __slots__ = ("_fernet", "_invalid")

    def __init__(self, secrets: Sequence[bytes], purpose: str) -> None:
        try:
            from cryptography.fernet import Fernet, InvalidToken, MultiFernet
        except ImportError:  # pragma: no cover - the extra is installed in the tests
            raise ConfigurationError(
                "website sign-in needs the cryptography package: "
                "pip install 'lwa-middleware[login]'"
            ) from None
        self._fernet = MultiFernet(
            [
                Fernet(base64.urlsafe_b64encode(hkdf(secret, purpose, salt=LOGIN_SALT)))
                for secret in secrets
            ]
        )
        self._invalid = InvalidToken

    def seal(self, data: bytes, now: float) -> str:
        """``data`` encrypted and signed, stamped with ``now`` (URL-safe base64)."""
        return self._fernet.encrypt_at_time(data, int(now)).decode("ascii")

    def open(self, sealed: str, max_age: int, now: float) -> bytes | None:
        """The data of a value sealed at most ``max_age`` seconds before ``now``; ``None``
        when it is forged, altered, too old, from the future, or not a sealed value."""
        opened = self.open_stamped(sealed, max_age, now)
        return None if opened is None else opened[0]

    def open_stamped(self, sealed: str, max_age: int, now: float) -> tuple[bytes, int] | None:
        """As :meth:`open`, with the time the value was sealed (epoch seconds)."""
        if not sealed or len(sealed) > MAX_SEALED_CHARS or not sealed.isascii():
            return None
        try:
            # Only the canonical encoding (base64 decoding skips junk after the padding).
            raw = base64.urlsafe_b64decode(sealed)
            if base64.urlsafe_b64encode(raw) != sealed.encode():
                return None
            data = self._fernet.decrypt_at_time(sealed, max_age, int(now))
        except (self._invalid, ValueError, TypeError):
            return None
        # A Fernet token: version (1 byte), the time it was sealed (8, big-endian), ...
        return data, int.from_bytes(raw[1:9], "big")

    def __repr__(self) -> str:
        return "Sealer(...)"
