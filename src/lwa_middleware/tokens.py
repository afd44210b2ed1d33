"""Finding the access token in a request, without I/O.

The shells hand over the raw pieces (``Authorization`` and ``x-amz-access-token`` values,
``Cookie`` headers, the query string); :class:`TokenFinder` applies the rules:

* ``"header"``: ``Authorization: Bearer`` (scheme case-insensitive) and ``x-amz-access-token``;
  ``"query"`` (opt-in): ``access_token``. These are the three methods LWA itself accepts:
  more than one in a request is ``invalid_request`` (RFC 6750 §2).
* ``"cookie"``: a browser session, ignored whenever a header or query token is present;
  with ``secret_key`` its value must carry an itsdangerous signature. Two cookies of that
  name in one request are ``invalid_request`` (a sibling domain can toss in a second one).
* The query is read by its decoded keys, as the app's framework reads it
  (``access%5Ftoken`` is ``access_token``).
* A token that arrives URL-encoded (``Atza%7C…``) is decoded exactly once (the query
  string's own decoding is that once). Empty, over 2048 bytes, or characters outside
  RFC 6750's ``b64token`` set plus ``|``: ``invalid_request``, with no call to LWA.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote

from itsdangerous import BadSignature, Signer

from lwa_middleware.errors import InvalidRequest, InvalidToken

MAX_TOKEN_BYTES = 2048
COOKIE_SALT = "lwa-middleware.cookie"
#: What ``str.strip()`` removes from ASCII text (``bytes.strip()`` alone misses \x1c-\x1f).
_ASCII_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9\-._~+/|]+=*")


def cookie_signer(secret_key: str | bytes) -> Signer:
    """The signer shared by the middlewares (reading) and the sign-in app (writing)."""
    return Signer(secret_key, salt=COOKIE_SALT)


def normalize_token(raw: str, *, decode: bool = True) -> str:
    """Decode once (when asked) and check size; the character check is :func:`validate_token`."""
    token = raw.strip()
    if len(token) > 3 * MAX_TOKEN_BYTES:
        raise InvalidRequest("The access token is longer than LWA allows.")
    if decode and "%" in token:
        token = unquote(token)
    if not token:
        raise InvalidRequest("The request has an empty access token.")
    if len(token) > MAX_TOKEN_BYTES or (
        not token.isascii() and len(token.encode("utf-8", "replace")) > MAX_TOKEN_BYTES
    ):
        raise InvalidRequest("The access token is longer than LWA allows.")
    return token


def validate_token(token: str) -> str:
    """Reject characters no LWA token has (controls, spaces, ``%`` left by double encoding)."""
    if not token.isascii() or _TOKEN_CHARS.fullmatch(token) is None:
        raise InvalidRequest("The access token contains characters LWA tokens never have.")
    return token


def plain_bearer(value: bytes) -> bytes | None:
    """The token of ``Bearer <token>`` when it needs no decoding (ASCII, no ``%``), else ``None``.

    A shortcut for the cache lookup only: the bytes are exactly what :meth:`TokenFinder.find`
    would return for this header (encoded), so a cache hit on them is a hit on that token;
    ``None`` (or a miss) sends the request down the full rules.
    """
    if value[:7].lower() != b"bearer ":
        return None
    token = value[7:].strip(_ASCII_SPACE)
    if not token or len(token) > MAX_TOKEN_BYTES or not token.isascii() or b"%" in token:
        return None
    return token


def _cookie(headers: Sequence[str], name: str) -> str | None:
    """The value of the one cookie called ``name``; ``None`` when there is none; two or more
    are ``invalid_request`` (cookie tossing: frameworks disagree on which one wins)."""
    found: str | None = None
    for header in headers:
        if name not in header:
            continue
        for pair in header.split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip() == name:
                if found is not None:
                    raise InvalidRequest(f"The request carries more than one {name} cookie.")
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                found = value
    return found


def may_name_query_token(query_string: str) -> bool:
    """Whether any key of ``query_string`` can decode to ``access_token`` (cheap: a key that
    does holds the name itself or a percent escape)."""
    return "access_token" in query_string or "%" in query_string


def query_tokens(query_string: str) -> list[str]:
    """Every ``access_token`` value of the query, its keys decoded as frameworks decode them."""
    if not may_name_query_token(query_string):
        return []
    return [
        value
        for key, value in parse_qsl(query_string, keep_blank_values=True)
        if key == "access_token"
    ]


class TokenFinder:
    """The token-finding rules for one settings object, precomputed."""

    __slots__ = ("_cookie", "_cookie_name", "_header", "_query", "_signer")

    def __init__(
        self,
        token_sources: Sequence[str],
        cookie_name: str,
        secret_key: str | bytes | None = None,
    ) -> None:
        self._header = "header" in token_sources
        self._query = "query" in token_sources
        self._cookie = "cookie" in token_sources
        self._cookie_name = cookie_name
        self._signer = cookie_signer(secret_key) if secret_key is not None else None

    @property
    def reads_query(self) -> bool:
        """Whether the query string is a token source (the shells skip it otherwise)."""
        return self._query

    def single_bearer(
        self, authorization: Sequence[bytes], amz_token: Sequence[bytes], query_string: str
    ) -> bytes | None:
        """The token bytes when the request's only method is one plain ``Authorization:
        Bearer`` header (:func:`plain_bearer`), else ``None``: the warm path's shortcut."""
        if (
            len(authorization) != 1
            or amz_token
            or not self._header
            or (self._query and may_name_query_token(query_string))
        ):
            return None
        return plain_bearer(authorization[0])

    def find(
        self,
        authorization: Sequence[str] = (),
        amz_token: Sequence[str] = (),
        cookies: Sequence[str] = (),
        query_string: str = "",
    ) -> str | None:
        """The decoded, size-checked token, ``None`` when there is none; raises ``LWAError``."""
        methods: list[str] = []
        if self._header:
            for value in authorization:
                scheme, _, credentials = value.strip().partition(" ")
                if scheme.lower() == "bearer":
                    methods.append(normalize_token(credentials))
            for value in amz_token:
                methods.append(normalize_token(value))
        if self._query and query_string:
            for value in query_tokens(query_string):
                methods.append(normalize_token(value, decode=False))
        if len(methods) > 1:
            raise InvalidRequest(
                "The request carries the access token in more than one place; send exactly one."
            )
        if methods:
            return methods[0]
        if self._cookie and cookies:
            cookie = _cookie(cookies, self._cookie_name)
            if cookie is None:
                return None
            token = normalize_token(cookie)
            if self._signer is None:
                return token
            try:
                token = self._signer.unsign(token).decode()
            except (BadSignature, UnicodeDecodeError):
                raise InvalidToken("The session cookie's signature is not valid.") from None
            return normalize_token(token, decode=False)
        return None
