"""Pure rules of the emulator's OAuth 2.0 authorization-code grant (Login with Amazon for
websites): no I/O, no clock, no locks.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

What Amazon documents, and the emulator follows: ``GET /ap/oa`` takes ``client_id``,
``scope`` (``profile``, ``profile:user_id``, ``postal_code``, space-separated),
``response_type=code``, ``redirect_uri``, ``state`` and PKCE's ``code_challenge`` /
``code_challenge_method`` (``S256`` or ``plain``; ``plain`` when left out). An unknown
client or a redirect URI the client did not register is shown an error page, never
redirected to (no open redirector); every other bad parameter is redirected back with
``error`` and ``state``. ``POST /auth/o2/token`` takes a form, the client's credentials in
it or in HTTP Basic, and answers JSON. Its ``client_credentials`` grant (a service's own
token: Alexa skill messaging, Selling Partner API grantless operations) takes
``client_id``, ``client_secret`` and ``scope`` (required), and answers ``access_token``
(``Atc|…``), ``scope``, ``token_type`` ``bearer`` and ``expires_in`` 3600.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode, urlsplit

SCOPES = ("profile", "profile:user_id", "postal_code")
"""The scopes ``/ap/oa`` grants, as Amazon documents them for websites."""
PKCE_METHODS = ("S256", "plain")
GRANT_TYPES = ("authorization_code", "refresh_token")
CLIENT_CREDENTIALS_GRANT = "client_credentials"
"""The grant a service uses for a token of its own, with no customer (``Atc|…``)."""
SERVICE_SCOPES = (
    "alexa:skill_messaging",
    "alexa::proactive_events",
    "sellingpartnerapi::notifications",
    "sellingpartnerapi::migration",
)
"""The ``client_credentials`` scopes Amazon documents (Alexa skill messaging and proactive
events, Selling Partner API grantless operations): what a client may ask for unless it was
registered with other ``service_scopes``."""
CODE_LIFETIME = 300.0
"""Seconds an authorization code can be redeemed (Amazon: five minutes)."""
ACCESS_TOKEN_LIFETIME = 3600
DEFAULT_CLIENT_SECRET = "amzn1.oa2-cs.v1.emulator"
"""The secret of the emulator's own client (and of clients registered without one)."""
DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback"
REFRESH_TOKEN_PREFIX = "Atzr|"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_CODE_ALPHABET = string.ascii_letters
_CODE_LENGTH = 18  # Amazon's codes: "AN" + 18 letters
_REFRESH_RANDOM_BYTES = 300
_PKCE_VALUE = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1 (verifier and plain)
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url(sha256), no padding
_UNSAFE_URI_CHARS = re.compile(r"[\x00-\x20\x7f\\]|[^\x00-\x7f]")


