"""LWAMiddleware's path rules, mounting, Starlette integration, WebSocket and lifespan,
through uvicorn on 127.0.0.1 against the emulator."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Message

from lwa_middleware import LWAMiddleware
from lwa_middleware.emulator import Emulator, serve
from lwa_middleware.integrations.starlette import LWAUser

from conftest import FakeClock, ServeProtected, bearer, inner_app

pytestmark = pytest.mark.anyio


def test_exclude_skips_verification_entirely(protected: ServeProtected, emu: Emulator) -> None:
    url = protected(exclude=["/public/*"])
    response = httpx.get(url + "/public/page", headers=bearer("Atza|" + "z" * 400))
    assert response.status_code == 200
    assert response.json() == {"user": None, "authenticated": None}  # scope untouched
    assert emu.calls["tokeninfo"] == 0


def test_optional_route(protected: ServeProtected, emu: Emulator) -> None:
    url = protected(optional=["/hello"])
    anonymous = httpx.get(url + "/hello")
    assert anonymous.status_code == 200
    assert anonymous.json() == {"user": None, "authenticated": False}
    bad = httpx.get(url + "/hello", headers=bearer("Atza|" + "z" * 400))
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_token"
    user, token = emu.mint_for(name="Ada")
    good = httpx.get(url + "/hello", headers=bearer(token))
    assert good.json()["user"] == user.user_id


def test_unmatched_path_passes_untouched(protected: ServeProtected, emu: Emulator) -> None:
    url = protected(protect=["/api/*"])
    assert httpx.get(url + "/elsewhere").json() == {"user": None, "authenticated": None}
    assert httpx.get(url + "/api/x").status_code == 400
    _, token = emu.mint_for(name="Ada")
    assert httpx.get(url + "/api/x", headers=bearer(token)).status_code == 200


def test_exclude_wins_over_optional_and_protect(protected: ServeProtected) -> None:
    url = protected(exclude=["/a/*"], optional=["/a/*", "/b/*"], protect=["/*"])
    assert httpx.get(url + "/a/1").status_code == 200
    assert httpx.get(url + "/b/1").status_code == 200
    assert httpx.get(url + "/c/1").status_code == 400


def test_dot_segments_cannot_escape_an_exclusion(protected: ServeProtected) -> None:
    url = protected(exclude=["/public/*"])
    response = httpx.get(url + "/public/%2e%2e/private")
    assert response.status_code == 400
    response = httpx.get(url + "//public/../private")
    assert response.status_code == 400


def test_rules_match_below_the_mount_point(emu: Emulator, emu_url: str, clock: FakeClock) -> None:
    guarded = LWAMiddleware(
        inner_app(),
        client_ids=[emu.client_id],
        api_base_url=emu_url,
        clock=clock,
        protect=["/private/*"],
    )
    outer = Starlette(routes=[Mount("/sub", app=guarded)])
    user, token = emu.mint_for(name="Ada")
    with serve(outer) as server:
        assert httpx.get(server.url + "/sub/open").status_code == 200
        assert httpx.get(server.url + "/sub/private/x").status_code == 400
        ok = httpx.get(server.url + "/sub/private/x", headers=bearer(token))
        assert ok.json()["user"] == user.user_id


def test_starlette_add_middleware_and_requires(
    emu: Emulator, emu_url: str, clock: FakeClock
) -> None:
    @requires("profile")
    async def names(request: Request) -> Response:
        user = request.user
        assert isinstance(user, LWAUser)
        return JSONResponse({"name": user.display_name, "id": user.identity})

    @requires("postal_code")
    async def zips(request: Request) -> Response:
        return PlainTextResponse(request.scope["lwa"].profile.postal_code)

    app = Starlette(routes=[Route("/names", names), Route("/zips", zips)])
    app.add_middleware(LWAMiddleware, client_ids=[emu.client_id], api_base_url=emu_url, clock=clock)
    user, token = emu.mint_for(name="Ada", scopes=("profile",))
    with serve(app) as server:
        body = httpx.get(server.url + "/names", headers=bearer(token)).json()
        assert body == {"name": "Ada", "id": user.user_id}
        assert httpx.get(server.url + "/zips", headers=bearer(token)).status_code == 403


async def test_websocket_refused_with_denial_response(
    protected: ServeProtected, emu: Emulator
) -> None:
    url = protected().replace("http://", "ws://")
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url + "/ws"):
            pass  # pragma: no cover - the handshake is refused
    assert refused.value.response.status_code == 400
    assert b'"invalid_request"' in refused.value.response.body
    user, token = emu.mint_for(name="Ada")
    async with websockets.connect(url + "/ws", additional_headers=bearer(token)) as ws:
        assert await ws.recv() == user.user_id


async def test_websocket_closed_with_1008_without_denial_extension() -> None:
    """A server that does not offer the denial-response extension gets close code 1008."""
    reached: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    middleware = LWAMiddleware(app, client_ids=["amzn1.application-oa2-client.x"])
    sent: list[Message] = []
    incoming: list[Message] = [{"type": "websocket.connect"}]

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    await middleware(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "invalid_request"}]
    assert reached == []


async def test_lifespan_passes_through_and_opens_the_client(emu: Emulator, emu_url: str) -> None:
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                scope["state"]["ready"] = True
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    middleware = LWAMiddleware(app, client_ids=[emu.client_id], api_base_url=emu_url)
    server = serve(middleware, lifespan="on")
    try:
        await asyncio.sleep(0)
        assert events == ["lifespan.startup"]
        assert len(middleware.verifier._loops) == 1
        client = next(iter(middleware.verifier._loops.values())).client
    finally:
        server.stop()
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert client.is_closed


def test_other_scope_types_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = LWAMiddleware(app, client_ids=["amzn1.application-oa2-client.x"])
    asyncio.run(middleware({"type": "custom"}, None, None))  # type: ignore[arg-type]
    assert seen == ["custom"]


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_starlette_testclient_new_loop_per_request(
    emu: Emulator, emu_url: str, clock: FakeClock
) -> None:
    """Starlette's TestClient runs each request on its own event loop (outside ``with``):
    the middleware keeps one HTTP client per loop, so every request still verifies."""
    import warnings

    from starlette.testclient import TestClient

    middleware = LWAMiddleware(
        inner_app(), client_ids=[emu.client_id], api_base_url=emu_url, clock=clock
    )
    users = [emu.mint_for(name=f"User {i}") for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # clients of finished loops
        client = TestClient(middleware)
        for user, token in users:
            assert client.get("/me", headers=bearer(token)).json()["user"] == user.user_id
        assert len(middleware.verifier._loops) == 1  # the clients of finished loops are gone
        with TestClient(middleware) as scoped:  # lifespan: one loop, client closed at exit
            user, token = users[0]
            assert scoped.get("/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 3, "profile": 3}
