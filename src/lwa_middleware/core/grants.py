"""Amazon's token endpoint, without I/O: the grant requests to build, the answers to parse.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

``POST {api}/auth/o2/token``, form-encoded (never in the URL: httpx logs every URL at
INFO), answers ``{"access_token", "token_type": "bearer", "expires_in", "refresh_token"}``
or LWA's error body ``{"error", "error_description"}``.

* :func:`code_grant` (``grant_type=authorization_code``: ``code``, ``redirect_uri``,
  ``client_id`` and ``client_secret`` and/or the PKCE ``code_verifier``) and
  :func:`refresh_grant` (``grant_type=refresh_token``: without ``client_secret`` no new
  refresh token comes back) build a :class:`GrantRequest`; :func:`grant_request` builds any
  other grant (a device-code grant) the same way.
* :func:`parse_grant` turns ``(status, content type, body)`` into a :class:`TokenGrant` or
  raises a :class:`GrantError`, strictly: an answer it cannot fully vouch for is
  :class:`GrantUnavailable`.
* :func:`client_credentials_grant` (``grant_type=client_credentials``: ``client_id``,
  ``client_secret`` and ``scope``): a token of a service's own, with no customer (``Atc|…``;
  Alexa skill messaging, Selling Partner API grantless operations).
* :func:`device_grant` (``grant_type=device_code``: ``device_code`` and ``user_code`` of a
  code pair, see :mod:`lwa_middleware.core.device`); its polling answers are parsed with
  ``errors=DEVICE_GRANT_ERRORS``.
* :func:`new_code_verifier` and :func:`code_challenge_s256`: PKCE (RFC 7636, ``S256``).

The grant errors (raised to the caller of a token client, never answered by the
middlewares, so not :class:`~lwa_middleware.core.errors.LWAError`)::

    GrantError                  (Exception; error, description, status)
    ├── InvalidGrant            invalid_grant           code/refresh token bad, expired, used
    ├── InvalidGrantRequest     invalid_request         a parameter missing or malformed
    ├── InvalidClient           invalid_client          client ID or secret wrong
    ├── UnauthorizedClient      unauthorized_client     client may not use this grant
    ├── UnsupportedGrantType    unsupported_grant_type
    ├── InvalidScope            invalid_scope
    ├── AuthorizationPending    authorization_pending   code pair not approved yet: poll again
    ├── SlowDown                slow_down               poll again, less often
    ├── InvalidCodePair         invalid_code_pair       code pair expired: start again
    └── GrantUnavailable        ServerError             5xx, 429, unusable answer, transport

``status`` is the HTTP status to relay: LWA's own for its documented codes, LWA's for a
5xx or 429, else 500. An undocumented code in an error body comes back as a plain
:class:`GrantError` carrying that code (``errors=`` of :func:`parse_grant` maps more codes to
classes, as a device-code grant's polling answers need). No message, ``repr`` or exception
argument ever holds a token, code, verifier or secret.

"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import string
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlencode

from lwa_middleware.core.protocol import USER_AGENT, echoes, json_object
from lwa_middleware.core.settings import resolve_api_base_url

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "DEVICE_GRANT_ERRORS",
    "DEVICE_GRANT_TYPE",
    "GRANT_ERRORS",
    "MAX_EXPIRES_IN",
    "MAX_GRANT_BODY",
    "MAX_GRANT_TOKEN_BYTES",
    "SENSITIVE_FIELDS",
    "TOKEN_PATH",
    "AuthorizationPending",
    "CodeExchange",
    "FormPost",
    "GrantError",
    "GrantRequest",
    "GrantUnavailable",
    "InvalidClient",
    "InvalidCodePair",
    "InvalidGrant",
    "InvalidGrantRequest",
    "InvalidScope",
    "SlowDown",
    "TokenGrant",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "client_credentials_grant",
    "code_challenge_s256",
    "code_grant",
    "device_grant",
    "form_fields",
    "grant_error",
    "grant_request",
    "new_code_verifier",
    "parse_grant",
    "refresh_grant",
]

TOKEN_PATH = "/auth/o2/token"
#: Amazon's grant type for a code pair (not RFC 8628's URN).
DEVICE_GRANT_TYPE = "device_code"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded;charset=UTF-8"
_FORM_HEADERS: Mapping[str, str] = MappingProxyType(
    {"content-type": FORM_CONTENT_TYPE, "accept": "application/json", "user-agent": USER_AGENT}
)
#: The largest token answer read: LWA's is about 1 KiB.
MAX_GRANT_BODY = 16 * 1024
#: The longest access or refresh token accepted (LWA documents ≤ 2048 bytes for access tokens).
MAX_GRANT_TOKEN_BYTES = 4096
#: The longest ``expires_in`` accepted (LWA's access tokens live 3600 s).
MAX_EXPIRES_IN = 86_400
#: The longest value of a form field sent.
MAX_FIELD_CHARS = 4096
#: Form fields whose values never appear in a ``repr``, a message or a log line.
SENSITIVE_FIELDS = frozenset(
    {"client_secret", "code", "code_verifier", "device_code", "refresh_token", "user_code"}
)

_MAX_DESCRIPTION = 300
_VISIBLE = re.compile(r"[\x21-\x7e]+")
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


# The answer ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What the token endpoint granted. The tokens are hidden from ``repr``."""

    access_token: str = field(repr=False)
    #: Seconds the access token lives, counted from when the answer arrived.
    expires_in: int
    #: ``Atzr|…``; ``None`` when none came back (a refresh without the client secret).
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str = "bearer"
    scope: str | None = None

    def expires_at(self, now: float) -> float:
        """When the access token expires (epoch seconds), ``now`` being when it arrived."""
        return now + self.expires_in


