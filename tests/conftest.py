"""Shared fixtures: one LWA emulator served by uvicorn for the session, a fake clock shared
by the emulator and the middlewares, factories serving a protected ASGI app (uvicorn) and a
protected WSGI app (threaded wsgiref) on 127.0.0.1, and the error-table assertions both
suites share."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
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


async def whoami(request: Request) -> Response:
    """Echo what the middleware attached, so tests see exactly what the app saw."""
    identity = request.scope.get("lwa")
    if identity is None:
        # Excluded and unmatched paths are passed through untouched: no scope["user"] there.
        touched = "user" in request.scope
        return JSONResponse(
            {"user": None, "authenticated": request.user.is_authenticated if touched else None}
        )
    return JSONResponse(
        {
            "user": identity.user_id,
            "name": identity.profile.name,
            "email": identity.profile.email,
            "postal_code": identity.profile.postal_code,
            "scopes": request.auth.scopes,
            "authenticated": request.user.is_authenticated,
            "display_name": request.user.display_name,
            "aud": identity.token_info.aud,
        }
    )


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    identity = websocket.scope.get("lwa")
    await websocket.send_text(identity.user_id if identity else "anonymous")
    await websocket.close()


def inner_app() -> Starlette:
    """The app under the middleware: every path answers who it saw."""
    return Starlette(
        routes=[
            Route("/health", lambda r: PlainTextResponse("ok")),
            WebSocketRoute("/ws", ws_echo),
            Route("/{path:path}", whoami),
        ]
    )


ServeProtected = Callable[..., str]


@pytest.fixture
def protected(emu: Emulator, emu_url: str, clock: FakeClock) -> Iterator[ServeProtected]:
    """``protected(**options) -> base URL`` of the inner app behind ``LWAMiddleware``."""
    handles: list[ServerHandle] = []

    def start(app: Any = None, **options: Any) -> str:
        options.setdefault("client_ids", [emu.client_id])
        options.setdefault("api_base_url", emu_url)
        options.setdefault("clock", clock)
        handle = serve(LWAMiddleware(app or inner_app(), **options), lifespan="on")
        handles.append(handle)
        return handle.url

    yield start
    for handle in handles:
        handle.stop()


# WSGI: the app under LWAWSGIMiddleware, served by a threaded WSGI server, and the
# helpers shared by the ASGI and WSGI suites (the error table is one table).

STYLES = ["lwa", "rfc6750"]
EXPECTED = {
    "missing": {"lwa": 400, "rfc6750": 401},
    "invalid_request": {"lwa": 400, "rfc6750": 400},
    "invalid_token": {"lwa": 400, "rfc6750": 401},
    "insufficient_scope": {"lwa": 401, "rfc6750": 403},
    "ServerError": {"lwa": 500, "rfc6750": 500},
}
OTHER_CLIENT = "amzn1.application-oa2-client.someone-else"


def wsgi_whoami(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Echo what the middleware attached, so tests see exactly what the app saw."""
    identity = environ.get("lwa")
    body = {
        "path": environ.get("PATH_INFO"),
        "has_lwa": "lwa" in environ,
        "remote_user": environ.get("REMOTE_USER"),
        "user": None if identity is None else identity.user_id,
    }
    if identity is not None:
        body |= {
            "name": identity.profile.name,
            "email": identity.profile.email,
            "postal_code": identity.profile.postal_code,
            "scopes": sorted(identity.scopes),
            "aud": identity.token_info.aud,
        }
    data = json.dumps(body).encode()
    start_response("200 OK", [("content-type", "application/json"), ("x-app", "whoami")])
    return [data]


ServeWSGI = Callable[..., str]


@pytest.fixture
def wsgi_protected(emu: Emulator, emu_url: str, clock: FakeClock) -> Iterator[ServeWSGI]:
    """``wsgi_protected(app=None, **options) -> base URL`` of ``app`` (default: ``whoami``)
    behind ``LWAWSGIMiddleware``, served by a threaded WSGI server on 127.0.0.1."""
    handles: list[ServerHandle] = []
    middlewares: list[LWAWSGIMiddleware] = []

    def start(app: WSGIApplication | None = None, **options: Any) -> str:
        options.setdefault("client_ids", [emu.client_id])
        options.setdefault("api_base_url", emu_url)
        options.setdefault("clock", clock)
        middleware = LWAWSGIMiddleware(app or wsgi_whoami, **options)
        middlewares.append(middleware)
        handle = serve_wsgi(middleware)
        handles.append(handle)
        return handle.url

    yield start
    for handle in handles:
        handle.stop()
    for middleware in middlewares:
        middleware.close()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client for the module (a new client per request costs its TLS setup)."""
    with httpx.Client(timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_error(
    response: httpx.Response, error: str, status: int, *, challenge: bool = True
) -> dict[str, str]:
    """The response is the documented error: status, headers and exactly the three fields."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert response.headers["cache-control"] == "no-store"
    assert "x-app" not in response.headers  # the app never ran (the WSGI test app sets it)
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
