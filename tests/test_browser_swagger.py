"""Swagger UI's Authorize button signs in through LWA (PKCE) in headless Chromium.

A FastAPI app with :func:`~lwa_middleware.integrations.swagger.add_swagger_login` behind
``LWAMiddleware``, served by uvicorn, against the emulator's consent page: Authorize, approve,
call a protected operation, see 200 with the consenting user's profile.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fastapi_offline
import pytest
from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from browser import chromium
from lwa_middleware import LWAMiddleware
from lwa_middleware.emulator import Emulator, serve
from lwa_middleware.integrations.fastapi import LWAIdentity
from lwa_middleware.integrations.swagger import add_swagger_login

from conftest import FakeClock

STATIC = Path(fastapi_offline.__file__).parent / "static"


def swagger_app(emu: Emulator, emu_url: str, clock: FakeClock) -> LWAMiddleware:
    app = FastAPI(docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_swagger_login(
        app,
        client_id=emu.client_id,
        api_base_url=emu_url,
        authorize_url=f"{emu_url}/ap/oa",
        docs_url="/docs",
        swagger_js_url="/static/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui.css",
    )

    @app.get("/me")
    def me(identity: LWAIdentity) -> dict[str, str | None]:
        return {"user_id": identity.user_id, "name": identity.profile.name}

    return LWAMiddleware(
        app,
        client_ids=[emu.client_id],
        api_base_url=emu_url,
        clock=clock,
        exclude=["/docs", "/docs/*", "/openapi.json", "/auth/token", "/static/*"],
    )


@pytest.fixture
def swagger_url(emu: Emulator, emu_url: str, clock: FakeClock) -> Iterator[str]:
    with serve(swagger_app(emu, emu_url, clock), lifespan="on") as handle:
        yield handle.url


def test_openapi_describes_lwa_code_flow(swagger_url: str, emu_url: str) -> None:
    import httpx

    schema = httpx.get(f"{swagger_url}/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["LWA"]
    flow = scheme["flows"]["authorizationCode"]
    assert flow["authorizationUrl"] == f"{emu_url}/ap/oa"
    assert flow["tokenUrl"] == "/auth/token"
    assert schema["paths"]["/me"]["get"]["security"] == [{"LWA": []}]


def test_token_proxy_refuses_other_grants_and_clients(swagger_url: str) -> None:
    import httpx

    other = httpx.post(f"{swagger_url}/auth/token", data={"grant_type": "refresh_token"})
    assert other.status_code == 400
    assert other.json()["error"] == "unsupported_grant_type"
    foreign = httpx.post(
        f"{swagger_url}/auth/token",
        data={"grant_type": "authorization_code", "client_id": "someone-else", "code": "x"},
    )
    assert foreign.status_code == 401
    assert foreign.json()["error"] == "invalid_client"
    big = httpx.post(f"{swagger_url}/auth/token", content=b"a" * 10_000)
    assert big.status_code == 400


def test_swagger_authorize_then_call_a_protected_operation(
    swagger_url: str, emu: Emulator, tmp_path: Path
) -> None:
    user = emu.add_user(name="Swagger Tester", email="swagger@example.com")
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{swagger_url}/docs")
        page.click("button.authorize")
        with page.expect_popup() as popup_info:
            page.click(".auth-container button.authorize")
        consent = popup_info.value
        consent.wait_for_selector("#approve")
        consent.screenshot(path=str(tmp_path / "consent.png"))
        consent.select_option("#user", user.user_id)
        consent.click("#approve")
        page.get_by_role("button", name="Remove authorization").wait_for(timeout=15_000)
        page.click("button.btn-done")
        page.click("#operations-default-me_me_get .opblock-summary")
        page.click("button.try-out__btn")
        with page.expect_response(lambda response: response.url.endswith("/me")) as answer:
            page.click("button.execute")
        response = answer.value
        assert response.status == 200
        assert response.json() == {"user_id": user.user_id, "name": "Swagger Tester"}
        page.screenshot(path=str(tmp_path / "swagger.png"), full_page=True)
        # Without signing in, the same call is refused by the middleware.
        fresh = browser.new_page()
        fresh.goto(f"{swagger_url}/docs")
        fresh.click("#operations-default-me_me_get .opblock-summary")
        fresh.click("button.try-out__btn")
        with fresh.expect_response(lambda response: response.url.endswith("/me")) as refused:
            fresh.click("button.execute")
        assert refused.value.status == 400
