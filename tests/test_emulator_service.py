"""The emulator as LWA's clients use it, through real HTTP on 127.0.0.1: ``/auth/o2/`` paths
in any case (``/auth/O2/token``, as Amazon's SDKs spell it) and LWA's JSON for unknown ones,
the ``client_credentials`` grant (a service's ``Atc|`` token: its answer, its errors,
token-info and profile calling it ``invalid_token``, both middlewares refusing it), refresh
tokens minted for a user without a sign-in (``mint_refresh_token``, ``/_emulator/tokens``),
and the state's layout (parts that never import it back).

Uses conftest's session emulator (``emu``, reset per test, its fake ``clock``).
"""

from __future__ import annotations

import ast
import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.routing import Mount

from lwa_middleware.emulator import Emulator, serve
from lwa_middleware.emulator.oauth import DEFAULT_CLIENT_SECRET, SERVICE_SCOPES

from conftest import FakeClock, Served, ServeProtected, assert_error, bearer

JSON_TYPE = "application/json;charset=UTF-8"
TOKEN = "/auth/o2/token"
MESSAGING = "alexa:skill_messaging"
OTHER_CLIENT = "amzn1.application-oa2-client.other"
EMULATOR = Path(__file__).resolve().parent.parent / "src" / "lwa_middleware" / "emulator"


@pytest.fixture
def api(emu_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu_url, timeout=10) as client:
        yield client


def service_grant(api: httpx.Client, emu: Emulator, **fields: str | None) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "client_id": emu.client_id,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "scope": MESSAGING,
    }
    form.update(fields)
    return api.post(TOKEN, data={k: v for k, v in form.items() if v is not None})


