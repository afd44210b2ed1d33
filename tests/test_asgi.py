"""What only the ASGI shell does, through uvicorn on 127.0.0.1 against the emulator:
Starlette's ``request.user``/``request.auth`` and a scope left untouched, ``on_error``
answering with a Starlette response, rules below a mount point (``root_path``),
``add_middleware`` and ``@requires``, WebSocket, lifespan, other scope types and
Starlette's ``TestClient``.

What both shells share (the error table, token sources, path rules, the cache) is tested
once for both in ``test_shells_*.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Message

from lwa_middleware import LWAError, LWAMiddleware
from lwa_middleware.core.credentials import LWAUser
from lwa_middleware.emulator import Emulator, serve

from conftest import FakeClock, ServeProtected, assert_error, bearer, inner_app

pytestmark = pytest.mark.anyio


async def starlette_view(request: Request) -> Response:
    """What Starlette's own authentication API shows the app (or that it was left alone)."""
    scope = request.scope
    touched = sorted(key for key in ("auth", "lwa", "user") if key in scope)
    if "user" not in scope:
        return JSONResponse({"touched": touched})
    return JSONResponse(
        {
            "touched": touched,
            "authenticated": request.user.is_authenticated,
            "display_name": request.user.display_name,
            "identity": request.user.identity if request.user.is_authenticated else None,
            "scopes": list(request.auth.scopes),
        }
    )


def test_starlette_request_user_and_auth(
    protected: ServeProtected, emu: Emulator, http: httpx.Client
) -> None:
    """``request.user`` / ``request.auth`` on verified and anonymous requests; excluded and
    unmatched paths get a scope the middleware did not touch at all."""
    app = Starlette(routes=[Route("/{path:path}", starlette_view)])
    url = protected(app, exclude=["/public/*"], optional=["/hello"], protect=["/me", "/hello"])
    user, token = emu.mint_for(name="Ada Lovelace", scopes=("profile", "postal_code"))
    assert http.get(url + "/me", headers=bearer(token)).json() == {
        "touched": ["auth", "lwa", "user"],
        "authenticated": True,
        "display_name": "Ada Lovelace",
        "identity": user.user_id,
        "scopes": ["postal_code", "profile", "profile:user_id"],
    }
    assert http.get(url + "/hello").json() == {
        "touched": ["auth", "lwa", "user"],
        "authenticated": False,
        "display_name": "",
        "identity": None,
        "scopes": [],
    }
    for path in ("/public/page", "/elsewhere"):
        response = http.get(url + path, headers=bearer("Atza|" + "z" * 400))
        assert response.json() == {"touched": []}, path
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_on_error_hook(protected: ServeProtected, emu: Emulator, http: httpx.Client) -> None:
    """``on_error`` may answer with a Starlette response (sync or async), or ``None``."""
    seen: list[tuple[str, str]] = []

    async def on_error(conn: HTTPConnection, error: LWAError) -> PlainTextResponse | None:
        seen.append((conn.url.path, error.error))
        if conn.url.path.startswith("/custom"):
            return PlainTextResponse(f"custom {error.error}", status_code=418)
        return None

    url = protected(on_error=on_error)
    custom = http.get(url + "/custom")
    assert custom.status_code == 418
    assert custom.text == "custom invalid_request"
    assert_error(http.get(url + "/other"), "invalid_request", 400)
    _, token = emu.mint_for(name="Ada")
    emu.revoke(token)
    assert http.get(url + "/custom/x", headers=bearer(token)).text == "custom invalid_token"
    assert seen == [
        ("/custom", "invalid_request"),
        ("/other", "invalid_request"),
        ("/custom/x", "invalid_token"),
    ]

    def sync_on_error(conn: HTTPConnection, error: LWAError) -> PlainTextResponse:
        return PlainTextResponse(f"sync {error.error}", status_code=418)

    assert http.get(protected(on_error=sync_on_error) + "/x").text == "sync invalid_request"


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


def test_other_scope_types_never_reach_the_app_unverified() -> None:
    """A connection type the middleware cannot verify is refused wherever verification is
    needed (here the default ``protect=("/*",)``), and passes only where none is."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get("path", "-"))

    client = ["amzn1.application-oa2-client.x"]
    everywhere = LWAMiddleware(app, client_ids=client)
    for scope in ({"type": "custom"}, {"type": "webtransport", "path": "/x"}):
        with pytest.raises(RuntimeError, match="cannot verify"):
            asyncio.run(everywhere(scope, None, None))  # type: ignore[arg-type]
    assert seen == []
    admin_only = LWAMiddleware(app, client_ids=client, protect=["/admin/*"])
    with pytest.raises(RuntimeError, match="cannot verify"):
        asyncio.run(admin_only({"type": "custom", "path": "/admin/x"}, None, None))  # type: ignore[arg-type]
    asyncio.run(admin_only({"type": "custom", "path": "/public"}, None, None))  # type: ignore[arg-type]
    asyncio.run(admin_only({"type": "custom"}, None, None))  # type: ignore[arg-type]
    assert seen == ["/public", "-"]


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
