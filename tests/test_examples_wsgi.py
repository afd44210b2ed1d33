"""The WSGI examples against a served LWA emulator: the Flask app (``examples/flask_app.py``)
under a threaded WSGI server, and the Django project (``examples/django_project/``) under
WSGI (``LWAWSGIMiddleware``) and ASGI (``LWAMiddleware``, uvicorn), where a real token
makes the customer Django's ``request.user`` (``LWABackend``, ``LWAUserMiddleware``)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from lwa_middleware import LWASettings
from lwa_middleware.emulator import Emulator, serve, serve_wsgi
from lwa_middleware.emulator.state import DEFAULT_CLIENT_ID

from conftest import bearer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DJANGO_PROJECT = EXAMPLES / "django_project"
LWA_VARIABLES = ("LWA_CLIENT_IDS", "LWA_REGION", "LWA_EXCLUDE", "LWA_OPTIONAL", "LWA_PROTECT")


def load_flask_example() -> ModuleType:
    """Import ``examples/flask_app.py`` under a private module name."""
    spec = importlib.util.spec_from_file_location("_example_flask_app", EXAMPLES / "flask_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_invalid_request(response: httpx.Response) -> None:
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    body = response.json()
    assert set(body) == {"error", "error_description", "request_id"}
    assert body["error"] == "invalid_request"


# Flask ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flask_app(emulator: Emulator) -> Iterator[httpx.Client]:
    with pytest.MonkeyPatch.context() as patch:
        for variable in LWA_VARIABLES:
            patch.delenv(variable, raising=False)
        patch.setenv("LWA_API_BASE_URL", emulator.url)
        module = load_flask_example()
    with (
        serve_wsgi(module.app) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=10) as client,
    ):
        yield client
    module.app.wsgi_app.close()


def test_flask_defaults_point_at_the_local_emulator() -> None:
    module = load_flask_example()
    settings = module.settings_from_env({})
    assert isinstance(settings, LWASettings)
    assert settings.api_base_url == "http://127.0.0.1:8765"
    assert settings.client_ids == (DEFAULT_CLIENT_ID,)
    region = module.settings_from_env({"LWA_REGION": "EU", "LWA_CLIENT_IDS": "amzn1.x"})
    assert region.api_base_url == "https://api.amazon.co.uk"
    assert region.client_ids == ("amzn1.x",)


def test_flask_example(flask_app: httpx.Client, emulator: Emulator) -> None:
    http = flask_app
    user, full = emulator.mint_for(name="Ada", scopes=["profile", "postal_code"])
    profile_only = emulator.mint(user.user_id, ["profile"])
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/health", headers=bearer("Atza|not-checked")).status_code == 200
    me = http.get("/me", headers=bearer(full))
    assert me.status_code == 200
    assert me.json() == {
        "user_id": user.user_id,
        "name": "Ada",
        "email": "ada@example.com",
        "scopes": ["postal_code", "profile", "profile:user_id"],
        "remote_user": user.user_id,
    }
    assert_invalid_request(http.get("/me"))
    assert http.get("/zip", headers=bearer(full)).json() == {"postal_code": "98101"}
    denied = http.get("/zip", headers=bearer(profile_only))
    assert denied.status_code == 401
    assert denied.json()["error"] == "insufficient_scope"
    assert http.get("/hello").json() == {"message": "Hello, anonymous!"}
    assert http.get("/hello", headers=bearer(full)).json() == {"message": "Hello, Ada!"}
    emulator.revoke(profile_only)
    _, revoked = emulator.mint_for(name="Bob")
    emulator.revoke(revoked)
    assert http.get("/hello", headers=bearer(revoked)).json()["error"] == "invalid_token"


def test_flask_test_client_with_the_emulator_fixture(lwa_emulator: Emulator) -> None:
    """The pattern docs/flask.md shows: Flask's test client goes through the middleware."""
    module = load_flask_example()
    app = module.create_app(
        LWASettings(client_ids=(lwa_emulator.client_id,), api_base_url=lwa_emulator.url)
    )
    user, token = lwa_emulator.mint_for(name="Ada")
    client = app.test_client()
    response = client.get("/me", headers=bearer(token))
    assert response.get_json()["user_id"] == user.user_id
    missing = client.get("/me")
    assert missing.status_code == 400
    assert missing.get_json()["error"] == "invalid_request"
    app.wsgi_app.close()