# The request -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FormPost:
    """A form-encoded ``POST`` to LWA (a grant, a code pair): the URL, the form and the
    headers; the form and the headers are kept out of ``repr``."""

    url: str
    form: Mapping[str, str] = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)

    method = "POST"

    @classmethod
    def to(cls, api_base_url: str, path: str, form: Mapping[str, str]) -> Self:
        """A ``POST`` of ``form`` to ``path`` of LWA's API, asking for JSON; raises
        ``ConfigurationError`` for a bad base URL."""
        return cls(
            url=resolve_api_base_url(api_base_url, None) + path,
            form=MappingProxyType(dict(form)),
            headers=_FORM_HEADERS,
        )

    @property
    def body(self) -> bytes:
        """The form, URL-encoded (the one place its values go)."""
        return urlencode(dict(self.form)).encode("ascii")

    @property
    def sensitive_values(self) -> tuple[str, ...]:
        """The form's secret values (none here): an answer's description that echoes one
        of them is not relayed."""
        return ()


@dataclass(frozen=True, slots=True)
class GrantRequest(FormPost):
    """A form-encoded ``POST`` to the token endpoint. ``repr`` shows the URL, the grant type
    and the field names only: the form holds codes, tokens and secrets."""

    @property
    def grant_type(self) -> str:
        return self.form.get("grant_type", "")

    @property
    def sensitive_values(self) -> tuple[str, ...]:
        """The form's secret values (:data:`SENSITIVE_FIELDS`): an answer's description
        that echoes one of them is not relayed."""
        return tuple(value for key, value in self.form.items() if key in SENSITIVE_FIELDS)

    def __repr__(self) -> str:
        names = ", ".join(sorted(key for key in self.form if key != "grant_type"))
        return f"GrantRequest(POST {self.url} grant_type={self.grant_type} fields=[{names}])"