class AuthorizationError(ValueError):
    """A bad authorization request, with where (if anywhere) to send the error.

    ``redirect_uri`` is ``None`` when the request must not be redirected (unknown client,
    missing or unregistered redirect URI): an error page is shown instead.
    """

    def __init__(
        self,
        error: str,
        description: str,
        redirect_uri: str | None = None,
        state: str | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state

    def redirect(self) -> str | None:
        """The URL to send the user back to with the error, or ``None`` (error page)."""
        if self.redirect_uri is None:
            return None
        params = [("error", self.error), ("error_description", self.description)]
        return with_query(self.redirect_uri, params, self.state)


class TokenError(Exception):
    """An error answer of ``POST /auth/o2/token``: ``{"error", "error_description"}``."""

    def __init__(
        self, error: str, description: str, status: int = 400, *, basic: bool = False
    ) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.basic = basic
        """The client authenticated with HTTP Basic: a 401 carries ``WWW-Authenticate``."""

    def body(self) -> dict[str, object]:
        """The JSON body Amazon answers."""
        return {"error": self.error, "error_description": self.description}

    def headers(self) -> dict[str, str]:
        """Extra headers: ``WWW-Authenticate: Basic`` on a 401 to a Basic client."""
        if self.status == 401 and self.basic:
            return {"WWW-Authenticate": 'Basic realm="LWA emulator"'}
        return {}


def invalid_client(*, basic: bool = False) -> TokenError:
    """Client authentication failed (unknown client or wrong secret): 401."""
    return TokenError("invalid_client", "Client authentication failed", 401, basic=basic)


@dataclass(frozen=True)
class OAuthClient:
    """A registered OAuth client (a "security profile" at Amazon)."""

    client_id: str
    app_id: str
    client_secret: str
    redirect_uris: tuple[str, ...] = ()
    """Allowed redirect URIs, compared exactly (string equality)."""
    allow_loopback: bool = True
    """Also allow any ``http(s)://127.0.0.1|localhost|[::1]`` URI, any port and path."""
    service_scopes: tuple[str, ...] = SERVICE_SCOPES
    """The scopes the ``client_credentials`` grant may give this client (none: the grant
    answers ``unauthorized_client``)."""

    def allows(self, redirect_uri: str) -> bool:
        """Whether ``/ap/oa`` may redirect to ``redirect_uri`` for this client."""
        if redirect_uri in self.redirect_uris:
            return True
        return self.allow_loopback and is_loopback_uri(redirect_uri)

    def to_json(self) -> dict[str, object]:
        """The client as a JSON-ready dict (secret included: the emulator is for tests)."""
        return {
            "client_id": self.client_id,
            "app_id": self.app_id,
            "client_secret": self.client_secret,
            "redirect_uris": list(self.redirect_uris),
            "allow_loopback": self.allow_loopback,
            "service_scopes": list(self.service_scopes),
        }


@dataclass(frozen=True)
class AuthorizationRequest:
    """A valid ``/ap/oa`` request: who asks, for what, and where to answer."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    """``S256`` or ``plain`` when ``code_challenge`` is set, else ``None``."""

    def approved(self, code: str, scopes: Sequence[str]) -> str:
        """The redirect carrying the authorization code."""
        return with_query(
            self.redirect_uri, [("code", code), ("scope", " ".join(scopes))], self.state
        )

    def denied(self, description: str = "The user denied the request.") -> str:
        """The redirect carrying ``error=access_denied``."""
        params = [("error", "access_denied"), ("error_description", description)]
        return with_query(self.redirect_uri, params, self.state)


@dataclass
class AuthorizationCode:
    """An issued code: the request it answers and what the user approved."""

    code: str
    request: AuthorizationRequest
    user_id: str
    scopes: tuple[str, ...]
    expires_at: float
    used: bool = False
    family: set[str] = field(default_factory=set)
    """Every token (access and refresh) issued from this code, revoked on a replay."""


@dataclass(frozen=True)
class RefreshGrant:
    """What a refresh token grants."""

    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    code: str
    """The authorization code the token descends from (its revocation family)."""


def new_authorization_code() -> str:
    """A random code shaped like Amazon's (``AN`` + 18 letters)."""
    return "AN" + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))


def new_refresh_token() -> str:
    """A random refresh token shaped like Amazon's (``Atzr|`` + ~400 URL-safe chars)."""
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(_REFRESH_RANDOM_BYTES)


