"""Swagger UI's **Authorize** button signs in through Login with Amazon (PKCE).

Layer: ``integrations`` (optional frameworks, on top; see ``ARCHITECTURE.md``).

:func:`add_swagger_login` turns FastAPI's ``/docs`` into an LWA client:

* the OpenAPI security scheme ``"LWA"`` (the one :mod:`lwa_middleware.integrations.fastapi`'s
  helpers put a padlock with) becomes an OAuth 2 *authorization code* flow: authorize at
  Amazon's ``/ap/oa``, token at a same-origin endpoint of this app;
* ``app.swagger_ui_init_oauth`` gets the client ID, the scopes and
  ``usePkceWithAuthorizationCodeGrant`` (Swagger UI then sends ``code_challenge_method=S256``;
  the client secret never reaches the browser);
* ``POST {token_path}`` proxies the code exchange to LWA's ``/auth/o2/token``: a page
  cannot call Amazon's token endpoint itself (it sends no CORS headers). Only the
  ``authorization_code`` grant of this client ID is forwarded, the client secret is added
  on the server when there is one, and the refresh token LWA may return is dropped (a
  page's script must never hold one). Errors come back as LWA's ``{"error",
  "error_description"}`` with LWA's status; a malformed field (blank, surrounding
  whitespace, control characters, longer than 4,096 characters) is ``400
  invalid_request`` without calling LWA. Anyone can post here, so the calls to LWA are
  bounded as the middleware bounds its own (``max_concurrent_calls`` at once,
  ``max_queued_calls`` waiting, newest first, within ``timeout``): the excess is answered
  ``ServerError`` (500) with ``Retry-After``, LWA not called
  (:class:`~lwa_middleware.core.errors.Overloaded`).

::

    from fastapi import FastAPI
    from lwa_middleware import LWAMiddleware
    from lwa_middleware.integrations.swagger import add_swagger_login

    app = FastAPI()
    add_swagger_login(app, client_id="amzn1.application-oa2-client.…",
                      client_secret=os.environ.get("LWA_CLIENT_SECRET"))
    app.add_middleware(LWAMiddleware, client_ids=["amzn1.application-oa2-client.…"],
                       exclude=["/docs", "/docs/*", "/openapi.json", "/auth/token"])

Register ``https://<your host>/docs/oauth2-redirect`` as an allowed return URL of the LWA
security profile. Imports fastapi (``pip install 'lwa-middleware[fastapi]'``).

"""

from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from lwa_middleware.core.errors import ConfigurationError, ServerError
from lwa_middleware.core.grants import CodeExchange, GrantError, code_grant
from lwa_middleware.core.settings import DEFAULT_API_BASE_URL, _base_url, is_insecure_http
from lwa_middleware.integrations.fastapi import SCHEME_NAME, _check_scopes
from lwa_middleware.upstream.token_client import AsyncTokenClient

__all__ = ["DEFAULT_AUTHORIZE_URL", "SCOPE_DESCRIPTIONS", "add_swagger_login"]

DEFAULT_AUTHORIZE_URL = "https://www.amazon.com/ap/oa"
#: What each LWA scope lets the app read (shown in Swagger UI's Authorize dialog).
SCOPE_DESCRIPTIONS: Mapping[str, str] = {
    "profile": "The customer's user ID, name and email address.",
    "profile:user_id": "The customer's user ID only.",
    "postal_code": "The customer's postal code.",
}
#: The largest token-exchange form this endpoint reads (a code and a verifier are short).
MAX_FORM_BYTES = 8192
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _error(status: int, error: str, description: str, retry_after: int | None = None) -> Response:
    headers = _NO_STORE if retry_after is None else {**_NO_STORE, "Retry-After": str(retry_after)}
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


