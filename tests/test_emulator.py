"""Tests of the Login with Amazon emulator, through real HTTP on 127.0.0.1.

One emulator (with a fake clock) is served for the module and reset before
each test; httpx talks to it. Also covers ``serve``/``serve_wsgi`` and the
``lwa_emulator`` pytest fixture.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import Receive, Scope, Send

from lwa_middleware.emulator import (
    EmulatedConnectionReset,
    Emulator,
    EmulatorUser,
    FaultKind,
    ServerStartError,
    serve,
    serve_wsgi,
)

TOKENINFO = "/auth/o2/tokeninfo"
PROFILE = "/user/profile"
ENDPOINTS = [TOKENINFO, PROFILE]
JSON_TYPE = "application/json;charset=UTF-8"
START = 1_700_000_000.0
PLACEMENTS = ["x-amz-access-token", "bearer", "query"]


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(scope="module")
def served(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator(clock=clock) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _fresh_state(served: Emulator, clock: FakeClock) -> None:
    served.reset()
    served.hang_seconds = 30.0
    clock.now = START


@pytest.fixture
def emu(served: Emulator) -> Emulator:
    return served


@pytest.fixture(scope="module")
def client(served: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=5.0) as http:
        yield http


def placed(token: str, placement: str) -> dict[str, Any]:
    """Return httpx request kwargs carrying the token in one place."""
    if placement == "x-amz-access-token":
        return {"headers": {"x-amz-access-token": token}}
    if placement == "bearer":
        return {"headers": {"Authorization": f"Bearer {token}"}}
    return {"params": {"access_token": token}}


def assert_lwa_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """Check a documented LWA error response and return its body."""
    assert response.status_code == status
    assert response.headers["content-type"] == JSON_TYPE
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "error_description", "request_id"}
    assert body["error"] == error
    assert body["error_description"]
    assert body["request_id"] == response.headers["x-amzn-RequestId"]
    assert uuid.UUID(body["request_id"]).version == 4
    return body


# Token and user shapes --------------------------------------------------------


def test_tokens_and_user_ids_look_like_amazons(emu: Emulator) -> None:
    user, token = emu.mint_for()
    other = emu.mint(user.user_id)
    assert re.fullmatch(r"amzn1\.account\.[A-Z0-9]{28}", user.user_id)
    assert re.fullmatch(r"Atza\|[A-Za-z0-9_-]+", token)
    assert 350 <= len(token) <= 2048
    assert token != other


def test_add_user_defaults_and_explicit_id(emu: Emulator) -> None:
    user = emu.add_user()
    assert user == EmulatorUser(user.user_id, "Ada Lovelace", "ada@example.com", "98101")
    named = emu.add_user("Grace", "grace@example.com", "10001", user_id="amzn1.account.GRACE")
    assert named.user_id == "amzn1.account.GRACE"
    assert emu.get_user(named.user_id) == named


def test_mint_unknown_user_raises(emu: Emulator) -> None:
    with pytest.raises(KeyError):
        emu.mint("amzn1.account.NOBODY")


# token-info -------------------------------------------------------------------


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_tokeninfo_success(emu: Emulator, client: httpx.Client, placement: str) -> None:
    user, token = emu.mint_for(scopes=("profile",))
    response = client.get(TOKENINFO, **placed(token, placement))
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON_TYPE
    assert uuid.UUID(response.headers["x-amzn-RequestId"]).version == 4
    assert response.json() == {
        "iss": "https://www.amazon.com",
        "user_id": user.user_id,
        "aud": "amzn1.application-oa2-client.emulator",
        "app_id": "amzn1.application.emulator",
        "exp": 3600,
        "iat": int(START),
    }


def test_tokeninfo_reports_the_client_the_token_was_issued_to(
    emu: Emulator, client: httpx.Client
) -> None:
    _, token = emu.mint_for(client_id="amzn1.application-oa2-client.other", app_id="app.other")
    body = client.get(TOKENINFO, params={"access_token": token}).json()
    assert body["aud"] == "amzn1.application-oa2-client.other"
    assert body["app_id"] == "app.other"


def test_query_token_with_percent_encoded_pipe(emu: Emulator, client: httpx.Client) -> None:
    user, token = emu.mint_for()
    encoded = token.replace("|", "%7C")
    response = client.get(f"{TOKENINFO}?access_token={encoded}")
    assert response.status_code == 200
    assert response.json()["user_id"] == user.user_id


# profile ----------------------------------------------------------------------

SCOPE_CASES: list[tuple[tuple[str, ...], set[str]]] = [
    (("profile",), {"user_id", "name", "email"}),
    (("profile:user_id",), {"user_id"}),
    (("postal_code",), {"user_id", "postal_code"}),
    (("profile", "postal_code"), {"user_id", "name", "email", "postal_code"}),
    (("profile:user_id", "postal_code"), {"user_id", "postal_code"}),
]


@pytest.mark.parametrize(("scopes", "fields"), SCOPE_CASES)
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_profile_fields_follow_scopes(
    emu: Emulator,
    client: httpx.Client,
    scopes: tuple[str, ...],
    fields: set[str],
    placement: str,
) -> None:
    user, token = emu.mint_for(name="Ada", email="ada@x.test", postal_code="98109", scopes=scopes)
    response = client.get(PROFILE, **placed(token, placement))
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON_TYPE
    assert uuid.UUID(response.headers["x-amzn-RequestId"]).version == 4
    everything = {
        "user_id": user.user_id,
        "name": "Ada",
        "email": "ada@x.test",
        "postal_code": "98109",
    }
    assert response.json() == {key: everything[key] for key in fields}


def test_scopes_given_as_a_string_are_split(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for(scopes="profile postal_code")
    body = client.get(PROFILE, params={"access_token": token}).json()
    assert set(body) == {"user_id", "name", "email", "postal_code"}


def test_profile_without_profile_scopes_is_insufficient_scope(
    emu: Emulator, client: httpx.Client
) -> None:
    _, token = emu.mint_for(scopes=("alexa::ask:skills:readwrite",))
    assert_lwa_error(client.get(PROFILE, **placed(token, "bearer")), 401, "insufficient_scope")
    assert client.get(TOKENINFO, **placed(token, "bearer")).status_code == 200


# Documented errors ------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["nothing", "empty-bearer", "basic-auth"],
)
def test_missing_token_is_invalid_request(
    client: httpx.Client, path: str, headers: dict[str, str]
) -> None:
    body = assert_lwa_error(client.get(path, headers=headers), 400, "invalid_request")
    assert "missing a required parameter : access_token" in body["error_description"]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "places",
    [("x-amz-access-token", "query"), ("bearer", "query"), ("bearer", "x-amz-access-token")],
)
def test_token_in_two_places_is_invalid_request(
    emu: Emulator, client: httpx.Client, path: str, places: tuple[str, str]
) -> None:
    _, token = emu.mint_for()
    kwargs: dict[str, Any] = {"headers": {}, "params": {}}
    for place in places:
        for key, value in placed(token, place).items():
            kwargs[key].update(value)
    assert_lwa_error(client.get(path, **kwargs), 400, "invalid_request")


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("kind", ["unknown", "malformed", "tampered"])
def test_bad_tokens_are_invalid_token(
    emu: Emulator, client: httpx.Client, path: str, kind: str
) -> None:
    _, good = emu.mint_for()
    token = {
        "unknown": "Atza|" + "A" * 400,
        "malformed": "not-an-lwa-token",
        "tampered": good[:-1] + ("x" if good[-1] != "x" else "y"),
    }[kind]
    body = assert_lwa_error(client.get(path, **placed(token, "bearer")), 400, "invalid_token")
    assert body["error_description"] == (
        "The access token provided is expired, revoked, malformed, or invalid for other reasons."
    )


def test_expiry_follows_the_clock(emu: Emulator, client: httpx.Client, clock: FakeClock) -> None:
    _, token = emu.mint_for(scopes=("profile",), lifetime=3600)
    clock.advance(1000)
    body = client.get(TOKENINFO, params={"access_token": token}).json()
    assert body["exp"] == 2600
    assert body["iat"] == int(START)
    clock.advance(2599.5)
    assert client.get(TOKENINFO, params={"access_token": token}).json()["exp"] == 1
    clock.advance(0.5)
    for path in ENDPOINTS:
        assert_lwa_error(client.get(path, params={"access_token": token}), 400, "invalid_token")


def test_zero_lifetime_token_is_already_expired(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for(lifetime=0)
    assert_lwa_error(client.get(TOKENINFO, **placed(token, "bearer")), 400, "invalid_token")


def test_revoked_token_is_invalid(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    _, other = emu.mint_for()
    assert client.get(PROFILE, **placed(token, "bearer")).status_code == 200
    assert emu.revoke(token) is True
    assert emu.revoke(token) is False
    for path in ENDPOINTS:
        assert_lwa_error(client.get(path, **placed(token, "bearer")), 400, "invalid_token")
    assert client.get(PROFILE, **placed(other, "bearer")).status_code == 200


def test_request_ids_are_fresh_uuid4s(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    ids = {client.get(PROFILE, **placed(token, "bearer")).headers["x-amzn-RequestId"]}
    ids.add(client.get(PROFILE).headers["x-amzn-RequestId"])
    ids.add(client.get(TOKENINFO).headers["x-amzn-RequestId"])
    assert len(ids) == 3
    assert all(uuid.UUID(value).version == 4 for value in ids)


# Faults -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_fault_500_is_documented_server_error(
    emu: Emulator, client: httpx.Client, path: str
) -> None:
    _, token = emu.mint_for()
    emu.fault("500")
    assert_lwa_error(client.get(path, **placed(token, "bearer")), 500, "ServerError")


def test_fault_503(emu: Emulator, client: httpx.Client) -> None:
    emu.fault("503")
    response = client.get(TOKENINFO)
    assert response.status_code == 503
    assert response.json()["error"] == "ServiceUnavailable"
    assert response.json()["request_id"] == response.headers["x-amzn-RequestId"]


def test_fault_429_has_retry_after(emu: Emulator, client: httpx.Client) -> None:
    emu.fault(FaultKind.THROTTLED)
    response = client.get(PROFILE)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "TooManyRequests"


def test_fault_non_json(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    emu.fault("non_json")
    response = client.get(TOKENINFO, **placed(token, "query"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<html>oops</html>"


def test_fault_missing_fields(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    emu.fault("missing_fields", endpoint="profile")
    response = client.get(PROFILE, **placed(token, "query"))
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON_TYPE
    assert response.json() == {}


def test_fault_reset_drops_the_connection(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    emu.fault("reset", times=1)
    with pytest.raises(httpx.TransportError):
        client.get(PROFILE, **placed(token, "bearer"))
    assert client.get(PROFILE, **placed(token, "bearer")).status_code == 200


def test_fault_reset_in_process_raises() -> None:
    emulator = Emulator()
    _, token = emulator.mint_for()
    emulator.fault("reset", times=1)
    headers = {"x-amz-access-token": token}

    async def scenario() -> int:
        transport = httpx.ASGITransport(app=emulator.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lwa") as in_process:
            with pytest.raises(EmulatedConnectionReset):
                await in_process.get(PROFILE, headers=headers)
            return (await in_process.get(PROFILE, headers=headers)).status_code

    assert anyio.run(scenario) == 200


def test_fault_hang_outlasts_a_short_client_timeout(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    emu.fault("hang", endpoint="tokeninfo", times=1)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.get(TOKENINFO, **placed(token, "bearer"), timeout=0.3)
    assert time.monotonic() - started < 5
    assert client.get(TOKENINFO, **placed(token, "bearer")).status_code == 200


def test_fault_hang_answers_normally_after_hang_seconds(
    emu: Emulator, client: httpx.Client
) -> None:
    user, token = emu.mint_for()
    emu.hang_seconds = 0.2
    emu.fault("hang", times=1)
    started = time.monotonic()
    response = client.get(PROFILE, **placed(token, "bearer"))
    assert time.monotonic() - started >= 0.2
    assert response.status_code == 200
    assert response.json()["user_id"] == user.user_id


def test_fault_times_and_endpoint(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    emu.fault("500", endpoint="profile", times=2)
    assert client.get(TOKENINFO, **placed(token, "bearer")).status_code == 200
    statuses = [client.get(PROFILE, **placed(token, "bearer")).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]


def test_fault_without_times_lasts_until_cleared(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    emu.fault("503")
    assert [client.get(TOKENINFO, **placed(token, "bearer")).status_code for _ in range(3)] == [
        503,
        503,
        503,
    ]
    emu.clear_faults()
    assert client.get(TOKENINFO, **placed(token, "bearer")).status_code == 200


def test_faults_apply_in_the_order_added(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    emu.fault("503", times=1)
    emu.fault("429", times=1)
    statuses = [client.get(PROFILE, **placed(token, "bearer")).status_code for _ in range(3)]
    assert statuses == [503, 429, 200]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "teapot"},
        {"kind": "500", "endpoint": "token"},
        {"kind": "500", "times": 0},
    ],
)
def test_fault_rejects_bad_arguments(emu: Emulator, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        emu.fault(**kwargs)


# Latency and counters ---------------------------------------------------------


def timed_get(client: httpx.Client, path: str, token: str) -> float:
    started = time.monotonic()
    assert client.get(path, **placed(token, "bearer")).status_code == 200
    return time.monotonic() - started


def test_latency_per_endpoint_and_wildcard(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    emu.latency(0.25, endpoint="profile")
    assert timed_get(client, PROFILE, token) >= 0.25
    assert timed_get(client, TOKENINFO, token) < 0.2
    emu.latency(0.15)
    assert timed_get(client, TOKENINFO, token) >= 0.15
    emu.clear_faults()
    assert timed_get(client, PROFILE, token) < 0.2


def test_latency_rejects_negative(emu: Emulator) -> None:
    with pytest.raises(ValueError):
        emu.latency(-1)


def test_calls_count_every_request_including_errors_and_faults(
    emu: Emulator, client: httpx.Client
) -> None:
    _, token = emu.mint_for()
    assert emu.calls == {"tokeninfo": 0, "profile": 0}
    client.get(TOKENINFO, **placed(token, "bearer"))
    client.get(TOKENINFO)
    client.get(PROFILE, **placed("garbage", "bearer"))
    emu.fault("500", times=1)
    client.get(PROFILE)
    client.get("/_emulator/calls")
    assert emu.calls["tokeninfo"] == 2
    assert emu.calls["profile"] == 2
    emu.reset_counts()
    assert emu.calls == {"tokeninfo": 0, "profile": 0}


def test_reset_forgets_everything(emu: Emulator, client: httpx.Client) -> None:
    user, token = emu.mint_for()
    client.get(TOKENINFO)
    emu.fault("500")
    emu.latency(5)
    emu.reset()
    assert emu.calls == {"tokeninfo": 0, "profile": 0}
    assert emu.get_user(user.user_id) is None
    started = time.monotonic()
    assert_lwa_error(client.get(TOKENINFO, **placed(token, "bearer")), 400, "invalid_token")
    assert time.monotonic() - started < 1  # latency and fault are gone


# Control endpoints ------------------------------------------------------------


def test_control_info(emu: Emulator, client: httpx.Client) -> None:
    assert client.get("/_emulator").json() == {
        "client_id": emu.client_id,
        "app_id": emu.app_id,
    }


def test_control_users(emu: Emulator, client: httpx.Client) -> None:
    body = client.post("/_emulator/users", json={"name": "Grace", "email": "g@x.test"}).json()
    assert body["name"] == "Grace"
    assert body["email"] == "g@x.test"
    assert body["postal_code"] == "98101"
    assert emu.get_user(body["user_id"]) == EmulatorUser(**body)
    fixed = client.post("/_emulator/users", json={"user_id": "amzn1.account.FIXED"}).json()
    assert fixed["user_id"] == "amzn1.account.FIXED"


def test_control_tokens_for_a_new_user(emu: Emulator, client: httpx.Client) -> None:
    response = client.post(
        "/_emulator/tokens",
        json={"name": "Linus", "scopes": ["profile", "postal_code"], "lifetime": 60},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 60
    profile = client.get(PROFILE, **placed(body["access_token"], "bearer")).json()
    assert profile["user_id"] == body["user_id"]
    assert profile["name"] == "Linus"
    assert client.get(TOKENINFO, **placed(body["access_token"], "bearer")).json()["exp"] == 60


def test_control_tokens_for_an_existing_user(emu: Emulator, client: httpx.Client) -> None:
    user = emu.add_user(name="Existing")
    body = client.post(
        "/_emulator/tokens", json={"user_id": user.user_id, "scopes": ["profile:user_id"]}
    ).json()
    assert body["user_id"] == user.user_id
    assert body["expires_in"] == 3600
    profile = client.get(PROFILE, **placed(body["access_token"], "bearer")).json()
    assert profile == {"user_id": user.user_id}
    missing = client.post("/_emulator/tokens", json={"user_id": "amzn1.account.NOPE"})
    assert missing.status_code == 404


def test_control_revoke(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    assert client.post("/_emulator/revoke", json={"token": token}).json() == {"revoked": True}
    assert_lwa_error(client.get(TOKENINFO, **placed(token, "bearer")), 400, "invalid_token")
    assert client.post("/_emulator/revoke", json={}).status_code == 400


def test_control_faults(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    added = client.post(
        "/_emulator/faults", json={"kind": "429", "endpoint": "tokeninfo", "times": 1}
    )
    assert added.json() == {"kind": "429", "endpoint": "tokeninfo", "times": 1}
    assert client.get(TOKENINFO, **placed(token, "bearer")).status_code == 429
    assert client.get(TOKENINFO, **placed(token, "bearer")).status_code == 200
    client.post("/_emulator/faults", json={"kind": "500"})
    assert client.get(PROFILE, **placed(token, "bearer")).status_code == 500
    assert client.delete("/_emulator/faults").status_code == 200
    assert client.get(PROFILE, **placed(token, "bearer")).status_code == 200


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/_emulator/faults", {"kind": "teapot"}),
        ("/_emulator/faults", {"kind": "500", "times": "twice"}),
        ("/_emulator/faults", {}),
        ("/_emulator/latency", {"seconds": -1}),
        ("/_emulator/tokens", {"scopes": "profile", "lifetime": "long"}),
        ("/_emulator/tokens", {"scopes": [1, 2]}),
        ("/_emulator/users", {"name": 42}),
    ],
)
def test_control_rejects_bad_input(
    client: httpx.Client, path: str, payload: dict[str, Any]
) -> None:
    response = client.post(path, json=payload)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_control_rejects_non_json(client: httpx.Client) -> None:
    for content in (b"{not json", b"[1, 2]"):
        response = client.post("/_emulator/faults", content=content)
        assert response.status_code == 400


def test_control_latency_calls_and_reset(emu: Emulator, client: httpx.Client) -> None:
    _, token = emu.mint_for()
    client.post("/_emulator/latency", json={"seconds": 0.2, "endpoint": "profile"})
    assert timed_get(client, PROFILE, token) >= 0.2
    assert client.get("/_emulator/calls").json() == {"tokeninfo": 0, "profile": 1}
    assert client.delete("/_emulator/calls").json() == {"tokeninfo": 0, "profile": 0}
    assert client.post("/_emulator/reset").status_code == 200
    assert_lwa_error(client.get(TOKENINFO, **placed(token, "bearer")), 400, "invalid_token")
    assert emu.calls == {"tokeninfo": 1, "profile": 0}


# The pytest fixture -----------------------------------------------------------


def test_lwa_emulator_fixture_is_fresh_and_live(lwa_emulator: Emulator) -> None:
    assert lwa_emulator.calls == {"tokeninfo": 0, "profile": 0}
    user, token = lwa_emulator.mint_for(scopes=("profile",))
    response = httpx.get(f"{lwa_emulator.url}{TOKENINFO}", params={"access_token": token})
    body = response.json()
    assert body["user_id"] == user.user_id
    assert abs(body["iat"] - time.time()) < 5  # default clock is time.time
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_plugin_import_does_not_import_uvicorn() -> None:
    code = (
        "import sys, lwa_middleware.testing as t\n"
        "assert 'uvicorn' not in sys.modules, 'uvicorn imported'\n"
        "assert 'pytest_asyncio' not in sys.modules, 'pytest_asyncio imported'\n"
        "assert callable(t.lwa_emulator) and callable(t.lwa_emulator_session)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# Emulator serving and the generic servers -------------------------------------


def test_emulator_start_stop_and_url() -> None:
    emulator = Emulator()
    with pytest.raises(RuntimeError):
        _ = emulator.url
    handle = emulator.start()
    try:
        assert emulator.url == f"http://127.0.0.1:{handle.port}"
        with pytest.raises(RuntimeError):
            emulator.start()
    finally:
        emulator.stop()
    assert not handle.running
    emulator.stop()  # idempotent


async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Tiny ASGI app: records lifespan startup, answers HTTP with it."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = "yes"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = scope["state"].get("started", "no").encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def failing_lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "nope"})


def test_serve_any_asgi_app_with_lifespan() -> None:
    with serve(lifespan_app, lifespan="on") as handle:
        assert handle.url == f"http://127.0.0.1:{handle.port}"
        assert handle.port > 0
        assert httpx.get(handle.url).text == "yes"
    assert not handle.running
    with pytest.raises(httpx.TransportError):
        httpx.get(handle.url, timeout=1)


def test_serve_reports_startup_failure() -> None:
    with pytest.raises(ServerStartError):
        serve(failing_lifespan_app, lifespan="on")


def test_serve_without_uvicorn_explains_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ImportError, match=r"pip install 'lwa-middleware\[emulator\]'"):
        serve(lifespan_app)


def wsgi_app_factory(barrier: threading.Barrier) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        barrier.wait()  # both requests must be in flight at once
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    return app


def test_serve_wsgi_is_threaded_and_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    barrier = threading.Barrier(2, timeout=3)
    with serve_wsgi(wsgi_app_factory(barrier)) as handle:
        results: dict[str, str] = {}

        def fetch(path: str) -> None:
            results[path] = httpx.get(handle.url + path, timeout=5).text

        threads = [threading.Thread(target=fetch, args=(p,)) for p in ("/a", "/b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
    assert results == {"/a": "/a", "/b": "/b"}
    assert not handle.running
    assert "GET /" not in capsys.readouterr().err


# The trickle faults -------------------------------------------------------------


@pytest.fixture
def trickling(emu: Emulator) -> Iterator[Emulator]:
    """The emulator, trickling fast (2 ms a byte) for the test; the interval is put back."""
    saved = emu.trickle_interval
    emu.trickle_interval = 0.002
    try:
        yield emu
    finally:
        emu.trickle_interval = saved


def raw_get(url: str, path: str, token: str) -> socket.socket:
    """A connected socket that has sent ``GET path`` with the token, to read by hand."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=5)
    request = f"GET {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\r\n"
    connection.sendall(request.encode())
    return connection


