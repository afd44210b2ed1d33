"""The demo app of ``lwa-middleware demo``: a small Starlette app behind ``LWAMiddleware``.

Routes (every one but ``/`` and ``/public`` goes through the middleware):

* ``/``: a plain-text page of instructions (excluded: no verification at all);
* ``/public``: JSON anyone may read (excluded);
* ``/me``: protected; the customer's profile and granted scopes as JSON;
* ``/zip``: protected and requires the ``postal_code`` scope;
* ``/hello``: optional; greets the customer, or "anonymous" without a token.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lwa_middleware.asgi import LWAMiddleware
from lwa_middleware.integrations.starlette import LWAUser
from lwa_middleware.models import Identity

__all__ = ["demo_app"]

EXCLUDE = ("/", "/public", "/favicon.ico")
OPTIONAL = ("/hello",)
REQUIRE_SCOPES = {"/zip": "postal_code"}

_INDEX = """\
lwa-middleware demo

Every route but / and /public is behind LWAMiddleware, which checks the access token
with Login with Amazon ({api}) and accepts tokens issued to {client_id}.

  GET /public   anyone
  GET /me       needs a token: your profile and scopes
  GET /zip      needs a token with the postal_code scope
  GET /hello    a token is optional: greets you, or "anonymous"

Send the token as "Authorization: Bearer <token>" or "x-amz-access-token: <token>".
"""


def _identity(request: Request) -> Identity:
    """The identity the middleware attached (it answered the request itself otherwise)."""
    identity = request.scope["lwa"]
    assert isinstance(identity, Identity)
    return identity


def _profile(identity: Identity) -> dict[str, object]:
    profile = identity.profile
    return {
        "user_id": profile.user_id,
        "name": profile.name,
        "email": profile.email,
        "postal_code": profile.postal_code,
        "scopes": sorted(identity.scopes),
    }


def demo_app(api_base_url: str, client_id: str) -> Starlette:
    """The demo app, verifying tokens issued to ``client_id`` with the LWA at ``api_base_url``."""
    index = _INDEX.format(api=api_base_url, client_id=client_id)

    async def home(request: Request) -> Response:
        return PlainTextResponse(index)

    async def public(request: Request) -> Response:
        return JSONResponse({"public": True, "message": "No token needed here."})

    async def me(request: Request) -> Response:
        return JSONResponse(_profile(_identity(request)))

    async def zip_code(request: Request) -> Response:
        identity = _identity(request)
        return JSONResponse(
            {"user_id": identity.user_id, "postal_code": identity.profile.postal_code}
        )

    async def hello(request: Request) -> Response:
        user = request.user
        name = user.display_name if isinstance(user, LWAUser) else "anonymous"
        return JSONResponse({"message": f"Hello, {name}!", "authenticated": user.is_authenticated})

    routes = [
        Route("/", home),
        Route("/public", public),
        Route("/me", me),
        Route("/zip", zip_code),
        Route("/hello", hello),
    ]
    middleware = [
        Middleware(
            LWAMiddleware,
            client_ids=[client_id],
            api_base_url=api_base_url,
            exclude=EXCLUDE,
            optional=OPTIONAL,
            require_scopes=REQUIRE_SCOPES,
        )
    ]
    return Starlette(routes=routes, middleware=middleware)
