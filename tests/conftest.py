"""Shared fixtures: one LWA emulator served by uvicorn for the session, a fake clock shared
by the emulator and the middlewares, factories serving a protected ASGI app (uvicorn) and a
protected WSGI app (threaded wsgiref) on 127.0.0.1, ``served`` (either of the two, one test
per shell) and the error-table assertions every suite shares.

Both test apps answer with one JSON shape (see :func:`seen`), so a test written once reads
what the app saw behind either shell.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from lwa_middleware import Identity, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.emulator import Emulator, ServerHandle, serve, serve_wsgi

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class FakeClock:
    """Real time plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def emulator_session(clock: FakeClock) -> Iterator[tuple[Emulator, ServerHandle]]:
    emulator = Emulator(clock=clock, hang_seconds=3)
    with serve(emulator.app) as handle:
        yield emulator, handle


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """A fresh emulator of the module's own, served on 127.0.0.1 (real clock)."""
    with Emulator() as emu:
        yield emu


@pytest.fixture
def emu(emulator_session: tuple[Emulator, ServerHandle], clock: FakeClock) -> Emulator:
    """The session's emulator, reset: no users, tokens, faults or counts; clock at now."""
    emulator, _ = emulator_session
    emulator.reset()
    clock.offset = 0.0
    return emulator


@pytest.fixture
def emu_url(emulator_session: tuple[Emulator, ServerHandle]) -> str:
    return emulator_session[1].url


# The apps under the middlewares ----------------------------------------------------------


def seen(
    path: str, has_lwa: bool, principal: str | None, identity: Identity | None, scopes: list[str]
) -> dict[str, Any]:
    """What the app saw, in the one JSON shape both shells' test apps answer with.

    ``has_lwa``: the middleware set ``scope["lwa"]`` / ``environ["lwa"]`` (``None`` for an
    anonymous request); ``principal``: who the framework sees signed in (ASGI: Starlette's
    ``request.user.identity``; WSGI: ``REMOTE_USER``); ``user`` and the rest: the identity.
    """
    body: dict[str, Any] = {
        "path": path,
        "has_lwa": has_lwa,
        "principal": principal,
        "user": None if identity is None else identity.user_id,
    }
    if identity is not None:
        body |= {
            "name": identity.profile.name,
            "email": identity.profile.email,
            "postal_code": identity.profile.postal_code,
            "scopes": scopes,
            "aud": identity.token_info.aud,
        }
    return body


#: Set by both test apps: an error response carrying it came from the app, not the middleware.
APP_HEADER = ("x-app", "whoami")


async def whoami(request: Request) -> Response:
    """Echo what the middleware attached, so tests see exactly what the app saw."""
    scope = request.scope
    user = scope.get("user")  # absent where the middleware passed the request untouched
    principal = user.identity if user is not None and user.is_authenticated else None
    identity = scope.get("lwa")
    scopes = list(request.auth.scopes) if identity is not None else []
    body = seen(scope["path"], "lwa" in scope, principal, identity, scopes)
    return JSONResponse(body, headers=dict([APP_HEADER]))


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    identity = websocket.scope.get("lwa")
    await websocket.send_text(identity.user_id if identity else "anonymous")
    await websocket.close()


def inner_app() -> Starlette:
    """The ASGI app under the middleware: every path answers who it saw."""
    return Starlette(
        routes=[
            WebSocketRoute("/ws", ws_echo),
            Route("/{path:path}", whoami, methods=["GET", "POST", "OPTIONS"]),
        ]
    )


