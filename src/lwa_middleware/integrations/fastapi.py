"""FastAPI helpers for the identity :class:`~lwa_middleware.LWAMiddleware` verified.

Layer: ``integrations`` (optional frameworks, on top; see ``ARCHITECTURE.md``).

The middleware does the verifying; these helpers only read its result (``scope["lwa"]``)
and tell FastAPI's docs which routes need a token. Nothing here calls LWA or sees a token.

* :func:`lwa_identity` / :data:`LWAIdentity`: the :class:`~lwa_middleware.core.models.Identity`,
  or a 401 challenge when there is none (a route the middleware does not protect, or an
  ``optional`` route called without a token).
* :func:`optional_lwa_identity` / :data:`OptionalLWAIdentity`: the identity or ``None``.
* :func:`lwa_user` / :data:`LWAAppUser`: the app's own user, what the middleware's
  ``user_loader`` answered (``scope["lwa.user"]``); :func:`optional_lwa_user` or ``None``.
  Type it as your model: ``CurrentUser = Annotated[User, Depends(lwa_user)]``.
* :class:`LWAScopes` / :data:`lwa_identity_with_scopes` / :func:`require_lwa_scopes`: the
  identity, checked against the scopes of ``Security(..., scopes=[...])``; a missing scope
  is ``insufficient_scope``, 401 (``error_style="lwa"``) or 403 (``"rfc6750"``).
* :class:`LWABearer` / :data:`lwa_scheme`: the OpenAPI security scheme ("LWA", HTTP bearer)
  that puts a padlock on every route depending on the helpers above.

::

    from fastapi import APIRouter, FastAPI, Security
    from lwa_middleware import Identity, LWAMiddleware
    from lwa_middleware.integrations.fastapi import (
        LWAIdentity, add_lwa_exception_handler, lwa_identity_with_scopes, lwa_scheme,
        require_lwa_scopes,
    )

    app = FastAPI()
    app.add_middleware(LWAMiddleware, client_ids=[...], exclude=["/docs", "/openapi.json"])
    add_lwa_exception_handler(app)   # errors get LWA's JSON body, as the middleware's do

    @app.get("/me")
    def me(identity: LWAIdentity) -> dict[str, str | None]:
        return {"name": identity.profile.name}

    @app.get("/zip")
    def zip_code(
        identity: Identity = Security(lwa_identity_with_scopes, scopes=["postal_code"]),
    ) -> dict[str, str | None]:
        return {"postal_code": identity.profile.postal_code}

    @app.get("/orders", dependencies=[require_lwa_scopes("profile")])
    def orders() -> list[str]: ...

    router = APIRouter(dependencies=[Security(lwa_scheme)])   # padlock on a whole router

Errors are :class:`LWAHTTPException` (a ``fastapi.HTTPException``) with the middleware's
status and headers (``WWW-Authenticate``, ``Cache-Control: no-store``).
:func:`add_lwa_exception_handler` makes their body LWA's documented
``{"error", "error_description", "request_id"}``; without it, FastAPI's own handler
answers ``{"detail": {...that body...}}``.

This module imports fastapi (``pip install 'lwa-middleware[fastapi]'``); no other module of
the package does. It deliberately avoids ``from __future__ import annotations``: FastAPI
reads the annotations of dependency callables at run time.

"""

import json
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.params import Security as SecurityParam
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from lwa_middleware.core.errors import (
    ConfigurationError,
    ErrorStyle,
    InsufficientScope,
    LWAError,
    MissingToken,
    NoAccount,
    render_error,
)
from lwa_middleware.core.gate import request_id
from lwa_middleware.core.models import Identity
from lwa_middleware.core.settings import ERROR_STYLES, KNOWN_SCOPES
from lwa_middleware.core.verification import authorize

__all__ = [
    "LWAAppUser",
    "LWABearer",
    "LWAHTTPException",
    "LWAIdentity",
    "LWAScopes",
    "OptionalLWAAppUser",
    "OptionalLWAIdentity",
    "add_lwa_exception_handler",
    "lwa_exception_handler",
    "lwa_identity",
    "lwa_identity_with_scopes",
    "lwa_scheme",
    "lwa_user",
    "optional_lwa_identity",
    "optional_lwa_user",
    "require_lwa_scopes",
]