def _field(name: str, value: object) -> str:
    """A form value: a non-empty string of printable characters (messages name the field,
    never the value)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not value or value != value.strip():
        raise ValueError(f"{name} must be a non-empty string without surrounding whitespace")
    if len(value) > MAX_FIELD_CHARS or not value.isprintable():
        raise ValueError(f"{name} is too long or holds control characters")
    return value


def form_fields(fields: Mapping[str, str | None]) -> dict[str, str]:
    """The form of ``fields`` without those whose value is ``None``; ``TypeError`` or
    ``ValueError`` (naming the field, never its value) for a bad one."""
    return {
        _field("field name", name): _field(name, value)
        for name, value in fields.items()
        if value is not None
    }


def grant_request(
    api_base_url: str, grant_type: str, fields: Mapping[str, str | None]
) -> GrantRequest:
    """A token request of any ``grant_type``; fields whose value is ``None`` are left out.

    Raises ``ConfigurationError`` for a bad base URL, ``TypeError``/``ValueError`` (naming
    the field, never its value) for a bad field.
    """
    form = {"grant_type": _field("grant_type", grant_type), **form_fields(fields)}
    return GrantRequest.to(api_base_url, TOKEN_PATH, form)


class _CodeExchangeNeeds(TypedDict):
    redirect_uri: str
    client_id: str


class CodeExchange(_CodeExchangeNeeds, total=False):
    """The fields of a code exchange besides the code (the keyword arguments of
    ``exchange_code`` and :func:`code_grant`): ``redirect_uri`` and ``client_id`` (both
    required), ``client_secret`` and/or the PKCE ``code_verifier`` (at least one)."""

    client_secret: str | None
    code_verifier: str | None


def code_grant(
    api_base_url: str,
    *,
    code: str,
    redirect_uri: str,
    client_id: str,
    client_secret: str | None = None,
    code_verifier: str | None = None,
) -> GrantRequest:
    """``grant_type=authorization_code``: the code the authorize redirect brought back,
    authenticated by ``client_secret`` and/or the PKCE ``code_verifier`` (at least one)."""
    if client_secret is None and code_verifier is None:
        raise ValueError("an authorization code grant needs client_secret and/or code_verifier")
    return grant_request(
        api_base_url,
        "authorization_code",
        {
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "client_secret": client_secret,
            "code_verifier": code_verifier,
        },
    )


def refresh_grant(
    api_base_url: str, *, refresh_token: str, client_id: str, client_secret: str | None = None
) -> GrantRequest:
    """``grant_type=refresh_token``: a new access token (and, with ``client_secret``, a new
    refresh token)."""
    return grant_request(
        api_base_url,
        "refresh_token",
        {"refresh_token": refresh_token, "client_id": client_id, "client_secret": client_secret},
    )


def client_credentials_grant(
    api_base_url: str, *, client_id: str, client_secret: str, scope: str
) -> GrantRequest:
    """``grant_type=client_credentials``: a token of the client's own for ``scope`` (one or
    more space-separated scopes, required), with no customer and no refresh token."""
    return grant_request(
        api_base_url,
        "client_credentials",
        {"client_id": client_id, "client_secret": client_secret, "scope": scope},
    )


def device_grant(api_base_url: str, *, device_code: str, user_code: str) -> GrantRequest:
    """``grant_type=device_code``: poll for the tokens of a code pair (both of its codes, as
    Amazon asks); parse the answer with ``errors=DEVICE_GRANT_ERRORS``."""
    return grant_request(
        api_base_url, DEVICE_GRANT_TYPE, {"device_code": device_code, "user_code": user_code}
    )


# The errors ------------------------------------------------------------------------------


class GrantError(Exception):
    """The token endpoint refused the grant: ``error`` is LWA's code, ``status`` the HTTP
    status to relay, ``description`` a sentence that never holds a secret."""

    error: str = "invalid_request"
    default_status: int = 400
    default_description: str = "Login with Amazon refused the token request."

    def __init__(
        self, description: str | None = None, *, status: int | None = None, error: str | None = None
    ) -> None:
        if error is not None:
            self.error = error
        self.description = description or self.default_description
        self.status = self.default_status if status is None else status
        super().__init__(self.description)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error!r}, {self.description!r}, status={self.status})"


class InvalidGrant(GrantError):
    """The code or refresh token is invalid, expired, revoked or already used, was issued
    to another client, or the ``redirect_uri`` does not match the authorize request's."""

    error = "invalid_grant"
    default_description = "The authorization grant is invalid, expired, revoked or already used."