def test_trickle_defaults_and_validation() -> None:
    assert Emulator().trickle_interval == 0.4
    assert Emulator(trickle_interval=0).trickle_interval == 0.0
    for bad in (-1, float("nan"), float("inf"), "fast"):
        with pytest.raises(ValueError):
            Emulator(trickle_interval=bad)  # type: ignore[arg-type]
    emulator = Emulator(trickle_interval=0.1)
    emulator.reset()
    assert emulator.trickle_interval == 0.1, "reset keeps the interval"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_fault_trickle_answers_normally_without_tripping_a_read_timeout(
    trickling: Emulator, client: httpx.Client, path: str
) -> None:
    """httpx's timeout applies per read: the trickled answer takes longer than it, and
    arrives whole (valid token, 200, the usual body)."""
    user, token = trickling.mint_for()
    trickling.fault("trickle", times=1)
    started = time.monotonic()
    response = client.get(path, **placed(token, "bearer"), timeout=0.2)
    took = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["user_id"] == user.user_id
    assert response.headers["content-type"] == JSON_TYPE
    assert response.headers["connection"] == "close"
    uuid.UUID(response.headers["x-amzn-RequestId"])
    assert took > 0.2 + 0.1
    assert client.get(path, **placed(token, "bearer")).status_code == 200, "times=1"


