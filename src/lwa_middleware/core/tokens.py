"""Finding the access token in a request, without I/O.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

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
from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl, unquote

from itsdangerous import BadSignature, Signer

from lwa_middleware.core.errors import InvalidRequest, InvalidToken
from lwa_middleware.core.keys import SecretKey, secret_keys

MAX_TOKEN_BYTES = 2048
COOKIE_SALT = "lwa-middleware.cookie"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9\-._~+/|]+=*")


def cookie_signer(secret_key: SecretKey) -> Signer:
    """The signer shared by the middlewares (reading) and the sign-in app (writing): signs
    with the first of ``secret_key``'s secrets, accepts any (itsdangerous signs with the
    *last* of its list, so it gets them oldest first)."""
    return Signer(list(reversed(secret_keys(secret_key))), salt=COOKIE_SALT)


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


def unchanged_by_the_rules(token: str) -> bool:
    """Whether the full rules (:func:`normalize_token`, :func:`validate_token`) accept
    ``token`` as it is: the only kind of token whose key the cache can hold (see
    :meth:`TokenFinder.warm`)."""
    try:
        return validate_token(normalize_token(token, decode=False)) == token
    except InvalidRequest:
        return False


def cookie_reader(name: str) -> Callable[[bytes], bytes | None]:
    """``read(header)``: the raw value of the cookie ``name`` in one ``Cookie`` header when it
    is there once, first or after ``"; "``; else ``None`` (the full rules decide). Every ns
    counts here (the warm path of a browser session): the bytes are prepared once and the
    common layouts tried first."""
    bare = name.encode("latin-1")
    first = bare + b"="
    after = b"; " + first
    skip_first, skip_after = len(first), len(after)

    def read(header: bytes) -> bytes | None:
        if 59 not in header:  # b";": one pair (the session cookie alone)
            return header[skip_first:] if header.startswith(first) else None
        start = header.find(after)
        if start >= 0:
            start += skip_after
        elif header.startswith(first):
            start = skip_first
        else:
            return None
        if header.count(bare) != 1:  # the name twice, even as "name =": the full rules refuse
            return None
        end = header.find(b";", start)
        return header[start:end] if end >= 0 else header[start:]

    return read


def cookie_values(headers: Sequence[str], name: str) -> list[str]:
    """Every value of the cookie ``name`` in ``Cookie`` headers (a quoted value unquoted)."""
    values = []
    for header in headers:
        if name not in header:
            continue
        for pair in header.split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip() == name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                values.append(value)
    return values


def _cookie(headers: Sequence[str], name: str) -> str | None:
    """The value of the one cookie called ``name``; ``None`` when there is none; two or more
    are ``invalid_request`` (cookie tossing: frameworks disagree on which one wins)."""
    values = cookie_values(headers, name)
    if len(values) > 1:
        raise InvalidRequest(f"The request carries more than one {name} cookie.")
    return values[0] if values else None


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

    __slots__ = ("_cookie", "_cookie_name", "_cookie_value", "_header", "_query", "_signer")

    def __init__(
        self,
        token_sources: Sequence[str],
        cookie_name: str,
        secret_key: SecretKey | None = None,
    ) -> None:
        self._header = "header" in token_sources
        self._query = "query" in token_sources
        self._cookie = "cookie" in token_sources
        self._cookie_name = cookie_name
        self._cookie_value = cookie_reader(cookie_name)
        self._signer = cookie_signer(secret_key) if secret_key is not None else None

    @property
    def plain_cookie(self) -> Callable[[bytes], bytes | None] | None:
        """The session cookie's reader (:func:`cookie_reader`) when the cookie is a source and
        needs no signature check, else ``None``."""
        return self._cookie_value if self._cookie and self._signer is None else None

    @property
    def reads_headers(self) -> bool:
        """Whether ``Authorization`` and ``x-amz-access-token`` are token sources."""
        return self._header

    @property
    def reads_query(self) -> bool:
        """Whether the query string is a token source (the shells skip it otherwise)."""
        return self._query

    def warm(
        self,
        authorization: Sequence[bytes],
        amz_token: Sequence[bytes],
        cookies: Sequence[bytes],
        query_string: str,
    ) -> bytes | None:
        """The bytes to look the token up by on the warm path: those of the request's only
        method when it is one ``Authorization: Bearer`` or one ``x-amz-access-token`` header,
        or (no method) of the session cookie when one ``Cookie`` header holds it once and no
        signature is required; else ``None`` (the full rules decide).

        No character, size or decoding check is needed here: the cache only ever holds the
        keys of tokens the full rules leave unchanged (:func:`unchanged_by_the_rules`: the
        verifiers admit a token before anything is stored under its key). Bytes the rules
        would change (spaces to strip, ``%`` to decode, anything outside the token alphabet)
        are never such a token, so their lookup misses and the request takes the full
        rules; bytes that hit are a valid token, which the rules return as it is. Keep it
        so: never store under a key computed from bytes that did not pass the full rules.
        """
        if self._query and may_name_query_token(query_string):
            return None
        if authorization:
            if len(authorization) != 1 or amz_token or not self._header:
                return None
            value = authorization[0]
            if value[:7] != b"Bearer " and value[:7].lower() != b"bearer ":
                return None
            return value[7:]
        if amz_token:
            return amz_token[0] if len(amz_token) == 1 and self._header else None
        if len(cookies) == 1 and self._cookie and self._signer is None:
            return self._cookie_value(cookies[0])
        return None

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
