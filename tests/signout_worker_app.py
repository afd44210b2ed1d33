"""The site ``tests/test_signout.py`` serves from worker processes: the sign-in mounted at
``/auth`` and a protected app answering who it saw, as ``asgi`` (``LWALogin`` under
``LWAMiddleware``, for uvicorn) and ``wsgi`` (``LWAWSGILogin`` beside
``LWAWSGIMiddleware``, for gunicorn). The middleware's options come from ``LWA_*``
variables (:meth:`LWASettings.from_env`: client id, emulator, Redis, ``secret_key``); the
sign-in's from ``SIGNOUT_SITE`` (this process's own base URL), ``SIGNOUT_AUTHORIZE_URL``
and ``SIGNOUT_CLIENT_SECRET``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from lwa_middleware import LWALogin, LWAMiddleware, LWASettings, LWAWSGILogin, LWAWSGIMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def _body(identity: object) -> dict[str, object]:
    return {"pid": os.getpid(), "user": getattr(identity, "user_id", None)}


async def _me(request: Request) -> Response:
    return JSONResponse(_body(request.scope.get("lwa")))


def _wsgi_me(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(_body(environ.get("lwa"))).encode()]


_settings = LWASettings.from_env()
_site = os.environ["SIGNOUT_SITE"]
_login_options = {
    "client_secret": os.environ["SIGNOUT_CLIENT_SECRET"],
    "redirect_uri": _site + "/auth/callback",
    "secret_key": _settings.secret_key,
    "authorize_url": os.environ["SIGNOUT_AUTHORIZE_URL"],
    "api_base_url": _settings.api_base_url,
}
_client_id = _settings.client_ids[0]

_login = LWALogin(_client_id, **_login_options)  # type: ignore[arg-type]
asgi = Starlette(
    routes=[Mount("/auth", app=_login), Route("/{path:path}", _me)],
    middleware=[Middleware(LWAMiddleware, settings=_settings, login=_login, exclude=["/auth/*"])],
)

_wsgi_login = LWAWSGILogin(_client_id, **_login_options)  # type: ignore[arg-type]
wsgi = DispatcherMiddleware(
    LWAWSGIMiddleware(_wsgi_me, settings=_settings, login=_wsgi_login),
    {"/auth": _wsgi_login},
)