class InvalidGrantRequest(GrantError):
    """A parameter is missing, repeated or malformed (LWA's ``invalid_request``; not the
    middleware's :class:`~lwa_middleware.core.errors.InvalidRequest`)."""

    error = "invalid_request"
    default_description = "The token request is missing a parameter or has a malformed one."


class InvalidClient(GrantError):
    """The client ID is unknown or the client secret is wrong."""

    error = "invalid_client"
    default_status = 401
    default_description = "Login with Amazon could not authenticate the client."


class UnauthorizedClient(GrantError):
    """The client may not use this grant type."""

    error = "unauthorized_client"
    default_description = "The client is not authorized to use this grant type."


class UnsupportedGrantType(GrantError):
    """The grant type is not one LWA supports."""

    error = "unsupported_grant_type"
    default_description = "Login with Amazon does not support this grant type."


class InvalidScope(GrantError):
    """The requested scope is invalid, unknown or malformed."""

    error = "invalid_scope"
    default_description = "The requested scope is invalid, unknown or malformed."


class GrantUnavailable(GrantError):
    """LWA answered ``ServerError``, a 5xx or a 429, an answer that could not be used, or
    could not be reached in time (fail closed: nothing was granted)."""

    error = "ServerError"
    default_status = 500
    default_description = "Login with Amazon could not answer the token request right now."


class AuthorizationPending(GrantError):
    """A code pair's user has not approved it yet: poll again after the interval."""

    error = "authorization_pending"
    default_description = "The user has not yet approved the code pair."


class SlowDown(GrantError):
    """Polling too fast: poll again, with a longer interval."""

    error = "slow_down"
    default_description = "The code pair is polled too often; poll less often."


class InvalidCodePair(GrantError):
    """The code pair expired (or is unknown): start again with a new one."""

    error = "invalid_code_pair"
    default_description = "The code pair expired or is not known; start again."


#: LWA's documented codes → their classes (``ServerError`` is :class:`GrantUnavailable`).
GRANT_ERRORS: Mapping[str, type[GrantError]] = MappingProxyType(
    {
        cls.error: cls
        for cls in (
            InvalidGrant,
            InvalidGrantRequest,
            InvalidClient,
            UnauthorizedClient,
            UnsupportedGrantType,
            InvalidScope,
            GrantUnavailable,
        )
    }
)


#: :data:`GRANT_ERRORS` and the answers of a code pair's poll (``grant_type=device_code``).
DEVICE_GRANT_ERRORS: Mapping[str, type[GrantError]] = MappingProxyType(
    {
        **GRANT_ERRORS,
        **{cls.error: cls for cls in (AuthorizationPending, SlowDown, InvalidCodePair)},
    }
)


# Parsing ---------------------------------------------------------------------------------


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _description(data: Mapping[str, Any], sensitive: Collection[str]) -> str | None:
    """LWA's description, short and printable; dropped if it could echo a secret."""
    text = data.get("error_description")
    if not isinstance(text, str) or not text.strip() or not text.isprintable():
        return None
    text = text.strip()
    if "Atza" in text or "Atzr" in text or "Atc|" in text:
        return None
    if any(echoes(text, value) for value in sensitive):
        return None
    return text[:_MAX_DESCRIPTION]


def _token(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if (
        not isinstance(value, str)
        or len(value) > MAX_GRANT_TOKEN_BYTES
        or _VISIBLE.fullmatch(value) is None
    ):
        raise GrantUnavailable(f"Login with Amazon's token answer has no usable {key}.")
    return value


def _grant(data: Mapping[str, Any]) -> TokenGrant:
    access_token = _token(data, "access_token")
    token_type = data.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise GrantUnavailable("Login with Amazon's token answer is not a bearer token.")
    expires_in = data.get("expires_in")
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 0 < expires_in <= MAX_EXPIRES_IN
    ):
        raise GrantUnavailable("Login with Amazon's token answer has no usable expires_in.")
    refresh_token = None if data.get("refresh_token") is None else _token(data, "refresh_token")
    scope = data.get("scope")
    if scope is not None and (
        not isinstance(scope, str) or len(scope) > 1024 or not scope.isprintable()
    ):
        raise GrantUnavailable("Login with Amazon's token answer has an unusable scope.")
    return TokenGrant(
        access_token=access_token,
        expires_in=expires_in,
        refresh_token=refresh_token,
        scope=(scope or "").strip() or None,
    )


