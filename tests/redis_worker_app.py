"""The apps ``tests/test_redis_workers.py`` serves from worker processes: ``asgi`` (uvicorn
``--workers``) and ``wsgi`` (gunicorn ``-w``), every option from ``LWA_*`` variables
(:meth:`LWASettings.from_env`). Each answer is JSON naming the worker's process id and the
user the middleware verified (``null`` on an excluded path such as ``/health``); on ``/l2``
(to exclude too) it adds the worker's shared-cache counts. Every response, the
middleware's refusals included, names the worker in an ``x-worker-pid`` header."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lwa_middleware import LWAMiddleware, LWASettings, LWAWSGIMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


PID_HEADER = "x-worker-pid"


def _body(identity: object, path: str, middleware: LWAMiddleware | LWAWSGIMiddleware) -> bytes:
    user = getattr(identity, "user_id", None)
    body: dict[str, object] = {"pid": os.getpid(), "user": user}
    if path == "/l2":
        body["l2"] = middleware.verifier.authority.l2.stats.as_dict()
    return json.dumps(body).encode()


async def _asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = _body(scope.get("lwa"), scope["path"], asgi)
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("content-type", "application/json")])
    return [_body(environ.get("lwa"), environ.get("PATH_INFO", ""), wsgi)]


def _asgi_named(app: ASGIApp) -> ASGIApp:
    """``app`` with the worker's pid in every response's headers."""

    async def named(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                pid = (PID_HEADER.encode(), str(os.getpid()).encode())
                message = {**message, "headers": [*message.get("headers", ()), pid]}
            await send(message)

        await app(scope, receive, send_named)

    return named


def _wsgi_named(app: WSGIApplication) -> WSGIApplication:
    """``app`` with the worker's pid in every response's headers."""

    def named(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start_named(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            return start_response(status, [*headers, (PID_HEADER, str(os.getpid()))], *rest)

        return app(environ, start_named)

    return named


_settings = LWASettings.from_env()
asgi = LWAMiddleware(_asgi_app, settings=_settings)
wsgi = LWAWSGIMiddleware(_wsgi_app, settings=_settings)
asgi_named = _asgi_named(asgi)
wsgi_named = _wsgi_named(wsgi)
