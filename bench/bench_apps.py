"""The apps the benchmark compares, and the prebuilt requests it feeds them.

Every variant wraps the same inner app (a raw ASGI callable or a one-route Starlette app,
both answering a small JSON), so the difference between variants is the middleware alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    SimpleUser,
)
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lwa_middleware import AsyncLWAClient, LWAError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PATH = "/me"
BODY = b'{"hello":"world"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
_WSGI_HEADERS = [(k.decode(), v.decode()) for k, v in _HEADERS]


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The smallest ASGI app: a fixed JSON answer; it also acknowledges the lifespan."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def starlette_app() -> Starlette:
    """A one-route Starlette app answering the same JSON."""

    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    return Starlette(routes=[Route(PATH, me)])


def inner_app(kind: str) -> ASGIApp:
    """The inner app every ASGI variant wraps: ``"raw"`` or ``"starlette"``."""
    if kind == "raw":
        return raw_app
    if kind == "starlette":
        return starlette_app()
    raise ValueError(f"unknown inner app {kind!r}")


def wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The smallest WSGI app: the same fixed JSON answer."""
    start_response("200 OK", _WSGI_HEADERS)
    return [BODY]


class DictBearerBackend(AuthenticationBackend):
    """Starlette's in-memory authentication: ``Authorization: Bearer`` looked up in a dict."""

    def __init__(self, users: Mapping[str, BaseUser]) -> None:
        self.users = users

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        user = self.users.get(token)
        if user is None:
            raise AuthenticationError("Invalid token")
        return AuthCredentials(["profile"]), user


def _bearer(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                return token
    return None


_REFUSAL = b'{"error":"refused"}'
_REFUSAL_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_REFUSAL)).encode()),
]


async def _refuse(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _REFUSAL_HEADERS})
    await send({"type": "http.response.body", "body": _REFUSAL})


class PerRequestVerification:
    """The documented algorithm with no cache: on every request, token-info, check ``aud``,
    then profile, with :class:`~lwa_middleware.AsyncLWAClient` (one per server loop)."""

    def __init__(self, app: ASGIApp, api_base_url: str, client_id: str) -> None:
        self.app = app
        self.api_base_url = api_base_url
        self.client_id = client_id
        self._client: AsyncLWAClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope["headers"])
        if token is None:
            await _refuse(send, 401)
            return
        if self._client is None:
            self._client = AsyncLWAClient(self.api_base_url)
        try:
            info = await self._client.tokeninfo(token)
            if info.aud != self.client_id:
                await _refuse(send, 400)
                return
            profile = await self._client.profile(token)
        except LWAError as error:
            await _refuse(send, error.status("lwa"))
            return
        scope["user"] = SimpleUser(profile.user_id)
        await self.app(scope, receive, send)


#: How the prebuilt requests carry the token (``http_scope``'s ``carrier``).
CARRIERS = ("bearer", "amz", "cookie", "cookies5")


def token_header(token: str, carrier: str = "bearer") -> tuple[bytes, bytes]:
    """The header that carries ``token``: ``Authorization: Bearer``, ``x-amz-access-token``,
    the session cookie alone, or the session cookie among five cookies."""
    if carrier == "bearer":
        return b"authorization", f"Bearer {token}".encode()
    if carrier == "amz":
        return b"x-amz-access-token", token.encode()
    if carrier == "cookie":
        return b"cookie", f"lwa_token={token}".encode()
    others = "; ".join(f"pref{i}={'v' * 24}" for i in range(2))
    return b"cookie", f"_ga=GA1.1.123.456; {others}; lwa_token={token}; theme=dark".encode()


def http_scope(token: str, carrier: str = "bearer") -> Scope:
    """A prebuilt ASGI HTTP scope like uvicorn's, for ``GET /me`` with the token carried as
    :func:`token_header` says."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"bench/1.0"),
            (b"accept", b"*/*"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"connection", b"keep-alive"),
            token_header(token, carrier),
        ],
        "state": {},
    }


def wsgi_environ(token: str) -> dict[str, object]:
    """A prebuilt WSGI environ like a server's, for ``GET /me`` with the bearer token."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": PATH,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench/1.0",
        "HTTP_ACCEPT": "*/*",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
        "HTTP_CONNECTION": "keep-alive",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


async def receive_nothing() -> Message:
    """``receive`` of a GET without a body."""
    return {"type": "http.request", "body": b"", "more_body": False}