SCHEME_NAME = "LWA"
DEFAULT_REALM = "lwa"
_DESCRIPTION = (
    "A Login with Amazon access token (`Atza|…`), verified by LWAMiddleware against "
    "Amazon's token-info endpoint. Send it as `Authorization: Bearer <token>` (LWA's "
    "`x-amz-access-token` header and the sign-in cookie are accepted too)."
)


class LWAHTTPException(HTTPException):
    """An LWA error as a FastAPI ``HTTPException``: status and headers as the middleware's.

    ``lwa_error`` is the :class:`~lwa_middleware.core.errors.LWAError`; ``body`` is LWA's JSON
    body (what :func:`lwa_exception_handler` answers); ``detail`` is the same as a dict.
    """

    def __init__(
        self,
        error: LWAError,
        *,
        error_style: ErrorStyle = "lwa",
        realm: str = DEFAULT_REALM,
        incoming_request_id: str | None = None,
    ) -> None:
        status, headers, body = render_error(
            error, error_style, realm, request_id(incoming_request_id)
        )
        # The length is the handler's to compute: FastAPI's own body differs from ``body``.
        kept = {name: value for name, value in headers if name != "content-length"}
        super().__init__(status_code=status, detail=json.loads(body), headers=kept)
        self.lwa_error = error
        self.body = body


def lwa_exception_handler(request: Request, exc: Exception) -> Response:
    """Answer an :class:`LWAHTTPException` with LWA's documented JSON body."""
    if not isinstance(exc, LWAHTTPException):  # registered for that class only
        raise exc
    return Response(exc.body, status_code=exc.status_code, headers=exc.headers)


def add_lwa_exception_handler(app: FastAPI) -> None:
    """Make this app answer :class:`LWAHTTPException` with LWA's JSON body."""
    app.add_exception_handler(LWAHTTPException, lwa_exception_handler)


def _check_style(error_style: str) -> None:
    if error_style not in ERROR_STYLES:
        raise ConfigurationError(f"error_style must be 'lwa' or 'rfc6750', got {error_style!r}")


def _check_scopes(scopes: Iterable[str]) -> list[str]:
    names = list(scopes)
    unknown = sorted(set(names) - KNOWN_SCOPES)
    if unknown:
        raise ConfigurationError(
            f"unknown LWA scope(s) {unknown}; LWA grants {sorted(KNOWN_SCOPES)}"
        )
    return names


class LWABearer(SecurityBase):
    """The OpenAPI security scheme of LWA tokens; it never verifies and never fails.

    The middleware has verified the token before FastAPI runs; this dependency only
    returns that result (the :class:`Identity`, or ``None``) and, being a security
    scheme, makes ``/docs`` show a padlock (and send the token) on every route that
    depends on it, directly or through :func:`lwa_identity` and friends. It behaves
    like ``HTTPBearer(auto_error=False)`` except that it returns the identity, never
    the token. Use ``dependencies=[Security(lwa_scheme)]`` to mark a route or a router.
    """

    def __init__(
        self,
        *,
        scheme_name: str = SCHEME_NAME,
        description: str = _DESCRIPTION,
        bearer_format: str = "LWA access token",
    ) -> None:
        self.model = HTTPBearerModel(bearerFormat=bearer_format, description=description)
        self.scheme_name = scheme_name
        self.auto_error = False

    async def __call__(self, conn: HTTPConnection) -> Identity | None:
        """The identity the middleware attached to this request, or ``None``."""
        identity = conn.scope.get("lwa")
        return identity if isinstance(identity, Identity) else None

    def __repr__(self) -> str:
        return f"LWABearer(scheme_name={self.scheme_name!r})"


#: The scheme every helper here depends on (one "LWA" entry in the OpenAPI document).
lwa_scheme = LWABearer()

_SchemeIdentity = Annotated[Identity | None, Depends(lwa_scheme)]


def _missing(conn: HTTPConnection) -> LWAHTTPException:
    """401 ``Bearer`` challenge (RFC 6750 §3.1) for a request without an identity."""
    return LWAHTTPException(
        MissingToken(),
        error_style="rfc6750",
        incoming_request_id=conn.headers.get("x-request-id"),
    )


async def lwa_identity(conn: HTTPConnection, identity: _SchemeIdentity) -> Identity:
    """The verified :class:`Identity`; 401 with ``WWW-Authenticate: Bearer`` when absent.

    On a route the middleware protects there is always one (it answered the request
    otherwise); there is none on a route it does not protect or on an ``optional`` one
    called without a token.
    """
    if identity is None:
        raise _missing(conn)
    return identity


