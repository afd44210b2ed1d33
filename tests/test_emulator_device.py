"""The emulator's code-based linking (Login with Amazon for TVs and other devices), through
real HTTP on 127.0.0.1: ``POST /auth/o2/create/codepair``, the ``/activate`` page, the
device's poll (``grant_type=device_code`` at ``POST /auth/o2/token``), the issued tokens
at ``/auth/o2/tokeninfo`` and ``/user/profile`` and the refresh grant, faults, counters,
settings, the Python facade and the control API.

Uses conftest's session emulator (``emu``, reset per test, device interval 5 s, its fake
``clock``) and ``emu_url``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lwa_middleware.emulator import (
    CodePairError,
    Emulator,
    EmulatorState,
    PairStatus,
    TokenError,
)
from lwa_middleware.emulator.oauth import DEFAULT_CLIENT_SECRET

from conftest import FakeClock, bearer

CODEPAIR = "/auth/o2/create/codepair"
TOKEN = "/auth/o2/token"
TOKENINFO = "/auth/o2/tokeninfo"
PROFILE = "/user/profile"
ACTIVATE = "/activate"
JSON_TYPE = "application/json;charset=UTF-8"
OTHER_CLIENT = "amzn1.application-oa2-client.other-device"
USER_CODE = re.compile(r"[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{6}")


@pytest.fixture
def api(emu_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu_url, timeout=10) as client:
        yield client


def create(api: httpx.Client, emu: Emulator, **fields: str | None) -> httpx.Response:
    form: dict[str, str | None] = {
        "response_type": "device_code",
        "client_id": emu.client_id,
        "scope": "profile",
    }
    form.update(fields)
    return api.post(CODEPAIR, data={k: v for k, v in form.items() if v is not None})


def new_pair(api: httpx.Client, emu: Emulator, scope: str = "profile") -> dict[str, Any]:
    response = create(api, emu, scope=scope)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def poll(api: httpx.Client, pair: dict[str, Any], **fields: str | None) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "device_code",
        "device_code": pair["device_code"],
        "user_code": pair["user_code"],
    }
    form.update(fields)
    return api.post(TOKEN, data={k: v for k, v in form.items() if v is not None})


def assert_error(response: httpx.Response, status: int, error: str) -> str:
    """The documented error answer; returns its description."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == JSON_TYPE
    assert response.headers["cache-control"] == "no-store"
    uuid.UUID(response.headers["x-amzn-RequestId"])
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert body["error_description"]
    description: str = body["error_description"]
    return description


def assert_tokens(response: httpx.Response, *, refresh_token: bool = True) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_TYPE
    assert response.headers["cache-control"] == "no-store"
    uuid.UUID(response.headers["x-amzn-RequestId"])
    body: dict[str, Any] = response.json()
    expected = {"access_token", "token_type", "expires_in"} | (
        {"refresh_token"} if refresh_token else set()
    )
    assert set(body) == expected
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert re.fullmatch(r"Atza\|[A-Za-z0-9_-]{350,}", body["access_token"])
    if refresh_token:
        assert re.fullmatch(r"Atzr\|[A-Za-z0-9_-]{350,}", body["refresh_token"])
    return body


def approve(api: httpx.Client, user_code: str, **fields: Any) -> httpx.Response:
    return api.post("/_emulator/codepair/approve", json={"user_code": user_code, **fields})


def redeem(api: httpx.Client, emu: Emulator, pair: dict[str, Any]) -> dict[str, Any]:
    """Approve (first user) and poll once: the tokens."""
    assert approve(api, pair["user_code"]).status_code == 200
    return assert_tokens(poll(api, pair))


# The code pair -------------------------------------------------------------------------