def assert_lwa_json(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == JSON_TYPE
    uuid.UUID(response.headers["x-amzn-RequestId"])
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["error_description"]
    return body


# /auth/o2/ in any case -----------------------------------------------------------------


def test_lwa_paths_are_served_in_any_case(emu: Emulator, api: httpx.Client) -> None:
    user, token = emu.mint_for()
    for path in ("/auth/O2/tokeninfo", "/AUTH/o2/TokenInfo", "/auth/o2/tokeninfo"):
        info = api.get(path, headers=bearer(token))
        assert info.status_code == 200, (path, info.text)
        assert info.json()["user_id"] == user.user_id
    pair = api.post(
        "/auth/O2/create/codepair",
        data={"response_type": "device_code", "client_id": emu.client_id, "scope": "profile"},
    )
    assert pair.status_code == 200, pair.text
    assert pair.json()["verification_uri"].endswith("/activate")
    refresh_token = emu.mint_refresh_token(user.user_id)
    refreshed = api.post(
        "/auth/O2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": emu.client_id,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert emu.validate(refreshed.json()["access_token"]) is not None
    assert_lwa_json(api.post("/AUTH/O2/TOKEN"), 400, "invalid_request")
    assert emu.calls == {"tokeninfo": 3, "profile": 0, "codepair": 1}
    assert emu.token_calls["refresh_token"] == 1
    assert emu.token_calls["other"] == 1  # the bare POST: no form, no grant type


def test_unknown_lwa_paths_answer_lwa_json(emu: Emulator, api: httpx.Client) -> None:
    unknown = ("/auth/o2/nope", "/auth/O2/Tokens", "/auth/o2/", "/auth/O2", "/auth/o2/token/x")
    kelvin = "/auth/o2/to\u212aen"  # the Kelvin sign: str.lower() would make it "k"
    for path in (*unknown, kelvin):
        body = assert_lwa_json(api.get(path), 404, "invalid_request")
        assert set(body) == {"error", "error_description", "request_id"}
    wrong_method = assert_lwa_json(api.get("/auth/O2/token"), 405, "invalid_request")
    assert wrong_method["request_id"]
    assert api.get("/auth/o2/token").headers["allow"] == "POST"
    assert_lwa_json(api.delete("/auth/o2/tokeninfo"), 405, "invalid_request")
    # The rule is LWA's paths: the others keep the framework's answers.
    assert api.get("/nope").headers["content-type"].startswith("text/plain")
    assert api.get("/User/Profile").status_code == 404
    assert api.get("/_EMULATOR/calls").headers["content-type"].startswith("text/plain")
    assert emu.calls == {"tokeninfo": 0, "profile": 0}


def test_lwa_paths_below_a_root_path(emu: Emulator) -> None:
    """Mounted below ``/lwa``, the prefix keeps its case and only LWA's part is folded."""
    site = Starlette(routes=[Mount("/lwa", app=emu.app)])
    _, token = emu.mint_for()
    with serve(site) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/lwa/auth/O2/tokeninfo", headers=bearer(token)).status_code == 200
        assert_lwa_json(http.get("/lwa/auth/O2/nothing"), 404, "invalid_request")
        assert http.get("/LWA/auth/o2/tokeninfo", headers=bearer(token)).status_code == 404


# The client_credentials grant ------------------------------------------------------------


def test_client_credentials_grant(emu: Emulator, api: httpx.Client, clock: FakeClock) -> None:
    answer = service_grant(api, emu, scope=f"{MESSAGING}  alexa::proactive_events {MESSAGING}")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == JSON_TYPE
    assert (answer.headers["cache-control"], answer.headers["pragma"]) == ("no-store", "no-cache")
    body = answer.json()
    assert set(body) == {"access_token", "scope", "token_type", "expires_in"}  # no refresh token
    assert body["access_token"].startswith("Atc|")
    assert (body["scope"], body["token_type"], body["expires_in"]) == (
        f"{MESSAGING} alexa::proactive_events",
        "bearer",
        3600,
    )
    token = body["access_token"]
    grant = emu.service_token(token)
    assert grant is not None
    assert (grant.client_id, grant.app_id) == (emu.client_id, emu.app_id)
    assert grant.scopes == (MESSAGING, "alexa::proactive_events")
    assert token not in repr(grant)
    # No customer: token-info and profile call it invalid_token (the emulator's assumption).
    for path in ("/auth/o2/tokeninfo", "/user/profile"):
        assert_lwa_json(api.get(path, headers=bearer(token)), 400, "invalid_token")
    assert emu.validate(token) is None
    assert emu.token_calls["client_credentials"] == 1
    # With HTTP Basic, for a client registered with a scope of its own.
    emu.register_client(OTHER_CLIENT, client_secret="s3cret", service_scopes=["acme::reports"])
    basic = base64.b64encode(f"{OTHER_CLIENT}:s3cret".encode()).decode()
    other = api.post(
        TOKEN,
        data={"grant_type": "client_credentials", "scope": "acme::reports"},
        headers={"authorization": f"Basic {basic}"},
    )
    assert other.status_code == 200, other.text
    other_grant = emu.service_token(other.json()["access_token"])
    assert other_grant is not None and other_grant.client_id == OTHER_CLIENT
    # Service tokens expire on the emulator's clock, and can be revoked or expired.
    assert emu.expire(other.json()["access_token"])
    assert emu.service_token(other.json()["access_token"]) is None
    assert emu.revoke(token)
    assert emu.service_token(token) is None
    again = service_grant(api, emu).json()["access_token"]
    clock.advance(3600)
    assert emu.service_token(again) is None


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"client_id": None}, 400, "invalid_request"),
        ({"client_id": OTHER_CLIENT}, 401, "invalid_client"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_secret": None}, 400, "invalid_request"),
        ({"scope": None}, 400, "invalid_request"),
        ({"scope": "profile"}, 400, "invalid_scope"),
        ({"scope": f"{MESSAGING} postal_code"}, 400, "invalid_scope"),
        ({"scope": "alexa::unknown"}, 400, "invalid_scope"),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:client_credentials"}, 400, None),
    ],
)
def test_client_credentials_errors(
    emu: Emulator,
    api: httpx.Client,
    fields: dict[str, str | None],
    status: int,
    error: str | None,
) -> None:
    answer = service_grant(api, emu, **fields)
    assert answer.status_code == status, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == (error or "unsupported_grant_type")
    assert "www-authenticate" not in answer.headers  # no Basic: nothing to challenge


