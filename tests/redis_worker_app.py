"""The apps ``tests/test_redis_workers.py`` serves from worker processes: ``asgi`` (uvicorn
``--workers``) and ``wsgi`` (gunicorn ``-w``), every option from ``LWA_*`` variables
(:meth:`LWASettings.from_env`). Each answer is JSON naming the worker's process id and the
user the middleware verified (``null`` on an excluded path such as ``/health``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from lwa_middleware import LWAMiddleware, LWASettings, LWAWSGIMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def _body(identity: object) -> bytes:
    user = getattr(identity, "user_id", None)
    return json.dumps({"pid": os.getpid(), "user": user}).encode()


async def _asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = _body(scope.get("lwa"))
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("content-type", "application/json")])
    return [_body(environ.get("lwa"))]


_settings = LWASettings.from_env()
asgi = LWAMiddleware(_asgi_app, settings=_settings)
wsgi = LWAWSGIMiddleware(_wsgi_app, settings=_settings)