async def optional_lwa_identity(identity: _SchemeIdentity) -> Identity | None:
    """The verified :class:`Identity`, or ``None`` for an anonymous request."""
    return identity


#: What a route gets when the middleware has no ``user_loader``: a bug, answered 500.
NO_LOADER = (
    "lwa_user needs the app's users: give LWAMiddleware a user_loader "
    "(LWAMiddleware(app, user_loader=...))"
)


def _loaded(conn: HTTPConnection, identity: Identity | None) -> Any:
    """``scope["lwa.user"]`` of a request with ``identity``; ``None`` without one."""
    if identity is None:
        return None
    if "lwa.user" not in conn.scope:
        raise RuntimeError(NO_LOADER)
    return conn.scope["lwa.user"]


async def lwa_user(conn: HTTPConnection, identity: _SchemeIdentity) -> Any:
    """The app's user of the verified customer (the ``user_loader``'s answer, shared by
    the customer's requests: read-only). A 401 challenge without an identity; 403
    ``access_denied`` on a ``user_optional`` path for a customer without an account (the
    middleware refuses them everywhere else); a ``RuntimeError`` (500) when the middleware
    has no ``user_loader``."""
    if identity is None:
        raise _missing(conn)
    user = _loaded(conn, identity)
    if user is None:
        raise LWAHTTPException(NoAccount(), incoming_request_id=conn.headers.get("x-request-id"))
    return user


async def optional_lwa_user(conn: HTTPConnection, identity: _SchemeIdentity) -> Any:
    """The app's user, or ``None``: an anonymous request, or a customer without an
    account on a ``user_optional`` path (the page that links one)."""
    return _loaded(conn, identity)


class LWAScopes:
    """A dependency returning the identity after checking ``Security(..., scopes=[...])``.

    ``profile`` satisfies ``profile:user_id``. A missing scope raises
    ``insufficient_scope`` with the status of ``error_style`` (the middleware's table:
    401 for ``"lwa"``, 403 for ``"rfc6750"``); no identity at all is the 401 challenge
    of :func:`lwa_identity`.
    """

    def __init__(self, error_style: ErrorStyle = "lwa", realm: str = DEFAULT_REALM) -> None:
        _check_style(error_style)
        self.error_style: ErrorStyle = error_style
        self.realm = realm

    async def __call__(
        self,
        security_scopes: SecurityScopes,
        conn: HTTPConnection,
        identity: _SchemeIdentity,
    ) -> Identity:
        """The identity, when it holds every scope the route asks for."""
        if identity is None:
            raise _missing(conn)
        try:
            return authorize(identity, frozenset(security_scopes.scopes))
        except InsufficientScope as error:
            raise LWAHTTPException(
                error,
                error_style=self.error_style,
                realm=self.realm,
                incoming_request_id=conn.headers.get("x-request-id"),
            ) from None

    def __repr__(self) -> str:
        return f"LWAScopes(error_style={self.error_style!r})"


#: ``Security(lwa_identity_with_scopes, scopes=["profile"])`` (LWA-style errors).
lwa_identity_with_scopes = LWAScopes()


def require_lwa_scopes(
    *scopes: str, error_style: ErrorStyle = "lwa", realm: str = DEFAULT_REALM
) -> Any:
    """``Security(LWAScopes(error_style), scopes=[...])``, scope names checked now.

    Use it as ``dependencies=[require_lwa_scopes("postal_code")]`` or as a parameter
    default (``identity: Identity = require_lwa_scopes("profile")``).
    """
    names = _check_scopes(scopes)
    dependency = lwa_identity_with_scopes
    if error_style != "lwa" or realm != DEFAULT_REALM:
        dependency = LWAScopes(error_style, realm)
    param: SecurityParam = Security(dependency, scopes=names)
    return param


#: ``identity: LWAIdentity`` in a path operation: the verified identity (or 401).
LWAIdentity = Annotated[Identity, Depends(lwa_identity)]
#: ``identity: OptionalLWAIdentity``: the verified identity or ``None``.
OptionalLWAIdentity = Annotated[Identity | None, Depends(optional_lwa_identity)]
#: ``user: LWAAppUser``: the app's user (typed ``Any``; annotate with your own model:
#: ``Annotated[User, Depends(lwa_user)]``).
LWAAppUser = Annotated[Any, Depends(lwa_user)]
#: ``user: OptionalLWAAppUser``: the app's user or ``None``.
OptionalLWAAppUser = Annotated[Any, Depends(optional_lwa_user)]
