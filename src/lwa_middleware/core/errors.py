"""Errors as data: every failure the middleware can answer with, and how it renders.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

The tree (each class knows its LWA ``error`` code and its status in both styles)::

    LWAError                        (Exception; error, description, status(style))
    ├── InvalidRequest              invalid_request     lwa 400 / rfc6750 400
    │   └── MissingToken            invalid_request     lwa 400 / rfc6750 401, no error attr
    ├── InvalidToken                invalid_token       lwa 400 / rfc6750 401
    ├── InsufficientScope           insufficient_scope  lwa 401 / rfc6750 403
    ├── CrossSiteRequest            invalid_request     lwa 403 / rfc6750 403, no challenge
    │                               (cookie session, unsafe method, Origin/Referer not ours)
    ├── AccessDenied                access_denied       lwa 403 / rfc6750 403, no challenge
    │   │                           (a verified customer the access policy refuses)
    │   └── NoAccount               access_denied (the user_loader found no account)
    └── ServerError                 ServerError         lwa 500 / rfc6750 500
        ├── LWAUnavailable          ServerError (transport: connect, timeout, 5xx, 429, bad body)
        └── Overloaded              ServerError + Retry-After (no slot for an LWA call in time)

    ConfigurationError (ValueError): a bad option, found when settings are built.

    GrantError (Exception): the token endpoint refused a grant (code exchange, refresh);
    raised to the caller of a token client, never answered by the middlewares. Its tree
    (InvalidGrant, InvalidGrantRequest, InvalidClient, UnauthorizedClient,
    UnsupportedGrantType, InvalidScope, GrantUnavailable) is in :mod:`lwa_middleware.core.grants`.

Rendering is pure: :func:`render_error` turns an error into ``(status, headers, body)``
for either shell. Messages never contain a token.

"""

from __future__ import annotations

import json
from typing import ClassVar, Literal

ErrorStyle = Literal["lwa", "rfc6750"]

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"


class ConfigurationError(ValueError):
    """An option given to the middleware, the settings or the client is not valid."""


class LWAError(Exception):
    """Base of the errors answered to a client; ``error`` is LWA's documented code."""

    error: ClassVar[str] = "ServerError"
    lwa_status: ClassVar[int] = 500
    rfc6750_status: ClassVar[int] = 500
    default_description: ClassVar[str] = "The server encountered an unexpected error."

    #: Seconds for a ``Retry-After`` header, or ``None`` for none.
    retry_after: int | None = None
    #: Whether the answer carries a ``WWW-Authenticate`` challenge (below 500).
    challenge: ClassVar[bool] = True

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)

    def status(self, style: ErrorStyle) -> int:
        """The HTTP status for this error in the given style."""
        return self.lwa_status if style == "lwa" else self.rfc6750_status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"


class InvalidRequest(LWAError):
    """The request is missing a token or carries a malformed one (never sent to LWA)."""

    error = "invalid_request"
    lwa_status = 400
    rfc6750_status = 400
    default_description = "The request has an invalid parameter : access_token"


class MissingToken(InvalidRequest):
    """No token on a protected route (RFC 6750 §3.1: 401 with no error attribute)."""

    rfc6750_status = 401
    default_description = "The request is missing a required parameter : access_token"


class InvalidToken(LWAError):
    """LWA rejected the token, it expired, or it was issued to another client."""

    error = "invalid_token"
    lwa_status = 400
    rfc6750_status = 401
    default_description = (
        "The access token provided is expired, revoked, malformed, or invalid for other reasons."
    )


class InsufficientScope(LWAError):
    """The token is valid but lacks a scope the route requires."""

    error = "insufficient_scope"
    lwa_status = 401
    rfc6750_status = 403
    default_description = "The access token provided does not allow this request."

    def __init__(self, description: str | None = None, required: frozenset[str] = frozenset()):
        super().__init__(description)
        self.required = required


class CrossSiteRequest(LWAError):
    """A request authenticated by the session cookie, with a method that can change state,
    came from another site: its ``Origin`` (or, without one, its ``Referer``) is missing or
    is neither the request's own origin nor a trusted one (:mod:`lwa_middleware.core.csrf`).

    403 in both styles and no ``WWW-Authenticate``: the credentials are not the problem,
    where the request came from is.
    """

    error = "invalid_request"
    lwa_status = 403
    rfc6750_status = 403
    challenge = False
    default_description = "Cross-site request refused."


class AccessDenied(LWAError):
    """A verified customer the access policy refuses here (:mod:`lwa_middleware.core.policy`):
    an ``allow`` rule that does not admit them, a ``deny`` rule that names them, or the
    ``authorize`` callable saying no.

    403 in both styles and no ``WWW-Authenticate``: the token is good, the customer is not
    let in. The description names no rule and no list (it is shown to the customer).
    """

    error = "access_denied"
    lwa_status = 403
    rfc6750_status = 403
    challenge = False
    default_description = "You are not allowed to access this resource."


class NoAccount(AccessDenied):
    """A verified customer the access policy admits but who has no account on this site:
    the ``user_loader`` answered ``None`` (:mod:`lwa_middleware.core.users`). 403
    ``access_denied``, as :class:`AccessDenied`."""

    default_description = "There is no account on this site for this Amazon account."


class ServerError(LWAError):
    """Something failed on our side or LWA's; the request is refused (fail closed)."""


class LWAUnavailable(ServerError):
    """LWA could not be reached or answered something unusable (timeout, 5xx, 429, bad body).

    ``cause`` (for log lines and ``inspect``, never in an answer to a client): the host
    asked and why it failed (``api.amazon.com: connection refused``), when known;
    ``retryable`` is ``False`` when trying again cannot help (the URL has no such
    endpoint)."""

    default_description = "Login with Amazon could not verify the access token right now."

    def __init__(self, description: str | None = None, *, cause: str | None = None) -> None:
        super().__init__(description)
        self.cause = cause
        self.retryable = True


class Overloaded(ServerError):
    """Too many verifications in flight: no slot to call LWA within the deadline (fail fast)."""

    default_description = "Too many sign-ins are being verified right now; retry shortly."
    retry_after = 1


def www_authenticate(error: LWAError, style: ErrorStyle, realm: str) -> str | None:
    """The ``WWW-Authenticate`` value for an error, or ``None`` where none is sent (500,
    :class:`CrossSiteRequest`, :class:`AccessDenied`)."""
    status = error.status(style)
    if status >= 500 or not error.challenge:
        return None
    if isinstance(error, MissingToken) and style == "rfc6750":
        return f'Bearer realm="{realm}"'
    value = f'Bearer realm="{realm}", error="{error.error}"'
    if isinstance(error, InsufficientScope) and error.required:
        value += f', scope="{" ".join(sorted(error.required))}"'
    return value


def error_body(error: LWAError, request_id: str) -> bytes:
    """LWA's documented JSON body: ``{"error", "error_description", "request_id"}``."""
    return json.dumps(
        {"error": error.error, "error_description": error.description, "request_id": request_id},
        separators=(",", ":"),
    ).encode()


def render_error(
    error: LWAError, style: ErrorStyle, realm: str, request_id: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    """``(status, headers, body)`` for an error, identical for the ASGI and WSGI shells."""
    body = error_body(error, request_id)
    headers = [
        ("content-type", JSON_CONTENT_TYPE),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
        ("x-request-id", request_id),
    ]
    challenge = www_authenticate(error, style, realm)
    if challenge is not None:
        headers.append(("www-authenticate", challenge))
    if error.retry_after is not None:
        headers.append(("retry-after", str(error.retry_after)))
    return error.status(style), headers, body
