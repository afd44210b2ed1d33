"""The example apps, imported from ``examples/`` and served against a served LWA emulator."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from lwa_middleware import LWASettings
from lwa_middleware.emulator import Emulator, serve

from conftest import bearer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a private module name."""
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokens(emulator: Emulator) -> dict[str, str]:
    user, full = emulator.mint_for(name="Ada", scopes=["profile", "postal_code"])
    return {
        "full": full,
        "profile": emulator.mint(user.user_id, ["profile"]),
        "zip_only": emulator.mint(user.user_id, ["postal_code"]),
    }


def served(name: str, emulator: Emulator) -> Iterator[httpx.Client]:
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("LWA_CLIENT_IDS", "LWA_REGION", "LWA_EXCLUDE", "LWA_OPTIONAL"):
            patch.delenv(variable, raising=False)
        patch.setenv("LWA_API_BASE_URL", emulator.url)
        module = load_example(name)
    with (
        serve(module.app, lifespan="on") as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=10) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def starlette_app(emulator: Emulator) -> Iterator[httpx.Client]:
    yield from served("starlette_app", emulator)


@pytest.fixture(scope="module")
def fastapi_app(emulator: Emulator) -> Iterator[httpx.Client]:
    yield from served("fastapi_app", emulator)


@pytest.mark.parametrize("name", ["starlette_app", "fastapi_app"])
def test_defaults_point_at_the_local_emulator(name: str) -> None:
    module = load_example(name)
    settings = module.settings_from_env({})
    assert isinstance(settings, LWASettings)
    assert settings.api_base_url == "http://127.0.0.1:8765"
    assert settings.client_ids == (Emulator().client_id,)
    region = module.settings_from_env({"LWA_REGION": "EU", "LWA_CLIENT_IDS": "amzn1.x"})
    assert region.api_base_url == "https://api.amazon.co.uk"
    assert region.client_ids == ("amzn1.x",)


def test_starlette_example(starlette_app: httpx.Client, tokens: dict[str, str]) -> None:
    http = starlette_app
    assert http.get("/").status_code == 200
    me = http.get("/me", headers=bearer(tokens["full"]))
    assert me.status_code == 200
    assert me.json()["display_name"] == "Ada"
    assert me.json()["scopes"] == ["postal_code", "profile", "profile:user_id"]
    assert http.get("/me").json()["error"] == "invalid_request"
    profile = http.get("/profile", headers=bearer(tokens["profile"]))
    assert profile.json() == {"name": "Ada", "email": "ada@example.com"}
    # @requires("profile"): Starlette's own 403 when the token lacks the scope.
    assert http.get("/profile", headers=bearer(tokens["zip_only"])).status_code == 403
    assert http.get("/zip", headers=bearer(tokens["full"])).json() == {"postal_code": "98101"}
    denied = http.get("/zip", headers=bearer(tokens["profile"]))
    assert (denied.status_code, denied.json()["error"]) == (401, "insufficient_scope")
    assert http.get("/hello").json() == {"message": "Hello, anonymous!"}
    hello = http.get("/hello", headers=bearer(tokens["full"]))
    assert hello.json() == {"message": "Hello, Ada!"}


def test_fastapi_example(fastapi_app: httpx.Client, tokens: dict[str, str]) -> None:
    http = fastapi_app
    assert http.get("/").json() == {"docs": "/docs"}
    assert http.get("/docs").status_code == 200
    me = http.get("/me", headers=bearer(tokens["full"]))
    assert me.status_code == 200
    assert me.json()["name"] == "Ada"
    assert http.get("/me").json()["error"] == "invalid_request"
    assert http.get("/zip", headers=bearer(tokens["full"])).json() == {"postal_code": "98101"}
    denied = http.get("/zip", headers=bearer(tokens["profile"]))
    assert denied.status_code == 401
    assert denied.json()["error"] == "insufficient_scope"
    email = http.get("/account/email", headers=bearer(tokens["profile"]))
    assert email.json() == {"email": "ada@example.com"}
    no_profile = http.get("/account/email", headers=bearer(tokens["zip_only"]))
    assert (no_profile.status_code, no_profile.json()["error"]) == (401, "insufficient_scope")
    assert http.get("/hello").json() == {"message": "Hello, anonymous!"}
    assert http.get("/hello", headers=bearer(tokens["full"])).json() == {"message": "Hello, Ada!"}


def test_fastapi_example_documents_its_security(fastapi_app: httpx.Client) -> None:
    paths = fastapi_app.get("/openapi.json").json()["paths"]
    assert paths["/me"]["get"]["security"] == [{"LWA": []}]
    assert paths["/zip"]["get"]["security"] == [{"LWA": ["postal_code"]}]
    assert paths["/account/email"]["get"]["security"] == [{"LWA": ["profile"]}]
    assert "security" not in paths["/"]["get"]