def s256_challenge(verifier: str) -> str:
    """PKCE S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_matches(challenge: str, method: str, verifier: str) -> bool:
    """Whether ``verifier`` proves ``challenge`` (RFC 7636 §4.6); constant time."""
    if not _PKCE_VALUE.fullmatch(verifier):
        return False
    expected = s256_challenge(verifier) if method == "S256" else verifier
    return secrets.compare_digest(expected, challenge)


def parse_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """The scopes as a tuple without duplicates; a string is split on spaces.

    Raises ``ValueError`` for an empty list or a scope ``/ap/oa`` does not grant.
    """
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    unknown = [scope for scope in items if scope not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; expected {', '.join(SCOPES)}")
    if not items:
        raise ValueError("no scope requested")
    return tuple(dict.fromkeys(items))


def check_service_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """The ``client_credentials`` scopes a client may be registered with, without
    duplicates; raise ``ValueError`` for a malformed one or a customer scope (``profile``,
    …: a service token carries no customer)."""
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    for scope in items:
        if not isinstance(scope, str) or not scope or scope.split() != [scope]:
            raise ValueError(f"invalid service scope: {scope!r}")
        if scope in SCOPES:
            raise ValueError(f"{scope!r} is a customer scope, not a service scope")
    return tuple(dict.fromkeys(items))


def is_loopback_uri(uri: str) -> bool:
    """Whether ``uri`` is an ``http(s)`` URL on 127.0.0.1, localhost or [::1] (any port,
    any path, no user info, no fragment); anything a browser could read differently
    (backslash, whitespace, control or non-ASCII characters) is refused."""
    if _UNSAFE_URI_CHARS.search(uri) or "#" in uri:
        return False  # a backslash or a space is read differently by browsers
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return False
    try:
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.hostname in LOOPBACK_HOSTS


def check_redirect_uri(uri: str) -> str:
    """Return ``uri`` if it can be registered (absolute http(s), no fragment), else raise
    ``ValueError``."""
    if not isinstance(uri, str) or _UNSAFE_URI_CHARS.search(uri) or "#" in uri:
        raise ValueError(f"invalid redirect URI: {uri!r}")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise ValueError(f"a redirect URI must be an absolute http(s) URL: {uri!r}")
    return uri


def with_query(uri: str, params: Sequence[tuple[str, str]], state: str | None = None) -> str:
    """``uri`` with ``params`` (and ``state`` when given) added to its query."""
    pairs = [*params, *([("state", state)] if state is not None else [])]
    added = urlencode(pairs, quote_via=quote)
    base, _, fragment = uri.partition("#")
    separator = "&" if urlsplit(base).query else ("" if base.endswith("?") else "?")
    return base + separator + added + (f"#{fragment}" if fragment else "")


def _single(
    params: Sequence[tuple[str, str]], name: str, fail: Callable[[str], AuthorizationError]
) -> str | None:
    """The one non-empty value of ``name`` (an empty value counts as absent)."""
    values = [value for key, value in params if key == name and value != ""]
    if len(values) > 1:
        raise fail(f"The request has more than one value for the parameter : {name}")
    return values[0] if values else None


def parse_authorization_request(
    params: Sequence[tuple[str, str]], find_client: Callable[[str], OAuthClient | None]
) -> AuthorizationRequest:
    """Check ``/ap/oa`` parameters; raise ``AuthorizationError`` for a bad request.

    The client and the redirect URI are checked first: until both are known good, the
    error has no ``redirect_uri`` (an error page, never a redirect).
    """

    def page(description: str) -> AuthorizationError:
        return AuthorizationError("invalid_request", description)

    client_id = _single(params, "client_id", page)
    redirect_uri = _single(params, "redirect_uri", page)
    if client_id is None:
        raise page("The request is missing a required parameter : client_id")
    client = find_client(client_id)
    if client is None:
        raise AuthorizationError("invalid_client", f"Unknown client_id : {client_id}")
    if redirect_uri is None:
        raise page("The request is missing a required parameter : redirect_uri")
    if not client.allows(redirect_uri):
        raise page("The redirect_uri is not registered for this client : redirect_uri")

    state_values = [value for key, value in params if key == "state" and value != ""]
    state = state_values[0] if state_values else None

    def back(error: str, description: str) -> AuthorizationError:
        return AuthorizationError(error, description, redirect_uri, state)

    def invalid(description: str) -> AuthorizationError:
        return back("invalid_request", description)

    _single(params, "state", invalid)
    response_type = _single(params, "response_type", invalid)
    if response_type is None:
        raise invalid("The request is missing a required parameter : response_type")
    if response_type != "code":
        raise back("unsupported_response_type", "The response_type must be code.")
    scope = _single(params, "scope", invalid)
    if scope is None:
        raise invalid("The request is missing a required parameter : scope")
    unknown = [item for item in scope.split() if item not in SCOPES]
    if unknown or not scope.split():
        raise back(
            "invalid_scope",
            f"The requested scope is invalid or unknown : {unknown[0] if unknown else scope}",
        )
    scopes = parse_scopes(scope)
    challenge = _single(params, "code_challenge", invalid)
    method = _single(params, "code_challenge_method", invalid)
    if challenge is None:
        if method is not None:
            raise invalid("code_challenge_method was given without a code_challenge")
        return AuthorizationRequest(client_id, redirect_uri, scopes, state)
    method = method or "plain"  # Amazon: plain when left out
    if method not in PKCE_METHODS:
        raise invalid("The code_challenge_method must be S256 or plain.")
    shape = _S256_CHALLENGE if method == "S256" else _PKCE_VALUE
    if not shape.fullmatch(challenge):
        raise invalid("The code_challenge is malformed (RFC 7636).")
    return AuthorizationRequest(client_id, redirect_uri, scopes, state, challenge, method)


# The token endpoint's request -----------------------------------------------------------


def parse_form(content_type: str | None, body: bytes) -> dict[str, str]:
    """The ``application/x-www-form-urlencoded`` body as a dict; raise ``TokenError``
    (``invalid_request``) for another content type, bad encoding or a repeated parameter.
    Empty values count as absent (RFC 6749 §3.1)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise TokenError(
            "invalid_request", "The Content-Type must be application/x-www-form-urlencoded"
        )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TokenError("invalid_request", "The request body is malformed") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise TokenError("invalid_request", f"The request has more than one value for : {key}")
        form[key] = value
    return {key: value for key, value in form.items() if value != ""}


