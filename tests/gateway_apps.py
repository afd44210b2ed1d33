"""The app behind the proxies in the gateway's tests: it answers what reached it, so a test
sees exactly which identity headers (any spelling) the proxy let through."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

IDENTITY_PREFIX = "x-auth-request"


class Upstream:
    """Every path: JSON of the request as received (``/page/...``: an HTML page greeting
    the customer by the name the gateway sent). Counts the requests that reached it."""

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        request = Request(scope, receive)
        identity = [
            [name.decode("latin-1"), value.decode("latin-1")]
            for name, value in scope["headers"]
            if name.decode("latin-1").lower().replace("_", "-").startswith(IDENTITY_PREFIX)
        ]
        response: Response
        if scope["path"].startswith("/page/"):
            name = unquote(request.headers.get("x-auth-request-name", ""))
            email = request.headers.get("x-auth-request-email", "")
            response = HTMLResponse(
                "<!doctype html><title>Behind the gateway</title>"
                '<body style="font-family: sans-serif; margin: 3em">'
                f'<h1 id="hello">Hello, {name}</h1><p id="email">{email}</p>'
                "<p>This page is served by an app that knows nothing of Login with Amazon: "
                "nginx asked the LWA gateway first.</p></body>"
            )
        else:
            response = JSONResponse(
                {
                    "method": scope["method"],
                    "raw_path": scope.get("raw_path", b"").decode("latin-1"),
                    "identity": identity,
                }
            )
        await response(scope, receive, send)
