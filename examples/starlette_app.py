"""A Starlette app whose routes need a Login with Amazon access token.

Run it against the local LWA emulator, from the repository root, in two terminals::

    lwa-middleware emulator        # prints a test token: export TOKEN='Atza|…'
    uvicorn examples.starlette_app:app --port 8000

    curl http://127.0.0.1:8000/                                        # no token needed
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/me
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/zip
    curl http://127.0.0.1:8000/hello                                   # token optional

Settings come from ``LWA_*`` environment variables (``LWASettings.from_env()``); without
them the app trusts the emulator at http://127.0.0.1:8765 and its default client ID.
For Amazon itself, set ``LWA_CLIENT_IDS`` to your security profile's client ID and
``LWA_REGION`` (``NA``, ``EU`` or ``FE``) or ``LWA_API_BASE_URL=https://api.amazon.com``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lwa_middleware import LWAMiddleware, LWASettings, LWAUser
from lwa_middleware.emulator import local_settings


def settings_from_env(environ: Mapping[str, str] = os.environ) -> LWASettings:
    """``LWASettings.from_env()``, defaulting to the local ``lwa-middleware emulator``."""
    return local_settings(environ)


async def homepage(request: Request) -> Response:
    """Excluded from the middleware: anyone may read it."""
    return PlainTextResponse("Send a Login with Amazon token to /me, /profile, /zip or /hello.\n")


async def me(request: Request) -> Response:
    """Protected: ``request.user`` is an ``LWAUser``, ``request.auth.scopes`` its scopes."""
    user = request.user
    assert isinstance(user, LWAUser)  # the middleware answered the request otherwise
    return JSONResponse(
        {
            "user_id": user.user_id,
            "display_name": user.display_name,
            "scopes": sorted(request.auth.scopes),
        }
    )


@requires("profile")
async def profile(request: Request) -> Response:
    """Starlette's ``@requires``: 403 unless the token was granted the ``profile`` scope."""
    user = request.user
    assert isinstance(user, LWAUser)
    return JSONResponse({"name": user.profile.name, "email": user.profile.email})


async def zip_code(request: Request) -> Response:
    """The middleware's ``require_scopes`` already checked ``postal_code`` (401 otherwise)."""
    user = request.user
    assert isinstance(user, LWAUser)
    return JSONResponse({"postal_code": user.profile.postal_code})


async def hello(request: Request) -> Response:
    """Optional: a token is verified when present; without one the user is anonymous."""
    name = request.user.display_name if request.user.is_authenticated else "anonymous"
    return JSONResponse({"message": f"Hello, {name}!"})


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/me", me),
        Route("/profile", profile),
        Route("/zip", zip_code),
        Route("/hello", hello),
    ],
    middleware=[
        Middleware(
            LWAMiddleware,
            settings=settings_from_env(),
            exclude=["/"],
            optional=["/hello"],
            require_scopes={"/zip": "postal_code"},
        )
    ],
)