def wsgi_whoami(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI app under the middleware: echo what it attached, as :func:`whoami` does."""
    identity = environ.get("lwa")
    scopes = sorted(identity.scopes) if identity is not None else []
    body = seen(
        environ["PATH_INFO"], "lwa" in environ, environ.get("REMOTE_USER"), identity, scopes
    )
    start_response("200 OK", [("content-type", "application/json"), APP_HEADER])
    return [json.dumps(body).encode()]


# Serving them behind the middlewares ----------------------------------------------------

Serve = Callable[..., str]
ServeProtected = Serve
ServeWSGI = Serve


Teardown = Callable[[Callable[[], None]], None]


@pytest.fixture(scope="session")
def teardown_later() -> Iterator[Teardown]:
    """``teardown_later(job)`` runs ``job`` (stopping a test's servers) in the background, so
    the next test need not wait for it (uvicorn takes ~0.2 s to stop); at the end of the
    session every job has finished and any failure is raised."""
    jobs: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="teardown") as pool:
        yield lambda job: jobs.append(pool.submit(job))
    for job in jobs:
        job.result()


def _defaults(options: dict[str, Any], emu: Emulator, emu_url: str, clock: FakeClock) -> None:
    options.setdefault("client_ids", [emu.client_id])
    options.setdefault("api_base_url", emu_url)
    options.setdefault("clock", clock)


@pytest.fixture
def protected(
    emu: Emulator, emu_url: str, clock: FakeClock, teardown_later: Teardown
) -> Iterator[ServeProtected]:
    """``protected(app=None, **options) -> base URL`` of ``app`` (default: the inner app)
    behind ``LWAMiddleware``, served by uvicorn on 127.0.0.1."""
    handles: list[ServerHandle] = []

    def start(app: Any = None, **options: Any) -> str:
        _defaults(options, emu, emu_url, clock)
        handle = serve(LWAMiddleware(app or inner_app(), **options), lifespan="on")
        handles.append(handle)
        return handle.url

    yield start
    for handle in handles:
        teardown_later(handle.stop)


def _stop_and_close(handle: ServerHandle, middleware: LWAWSGIMiddleware) -> None:
    handle.stop()
    middleware.close()


@pytest.fixture
def wsgi_protected(
    emu: Emulator, emu_url: str, clock: FakeClock, teardown_later: Teardown
) -> Iterator[ServeWSGI]:
    """``wsgi_protected(app=None, **options) -> base URL`` of ``app`` (default: ``whoami``)
    behind ``LWAWSGIMiddleware``, served by a threaded WSGI server on 127.0.0.1."""
    handles: list[ServerHandle] = []
    middlewares: list[LWAWSGIMiddleware] = []

    def start(app: WSGIApplication | None = None, **options: Any) -> str:
        _defaults(options, emu, emu_url, clock)
        middleware = LWAWSGIMiddleware(app or wsgi_whoami, **options)
        middlewares.append(middleware)
        handle = serve_wsgi(middleware)
        handles.append(handle)
        return handle.url

    yield start
    for handle, middleware in zip(handles, middlewares):
        teardown_later(partial(_stop_and_close, handle, middleware))


class LateASGI:
    """An ASGI app set once the server's port (so a sign-in's ``redirect_uri``) is known."""

    app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class LateWSGI:
    """The WSGI twin of :class:`LateASGI`."""

    app: Any = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


SHELLS = ["asgi", "wsgi"]


class Served:
    """``served(**options) -> base URL`` of the whoami app behind one shell's middleware."""

    def __init__(self, shell: str, start: Serve) -> None:
        self.shell = shell
        self._start = start

    def __call__(self, **options: Any) -> str:
        return self._start(**options)

    @property
    def profile_with_token_info(self) -> bool:
        """Whether a miss asks for the profile together with token-info (ASGI: token-info ∥
        profile) rather than only once token-info accepted the token (WSGI: one after the
        other); it decides how many profile calls a rejected token costs."""
        return self.shell == "asgi"


@pytest.fixture(params=SHELLS)
def served(request: pytest.FixtureRequest) -> Served:
    """One test per shell: ``asgi`` (``LWAMiddleware`` under uvicorn) and ``wsgi``
    (``LWAWSGIMiddleware`` under a threaded wsgiref server), same emulator, same clock."""
    shell: str = request.param
    start: Serve = request.getfixturevalue("protected" if shell == "asgi" else "wsgi_protected")
    return Served(shell, start)


def serve_werkzeug(app: WSGIApplication) -> ServerHandle:
    """Serve a WSGI app with werkzeug's threaded development server on 127.0.0.1 (no access
    log lines)."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    return ServerHandle(
        host="127.0.0.1",
        port=server.server_port,
        thread=thread,
        request_stop=server.shutdown,
        cleanup=server.server_close,
    )


#: The four real servers the hardening tests run behind: uvicorn with each of its HTTP
#: implementations (``LWAMiddleware``), wsgiref and werkzeug (``LWAWSGIMiddleware``).
SERVERS = ["uvicorn-h11", "uvicorn-httptools", "wsgiref", "werkzeug"]


@pytest.fixture(params=SERVERS)
def any_server(
    request: pytest.FixtureRequest,
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    teardown_later: Teardown,
) -> Iterator[Served]:
    """``any_server(**options) -> base URL`` of the whoami app behind the middleware, once
    per real server in :data:`SERVERS` (same emulator and clock as ``served``)."""
    kind: str = request.param
    stops: list[Callable[[], None]] = []

    def start(**options: Any) -> str:
        _defaults(options, emu, emu_url, clock)
        if kind.startswith("uvicorn"):
            http = kind.removeprefix("uvicorn-")
            handle = serve(LWAMiddleware(inner_app(), **options), lifespan="on", http=http)
            stops.append(handle.stop)
            return handle.url
        middleware = LWAWSGIMiddleware(wsgi_whoami, **options)
        handle = serve_wsgi(middleware) if kind == "wsgiref" else serve_werkzeug(middleware)
        stops.append(partial(_stop_and_close, handle, middleware))
        return handle.url

    yield Served("asgi" if kind.startswith("uvicorn") else "wsgi", start)
    for stop in stops:
        teardown_later(stop)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client for the module (a new client per request costs its TLS setup)."""
    with httpx.Client(timeout=10) as client:
        yield client


# The error table (one table, both shells) ------------------------------------------------

STYLES = ["lwa", "rfc6750"]
EXPECTED = {
    "missing": {"lwa": 400, "rfc6750": 401},
    "invalid_request": {"lwa": 400, "rfc6750": 400},
    "invalid_token": {"lwa": 400, "rfc6750": 401},
    "insufficient_scope": {"lwa": 401, "rfc6750": 403},
    "ServerError": {"lwa": 500, "rfc6750": 500},
}
OTHER_CLIENT = "amzn1.application-oa2-client.someone-else"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def raw_get(
    http: httpx.Client, url: str, raw_path: bytes, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    """GET ``raw_path`` exactly as given: httpx resolves dot segments in a URL, even in
    ``URL.copy_with(raw_path=...)``; httpcore's ``target`` extension is sent verbatim."""
    request = http.build_request(
        "GET", url + "/x", headers=headers, extensions={"target": raw_path}
    )
    return http.send(request)


def assert_error(
    response: httpx.Response,
    error: str,
    status: int,
    *,
    challenge: bool = True,
    cache_control: str | None = None,
) -> dict[str, str]:
    """The response is the documented error: status, headers and exactly the three fields
    (``cache_control`` by default: ``private, no-store`` where it also sets or clears
    cookies, else ``no-store``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    if cache_control is None:
        cookies = response.headers.get_list("set-cookie")
        cache_control = "private, no-store" if cookies else "no-store"
    assert response.headers.get_list("cache-control") == [cache_control]
    assert APP_HEADER[0] not in response.headers  # the app never ran
    body = response.json()
    assert set(body) == {"error", "error_description", "request_id"}
    assert body["error"] == error
    assert body["error_description"]
    assert response.headers["x-request-id"] == body["request_id"]
    header = response.headers.get("www-authenticate")
    if status >= 500:
        assert header is None
    elif challenge:
        assert header is not None
        assert header.startswith('Bearer realm="lwa", ')
        assert f'error="{error}"' in header
    return dict(body)
