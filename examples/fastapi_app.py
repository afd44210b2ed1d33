"""A FastAPI app whose routes need a Login with Amazon access token.

Run it against the local LWA emulator, from the repository root, in two terminals::

    lwa-middleware emulator        # prints a test token: export TOKEN='Atza|…'
    uvicorn examples.fastapi_app:app --port 8000

    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/me
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/zip
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/account/email
    curl http://127.0.0.1:8000/hello                                   # token optional

Open http://127.0.0.1:8000/docs: the routes that need a token carry a padlock
("Authorize" takes the token) and list the scopes they need.

``LWAMiddleware`` verifies the token before FastAPI runs; the dependencies of
``lwa_middleware.integrations.fastapi`` only read its result and check scopes.
Settings come from ``LWA_*`` environment variables (``LWASettings.from_env()``); without
them the app trusts the emulator at http://127.0.0.1:8765 and its default client ID.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, FastAPI, Security

from lwa_middleware import Identity, LWAMiddleware, LWASettings
from lwa_middleware.emulator import local_settings
from lwa_middleware.integrations.fastapi import (
    LWAIdentity,
    OptionalLWAIdentity,
    add_lwa_exception_handler,
    lwa_identity_with_scopes,
    require_lwa_scopes,
)

#: FastAPI's own pages, readable without a token.
DOCS = ["/docs", "/docs/*", "/redoc", "/openapi.json"]


def settings_from_env(environ: Mapping[str, str] = os.environ) -> LWASettings:
    """``LWASettings.from_env()``, defaulting to the local ``lwa-middleware emulator``."""
    return local_settings(environ)


app = FastAPI(title="Login with Amazon example")
app.add_middleware(
    LWAMiddleware, settings=settings_from_env(), exclude=[*DOCS, "/"], optional=["/hello"]
)
# Errors raised by the dependencies get LWA's JSON body, like the middleware's own.
add_lwa_exception_handler(app)


@app.get("/")
def home() -> dict[str, str]:
    """Excluded from the middleware: anyone may read it."""
    return {"docs": "/docs"}


@app.get("/me")
def me(identity: LWAIdentity) -> dict[str, object]:
    """Any verified token: the customer and the scopes the token was granted."""
    return {
        "user_id": identity.user_id,
        "name": identity.profile.name,
        "scopes": sorted(identity.scopes),
    }


@app.get("/zip")
def zip_code(
    identity: Annotated[Identity, Security(lwa_identity_with_scopes, scopes=["postal_code"])],
) -> dict[str, str | None]:
    """Needs ``postal_code``: 401 ``insufficient_scope`` otherwise (403 in rfc6750 style)."""
    return {"postal_code": identity.profile.postal_code}


@app.get("/hello")
def hello(identity: OptionalLWAIdentity) -> dict[str, str]:
    """An optional route: greets the customer, or an anonymous caller."""
    name = identity.display_name if identity is not None else "anonymous"
    return {"message": f"Hello, {name}!"}


# Every route of this router needs the ``profile`` scope.
account = APIRouter(prefix="/account", dependencies=[require_lwa_scopes("profile")])


@account.get("/email")
def email(identity: LWAIdentity) -> dict[str, str | None]:
    """The customer's email (``profile`` scope)."""
    return {"email": identity.profile.email}


app.include_router(account)
