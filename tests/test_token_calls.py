"""The token calls anonymous requests can cause, through real servers against the emulator:
the Swagger UI token proxy (``POST /auth/token``) and the sign-in's ``/callback``.

* malformed proxy input (a field with surrounding whitespace or a control character, an
  oversized ``redirect_uri``) is ``400 invalid_request``: no call to LWA, no log line above
  INFO (it was a 500 with an ERROR traceback);
* the calls to LWA are bounded as the middleware bounds its own (a slot each, a queue,
  newest first): the excess is refused without calling LWA (proxy: ``ServerError`` with
  ``Retry-After``; ``/callback``: 503 with ``Retry-After``), in both sign-in shells;
* under ``LWAMiddleware(..., login=...)`` (and its WSGI twin) the sign-in's token calls
  share the verifier's circuit breaker and its one rule: the token endpoint failing opens
  it (a new token is then refused without calling LWA); calls refused by the bound never
  count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from lwa_middleware import LWALogin, LWAMiddleware, LWAWSGILogin, LWAWSGIMiddleware
from lwa_middleware.emulator import Emulator, ServerHandle, serve, serve_wsgi
from lwa_middleware.integrations.swagger import add_swagger_login

from conftest import bearer, whoami, wsgi_whoami

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

SECRET = "token-calls-secret-0123456789abcdef"
LATENCY = 0.3
VERIFIER = "v" * 43
SHELLS = ["asgi", "wsgi"]


@pytest.fixture
def lwa(emulator: Emulator) -> Iterator[Emulator]:
    """The module's emulator, counts zeroed; faults and latency cleared afterwards."""
    emulator.reset_counts()
    yield emulator
    emulator.clear_faults()


# The Swagger UI token proxy -----------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy(emulator: Emulator) -> Iterator[str]:
    """``add_swagger_login`` (2 calls at once, 1 waiting) behind ``LWAMiddleware``, uvicorn."""
    app = FastAPI()
    add_swagger_login(
        app,
        client_id=emulator.client_id,
        api_base_url=emulator.url,
        max_concurrent_calls=2,
        max_queued_calls=1,
    )
    protected = LWAMiddleware(
        app,
        client_ids=[emulator.client_id],
        api_base_url=emulator.url,
        exclude=["/docs", "/docs/*", "/openapi.json", "/auth/token"],
    )
    with serve(protected, lifespan="on") as handle:
        yield handle.url


def _form(client_id: str, **fields: str) -> str:
    """A token form (already percent-encoded values may be given as they are)."""
    values = {
        "grant_type": "authorization_code",
        "client_id": quote(client_id, safe=""),
        "code": "bogus-code",
        "redirect_uri": quote("https://app.example/docs/oauth2-redirect", safe=""),
        "code_verifier": VERIFIER,
    } | fields
    return "&".join(f"{name}={value}" for name, value in values.items())


MALFORMED = {
    "leading space in code": {"code": "%20abc"},
    "trailing tab in code": {"code": "abc%09"},
    "control character in code_verifier": {"code_verifier": VERIFIER + "%01"},
    "5,000-character redirect_uri": {
        "redirect_uri": quote("https://app.example/" + "a" * 5000, safe="")
    },
}


@pytest.mark.parametrize("fields", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_proxy_input_is_invalid_request(
    proxy: str, lwa: Emulator, caplog: pytest.LogCaptureFixture, fields: dict[str, str]
) -> None:
    caplog.set_level(logging.DEBUG)
    response = httpx.post(
        proxy + "/auth/token",
        content=_form(lwa.client_id, **fields),
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"
    assert lwa.token_calls["authorization_code"] == 0  # LWA never asked
    loud = [r for r in caplog.records if r.levelno > logging.INFO]
    assert not loud, [r.getMessage() for r in loud]


def test_proxy_calls_are_bounded(proxy: str, lwa: Emulator) -> None:
    """Six concurrent exchanges, LWA answering after 300 ms: two hold the slots, the newest
    waiting one gets the first freed slot, the others are pushed out of the one-place
    queue and answered at once, LWA not called."""
    lwa.latency(LATENCY, "oauth_token")

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=proxy, timeout=10) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/auth/token",
                        content=_form(lwa.client_id, code=f"bogus-{i}"),
                        headers={"content-type": "application/x-www-form-urlencoded"},
                    )
                    for i in range(6)
                )
            )

    responses = asyncio.run(main())
    refused = [r for r in responses if r.status_code == 500]
    answered = [r for r in responses if r.status_code == 400]
    assert len(refused) == 3 and len(answered) == 3, [r.text for r in responses]
    for response in refused:
        assert response.json()["error"] == "ServerError"
        assert response.headers["retry-after"] == "1"
    assert {r.json()["error"] for r in answered} == {"invalid_grant"}  # LWA's verdict
    assert lwa.token_calls["authorization_code"] == 3


