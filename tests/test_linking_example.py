"""``examples/linking_app.py``: an existing local account linked to the Amazon customer who
signs in, through uvicorn against the emulator, walked as a browser walks it."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from lwa_middleware import LWASettings
from lwa_middleware.emulator import Emulator, ServerHandle, serve

from conftest import LateASGI

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "linking_app.py"
SECRET = "linking-example-secret-0123456789"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_example_linking_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("LWA_API_BASE_URL", raising=False)
        patch.delenv("LWA_CLIENT_IDS", raising=False)
        spec.loader.exec_module(module)  # its module-level app: the emulator's defaults
    return module


@pytest.fixture(scope="module")
def site(emulator: Emulator) -> Iterator[tuple[str, Any]]:
    module = load()
    accounts = module.Accounts()
    accounts.add("alice", "alice-password")
    accounts.add("bob", "bob-password")
    late = LateASGI()
    handle: ServerHandle = serve(late, lifespan="off")
    settings = LWASettings(client_ids=[emulator.client_id], api_base_url=emulator.url)
    late.app = module.create_app(
        settings, base_url=handle.url, secret_key=SECRET, accounts=accounts
    )
    try:
        yield handle.url, accounts
    finally:
        handle.stop()


def browser(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, follow_redirects=False, timeout=10)


def local_sign_in(client: httpx.Client, username: str, password: str) -> None:
    answer = client.post("/local/login", data={"username": username, "password": password})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/", "the password was refused"


def amazon_sign_in(client: httpx.Client, emulator: Emulator, user_id: str) -> httpx.Response:
    """``/auth/login?next=/account/link`` through the emulator's consent: the callback."""
    start = client.get("/auth/login", params={"next": "/account/link"})
    assert start.status_code == 302, start.text
    params = dict(httpx.URL(start.headers["location"]).params)
    keys = ("client_id", "redirect_uri", "scope", "state", "code_challenge")
    body = {key: params[key] for key in keys}
    body |= {"code_challenge_method": "S256", "user_id": user_id}
    consent = httpx.post(emulator.url + "/_emulator/authorize", json=body, timeout=10)
    assert consent.status_code == 200, consent.text
    return client.get(consent.json()["redirect"])


def test_linking_by_user_id_from_a_local_session(site: tuple[str, Any], emulator: Emulator) -> None:
    url, accounts = site
    ada = emulator.add_user(name="Ada <b>Lovelace</b>", email="alice@example.com")
    with closing(browser(url)) as alice:
        local_sign_in(alice, "alice", "alice-password")
        callback = amazon_sign_in(alice, emulator, ada.user_id)
        # no account is linked yet, but /account/link takes the customer (user_optional)
        assert callback.status_code == 302, callback.text
        assert callback.headers["location"] == "/account/link"
        refused = alice.get("/account")
        assert refused.status_code == 403
        assert refused.json()["error"] == "access_denied"
        confirm = alice.get("/account/link")
        assert confirm.status_code == 200
        assert "<b>alice</b>" in confirm.text
        assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in confirm.text  # escaped
        # the POST must come from this site: the middleware's cross-site check
        forged = alice.post("/account/link", headers={"origin": "https://evil.example"})
        assert forged.status_code == 403
        assert accounts.by_name["alice"].amazon_user_id is None
        linked = alice.post("/account/link", headers={"origin": url})
        assert linked.status_code == 303, linked.text
        assert alice.get("/account").json() == {
            "username": "alice",
            "amazon_user_id": ada.user_id,
        }
    # the link is by user id: another Amazon account with alice's email gets nothing
    twin = emulator.add_user(name="Eve", email="alice@example.com")
    with closing(browser(url)) as eve:
        assert amazon_sign_in(eve, emulator, twin.user_id).status_code == 302
        assert eve.get("/account").status_code == 403
        assert eve.get("/account/link").status_code == 401  # no local session: no link
        # signed in as bob, Eve's Amazon account cannot take alice's link either ...
        local_sign_in(eve, "bob", "bob-password")
        assert eve.post("/account/link", headers={"origin": url}).status_code == 303
        assert accounts.by_name["bob"].amazon_user_id == twin.user_id
        assert accounts.by_name["alice"].amazon_user_id == ada.user_id
    # ... and a linked account is never moved: Ada's Amazon account, signed in as bob
    with closing(browser(url)) as mallory:
        local_sign_in(mallory, "bob", "bob-password")
        amazon_sign_in(mallory, emulator, ada.user_id)
        moved = mallory.post("/account/link", headers={"origin": url})
        assert moved.status_code == 409
        assert accounts.by_name["alice"].amazon_user_id == ada.user_id


def test_the_example_builds_from_the_environment() -> None:
    module = load()
    assert module.app.title == "Linking accounts"
    assert module.Accounts().check("alice", "x") is None
