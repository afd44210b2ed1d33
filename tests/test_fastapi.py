"""The FastAPI helpers, through a FastAPI app behind LWAMiddleware served by uvicorn.

The app verifies tokens with a served LWA emulator; every request is real HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Security

from lwa_middleware import ConfigurationError, Identity, LWAMiddleware
from lwa_middleware.emulator import Emulator, serve
from lwa_middleware.integrations.fastapi import (
    LWABearer,
    LWAIdentity,
    LWAScopes,
    OptionalLWAIdentity,
    add_lwa_exception_handler,
    lwa_identity_with_scopes,
    lwa_scheme,
    require_lwa_scopes,
)

from conftest import bearer

JSON = "application/json;charset=UTF-8"


def build_app(api_base_url: str, client_id: str) -> FastAPI:
    """The app under test: one route per helper, plus a mounted app without the handler."""
    app = FastAPI()
    app.add_middleware(
        LWAMiddleware,
        client_ids=[client_id],
        api_base_url=api_base_url,
        exclude=["/openapi.json", "/open", "/unprotected"],
        optional=["/hello"],
    )
    add_lwa_exception_handler(app)

    @app.get("/me")
    def me(identity: LWAIdentity) -> dict[str, Any]:
        return {"user_id": identity.user_id, "name": identity.profile.name}

    @app.get("/zip")
    def zip_code(
        identity: Annotated[Identity, Security(lwa_identity_with_scopes, scopes=["postal_code"])],
    ) -> dict[str, Any]:
        return {"postal_code": identity.profile.postal_code}

    @app.get("/user-id")
    def user_id(
        identity: Annotated[Identity, require_lwa_scopes("profile:user_id")],
    ) -> dict[str, Any]:
        return {"user_id": identity.user_id}

    @app.get("/zip-rfc", dependencies=[require_lwa_scopes("postal_code", error_style="rfc6750")])
    def zip_rfc() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/marked", dependencies=[Security(lwa_scheme)])
    def marked() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/hello")
    def hello(identity: OptionalLWAIdentity) -> dict[str, Any]:
        return {"name": None if identity is None else identity.display_name}

    @app.get("/unprotected")
    def unprotected(identity: LWAIdentity) -> dict[str, Any]:
        return {"user_id": identity.user_id}

    @app.get("/open")
    def open_route() -> dict[str, Any]:
        return {"ok": True}

    plain = FastAPI()  # no add_lwa_exception_handler: FastAPI's own {"detail": ...} body

    @plain.get("/zip")
    def plain_zip(
        identity: Annotated[Identity, Security(LWAScopes(), scopes=["postal_code"])],
    ) -> dict[str, Any]:
        return {"postal_code": identity.profile.postal_code}

    app.mount("/plain", plain)
    return app


@pytest.fixture(scope="module")
def http(emulator: Emulator) -> Iterator[httpx.Client]:
    app = build_app(emulator.url, emulator.client_id)
    with (
        serve(app, lifespan="on") as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=10) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def tokens(emulator: Emulator) -> dict[str, str]:
    user, full = emulator.mint_for(name="Ada", scopes=["profile", "postal_code"])
    return {
        "full": full,
        "profile": emulator.mint(user.user_id, ["profile"]),
        "user_id": emulator.mint(user.user_id, ["profile:user_id"]),
    }


def test_identity_dependency(http: httpx.Client, tokens: dict[str, str]) -> None:
    response = http.get("/me", headers=bearer(tokens["full"]))
    assert response.status_code == 200
    assert response.json()["name"] == "Ada"
    assert response.json()["user_id"].startswith("amzn1.account.")


def test_security_scopes_granted(http: httpx.Client, tokens: dict[str, str]) -> None:
    response = http.get("/zip", headers=bearer(tokens["full"]))
    assert response.status_code == 200
    assert response.json() == {"postal_code": "98101"}


def test_security_scopes_missing_is_lwa_insufficient_scope(
    http: httpx.Client, tokens: dict[str, str]
) -> None:
    response = http.get("/zip", headers={**bearer(tokens["profile"]), "X-Request-ID": "req-123"})
    assert response.status_code == 401
    assert response.headers["content-type"] == JSON
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["www-authenticate"] == (
        'Bearer realm="lwa", error="insufficient_scope", scope="postal_code"'
    )
    body = response.json()
    assert body["error"] == "insufficient_scope"
    assert "postal_code" in body["error_description"]
    assert body["request_id"] == "req-123"
    assert tokens["profile"] not in response.text


def test_rfc6750_style_gives_403(http: httpx.Client, tokens: dict[str, str]) -> None:
    response = http.get("/zip-rfc", headers=bearer(tokens["profile"]))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert http.get("/zip-rfc", headers=bearer(tokens["full"])).status_code == 200


def test_profile_satisfies_profile_user_id(http: httpx.Client, tokens: dict[str, str]) -> None:
    assert http.get("/user-id", headers=bearer(tokens["profile"])).status_code == 200
    assert http.get("/user-id", headers=bearer(tokens["user_id"])).status_code == 200


def test_without_handler_fastapi_wraps_the_lwa_body(
    http: httpx.Client, tokens: dict[str, str]
) -> None:
    response = http.get("/plain/zip", headers=bearer(tokens["profile"]))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="lwa"')
    assert response.json()["detail"]["error"] == "insufficient_scope"
    assert http.get("/plain/zip", headers=bearer(tokens["full"])).json() == {"postal_code": "98101"}


def test_optional_identity(http: httpx.Client, tokens: dict[str, str]) -> None:
    assert http.get("/hello").json() == {"name": None}
    assert http.get("/hello", headers=bearer(tokens["full"])).json() == {"name": "Ada"}


def test_identity_required_on_route_the_middleware_skips(
    http: httpx.Client, tokens: dict[str, str]
) -> None:
    # Excluded from the middleware, so even a good token is never verified: 401 challenge.
    response = http.get("/unprotected", headers=bearer(tokens["full"]))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="lwa"'
    assert response.json()["error"] == "invalid_request"


def test_middleware_still_answers_first(http: httpx.Client) -> None:
    response = http.get("/me")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert http.get("/marked").status_code == 400


def test_openapi_security_scheme(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["LWA"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    paths = document["paths"]
    assert paths["/me"]["get"]["security"] == [{"LWA": []}]
    assert paths["/zip"]["get"]["security"] == [{"LWA": ["postal_code"]}]
    assert paths["/zip-rfc"]["get"]["security"] == [{"LWA": ["postal_code"]}]
    assert paths["/marked"]["get"]["security"] == [{"LWA": []}]
    assert paths["/hello"]["get"]["security"] == [{"LWA": []}]
    assert "security" not in paths["/open"]["get"]


def test_unknown_scope_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="profle"):
        require_lwa_scopes("profle")
    with pytest.raises(ConfigurationError):
        LWAScopes(error_style="oauth")  # type: ignore[arg-type]


def test_scheme_repr_and_defaults() -> None:
    scheme = LWABearer(scheme_name="Amazon")
    assert scheme.scheme_name == "Amazon"
    assert scheme.auto_error is False
    assert "Amazon" in repr(scheme)