async def _read_form(request: Request) -> bytes | None:
    """The request body, or ``None`` when it is larger than :data:`MAX_FORM_BYTES` (read no
    further than that)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return bytes(body)


def _oauth_scheme(authorize_url: str, token_url: str) -> dict[str, Any]:
    return {
        "type": "oauth2",
        "description": (
            "Sign in with Login with Amazon (authorization code with PKCE). The token is "
            "verified by LWAMiddleware against Amazon's token-info endpoint."
        ),
        "flows": {
            "authorizationCode": {
                "authorizationUrl": authorize_url,
                "tokenUrl": token_url,
                "scopes": dict(SCOPE_DESCRIPTIONS),
            }
        },
    }


def add_swagger_login(
    app: FastAPI,
    *,
    client_id: str,
    client_secret: str | None = None,
    api_base_url: str = DEFAULT_API_BASE_URL,
    authorize_url: str = DEFAULT_AUTHORIZE_URL,
    scopes: Iterable[str] = ("profile",),
    token_path: str = "/auth/token",  # noqa: S107 (a path, not a password)
    docs_url: str | None = None,
    swagger_js_url: str | None = None,
    swagger_css_url: str | None = None,
    timeout: float = 5.0,
    allow_insecure_http: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    max_concurrent_calls: int = 32,
    max_queued_calls: int = 256,
) -> AsyncTokenClient:
    """Make ``/docs``'s Authorize button sign in through LWA; returns the token client.

    ``docs_url`` (with ``swagger_js_url``/``swagger_css_url``) serves the Swagger UI page
    here instead of FastAPI's (create the app with ``docs_url=None`` then), e.g. to load
    Swagger UI's files from this app rather than a CDN. The returned client is closed on
    the app's shutdown.
    """
    if not isinstance(client_id, str) or not client_id.strip():
        raise ConfigurationError("client_id must be a non-empty string")
    chosen = _check_scopes(scopes)
    if not chosen:
        raise ConfigurationError("scopes must name at least one LWA scope")
    if not token_path.startswith("/"):
        raise ConfigurationError(f"token_path must be a path starting with '/', got {token_path!r}")
    base = _base_url(api_base_url)
    if is_insecure_http(base) and not allow_insecure_http:
        raise ConfigurationError(
            "api_base_url is plain http to a host that is not loopback; use https or set "
            "allow_insecure_http=True"
        )
    client = AsyncTokenClient(
        base,
        timeout=timeout,
        transport=transport,
        allow_insecure_http=allow_insecure_http,
        max_concurrent_calls=max_concurrent_calls,
        max_queued_calls=max_queued_calls,
    )
    secret = client_secret or None
    app.swagger_ui_init_oauth = {
        "clientId": client_id,
        "scopes": " ".join(chosen),
        "usePkceWithAuthorizationCodeGrant": True,
    }

    async def token(request: Request) -> Response:
        body = await _read_form(request)
        if body is None:
            return _error(400, "invalid_request", "The token request is too large.")
        form = httpx.QueryParams(body.decode("latin-1"))
        if form.get("grant_type") != "authorization_code":
            return _error(
                400, "unsupported_grant_type", "Only the authorization_code grant is proxied."
            )
        if form.get("client_id", client_id) != client_id:
            return _error(401, "invalid_client", "The client ID is not this application's.")
        code, redirect_uri = form.get("code"), form.get("redirect_uri")
        verifier = form.get("code_verifier")
        if not code or not redirect_uri or not verifier:
            return _error(
                400,
                "invalid_request",
                "The token request needs code, redirect_uri and code_verifier (PKCE).",
            )
        fields: CodeExchange = {
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "client_secret": secret,
            "code_verifier": verifier,
        }
        try:
            exchange = code_grant(client.api_base_url, code=code, **fields)
        except (TypeError, ValueError):  # a field no grant can carry (never echoed)
            return _error(400, "invalid_request", "The token request has a malformed field.")
        try:
            grant = await client.grant(exchange)
        except GrantError as exc:
            return _error(exc.status, exc.error, exc.description)
        except ServerError as exc:  # too many exchanges at once (Overloaded): LWA not asked
            return _error(500, exc.error, exc.description, exc.retry_after)
        answer: dict[str, object] = {
            "access_token": grant.access_token,
            "token_type": "bearer",
            "expires_in": grant.expires_in,
        }
        if grant.scope:
            answer["scope"] = grant.scope
        return JSONResponse(answer, headers=_NO_STORE)

    app.add_route(token_path, token, methods=["POST"], include_in_schema=False)
    if docs_url is not None:
        if swagger_js_url is None or swagger_css_url is None:
            raise ConfigurationError("docs_url needs swagger_js_url and swagger_css_url")
        js_url, css_url = swagger_js_url, swagger_css_url

        async def docs(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
                swagger_js_url=js_url,
                swagger_css_url=css_url,
                init_oauth=app.swagger_ui_init_oauth,
                swagger_ui_parameters=app.swagger_ui_parameters,
            )

        app.add_route(docs_url, docs, include_in_schema=False)
        redirect_url = app.swagger_ui_oauth2_redirect_url
        if redirect_url:

            async def oauth2_redirect(request: Request) -> HTMLResponse:
                return get_swagger_ui_oauth2_redirect_html()

            app.add_route(redirect_url, oauth2_redirect, include_in_schema=False)
    _patch_openapi(app, authorize_url, token_path)
    app.router.on_shutdown.append(client.aclose)
    return client


def _patch_openapi(app: FastAPI, authorize_url: str, token_path: str) -> None:
    """Describe the ``"LWA"`` scheme as LWA's authorization code flow in ``/openapi.json``."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[SCHEME_NAME] = _oauth_scheme(authorize_url, token_path)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