def grant_type_of(content_type: str | None, body: bytes) -> str | None:
    """The request's ``grant_type`` if its form can be read, else ``None`` (for counting)."""
    try:
        return parse_form(content_type, body).get("grant_type")
    except TokenError:
        return None


@dataclass(frozen=True)
class ClientCredentials:
    """Who the client says it is, and how it proved it."""

    client_id: str
    client_secret: str | None
    basic: bool


def client_credentials(form: Mapping[str, str], authorization: str | None) -> ClientCredentials:
    """The client's id and secret, from HTTP Basic or the form (not both); raise
    ``TokenError`` when they are missing, malformed, or given twice."""
    basic_id: str | None = None
    basic_secret: str | None = None
    if authorization:
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise TokenError(
                    "invalid_client", "Malformed Basic credentials", 401, basic=True
                ) from exc
            raw_id, colon, raw_secret = decoded.partition(":")
            if not colon or not raw_id:
                raise TokenError("invalid_client", "Malformed Basic credentials", 401, basic=True)
            basic_id, basic_secret = unquote_plus(raw_id), unquote_plus(raw_secret) or None
    form_id, form_secret = form.get("client_id"), form.get("client_secret")
    if basic_id is not None:
        if form_secret is not None:
            raise TokenError(
                "invalid_request", "The client authenticated in more than one way", basic=True
            )
        if form_id is not None and form_id != basic_id:
            raise TokenError(
                "invalid_request", "client_id differs from the Basic credentials", basic=True
            )
        return ClientCredentials(basic_id, basic_secret, basic=True)
    if form_id is None:
        raise TokenError(
            "invalid_request", "The request is missing a required parameter : client_id"
        )
    return ClientCredentials(form_id, form_secret, basic=False)


def required(form: Mapping[str, str], name: str) -> str:
    """``form[name]``, or raise ``invalid_request``."""
    value = form.get(name)
    if value is None:
        raise TokenError("invalid_request", f"The request is missing a required parameter : {name}")
    return value