def test_create_code_pair(emu: Emulator, api: httpx.Client, emu_url: str) -> None:
    response = create(api, emu, scope="profile postal_code")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_TYPE
    assert response.headers["cache-control"] == "no-store"
    uuid.UUID(response.headers["x-amzn-RequestId"])
    pair = response.json()
    assert set(pair) == {"user_code", "device_code", "verification_uri", "expires_in", "interval"}
    assert USER_CODE.fullmatch(pair["user_code"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", pair["device_code"])
    assert pair["verification_uri"] == f"{emu_url}/activate"
    assert (pair["expires_in"], pair["interval"]) == (600, 5)
    info = emu.code_pairs[pair["user_code"]]
    assert info.status is PairStatus.PENDING
    assert (info.client_id, info.scopes, info.user_id) == (
        emu.client_id,
        ("profile", "postal_code"),
        None,
    )
    assert pair["device_code"] not in repr(info)  # the view holds no secret
    second = new_pair(api, emu)
    assert second["user_code"] != pair["user_code"]
    assert second["device_code"] != pair["device_code"]


def test_scope_data_is_accepted_and_kept(emu: Emulator, api: httpx.Client) -> None:
    data = '{"profile": {"essential": true}}'
    pair = create(api, emu, scope_data=data).json()
    assert emu.code_pairs[pair["user_code"]].scope_data == data


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"client_id": None}, 400, "invalid_request"),
        ({"client_id": OTHER_CLIENT}, 400, "invalid_client"),
        ({"response_type": None}, 400, "invalid_request"),
        ({"response_type": "code"}, 400, "unsupported_response_type"),
        ({"scope": None}, 400, "invalid_request"),
        ({"scope": "email"}, 400, "invalid_scope"),
        ({"scope": "profile alexa:all"}, 400, "invalid_scope"),
        ({"scope_data": "{not json"}, 400, "invalid_request"),
        ({"scope_data": "[1, 2]"}, 400, "invalid_request"),
    ],
)
def test_bad_code_pair_requests(
    emu: Emulator, api: httpx.Client, fields: dict[str, str | None], status: int, error: str
) -> None:
    assert_error(create(api, emu, **fields), status, error)
    assert emu.code_pairs == {}