# Django ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_project(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The Django project served twice: ``{"wsgi": url, "asgi": url}``."""
    with pytest.MonkeyPatch.context() as patch:
        for variable in LWA_VARIABLES:
            patch.delenv(variable, raising=False)
        patch.setenv("LWA_API_BASE_URL", emulator.url)
        patch.setenv("LWA_DEMO_DB", str(tmp_path_factory.mktemp("django") / "demo.db"))
        patch.setenv("DJANGO_SETTINGS_MODULE", "lwa_demo.settings")
        patch.syspath_prepend(str(DJANGO_PROJECT))
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        wsgi: Any = importlib.import_module("lwa_demo.wsgi")
        asgi: Any = importlib.import_module("lwa_demo.asgi")
        with (
            serve_wsgi(wsgi.application) as wsgi_server,
            serve(asgi.application, lifespan="off") as asgi_server,
        ):
            yield {"wsgi": wsgi_server.url, "asgi": asgi_server.url}
        wsgi.application.close()


def test_django_settings_default_to_the_local_emulator(django_project: dict[str, str]) -> None:
    settings_module: Any = importlib.import_module("lwa_demo.settings")
    settings = settings_module.lwa_settings({})
    assert settings.api_base_url == "http://127.0.0.1:8765"
    assert settings.client_ids == (DEFAULT_CLIENT_ID,)
    assert settings.exclude == ("/health",)


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_django_request_user_is_the_customer(
    django_project: dict[str, str], emulator: Emulator, server: str
) -> None:
    from django.contrib.auth import get_user_model

    user, token = emulator.mint_for(name=f"Ada {server}", email=f"ada-{server}@example.com")
    with httpx.Client(base_url=django_project[server], trust_env=False, timeout=10) as http:
        for _ in range(2):
            me = http.get("/me", headers=bearer(token))
            assert me.status_code == 200, me.text
            assert me.json() == {
                "username": user.user_id,
                "is_authenticated": True,
                "full_name": f"Ada {server}",
                "user_id": user.user_id,
                "name": f"Ada {server}",
                "email": f"ada-{server}@example.com",
                "scopes": ["profile", "profile:user_id"],
            }
        # No session: nothing keeps the customer signed in without a token.
        assert "sessionid" not in http.cookies
        health = http.get("/health")
        assert health.json() == {"status": "ok", "is_authenticated": False}
        assert_invalid_request(http.get("/me"))
    assert get_user_model().objects.filter(username=user.user_id).count() == 1


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_django_refuses_bad_tokens(
    django_project: dict[str, str], emulator: Emulator, server: str
) -> None:
    _, token = emulator.mint_for(name="Eve")
    emulator.revoke(token)
    with httpx.Client(base_url=django_project[server], trust_env=False, timeout=10) as http:
        response = http.get("/me", headers=bearer(token))
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_token"
        assert http.get("/health", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_django_ignores_a_client_remote_user_header(
    django_project: dict[str, str], emulator: Emulator, server: str
) -> None:
    """Under ASGI, Django 5's RemoteUserMiddleware reads the ``Remote-User`` request header;
    LWAUserMiddleware never does (and removes it)."""
    victim = emulator.add_user(name="Victim")
    mallory, token = emulator.mint_for(name="Mallory")
    spoof = {"Remote-User": victim.user_id}
    with httpx.Client(base_url=django_project[server], trust_env=False, timeout=10) as http:
        me = http.get("/me", headers={**bearer(token), **spoof})
        assert me.json()["username"] == mallory.user_id
        health = http.get("/health", headers=spoof)
        assert health.json() == {"status": "ok", "is_authenticated": False}