def test_fault_trickle_sends_the_status_line_byte_by_byte(trickling: Emulator) -> None:
    _, token = trickling.mint_for()
    trickling.trickle_interval = 0.02
    trickling.fault("trickle", "tokeninfo", times=1)
    with raw_get(trickling.url, TOKENINFO, token) as connection:
        started = time.monotonic()
        received, reads = b"", 0
        while b"\r\n" not in received:
            chunk = connection.recv(1024)
            assert chunk, "closed before the status line"
            received, reads = received + chunk, reads + 1
        took = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert took >= 15 * 0.02  # 17 bytes, the first sent at once
    assert reads >= 5, "the status line came in pieces"


def test_fault_trickle_keeps_the_endpoints_error_answer(
    trickling: Emulator, client: httpx.Client
) -> None:
    trickling.fault("trickle")
    assert_lwa_error(client.get(TOKENINFO, **placed("garbage", "bearer")), 400, "invalid_token")
    assert_lwa_error(client.get(PROFILE), 400, "invalid_request")


def test_fault_trickle_body_sends_headers_at_once_then_the_body_slowly(
    trickling: Emulator, client: httpx.Client
) -> None:
    user, token = trickling.mint_for()
    trickling.trickle_interval = 0.01
    trickling.fault(FaultKind.TRICKLE_BODY, "profile", times=1)
    started = time.monotonic()
    with client.stream("GET", PROFILE, **placed(token, "bearer"), timeout=0.2) as response:
        headers_after = time.monotonic() - started
        length = int(response.headers["content-length"])
        chunks = list(response.iter_bytes())
    took = time.monotonic() - started
    body = b"".join(chunks)
    assert response.status_code == 200
    assert len(body) == length
    assert httpx.Response(200, content=body).json()["user_id"] == user.user_id
    assert headers_after < (length // 4) * 0.01, "headers before most of the body"
    assert took >= (length - 1) * 0.01
    assert "connection" not in response.headers, "an ordinary keep-alive answer"


def test_fault_trickle_in_process_falls_back_to_trickling_the_body() -> None:
    emulator = Emulator(trickle_interval=0.001)
    user, token = emulator.mint_for()
    emulator.fault("trickle", times=1)

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=emulator.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lwa") as in_process:
            return await in_process.get(TOKENINFO, headers={"x-amz-access-token": token})

    response = anyio.run(scenario)
    assert response.status_code == 200
    assert response.json()["user_id"] == user.user_id
    assert "connection" not in response.headers


@pytest.mark.parametrize("http", ["h11", "httptools"])
@pytest.mark.parametrize("kind", ["trickle", "trickle_body"])
def test_fault_trickle_stops_when_the_client_goes_away(http: str, kind: str) -> None:
    """Under both uvicorn HTTP implementations: the client gives up, the emulator stops
    sending (the server then stops at once, instead of waiting for a 2-minute answer)."""
    pytest.importorskip(http)
    emulator = Emulator(trickle_interval=0.4)
    user, token = emulator.mint_for()
    emulator.fault(kind, times=1)
    handle = serve(emulator.app, http=http)
    try:
        with httpx.Client(base_url=handle.url) as http_client:
            with pytest.raises(httpx.ReadTimeout):
                http_client.get(PROFILE, **placed(token, "bearer"), timeout=0.1)
            ok = http_client.get(PROFILE, **placed(token, "bearer"), timeout=5)
            assert ok.json()["user_id"] == user.user_id
        time.sleep(0.5)  # the emulator notices within one interval
    finally:
        started = time.monotonic()
        handle.stop()
        stopped_in = time.monotonic() - started
    assert stopped_in < 2


def test_control_faults_trickle_interval(emu: Emulator, client: httpx.Client) -> None:
    saved = emu.trickle_interval
    try:
        added = client.post(
            "/_emulator/faults",
            json={"kind": "trickle", "endpoint": "profile", "times": 1, "trickle_interval": 0.001},
        )
        assert added.status_code == 200
        assert added.json() == {
            "kind": "trickle",
            "endpoint": "profile",
            "times": 1,
            "trickle_interval": 0.001,
        }
        assert emu.trickle_interval == 0.001
        for bad in (-1, "slow"):
            refused = client.post(
                "/_emulator/faults", json={"kind": "trickle", "trickle_interval": bad}
            )
            assert refused.status_code == 400
            assert refused.json()["error"] == "bad_request"
        assert emu.trickle_interval == 0.001, "a refused request changes nothing"
        _, token = emu.mint_for()
        response = client.get(PROFILE, **placed(token, "bearer"))
        assert response.status_code == 200
        assert response.headers["connection"] == "close"  # trickled, status line included
    finally:
        emu.trickle_interval = saved
