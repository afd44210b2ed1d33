"""``LWALogin``: the website sign-in as an ASGI app to mount (e.g. at ``/auth``).

Layer: ``login`` (website sign-in; see ``ARCHITECTURE.md``).

It adapts a scope to a :class:`~lwa_middleware.login.core.LoginRequest`, writes the core's
answer back, and runs the one I/O step, the code exchange, on an
:class:`~lwa_middleware.upstream.token_client.AsyncTokenClient`. Give it to
``LWAMiddleware(..., login=...)`` as well: the middleware then refreshes expired sessions
through the same client (:attr:`LWALogin.refresher`).

Mounted (Starlette ``Mount("/auth", app=login)``), ``/login`` and ``/logout`` are matched
below ``root_path``; the callback by its full path, ``redirect_uri``'s.

"""

from __future__ import annotations

import httpx
from starlette.types import Receive, Scope, Send

from lwa_middleware.core.csrf import asgi_origin_headers
from lwa_middleware.login.config import LoginConfig
from lwa_middleware.login.core import LoginRequest
from lwa_middleware.login.refresh import AsyncRefresher
from lwa_middleware.login.shell import LoginShell
from lwa_middleware.upstream.steps import arun
from lwa_middleware.upstream.token_client import AsyncTokenClient


def split_root(scope: Scope) -> tuple[str, str]:
    """``(root_path, path below it)``: Starlette's ``Mount`` keeps the full path in
    ``path`` and the mount in ``root_path``; other servers give the path below it."""
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path", "") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return root, path[len(root) :] or "/"
    return root, path


def asgi_request(scope: Scope) -> LoginRequest:
    """The core's view of an HTTP scope (every ``Host``, ``Origin`` and ``Referer`` value
    read as the middleware reads them: :func:`~lwa_middleware.core.csrf.asgi_origin_headers`)."""
    root, path = split_root(scope)
    cookies: list[str] = []
    accept: str | None = None
    for name, value in scope["headers"]:
        if name == b"cookie":
            cookies.append(value.decode("latin-1"))
        elif name == b"accept" and accept is None:
            accept = value.decode("latin-1")
    return LoginRequest(
        method=scope["method"],
        path=path,
        root_path=root,
        query_string=scope.get("query_string", b"").decode("latin-1"),
        cookies=tuple(cookies),
        accept=accept,
        origins=asgi_origin_headers(scope),
    )


class LWALogin(LoginShell[httpx.AsyncBaseTransport, AsyncTokenClient, AsyncRefresher]):
    """``/login?next=``, the callback and ``/logout`` of a website signing in with Amazon.

    ``LWALogin(client_id, client_secret=None, *, redirect_uri=..., secret_key=...)``; the
    other options are described in ``docs/login.md``. ``clock`` and ``transport`` are for
    tests (a fake clock; an ``httpx.AsyncBaseTransport`` for the token endpoint).
    """

    def _connect(self, config: LoginConfig, transport: httpx.AsyncBaseTransport | None) -> None:
        self.client = AsyncTokenClient(
            config.api_base_url, transport=transport, **config.client_options()
        )
        self.refresher = AsyncRefresher(self.core.session, self.client, self.clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        status, headers, body = await arun(self._answer(asgi_request(scope)))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Served on its own: start at once, close the token client at shutdown."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Close the token client's connection pool (the running loop's)."""
        await self.client.aclose()