def test_client_credentials_refused_to_a_client_without_service_scopes(
    emu: Emulator, api: httpx.Client
) -> None:
    emu.register_client(service_scopes=())
    answer = service_grant(api, emu)
    assert (answer.status_code, answer.json()["error"]) == (400, "unauthorized_client")
    wrong = service_grant(api, emu, client_secret="wrong")  # the client is checked first
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    with pytest.raises(ValueError, match="customer scope"):
        emu.register_client(service_scopes=["profile"])
    refused = api.post("/_emulator/clients", json={"service_scopes": ["bad scope"]})
    assert refused.status_code == 400
    restored = api.post("/_emulator/clients", json={"service_scopes": list(SERVICE_SCOPES)})
    assert restored.json()["service_scopes"] == list(SERVICE_SCOPES)
    assert service_grant(api, emu).status_code == 200


def test_client_credentials_faults(emu: Emulator, api: httpx.Client) -> None:
    emu.fault("500", endpoint="oauth_token", times=1)
    assert_lwa_json(service_grant(api, emu), 500, "ServerError")
    assert service_grant(api, emu).status_code == 200
    assert emu.token_calls["client_credentials"] == 2


def test_service_tokens_are_refused_by_the_middlewares(
    emu: Emulator, api: httpx.Client, served: Served
) -> None:
    """A service's token is not a customer's: refused before LWA is asked (no ``Atza|``),
    and, with that check off, because LWA's token-info calls it ``invalid_token``; again on
    the warm path (the rejection is cached, LWA is not asked twice)."""
    token = service_grant(api, emu).json()["access_token"]
    strict = served()
    for _ in range(2):
        assert_error(httpx.get(strict + "/me", headers=bearer(token)), "invalid_token", 400)
    assert emu.calls["tokeninfo"] == 0
    lenient = served(check_token_prefix=False)
    for _ in range(3):
        assert_error(httpx.get(lenient + "/me", headers=bearer(token)), "invalid_token", 400)
    assert emu.calls["tokeninfo"] == 1
    assert emu.calls["profile"] == (1 if served.profile_with_token_info else 0)


@pytest.mark.anyio
async def test_service_tokens_are_refused_on_websockets(
    emu: Emulator, emu_url: str, protected: ServeProtected
) -> None:
    async with httpx.AsyncClient(base_url=emu_url) as http:
        answer = await http.post(
            TOKEN,
            data={
                "grant_type": "client_credentials",
                "client_id": emu.client_id,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "scope": MESSAGING,
            },
        )
    url = protected(check_token_prefix=False).replace("http://", "ws://") + "/ws"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            url, additional_headers=bearer(answer.json()["access_token"])
        ):
            pass  # pragma: no cover - the handshake is refused
    assert refused.value.response.status_code == 400
    assert b'"invalid_token"' in refused.value.response.body


# Refresh tokens for a user, without a sign-in --------------------------------------------