def grant_error(
    status: int,
    body: bytes,
    *,
    sensitive: Collection[str] = (),
    errors: Mapping[str, type[GrantError]] = GRANT_ERRORS,
) -> GrantError:
    """The error for an answer that is not a grant (see :func:`parse_grant`)."""
    if status == 429:
        return GrantUnavailable(
            "Login with Amazon is rate limiting token requests (429).", status=429
        )
    if 500 <= status <= 599:
        return GrantUnavailable(f"Login with Amazon answered {status}.", status=status)
    data = json_object(body) if 400 <= status <= 499 and len(body) <= MAX_GRANT_BODY else None
    code = None if data is None else data.get("error")
    if data is None or not isinstance(code, str) or not _ERROR_CODE.fullmatch(code):
        return GrantUnavailable(f"Login with Amazon answered {status} with no documented error.")
    description = _description(data, sensitive)
    cls = errors.get(code, GrantError)
    if issubclass(cls, GrantUnavailable):
        return cls(description)
    return cls(description, status=status, error=code)


def parse_grant(
    status: int,
    content_type: str | None,
    body: bytes,
    *,
    sensitive: Collection[str] = (),
    errors: Mapping[str, type[GrantError]] = GRANT_ERRORS,
) -> TokenGrant:
    """The :class:`TokenGrant` of a 200 JSON answer; else raise the :class:`GrantError` for it.

    A 200 must be a JSON object (``application/json``) of at most :data:`MAX_GRANT_BODY`
    bytes with a visible-ASCII ``access_token`` of at most :data:`MAX_GRANT_TOKEN_BYTES`,
    ``token_type`` ``bearer`` (any case), a whole ``expires_in`` in 1..:data:`MAX_EXPIRES_IN`,
    and optionally a ``refresh_token`` (same rules as the access token) and a ``scope``
    string; anything less is :class:`GrantUnavailable`. An error answer is mapped by its
    ``error`` code through ``errors``; a 5xx, a 429, or a body without a code is
    :class:`GrantUnavailable`. A description that could echo one of ``sensitive`` (the
    request's :attr:`GrantRequest.sensitive_values`), or a token, is replaced by the class's
    default.
    """
    if status != 200:
        raise grant_error(status, body, sensitive=sensitive, errors=errors)
    if len(body) > MAX_GRANT_BODY:
        raise GrantUnavailable("Login with Amazon's token answer is too large.")
    if not _is_json(content_type):
        raise GrantUnavailable("Login with Amazon's token answer is not JSON.")
    data = json_object(body)
    if data is None:
        raise GrantUnavailable("Login with Amazon's token answer is not a JSON object.")
    return _grant(data)


# PKCE ------------------------------------------------------------------------------------


def new_code_verifier(length: int = 64) -> str:
    """A PKCE code verifier: ``length`` (43 to 128) characters of RFC 3986's unreserved set
    from :mod:`secrets` (64 characters hold about 386 bits)."""
    if isinstance(length, bool) or not isinstance(length, int) or not 43 <= length <= 128:
        raise ValueError("a PKCE code verifier is 43 to 128 characters long")
    return "".join(secrets.choice(_UNRESERVED) for _ in range(length))


def code_challenge_s256(verifier: str) -> str:
    """``BASE64URL(SHA256(verifier))`` without padding (RFC 7636 §4.2, method ``S256``)."""
    if not isinstance(verifier, str) or _VERIFIER.fullmatch(verifier) is None:
        raise ValueError("a PKCE code verifier is 43 to 128 unreserved characters")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