def test_the_code_pair_endpoint_takes_a_form(emu: Emulator, api: httpx.Client) -> None:
    body = {"response_type": "device_code", "client_id": emu.client_id, "scope": "profile"}
    assert_error(api.post(CODEPAIR, json=body), 400, "invalid_request")
    repeated = api.post(
        CODEPAIR,
        content=f"response_type=device_code&client_id={emu.client_id}&scope=profile&scope=profile",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_error(repeated, 400, "invalid_request")


def test_a_registered_client_gets_pairs_and_tokens_for_itself(
    emu: Emulator, api: httpx.Client
) -> None:
    client = emu.register_client(OTHER_CLIENT, app_id="amzn1.application.other")
    pair = create(api, emu, client_id=OTHER_CLIENT).json()
    tokens = redeem(api, emu, pair)
    info = api.get(TOKENINFO, headers=bearer(tokens["access_token"])).json()
    assert (info["aud"], info["app_id"]) == (client.client_id, client.app_id)


# Polling ---------------------------------------------------------------------------------


def test_pending_until_approved_then_tokens(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    user = emu.add_user(name="Ada", email="ada@example.com", postal_code="98101")
    pair = new_pair(api, emu, scope="profile postal_code")
    assert_error(poll(api, pair), 400, "authorization_pending")
    clock.advance(5)
    assert_error(poll(api, pair), 400, "authorization_pending")
    assert emu.code_pairs[pair["user_code"]].polls == 2
    approved = approve(api, pair["user_code"], user_id=user.user_id)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    clock.advance(5)
    tokens = assert_tokens(poll(api, pair))
    info = api.get(TOKENINFO, headers=bearer(tokens["access_token"])).json()
    assert (info["aud"], info["app_id"], info["user_id"]) == (
        emu.client_id,
        emu.app_id,
        user.user_id,
    )
    profile = api.get(PROFILE, headers=bearer(tokens["access_token"])).json()
    assert profile == {
        "user_id": user.user_id,
        "name": "Ada",
        "email": "ada@example.com",
        "postal_code": "98101",
    }
    assert emu.code_pairs[pair["user_code"]].status is PairStatus.REDEEMED


def test_slow_down_when_polled_faster_than_the_interval(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    pair = new_pair(api, emu)
    assert_error(poll(api, pair), 400, "authorization_pending")
    assert "5 seconds" in assert_error(poll(api, pair), 400, "slow_down")
    clock.advance(4)  # 4 s after the previous (too fast) poll: still too fast
    assert_error(poll(api, pair), 400, "slow_down")
    clock.advance(5)
    assert_error(poll(api, pair), 400, "authorization_pending")
    emu.approve_code_pair(pair["user_code"])
    assert_error(poll(api, pair), 400, "slow_down")  # approved, but too fast still
    clock.advance(5)
    assert_tokens(poll(api, pair))


def test_a_pair_keeps_the_interval_it_was_created_with(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    slow = new_pair(api, emu)
    emu.device_interval = 0
    fast = new_pair(api, emu)
    assert (slow["interval"], fast["interval"]) == (5, 0)
    for _ in range(3):  # interval 0: never slow_down
        assert_error(poll(api, fast), 400, "authorization_pending")
    assert_error(poll(api, slow), 400, "authorization_pending")
    assert_error(poll(api, slow), 400, "slow_down")


def test_approve_via_the_activation_page(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user(name="Ada")
    grace = emu.add_user(name="Grace <Hopper>", email="grace@example.com", postal_code="10001")
    pair = new_pair(api, emu, scope="profile:user_id postal_code")
    page = api.get(ACTIVATE, params={"user_code": pair["user_code"]})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["x-frame-options"] == "DENY"
    html = page.text
    assert re.search(
        rf'<input [^>]*id="user_code" name="user_code" value="{pair["user_code"]}"', html
    )
    assert '<select id="user" name="user">' in html
    options = re.findall(r'<option value="([^"]+)">', html)
    assert options == [user.user_id for user in emu.users]
    assert "Grace &lt;Hopper&gt;" in html
    assert re.search(r'<button type="submit" id="approve" name="decision" value="approve">', html)
    assert re.search(r'<button type="submit" id="deny" name="decision" value="deny">', html)
    assert f'action="{ACTIVATE}"' in html
    assert not re.search(r"<(script|link|img|iframe)\b|\bsrc=", html), "no external asset"
    typed = "-".join([pair["user_code"][:3].lower(), pair["user_code"][3:].lower()])  # "abc-def"
    result = api.post(
        ACTIVATE, data={"user_code": typed, "user": grace.user_id, "decision": "approve"}
    )
    assert result.status_code == 200, result.text
    assert re.search(r'<p id="result">approved</p>', result.text)
    tokens = assert_tokens(poll(api, pair))
    profile = api.get(PROFILE, headers=bearer(tokens["access_token"])).json()
    assert profile == {"user_id": grace.user_id, "postal_code": "10001"}


def test_the_activation_page_without_users_offers_a_default_user(
    emu: Emulator, api: httpx.Client
) -> None:
    page = api.get(ACTIVATE)
    assert page.status_code == 200
    [user] = emu.users
    assert f'<option value="{user.user_id}">Ada Lovelace' in page.text
    assert re.search(r'<input [^>]*id="user_code" name="user_code" value=""', page.text)
    escaped = api.get(ACTIVATE, params={"user_code": '"><script>'}).text
    assert "<script>" not in escaped
    assert "&quot;&gt;&lt;script&gt;" in escaped


def test_deny_via_the_activation_page(emu: Emulator, api: httpx.Client) -> None:
    pair = new_pair(api, emu)
    result = api.post(ACTIVATE, data={"user_code": pair["user_code"], "decision": "deny"})
    assert result.status_code == 200
    assert re.search(r'<p id="result">denied</p>', result.text)
    assert "denied" in assert_error(poll(api, pair), 400, "invalid_grant")
    assert emu.code_pairs[pair["user_code"]].status is PairStatus.DENIED


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"user_code": "ZZZZZZ", "decision": "approve"}, "unknown_user_code"),
        ({"user_code": "", "decision": "approve"}, "invalid_request"),
        ({"decision": "deny"}, "invalid_request"),
        ({"user_code": "ZZZZZZ", "decision": "maybe"}, "invalid_request"),
    ],
)
def test_the_activation_page_refuses_bad_answers(
    emu: Emulator, api: httpx.Client, form: dict[str, str], error: str
) -> None:
    user = emu.add_user()
    result = api.post(ACTIVATE, data={"user": user.user_id, **form})
    assert result.status_code == 400
    assert re.search(r'<p id="result" class="error">error</p>', result.text)
    assert f'<code id="error">{error}</code>' in result.text
    assert 'id="error-description"' in result.text


def test_the_activation_page_refuses_an_unknown_user(emu: Emulator, api: httpx.Client) -> None:
    pair = new_pair(api, emu)
    form = {"user_code": pair["user_code"], "user": "amzn1.account.NOBODY", "decision": "approve"}
    result = api.post(ACTIVATE, data=form)
    assert result.status_code == 400
    assert '<code id="error">invalid_request</code>' in result.text
    assert emu.code_pairs[pair["user_code"]].status is PairStatus.PENDING


def test_the_activation_page_refuses_an_answered_or_expired_code(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    user = emu.add_user()
    answered, expired = new_pair(api, emu), new_pair(api, emu)
    emu.deny_code_pair(answered["user_code"])
    clock.advance(601)
    for pair, error in ((answered, "used_user_code"), (expired, "expired_user_code")):
        form = {"user_code": pair["user_code"], "user": user.user_id, "decision": "approve"}
        result = api.post(ACTIVATE, data=form)
        assert result.status_code == 400
        assert f'<code id="error">{error}</code>' in result.text


def test_approved_scopes_can_be_narrower(emu: Emulator, api: httpx.Client) -> None:
    user = emu.add_user(postal_code="10001")
    pair = new_pair(api, emu, scope="profile postal_code")
    answer = approve(api, pair["user_code"], scope=["postal_code"])
    assert answer.json()["approved_scopes"] == ["postal_code"]
    tokens = assert_tokens(poll(api, pair))
    profile = api.get(PROFILE, headers=bearer(tokens["access_token"])).json()
    assert profile == {"user_id": user.user_id, "postal_code": "10001"}
    other = new_pair(api, emu, scope="profile:user_id")
    assert approve(api, other["user_code"], scope="profile").status_code == 400  # not requested


def test_refresh_tokens_work_with_the_refresh_grant(emu: Emulator, api: httpx.Client) -> None:
    user = emu.add_user()
    tokens = redeem(api, emu, new_pair(api, emu, scope="profile:user_id"))
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    public = assert_tokens(
        api.post(TOKEN, data={**form, "client_id": emu.client_id}), refresh_token=False
    )
    confidential = assert_tokens(
        api.post(
            TOKEN,
            data={**form, "client_id": emu.client_id, "client_secret": DEFAULT_CLIENT_SECRET},
        )
    )
    for access in (public["access_token"], confidential["access_token"]):
        assert access != tokens["access_token"]
        assert api.get(PROFILE, headers=bearer(access)).json() == {"user_id": user.user_id}
    emu.register_client(OTHER_CLIENT)
    assert_error(api.post(TOKEN, data={**form, "client_id": OTHER_CLIENT}), 400, "invalid_grant")


def test_an_expired_pair_is_invalid_code_pair(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    pending, approved = new_pair(api, emu), new_pair(api, emu)
    emu.approve_code_pair(approved["user_code"])
    clock.advance(601)
    for pair in (pending, approved):
        assert "expired" in assert_error(poll(api, pair), 400, "invalid_code_pair")
        assert emu.code_pairs[pair["user_code"]].status is PairStatus.EXPIRED
    refused = approve(api, pending["user_code"])
    assert refused.status_code == 400
    assert "expired_user_code" in refused.json()["error_description"]


def test_a_pair_expires_after_its_lifetime_exactly(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    emu.code_pair_lifetime = 30
    pair = new_pair(api, emu)
    assert pair["expires_in"] == 30
    clock.advance(29)
    assert_error(poll(api, pair), 400, "authorization_pending")
    clock.advance(1.5)
    assert_error(poll(api, pair), 400, "invalid_code_pair")


def test_a_redeemed_pair_gives_no_tokens_twice(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    pair = new_pair(api, emu)
    tokens = redeem(api, emu, pair)
    for _ in range(2):
        clock.advance(5)
        assert "redeemed" in assert_error(poll(api, pair), 400, "invalid_grant")
    # the tokens it gave stay valid
    assert api.get(TOKENINFO, headers=bearer(tokens["access_token"])).status_code == 200
    assert approve(api, pair["user_code"]).status_code == 400


def test_a_mismatched_user_code_is_invalid_grant(emu: Emulator, api: httpx.Client) -> None:
    pair, other = new_pair(api, emu), new_pair(api, emu)
    emu.approve_code_pair(pair["user_code"])
    for user_code in (other["user_code"], pair["user_code"].lower(), "ZZZZZZ"):
        assert "match" in assert_error(poll(api, pair, user_code=user_code), 400, "invalid_grant")
    assert_error(poll(api, pair, device_code="x" * 64), 400, "invalid_grant")
    assert emu.code_pairs[pair["user_code"]].polls == 0  # none of those polled the pair
    assert_tokens(poll(api, pair))  # so this first real poll is not too fast


@pytest.mark.parametrize("missing", ["device_code", "user_code"])
def test_missing_poll_parameters_are_invalid_request(
    emu: Emulator, api: httpx.Client, missing: str
) -> None:
    pair = new_pair(api, emu)
    assert missing in assert_error(poll(api, pair, **{missing: None}), 400, "invalid_request")


def test_client_credentials_on_a_poll_are_optional_but_checked(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    pair = new_pair(api, emu)
    emu.approve_code_pair(pair["user_code"])
    assert_error(poll(api, pair, client_id=OTHER_CLIENT), 401, "invalid_client")
    wrong = poll(api, pair, client_id=emu.client_id, client_secret="wrong")
    assert_error(wrong, 401, "invalid_client")
    emu.register_client(OTHER_CLIENT)
    assert_error(poll(api, pair, client_id=OTHER_CLIENT), 400, "invalid_grant")
    assert_tokens(poll(api, pair, client_id=emu.client_id))


def test_the_rfc_8628_urn_is_unsupported_grant_type(emu: Emulator, api: httpx.Client) -> None:
    pair = new_pair(api, emu)
    urn = poll(api, pair, grant_type="urn:ietf:params:oauth:grant-type:device_code")
    assert_error(urn, 400, "unsupported_grant_type")
    assert emu.token_calls["other"] == 1


# Faults and counters ------------------------------------------------------------------------


def test_faults_and_latency_apply_to_the_code_pair_endpoint(
    emu: Emulator, api: httpx.Client
) -> None:
    emu.fault("500", endpoint="codepair", times=1)
    failed = create(api, emu)
    assert failed.status_code == 500
    assert failed.json()["error"] == "ServerError"
    assert failed.headers["content-type"] == JSON_TYPE
    emu.fault("429", times=1)  # "*" covers it too
    throttled = create(api, emu)
    assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "1")
    assert emu.code_pairs == {}
    emu.latency(0.3, "codepair")
    form = {"response_type": "device_code", "client_id": emu.client_id, "scope": "profile"}
    with pytest.raises(httpx.ReadTimeout):
        api.post(CODEPAIR, data=form, timeout=0.1)
    emu.clear_faults()
    pair = new_pair(api, emu)
    emu.fault("503", endpoint="oauth_token", times=1)
    assert poll(api, pair).status_code == 503  # the poll is a token request
    assert_error(poll(api, pair), 400, "authorization_pending")  # the fault did not poll


def test_codepair_and_device_polls_are_counted(emu: Emulator, api: httpx.Client) -> None:
    assert emu.calls == {"tokeninfo": 0, "profile": 0}  # shapes unchanged until used
    assert emu.token_calls == {"authorization_code": 0, "refresh_token": 0, "other": 0}
    assert (emu.calls["codepair"], emu.token_calls["device_code"]) == (0, 0)
    pair = new_pair(api, emu)
    create(api, emu, client_id=OTHER_CLIENT)  # errors count too
    poll(api, pair)
    poll(api, pair)
    poll(api, pair, device_code=None)
    assert emu.calls == {"tokeninfo": 0, "profile": 0, "codepair": 2}
    assert emu.token_calls == {
        "authorization_code": 0,
        "refresh_token": 0,
        "other": 0,
        "device_code": 3,
    }
    assert api.get("/_emulator/calls").json()["codepair"] == 2
    assert api.get("/_emulator/calls/token").json()["device_code"] == 3
    assert api.delete("/_emulator/calls").json() == {"tokeninfo": 0, "profile": 0}
    assert emu.token_calls == {"authorization_code": 0, "refresh_token": 0, "other": 0}
    with pytest.raises(KeyError):
        emu.calls["nothing"]


# Settings, the Python facade and the control API ---------------------------------------------


def test_settings_from_the_constructor_and_defaults() -> None:
    assert (EmulatorState().device_interval, EmulatorState().code_pair_lifetime) == (5, 600)
    emulator = Emulator(device_interval=2, code_pair_lifetime=30)
    pair = emulator.create_code_pair()
    assert (pair["interval"], pair["expires_in"]) == (2, 30)
    assert pair["verification_uri"] == "/activate"  # not serving: the bare path
    other = emulator.create_code_pair(base_url="http://device.test/")
    assert other["verification_uri"] == "http://device.test/activate"
    emulator.device_interval, emulator.code_pair_lifetime = 0, 60
    emulator.reset()
    assert (emulator.device_interval, emulator.code_pair_lifetime) == (2, 30)
    assert emulator.code_pairs == {}
    for bad in (-1, 1.5, True, "5"):
        with pytest.raises(ValueError):
            emulator.device_interval = bad  # type: ignore[assignment]
        with pytest.raises(ValueError):
            Emulator(code_pair_lifetime=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        emulator.code_pair_lifetime = 0


def test_a_served_emulator_gives_its_url_as_verification_uri() -> None:
    with Emulator() as emulator:
        assert emulator.create_code_pair()["verification_uri"] == f"{emulator.url}/activate"


def test_reset_forgets_pairs_and_restores_the_settings(emu: Emulator, api: httpx.Client) -> None:
    pair = new_pair(api, emu)
    tokens = redeem(api, emu, new_pair(api, emu))
    emu.device_interval, emu.code_pair_lifetime = 1, 10
    emu.reset()
    assert emu.code_pairs == {}
    assert (emu.device_interval, emu.code_pair_lifetime) == (5, 600)
    assert_error(poll(api, pair), 400, "invalid_grant")
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert_error(
        api.post(TOKEN, data={**refresh, "client_id": emu.client_id}), 400, "invalid_grant"
    )


def test_the_facade(emu: Emulator, api: httpx.Client) -> None:
    ada, grace = emu.add_user(name="Ada"), emu.add_user(name="Grace")
    pair = emu.create_code_pair(scope=["profile", "postal_code"], base_url=str(api.base_url))
    assert set(pair) == {"user_code", "device_code", "verification_uri", "expires_in", "interval"}
    assert pair["verification_uri"] == str(api.base_url).rstrip("/") + "/activate"
    user_code = str(pair["user_code"])
    emu.approve_code_pair(user_code, user=grace, scope="profile")
    info = emu.code_pairs[user_code]
    assert (info.status, info.user_id, info.approved_scopes) == (
        "approved",
        grace.user_id,
        ("profile",),
    )
    tokens = assert_tokens(poll(api, pair))
    assert (
        api.get(TOKENINFO, headers=bearer(tokens["access_token"])).json()["user_id"]
        == grace.user_id
    )
    first = emu.create_code_pair()
    emu.approve_code_pair(str(first["user_code"]).lower())  # default: the first user
    assert emu.code_pairs[str(first["user_code"])].user_id == ada.user_id
    with pytest.raises(CodePairError) as used:
        emu.deny_code_pair(str(first["user_code"]))
    assert used.value.error == "used_user_code"
    with pytest.raises(KeyError):
        emu.approve_code_pair("ZZZZZZ")
    with pytest.raises(KeyError):
        emu.deny_code_pair("ZZZZZZ")
    third = str(emu.create_code_pair(scope="profile:user_id")["user_code"])
    with pytest.raises(KeyError):
        emu.approve_code_pair(third, user="amzn1.account.NOBODY")
    with pytest.raises(ValueError):
        emu.approve_code_pair(third, scope="postal_code")  # not requested
    emu.deny_code_pair(third)
    assert emu.code_pairs[third].status is PairStatus.DENIED
    with pytest.raises(TokenError) as bad:
        emu.create_code_pair(scope="email")
    assert bad.value.error == "invalid_scope"
    with pytest.raises(TypeError):
        emu.code_pairs["X"] = info  # type: ignore[index]


def test_control_endpoints(emu: Emulator, api: httpx.Client) -> None:
    user = emu.add_user()
    pair, other = new_pair(api, emu), new_pair(api, emu)
    approved = approve(api, pair["user_code"], user_id=user.user_id).json()
    assert approved["status"] == "approved"
    assert approved["user_id"] == user.user_id
    assert "device_code" not in approved
    denied = api.post("/_emulator/codepair/deny", json={"user_code": other["user_code"]})
    assert denied.json()["status"] == "denied"
    listed = api.get("/_emulator/codepair").json()
    assert (listed["interval"], listed["lifetime"]) == (5, 600)
    assert [p["status"] for p in listed["code_pairs"]] == ["approved", "denied"]
    assert pair["device_code"] not in str(listed)
    unknown = approve(api, "ZZZZZZ")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    assert approve(api, other["user_code"]).status_code == 400  # already denied
    nobody = new_pair(api, emu)
    assert approve(api, nobody["user_code"], user_id="amzn1.account.NOBODY").status_code == 404
    assert api.post("/_emulator/codepair/deny", json={"user_code": "ZZZZZZ"}).status_code == 404
    assert api.post("/_emulator/codepair/approve", json={}).status_code == 400
    settings = api.post("/_emulator/codepair/settings", json={"interval": 0, "lifetime": 30})
    assert settings.json() == {"interval": 0, "lifetime": 30}
    assert (emu.device_interval, emu.code_pair_lifetime) == (0, 30)
    assert new_pair(api, emu)["interval"] == 0
    assert api.post("/_emulator/codepair/settings", json={"lifetime": 60}).json() == {
        "interval": 0,
        "lifetime": 60,
    }
    for bad in (
        {"interval": -1},
        {"interval": 1.5},
        {"lifetime": 0},
        {"interval": 1, "lifetime": 0},
    ):
        response = api.post("/_emulator/codepair/settings", json=bad)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"
    assert (emu.device_interval, emu.code_pair_lifetime) == (0, 60)  # nothing half-applied
    assert api.post("/_emulator/reset").json() == {"reset": True}
    assert api.get("/_emulator/codepair").json() == {
        "interval": 5,
        "lifetime": 600,
        "code_pairs": [],
    }