def test_mint_refresh_token(emu: Emulator, api: httpx.Client) -> None:
    user = emu.add_user(name="Ada")
    emu.register_client(OTHER_CLIENT, app_id="amzn1.application.other")
    refresh_token = emu.mint_refresh_token(user.user_id, "profile postal_code", OTHER_CLIENT)
    assert refresh_token.startswith("Atzr|")
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    public = api.post(TOKEN, data={**form, "client_id": OTHER_CLIENT})
    assert public.status_code == 200, public.text
    assert "refresh_token" not in public.json()  # without the secret: none, as for a sign-in
    info = api.get("/auth/o2/tokeninfo", headers=bearer(public.json()["access_token"])).json()
    assert (info["user_id"], info["aud"], info["app_id"]) == (
        user.user_id,
        OTHER_CLIENT,
        "amzn1.application.other",
    )
    profile = api.get("/user/profile", headers=bearer(public.json()["access_token"])).json()
    assert profile["postal_code"] == user.postal_code
    confidential = api.post(
        TOKEN, data={**form, "client_id": OTHER_CLIENT, "client_secret": DEFAULT_CLIENT_SECRET}
    )
    assert confidential.json()["refresh_token"].startswith("Atzr|")
    # Another client cannot use it; revoked, it is refused.
    assert api.post(TOKEN, data={**form, "client_id": emu.client_id}).status_code == 400
    assert emu.revoke(refresh_token)
    revoked = api.post(TOKEN, data={**form, "client_id": OTHER_CLIENT})
    assert (revoked.status_code, revoked.json()["error"]) == (400, "invalid_grant")
    with pytest.raises(KeyError, match="unknown client"):
        emu.mint_refresh_token(user.user_id, client_id="amzn1.application-oa2-client.nobody")
    with pytest.raises(KeyError, match="unknown user"):
        emu.mint_refresh_token("amzn1.account.NOBODY")
    own = emu.mint_refresh_token(user.user_id)
    emu.reset()
    forgotten = api.post(TOKEN, data={**form, "refresh_token": own, "client_id": emu.client_id})
    assert forgotten.json()["error"] == "invalid_grant"


def test_mint_refresh_token_over_http(emu: Emulator, api: httpx.Client) -> None:
    minted = api.post(
        "/_emulator/tokens", json={"name": "Bo", "scopes": ["profile"], "refresh_token": True}
    )
    assert minted.status_code == 200, minted.text
    body = minted.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "user_id"}
    assert body["expires_in"] == 3600
    valid = emu.validate(body["access_token"])
    assert valid is not None and valid.user.name == "Bo"
    refreshed = api.post(
        TOKEN,
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": emu.client_id,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    # The default stays as it was: an access token only.
    plain = api.post("/_emulator/tokens", json={"user_id": body["user_id"]}).json()
    assert set(plain) == {"access_token", "token_type", "expires_in", "user_id"}
    unknown = api.post("/_emulator/tokens", json={"refresh_token": True, "client_id": OTHER_CLIENT})
    assert unknown.status_code == 404
    assert len(emu.users) == 1  # nobody was added for the refused request
    for bad in ({"refresh_token": "yes"}, {"refresh_token": True, "lifetime": 60}):
        assert api.post("/_emulator/tokens", json=bad).status_code == 400


# The state's layout --------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (``if TYPE_CHECKING:`` and functions
    included), relative imports resolved within the emulator package."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = "lwa_middleware.emulator" + (f".{base}" if base else "")
            found.add(base)
            if base in ("lwa_middleware", "lwa_middleware.emulator"):  # names may be modules
                found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_the_emulator_has_no_import_cycle_and_stands_on_the_core() -> None:
    modules = {
        ("lwa_middleware.emulator" + ("" if p.stem == "__init__" else f".{p.stem}")): p
        for p in EMULATOR.glob("*.py")
    }
    graph = {name: _imports(path) & set(modules) for name, path in modules.items()}
    assert "lwa_middleware.emulator.state" in graph
    state, stack = dict.fromkeys(graph, 0), []  # 0 new, 1 on the stack, 2 done

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in graph[name]:
            assert state[target] != 1, f"import cycle: {' -> '.join([*stack, target])}"
            if state[target] == 0:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in graph:
        if state[name] == 0:
            visit(name)
    # Of the package, the emulator imports only core modules (their flat or core/ paths).
    core = {"errors", "models", "protocol", "grants", "tokens", "settings", "rules"}
    outside = {
        imported
        for path in modules.values()
        for imported in _imports(path)
        if imported.startswith("lwa_middleware.")
        and not imported.startswith("lwa_middleware.emulator")
    }
    allowed = {f"lwa_middleware.{name}" for name in core}
    assert {m for m in outside if m.split(".")[1] != "core" and m not in allowed} == set()
