"""The documented recipes for the app's own users, as the docs write them: the FastAPI
``lwa_user`` dependency (docs/quickstart.md) and the Flask-Login ``request_loader``
(docs/flask.md), imported from the pages' blocks and served against the emulator, plus
the dependency's other answers (``optional_lwa_user``, a ``user_optional`` path, no
``user_loader``)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from lwa_middleware import Identity, LWAMiddleware
from lwa_middleware.emulator import Emulator, serve, serve_wsgi
from lwa_middleware.integrations.fastapi import (
    OptionalLWAAppUser,
    add_lwa_exception_handler,
    lwa_user,
)
from test_docs_snippets import PAGES

from conftest import assert_error, bearer


def block(page: str, needle: str) -> str:
    """The code of the block of ``page`` saved as ``app.py`` that contains ``needle``."""
    blocks = next(p.blocks for p in PAGES if p.name == page)
    return next(b.code for b in blocks if b.file == "app.py" and needle in b.code)


def load(code: str, name: str, tmp_path: Path, emulator: Emulator) -> ModuleType:
    """Import ``code`` as module ``name`` with the environment the docs assume."""
    path = tmp_path / f"{name}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LWA_API_BASE_URL", emulator.url)
        patch.setenv("LWA_CLIENT_IDS", emulator.client_id)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fastapi_recipe(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ModuleType]]:
    code = block("quickstart.md", "lwa_user")
    module = load(code, "_docs_fastapi_users", tmp_path_factory.mktemp("fastapi"), emulator)
    with serve(module.app, lifespan="on") as server:
        yield server.url, module


def test_the_fastapi_recipe(fastapi_recipe: tuple[str, ModuleType], emulator: Emulator) -> None:
    url, module = fastapi_recipe
    ada, token = emulator.mint_for(name="Ada")
    bob, other = emulator.mint_for(name="Bob")
    with httpx.Client(base_url=url, timeout=10) as http:
        first = http.get("/account", headers=bearer(token)).json()
        assert first["name"] == "Ada"
        assert http.get("/account", headers=bearer(token)).json() == first  # found again
        assert http.get("/account", headers=bearer(other)).json()["id"] == first["id"] + 1
        assert_error(http.get("/account"), "invalid_request", 400)
        module.USERS[bob.user_id].active = False  # the loader answers None from now on
    middleware = _middleware(module.app)
    middleware.forget_user(bob.user_id)  # else: within user_cache_ttl
    with httpx.Client(base_url=url, timeout=10) as http:
        refused = http.get("/account", headers=bearer(other))
        body = assert_error(refused, "access_denied", 403, challenge=False)
        assert "no account" in body["error_description"]
    assert ada.user_id in module.USERS


def _middleware(app: FastAPI) -> Any:
    """The ``LWAMiddleware`` instance in a built Starlette middleware stack."""
    layer: Any = app.middleware_stack
    while layer is not None and not isinstance(layer, LWAMiddleware):
        layer = getattr(layer, "app", None)
    assert layer is not None
    return layer


@pytest.fixture(scope="module")
def dependency_site(emulator: Emulator) -> Iterator[str]:
    """``lwa_user`` and ``optional_lwa_user`` on a ``user_optional`` path, and on an app
    whose middleware has no ``user_loader``."""
    members = {"Ada"}

    def load_user(identity: Identity) -> dict[str, Any] | None:
        name = identity.profile.name
        return {"name": name} if name in members else None

    app = FastAPI()
    add_lwa_exception_handler(app)

    @app.get("/link/required")
    def required(user: Annotated[dict[str, Any], Depends(lwa_user)]) -> dict[str, Any]:
        return user

    @app.get("/link/optional")
    def optional(user: OptionalLWAAppUser) -> dict[str, Any]:
        return {"user": user}

    common: dict[str, Any] = {"client_ids": [emulator.client_id], "api_base_url": emulator.url}
    with_loader = LWAMiddleware(
        app, user_loader=load_user, user_optional=["/link/*"], optional=["/link/*"], **common
    )
    without = LWAMiddleware(app, **common)
    with serve(with_loader, lifespan="on") as one, serve(without, lifespan="on") as other:
        yield one.url + " " + other.url


def test_the_dependency(dependency_site: str, emulator: Emulator) -> None:
    url, no_loader = dependency_site.split()
    _, ada = emulator.mint_for(name="Ada")
    _, eve = emulator.mint_for(name="Eve")
    with httpx.Client(timeout=10) as http:
        assert http.get(url + "/link/required", headers=bearer(ada)).json() == {"name": "Ada"}
        assert http.get(url + "/link/optional", headers=bearer(ada)).json() == {
            "user": {"name": "Ada"}
        }
        # a customer without an account on a user_optional path
        assert http.get(url + "/link/optional", headers=bearer(eve)).json() == {"user": None}
        body = assert_error(
            http.get(url + "/link/required", headers=bearer(eve)),
            "access_denied",
            403,
            challenge=False,
        )
        assert "no account" in body["error_description"]
        # anonymous (an optional path without a token)
        assert http.get(url + "/link/optional").json() == {"user": None}
        missing = http.get(url + "/link/required")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="lwa"'
    # no user_loader on the middleware: a bug of the app's, answered 500 (never a user)
    with httpx.Client(timeout=10) as http:
        broken = http.get(no_loader + "/link/required", headers=bearer(ada))
        assert broken.status_code == 500


@pytest.fixture(scope="module")
def flask_recipe(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ModuleType]]:
    from flask_login import current_user

    code = block("flask.md", "flask_login")
    module = load(code, "_docs_flask_login", tmp_path_factory.mktemp("flask"), emulator)

    @module.app.get("/health")  # type: ignore[untyped-decorator]
    def health() -> dict[str, bool]:  # excluded in the recipe: no token verified
        return {"anonymous": bool(current_user.is_anonymous)}

    with serve_wsgi(module.app) as server:
        yield server.url, module
    module.app.wsgi_app.close()


def test_the_flask_login_recipe(flask_recipe: tuple[str, ModuleType], emulator: Emulator) -> None:
    url, module = flask_recipe
    ada, token = emulator.mint_for(name="Ada")
    with httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(2):
            account = http.get("/account", headers=bearer(token))
            assert account.json() == {"id": ada.user_id, "name": "Ada"}
            assert "set-cookie" not in account.headers  # no session is written
        assert module.USERS[ada.user_id].name == "Ada"
        assert_error(http.get("/account"), "invalid_request", 400)
        # an excluded path: nobody is signed in, whatever the headers say
        health = http.get("/health", headers={"Remote-User": ada.user_id})
        assert health.json() == {"anonymous": True}