# The sign-in's /callback ------------------------------------------------------------------


class Late:
    """An ASGI and WSGI app set once the server's port (so ``redirect_uri``) is known."""

    app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


def site(
    shell: str, emu: Emulator, **options: Any
) -> tuple[ServerHandle, LWALogin | LWAWSGILogin, LWAMiddleware | LWAWSGIMiddleware]:
    """The sign-in mounted at ``/auth`` beside the protected whoami app, with
    ``login=``, on uvicorn or threaded wsgiref: ``(server, sign-in, middleware)``."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    late = Late()
    handle = serve(late, lifespan="off") if shell == "asgi" else serve_wsgi(late.wsgi)
    common: dict[str, Any] = {
        "redirect_uri": handle.url + "/auth/callback",
        "secret_key": SECRET,
        "authorize_url": emu.url + "/ap/oa",
        "api_base_url": emu.url,
    }
    if shell == "asgi":
        login = LWALogin(emu.client_id, **common)
        app = Starlette(routes=[Mount("/auth", app=login), Route("/{path:path}", whoami)])
        middleware = LWAMiddleware(
            app,
            client_ids=[emu.client_id],
            api_base_url=emu.url,
            login=login,
            exclude=["/auth/*"],
            **options,
        )
        late.app = middleware
        return handle, login, middleware
    wsgi_login = LWAWSGILogin(emu.client_id, **common)
    wsgi_middleware = LWAWSGIMiddleware(
        wsgi_whoami, client_ids=[emu.client_id], api_base_url=emu.url, login=wsgi_login, **options
    )
    late.app = DispatcherMiddleware(wsgi_middleware, {"/auth": wsgi_login})
    return handle, wsgi_login, wsgi_middleware


def callback(url: str, code: str) -> httpx.Response:
    """A sign-in started at ``/login`` (its login cookie and state kept), then its
    ``/callback`` with ``code``, as JSON."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as browser:
        start = browser.get("/auth/login")
        assert start.status_code == 302
        state = httpx.URL(start.headers["location"]).params["state"]
        return browser.get(
            "/auth/callback",
            params={"code": code, "state": state},
            headers={"accept": "application/json"},
        )


@pytest.mark.parametrize("shell", SHELLS)
def test_callback_token_calls_are_bounded(shell: str, lwa: Emulator) -> None:
    handle, login, _ = site(shell, lwa)
    try:
        login.client.bound(1, 0)  # one exchange at a time, none waiting
        lwa.latency(LATENCY, "oauth_token")
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda i: callback(handle.url, f"bogus-{i}"), range(3)))
        refused = [a for a in answers if a.status_code == 503]
        assert len(refused) == 2, [(a.status_code, a.text) for a in answers]
        for answer in refused:
            assert answer.json()["error"] == "temporarily_unavailable"
            assert answer.headers["retry-after"] == "1"
            assert "_login=;" in answer.headers["set-cookie"]  # the login cookie cleared
        assert [a.json()["error"] for a in answers if a.status_code != 503] == ["invalid_grant"]
        assert lwa.token_calls["authorization_code"] == 1
    finally:
        handle.stop()


@pytest.mark.parametrize("shell", SHELLS)
def test_sign_in_token_calls_share_the_breaker(shell: str, lwa: Emulator) -> None:
    """Three token-endpoint failures open the verifier's breaker (``breaker_failures=3``):
    a new bearer token is then refused without calling LWA. Before that, a burst of
    exchanges refused by the bound changed nothing."""
    handle, login, middleware = site(shell, lwa, breaker_failures=3)
    try:
        breaker = middleware.verifier.breaker
        assert breaker is not None and login.client.breaker is breaker
        login.client.bound(1, 0)
        lwa.latency(LATENCY, "oauth_token")
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: callback(handle.url, f"bogus-{i}"), range(4)))
        assert sorted(a.status_code for a in answers) == [400, 503, 503, 503]
        assert breaker.snapshot()["consecutive_failures"] == 0
        assert breaker.snapshot()["state"] == "closed"
        lwa.clear_faults()
        lwa.fault("500", "oauth_token")
        for i in range(3):
            assert callback(handle.url, f"code-{i}").status_code == 502
        assert breaker.state == "open"
        _, token = lwa.mint_for(name="Ada")
        lwa.reset_counts()
        refused = httpx.get(handle.url + "/me", headers=bearer(token), timeout=10)
        assert refused.status_code == 500
        assert refused.headers["retry-after"]
        assert lwa.calls["tokeninfo"] == 0
    finally:
        handle.stop()
