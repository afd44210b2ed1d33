"""Shared fixtures: one LWA emulator served by uvicorn for the session, a fake clock shared
by the emulator and the middleware, and a factory serving a protected app on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from lwa_middleware import LWAMiddleware
from lwa_middleware.emulator import Emulator, ServerHandle, serve


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
