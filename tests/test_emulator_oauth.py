"""The emulator's authorization-code grant, through real HTTP on 127.0.0.1: ``GET /ap/oa``
(consent page, error page, error redirects), ``POST /ap/oa/decision``,
``POST /auth/o2/token`` (code and refresh grants, PKCE, client authentication), the
issued tokens at ``/auth/o2/tokeninfo`` and ``/user/profile``, and the control API.

Uses conftest's session emulator (``emu``, reset per test, its fake ``clock``) and
``emu_url``.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lwa_middleware.emulator import Emulator
from lwa_middleware.emulator.oauth import (
    DEFAULT_CLIENT_SECRET,
    SERVICE_SCOPES,
    AuthorizationError,
    s256_challenge,
)

from conftest import FakeClock, bearer

AUTHORIZE = "/ap/oa"
DECISION = "/ap/oa/decision"
TOKEN = "/auth/o2/token"
TOKENINFO = "/auth/o2/tokeninfo"
PROFILE = "/user/profile"
JSON_TYPE = "application/json;charset=UTF-8"
CALLBACK = "http://127.0.0.1:8000/auth/callback"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 appendix B
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
OTHER_CLIENT = "amzn1.application-oa2-client.other"


@pytest.fixture
def api(emu_url: str) -> Iterator[httpx.Client]:
    """A client of the session's emulator (no redirects followed)."""
    with httpx.Client(base_url=emu_url, timeout=10) as client:
        yield client


def authorize_params(emu: Emulator, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": emu.client_id,
        "scope": "profile",
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "state": "st-123",
    }
    params.update(overrides)
    return {key: value for key, value in params.items() if value is not None}


def query(url: str) -> dict[str, str]:
    parsed = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(values) == 1 for values in parsed.values()), url
    return {key: values[0] for key, values in parsed.items()}


def consent_id(page: httpx.Response) -> str:
    match = re.search(r'name="consent_id" value="([^"]+)"', page.text)
    assert match is not None, page.text
    return match.group(1)


def sign_in(
    api: httpx.Client,
    emu: Emulator,
    *,
    user: str | None = None,
    scopes: list[str] | None = None,
    decision: str = "approve",
    **params: str | None,
) -> dict[str, str]:
    """Open the consent page, answer it; return the redirect's query (checked to be to the
    callback)."""
    page = api.get(AUTHORIZE, params=authorize_params(emu, **params))
    assert page.status_code == 200, page.text
    requested = (params.get("scope") or "profile").split()
    form: dict[str, Any] = {
        "consent_id": consent_id(page),
        "user": user or emu.users[0].user_id,
        "scope": requested if scopes is None else scopes,
        "decision": decision,
    }
    answer = api.post(DECISION, data=form)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith((params.get("redirect_uri") or CALLBACK) + "?"), location
    return query(location)


def exchange(api: httpx.Client, emu: Emulator, code: str, **fields: str | None) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "client_id": emu.client_id,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }
    form.update(fields)
    return api.post(TOKEN, data={k: v for k, v in form.items() if v is not None})


def refresh(api: httpx.Client, emu: Emulator, token: str, **fields: str | None) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": emu.client_id,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }
    form.update(fields)
    return api.post(TOKEN, data={k: v for k, v in form.items() if v is not None})


def assert_token_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == JSON_TYPE
    assert response.headers["cache-control"] == "no-store"
    uuid.UUID(response.headers["x-amzn-RequestId"])
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert body["error_description"]
    return body


def assert_tokens(response: httpx.Response, *, refresh_token: bool = True) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_TYPE
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
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


# The consent page ------------------------------------------------------------------------


def test_authorize_page_renders_and_lists_users(emu: Emulator, api: httpx.Client) -> None:
    ada = emu.add_user(name="Ada Lovelace", email="ada@example.com")
    grace = emu.add_user(name="Grace <Hopper>", email="grace@example.com")
    page = api.get(AUTHORIZE, params=authorize_params(emu, scope="profile postal_code"))
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert '<select id="user" name="user">' in html
    options = re.findall(r'<option value="([^"]+)">([^<]*)</option>', html)
    assert [value for value, _ in options] == [ada.user_id, grace.user_id]
    assert "Grace &lt;Hopper&gt;" in html  # escaped
    assert re.search(
        r'<input type="checkbox" id="scope-profile" name="scope" value="profile"', html
    )
    assert 'id="scope-postal_code"' in html
    assert 'id="scope-profile_user_id"' not in html  # not requested
    assert '<label for="scope-profile">' in html
    assert re.search(r'<button type="submit" id="approve" name="decision" value="approve">', html)
    assert re.search(r'<button type="submit" id="deny" name="decision" value="deny">', html)
    assert f'action="{DECISION}"' in html
    assert not re.search(r"<(script|link|img|iframe)\b|\bsrc=", html), "no external asset"


def test_authorize_page_without_users_offers_a_default_user(
    emu: Emulator, api: httpx.Client
) -> None:
    assert emu.users == []
    page = api.get(AUTHORIZE, params=authorize_params(emu))
    assert page.status_code == 200
    [user] = emu.users
    assert f'<option value="{user.user_id}">Ada Lovelace' in page.text


def test_approve_redirects_with_code_scope_and_state(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user(name="Ada")
    grace = emu.add_user(name="Grace", email="grace@x.test", postal_code="10001")
    answer = sign_in(api, emu, user=grace.user_id, scope="profile postal_code")
    assert set(answer) == {"code", "scope", "state"}
    assert answer["scope"] == "profile postal_code"
    assert answer["state"] == "st-123"
    assert re.fullmatch(r"AN[A-Za-z]{18}", answer["code"])
    tokens = assert_tokens(exchange(api, emu, answer["code"]))
    info = api.get(TOKENINFO, headers=bearer(tokens["access_token"])).json()
    assert info["aud"] == emu.client_id
    assert info["app_id"] == emu.app_id
    assert info["user_id"] == grace.user_id
    assert info["exp"] == 3600
    profile = api.get(PROFILE, headers=bearer(tokens["access_token"])).json()
    assert profile == {
        "user_id": grace.user_id,
        "name": "Grace",
        "email": "grace@x.test",
        "postal_code": "10001",
    }


def test_approve_keeps_the_callbacks_own_query(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    uri = "http://localhost:5000/cb?next=%2Fhome"
    page = api.get(AUTHORIZE, params=authorize_params(emu, redirect_uri=uri, state=None))
    answer = api.post(
        DECISION,
        data={
            "consent_id": consent_id(page),
            "user": emu.users[0].user_id,
            "scope": "profile",
            "decision": "approve",
        },
    )
    location = answer.headers["location"]
    assert location.startswith(uri + "&code=")
    assert set(query(location)) == {"next", "code", "scope"}  # no state: none was sent


def test_only_the_checked_scopes_are_granted(emu: Emulator, api: httpx.Client) -> None:
    user = emu.add_user(postal_code="98109")
    answer = sign_in(api, emu, scope="profile postal_code", scopes=["postal_code"])
    assert answer["scope"] == "postal_code"
    tokens = assert_tokens(exchange(api, emu, answer["code"]))
    profile = api.get(PROFILE, headers=bearer(tokens["access_token"])).json()
    assert profile == {"user_id": user.user_id, "postal_code": "98109"}


def test_profile_user_id_scope_gives_the_user_id_only(emu: Emulator, api: httpx.Client) -> None:
    user = emu.add_user()
    answer = sign_in(api, emu, scope="profile:user_id")
    tokens = assert_tokens(exchange(api, emu, answer["code"]))
    assert api.get(PROFILE, headers=bearer(tokens["access_token"])).json() == {
        "user_id": user.user_id
    }


def test_deny_redirects_with_access_denied_and_state(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    answer = sign_in(api, emu, decision="deny")
    assert answer["error"] == "access_denied"
    assert answer["error_description"]
    assert answer["state"] == "st-123"
    assert "code" not in answer


def test_approving_no_scope_is_access_denied(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    answer = sign_in(api, emu, scopes=[])
    assert answer["error"] == "access_denied"


def test_a_consent_page_is_answered_once(emu: Emulator, api: httpx.Client) -> None:
    user = emu.add_user()
    page = api.get(AUTHORIZE, params=authorize_params(emu))
    form = {
        "consent_id": consent_id(page),
        "user": user.user_id,
        "scope": "profile",
        "decision": "approve",
    }
    assert api.post(DECISION, data=form).status_code == 302
    again = api.post(DECISION, data=form)
    assert again.status_code == 400
    assert "location" not in again.headers
    forged = api.post(DECISION, data={**form, "consent_id": "made-up"})
    assert forged.status_code == 400


def test_a_consent_page_expires(emu: Emulator, api: httpx.Client, clock: FakeClock) -> None:
    user = emu.add_user()
    page = api.get(AUTHORIZE, params=authorize_params(emu))
    clock.advance(601)
    form = {"consent_id": consent_id(page), "user": user.user_id, "decision": "approve"}
    assert api.post(DECISION, data=form).status_code == 400


# Refused authorization requests ------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
        ({"redirect_uri": None}, "invalid_request"),
        ({"client_id": "amzn1.application-oa2-client.unknown"}, "invalid_client"),
        ({"client_id": None}, "invalid_request"),
        ({"redirect_uri": "http://127.0.0.1.evil.example/cb"}, "invalid_request"),
        ({"redirect_uri": "http://127.0.0.1@evil.example/cb"}, "invalid_request"),
        ({"redirect_uri": "http://evil.example\\@127.0.0.1/cb"}, "invalid_request"),
        ({"redirect_uri": "http://127.0.0.1:8000/cb#fragment"}, "invalid_request"),
        ({"redirect_uri": "javascript://127.0.0.1/%0aalert(1)"}, "invalid_request"),
        ({"redirect_uri": "http://127.0.0.1:99999/cb"}, "invalid_request"),
    ],
    ids=[
        "unregistered",
        "missing-redirect",
        "unknown-client",
        "missing-client",
        "lookalike-host",
        "userinfo",
        "backslash",
        "fragment",
        "javascript",
        "bad-port",
    ],
)
def test_no_redirect_to_an_unregistered_uri_or_for_an_unknown_client(
    emu: Emulator, api: httpx.Client, overrides: dict[str, str | None], error: str
) -> None:
    page = api.get(AUTHORIZE, params=authorize_params(emu, response_type="token", **overrides))
    assert page.status_code == 400
    assert "location" not in page.headers
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert f'<code id="error">{error}</code>' in page.text


def test_a_registered_redirect_uri_is_allowed(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    emu.register_client(redirect_uris=["https://app.example/auth/callback"])
    answer = sign_in(api, emu, redirect_uri="https://app.example/auth/callback")
    assert "code" in answer
    near_miss = authorize_params(emu, redirect_uri="https://app.example/auth/callback/")
    assert api.get(AUTHORIZE, params=near_miss).status_code == 400  # exact match only


def test_loopback_uris_can_be_refused(emu: Emulator, api: httpx.Client) -> None:
    emu.register_client(allow_loopback=False, redirect_uris=["https://app.example/cb"])
    assert api.get(AUTHORIZE, params=authorize_params(emu)).status_code == 400


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"scope": "profile email"}, "invalid_scope"),
        ({"scope": None}, "invalid_request"),
        ({"code_challenge": CHALLENGE, "code_challenge_method": "S512"}, "invalid_request"),
        ({"code_challenge": "too-short", "code_challenge_method": "S256"}, "invalid_request"),
        ({"code_challenge": "x" * 129}, "invalid_request"),
        ({"code_challenge_method": "S256"}, "invalid_request"),
    ],
    ids=[
        "token",
        "no-response-type",
        "unknown-scope",
        "no-scope",
        "bad-method",
        "bad-s256-challenge",
        "long-plain-challenge",
        "method-alone",
    ],
)
def test_bad_parameters_are_redirected_back_with_the_error_and_state(
    emu: Emulator, api: httpx.Client, overrides: dict[str, str | None], error: str
) -> None:
    response = api.get(AUTHORIZE, params=authorize_params(emu, **overrides))
    assert response.status_code == 302
    answer = query(response.headers["location"])
    assert response.headers["location"].startswith(CALLBACK + "?")
    assert answer["error"] == error
    assert answer["error_description"]
    assert answer["state"] == "st-123"


def test_a_repeated_parameter_is_invalid_request(emu: Emulator, api: httpx.Client) -> None:
    params = (*authorize_params(emu).items(), ("scope", "postal_code"))
    response = api.get(AUTHORIZE, params=params)
    assert response.status_code == 302
    assert query(response.headers["location"])["error"] == "invalid_request"
    twice = (*authorize_params(emu).items(), ("redirect_uri", "http://localhost/other"))
    assert api.get(AUTHORIZE, params=twice).status_code == 400  # no redirect at all


# The code grant ---------------------------------------------------------------------------


def test_code_exchange_with_pkce_s256_and_no_secret(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    code = sign_in(api, emu, code_challenge=CHALLENGE, code_challenge_method="S256")["code"]
    tokens = assert_tokens(exchange(api, emu, code, client_secret=None, code_verifier=VERIFIER))
    assert api.get(TOKENINFO, headers=bearer(tokens["access_token"])).status_code == 200


def test_s256_is_base64url_sha256_without_padding() -> None:
    assert s256_challenge(VERIFIER) == CHALLENGE


@pytest.mark.parametrize("method", ["plain", None], ids=["plain", "method-left-out"])
def test_code_exchange_with_pkce_plain(
    emu: Emulator, api: httpx.Client, method: str | None
) -> None:
    emu.add_user()
    verifier = "plain-verifier-" + "v" * 40
    code = sign_in(api, emu, code_challenge=verifier, code_challenge_method=method)["code"]
    wrong = exchange(api, emu, code, client_secret=None, code_verifier=s256_challenge(verifier))
    assert_token_error(wrong, 400, "invalid_grant")
    assert_tokens(exchange(api, emu, code, client_secret=None, code_verifier=verifier))


def test_code_exchange_with_pkce_and_secret(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    code = sign_in(api, emu, code_challenge=CHALLENGE, code_challenge_method="S256")["code"]
    assert_tokens(exchange(api, emu, code, code_verifier=VERIFIER))


@pytest.mark.parametrize(
    ("challenge", "verifier"),
    [
        (CHALLENGE, "wrong-verifier-" + "w" * 40),  # the wrong verifier
        (CHALLENGE, None),  # a challenged code needs its verifier, even with the secret
        (None, VERIFIER),  # a verifier for a code issued without a challenge
    ],
    ids=["wrong", "missing", "unexpected"],
)
def test_a_pkce_mismatch_is_invalid_grant(
    emu: Emulator, api: httpx.Client, challenge: str | None, verifier: str | None
) -> None:
    emu.add_user()
    method = "S256" if challenge else None
    code = sign_in(api, emu, code_challenge=challenge, code_challenge_method=method)["code"]
    assert_token_error(exchange(api, emu, code, code_verifier=verifier), 400, "invalid_grant")
    if challenge:  # a failed attempt does not use the code up
        assert_tokens(exchange(api, emu, code, code_verifier=VERIFIER))


def test_a_replayed_code_is_invalid_grant_and_revokes_its_tokens(
    emu: Emulator, api: httpx.Client
) -> None:
    emu.add_user()
    code = sign_in(api, emu)["code"]
    tokens = assert_tokens(exchange(api, emu, code))
    refreshed = assert_tokens(refresh(api, emu, tokens["refresh_token"]))
    _, unrelated = emu.mint_for()
    assert_token_error(exchange(api, emu, code), 400, "invalid_grant")
    for token in (tokens["access_token"], refreshed["access_token"]):
        assert api.get(TOKENINFO, headers=bearer(token)).json()["error"] == "invalid_token"
    for token in (tokens["refresh_token"], refreshed["refresh_token"]):
        assert_token_error(refresh(api, emu, token), 400, "invalid_grant")
    assert api.get(TOKENINFO, headers=bearer(unrelated)).status_code == 200


def test_a_code_expires_after_five_minutes(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    emu.add_user()
    fresh = sign_in(api, emu)["code"]
    stale = sign_in(api, emu)["code"]
    clock.advance(299)
    assert_tokens(exchange(api, emu, fresh))
    clock.advance(2)  # 301 s after it was issued
    assert_token_error(exchange(api, emu, stale), 400, "invalid_grant")


def test_the_redirect_uri_must_be_the_authorize_requests(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    code = sign_in(api, emu)["code"]
    other = exchange(api, emu, code, redirect_uri="http://127.0.0.1:8000/other")
    assert_token_error(other, 400, "invalid_grant")
    assert_token_error(exchange(api, emu, code, redirect_uri=None), 400, "invalid_request")
    assert_tokens(exchange(api, emu, code))


def test_a_code_is_bound_to_its_client(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    emu.register_client(OTHER_CLIENT, client_secret="other-secret")
    code = sign_in(api, emu)["code"]
    stolen = exchange(api, emu, code, client_id=OTHER_CLIENT, client_secret="other-secret")
    assert_token_error(stolen, 400, "invalid_grant")
    assert_token_error(exchange(api, emu, "AN" + "x" * 18), 400, "invalid_grant")


def test_a_wrong_client_secret_is_invalid_client(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    code = sign_in(api, emu)["code"]
    assert_token_error(exchange(api, emu, code, client_secret="wrong"), 401, "invalid_client")
    unknown = exchange(api, emu, code, client_id="amzn1.application-oa2-client.nobody")
    assert_token_error(unknown, 401, "invalid_client")
    assert_tokens(exchange(api, emu, code))  # still unused


def test_client_credentials_in_http_basic(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    code = sign_in(api, emu)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
    wrong = api.post(TOKEN, data=form, auth=(emu.client_id, "wrong"))
    assert_token_error(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic ")
    twice = api.post(
        TOKEN,
        data={**form, "client_secret": DEFAULT_CLIENT_SECRET},
        auth=(emu.client_id, DEFAULT_CLIENT_SECRET),
    )
    assert_token_error(twice, 400, "invalid_request")
    tokens = assert_tokens(api.post(TOKEN, data=form, auth=(emu.client_id, DEFAULT_CLIENT_SECRET)))
    assert api.get(TOKENINFO, headers=bearer(tokens["access_token"])).json()["aud"] == emu.client_id


def test_malformed_basic_credentials_are_invalid_client(emu: Emulator, api: httpx.Client) -> None:
    for value in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        response = api.post(
            TOKEN,
            data={"grant_type": "refresh_token", "refresh_token": "Atzr|x"},
            headers={"authorization": value},
        )
        assert_token_error(response, 401, "invalid_client")


def test_neither_secret_nor_verifier_is_invalid_request(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    code = sign_in(api, emu)["code"]
    assert_token_error(exchange(api, emu, code, client_secret=None), 400, "invalid_request")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "password", "username": "u", "password": "p"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, "invalid_request"),  # supported: no client_id
        ({"code": "ANxxxx"}, "invalid_request"),
        ({"grant_type": "authorization_code", "client_id": "c"}, "invalid_request"),
        ({"grant_type": "refresh_token", "client_secret": "s"}, "invalid_request"),
    ],
    ids=["password", "client-credentials", "no-grant-type", "no-code", "no-client-id"],
)
def test_bad_token_requests(
    emu: Emulator, api: httpx.Client, form: dict[str, str], error: str
) -> None:
    assert_token_error(api.post(TOKEN, data=form), 400, error)


def test_the_token_endpoint_takes_a_form(emu: Emulator, api: httpx.Client) -> None:
    as_json = api.post(TOKEN, json={"grant_type": "refresh_token", "refresh_token": "Atzr|x"})
    assert_token_error(as_json, 400, "invalid_request")
    repeated = api.post(
        TOKEN,
        content=b"grant_type=refresh_token&grant_type=authorization_code",
        headers={"content-type": "application/x-www-form-urlencoded;charset=UTF-8"},
    )
    assert_token_error(repeated, 400, "invalid_request")
    assert api.get(TOKEN).status_code == 405


# The refresh grant ------------------------------------------------------------------------


def test_refresh_with_the_secret_returns_a_new_refresh_token(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    user = emu.add_user()
    tokens = assert_tokens(exchange(api, emu, sign_in(api, emu, scope="profile")["code"]))
    clock.advance(3600)  # the first access token has expired
    assert api.get(TOKENINFO, headers=bearer(tokens["access_token"])).status_code == 400
    again = assert_tokens(refresh(api, emu, tokens["refresh_token"]))
    assert again["refresh_token"] != tokens["refresh_token"]
    info = api.get(TOKENINFO, headers=bearer(again["access_token"])).json()
    assert (info["user_id"], info["aud"], info["exp"]) == (user.user_id, emu.client_id, 3600)
    assert set(api.get(PROFILE, headers=bearer(again["access_token"])).json()) == {
        "user_id",
        "name",
        "email",
    }
    assert_tokens(refresh(api, emu, again["refresh_token"]))


def test_refresh_without_the_secret_returns_no_refresh_token(
    emu: Emulator, api: httpx.Client
) -> None:
    emu.add_user()
    code = sign_in(api, emu, code_challenge=CHALLENGE, code_challenge_method="S256")["code"]
    tokens = assert_tokens(exchange(api, emu, code, client_secret=None, code_verifier=VERIFIER))
    again = assert_tokens(
        refresh(api, emu, tokens["refresh_token"], client_secret=None), refresh_token=False
    )
    assert api.get(TOKENINFO, headers=bearer(again["access_token"])).status_code == 200


def test_refresh_can_narrow_the_scope(emu: Emulator, api: httpx.Client) -> None:
    user = emu.add_user()
    code = sign_in(api, emu, scope="profile postal_code")["code"]
    tokens = assert_tokens(exchange(api, emu, code))
    narrow = assert_tokens(refresh(api, emu, tokens["refresh_token"], scope="postal_code"))
    profile = api.get(PROFILE, headers=bearer(narrow["access_token"])).json()
    assert set(profile) == {"user_id", "postal_code"}
    assert profile["user_id"] == user.user_id
    wider = refresh(api, emu, tokens["refresh_token"], scope="profile:user_id")
    assert_token_error(wider, 400, "invalid_scope")


def test_a_revoked_or_unknown_refresh_token_is_invalid_grant(
    emu: Emulator, api: httpx.Client
) -> None:
    emu.add_user()
    first = assert_tokens(exchange(api, emu, sign_in(api, emu)["code"]))
    second = assert_tokens(exchange(api, emu, sign_in(api, emu)["code"]))
    assert emu.revoke_refresh_token(first["refresh_token"]) is True
    assert emu.revoke_refresh_token(first["refresh_token"]) is False
    assert_token_error(refresh(api, emu, first["refresh_token"]), 400, "invalid_grant")
    revoked = api.post("/_emulator/revoke", json={"token": second["refresh_token"]})
    assert revoked.json() == {"revoked": True}
    assert_token_error(refresh(api, emu, second["refresh_token"]), 400, "invalid_grant")
    assert_token_error(refresh(api, emu, "Atzr|" + "A" * 400), 400, "invalid_grant")
    # the access tokens are not revoked with their refresh tokens
    assert api.get(TOKENINFO, headers=bearer(first["access_token"])).status_code == 200


def test_a_refresh_token_is_bound_to_its_client(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    emu.register_client(OTHER_CLIENT, client_secret="other-secret")
    tokens = assert_tokens(exchange(api, emu, sign_in(api, emu)["code"]))
    stolen = refresh(
        api, emu, tokens["refresh_token"], client_id=OTHER_CLIENT, client_secret="other-secret"
    )
    assert_token_error(stolen, 400, "invalid_grant")
    wrong = refresh(api, emu, tokens["refresh_token"], client_secret="wrong")
    assert_token_error(wrong, 401, "invalid_client")


# Issued tokens ------------------------------------------------------------------------------


def test_issued_tokens_expire_on_the_emulator_clock(
    emu: Emulator, api: httpx.Client, clock: FakeClock
) -> None:
    emu.add_user()
    tokens = assert_tokens(exchange(api, emu, sign_in(api, emu)["code"]))
    clock.advance(3599)
    assert api.get(TOKENINFO, headers=bearer(tokens["access_token"])).json()["exp"] == 1
    clock.advance(1)
    for path in (TOKENINFO, PROFILE):
        answer = api.get(path, headers=bearer(tokens["access_token"]))
        assert answer.json()["error"] == "invalid_token"


def test_tokens_for_another_client_carry_its_ids(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    other = emu.register_client(OTHER_CLIENT, client_secret="s3", app_id="amzn1.application.x")
    code = sign_in(api, emu, client_id=OTHER_CLIENT)["code"]
    tokens = assert_tokens(exchange(api, emu, code, client_id=OTHER_CLIENT, client_secret="s3"))
    info = api.get(TOKENINFO, headers=bearer(tokens["access_token"])).json()
    assert (info["aud"], info["app_id"]) == (other.client_id, "amzn1.application.x")


def test_expire_an_access_token(emu: Emulator, api: httpx.Client) -> None:
    _, token = emu.mint_for()
    _, other = emu.mint_for()
    assert emu.expire(token) is True
    assert emu.expire("Atza|unknown") is False
    assert api.get(TOKENINFO, headers=bearer(token)).json()["error"] == "invalid_token"
    assert api.post("/_emulator/expire", json={"token": other}).json() == {"expired": True}
    assert api.get(PROFILE, headers=bearer(other)).json()["error"] == "invalid_token"
    assert api.post("/_emulator/expire", json={}).status_code == 400


# Faults and counters ------------------------------------------------------------------------


def test_faults_apply_to_the_token_endpoint(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    code = sign_in(api, emu)["code"]
    emu.fault("500", endpoint="oauth_token", times=1)
    failed = exchange(api, emu, code)
    assert failed.status_code == 500
    assert failed.json()["error"] == "ServerError"
    assert failed.headers["content-type"] == JSON_TYPE
    emu.fault("503", times=1)  # "*" covers the token endpoint too
    assert exchange(api, emu, code).status_code == 503
    emu.fault("429", endpoint="tokeninfo")
    assert_tokens(exchange(api, emu, code))  # the code was not used up by the faults


def test_token_calls_are_counted_by_grant_type(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    tokens = assert_tokens(exchange(api, emu, sign_in(api, emu)["code"]))
    exchange(api, emu, "AN" + "y" * 18)
    refresh(api, emu, tokens["refresh_token"])
    api.post(TOKEN, data={"grant_type": "password"})
    api.post(TOKEN, json={"grant_type": "refresh_token"})
    emu.fault("500", endpoint="oauth_token", times=1)
    refresh(api, emu, tokens["refresh_token"])
    expected = {"authorization_code": 2, "refresh_token": 2, "other": 2}
    assert emu.token_calls == expected
    assert api.get("/_emulator/calls/token").json() == expected
    assert emu.calls == {"tokeninfo": 0, "profile": 0}  # unchanged shape
    assert api.delete("/_emulator/calls").json() == {"tokeninfo": 0, "profile": 0}
    assert emu.token_calls == {"authorization_code": 0, "refresh_token": 0, "other": 0}


# The Python facade and the control API ---------------------------------------------------


def test_authorize_without_the_page(emu: Emulator, api: httpx.Client) -> None:
    ada = emu.add_user(name="Ada")
    grace = emu.add_user(name="Grace")
    code = emu.authorize(emu.client_id, CALLBACK, "profile postal_code", "s", CHALLENGE, "S256")
    tokens = assert_tokens(exchange(api, emu, code, code_verifier=VERIFIER))
    assert api.get(PROFILE, headers=bearer(tokens["access_token"])).json()["name"] == "Ada"
    for user in (grace, grace.user_id):
        code = emu.authorize(redirect_uri=CALLBACK, scope=["profile"], user=user)
        tokens = assert_tokens(exchange(api, emu, code))
        assert (
            api.get(TOKENINFO, headers=bearer(tokens["access_token"])).json()["user_id"]
            == grace.user_id
        )
    assert ada.user_id != grace.user_id
    with pytest.raises(KeyError):
        emu.authorize(redirect_uri=CALLBACK, user="amzn1.account.NOBODY")


def test_authorize_without_the_page_refuses_bad_requests(emu: Emulator) -> None:
    with pytest.raises(AuthorizationError) as refused:
        emu.authorize(redirect_uri="https://evil.example/cb")
    assert refused.value.redirect() is None
    with pytest.raises(AuthorizationError) as bad_scope:
        emu.authorize(redirect_uri=CALLBACK, scope="email", state="s1")
    assert bad_scope.value.error == "invalid_scope"
    redirect = bad_scope.value.redirect()
    assert redirect is not None
    assert query(redirect)["state"] == "s1"


def test_deny_without_the_page(emu: Emulator) -> None:
    url = emu.deny(redirect_uri=CALLBACK, state="s2")
    assert url.startswith(CALLBACK + "?")
    assert query(url)["error"] == "access_denied"
    assert query(url)["state"] == "s2"


def test_control_authorize(emu: Emulator, api: httpx.Client) -> None:
    user = emu.add_user()
    approved = api.post(
        "/_emulator/authorize",
        json={
            "redirect_uri": CALLBACK,
            "scope": ["profile", "postal_code"],
            "state": "s3",
            "user_id": user.user_id,
        },
    ).json()
    answer = query(approved["redirect"])
    assert answer == {"code": approved["code"], "scope": "profile postal_code", "state": "s3"}
    tokens = assert_tokens(exchange(api, emu, approved["code"]))
    assert (
        api.get(TOKENINFO, headers=bearer(tokens["access_token"])).json()["user_id"] == user.user_id
    )
    denied = api.post(
        "/_emulator/authorize", json={"redirect_uri": CALLBACK, "decision": "deny"}
    ).json()
    assert denied["code"] is None
    assert query(denied["redirect"])["error"] == "access_denied"
    bad = api.post("/_emulator/authorize", json={"redirect_uri": "https://evil.example/"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "bad_request"
    unknown = api.post("/_emulator/authorize", json={"user_id": "amzn1.account.NOBODY"})
    assert unknown.status_code == 404


def test_control_clients(emu: Emulator, api: httpx.Client) -> None:
    listed = api.get("/_emulator/clients").json()
    assert listed == {
        "clients": [
            {
                "client_id": emu.client_id,
                "app_id": emu.app_id,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "redirect_uris": [],
                "allow_loopback": True,
                "service_scopes": list(SERVICE_SCOPES),
            }
        ]
    }
    created = api.post(
        "/_emulator/clients",
        json={
            "client_id": OTHER_CLIENT,
            "client_secret": "s3cret",
            "redirect_uris": ["https://app.example/cb"],
        },
    ).json()
    assert created["client_secret"] == "s3cret"
    assert created["app_id"] == emu.app_id
    assert len(api.get("/_emulator/clients").json()["clients"]) == 2
    emu.add_user()
    code = sign_in(api, emu, client_id=OTHER_CLIENT, redirect_uri="https://app.example/cb")["code"]
    old_secret = exchange(
        api, emu, code, client_id=OTHER_CLIENT, redirect_uri="https://app.example/cb"
    )
    assert_token_error(old_secret, 401, "invalid_client")
    for bad in ({"redirect_uris": ["not a uri"]}, {"allow_loopback": "yes"}, {"client_secret": ""}):
        response = api.post("/_emulator/clients", json=bad)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"


def test_reset_forgets_the_oauth_state(emu: Emulator, api: httpx.Client) -> None:
    emu.add_user()
    emu.register_client(client_secret="changed", redirect_uris=["https://app.example/cb"])
    emu.register_client(OTHER_CLIENT)
    code = sign_in(api, emu)["code"]
    tokens = assert_tokens(exchange(api, emu, code, client_secret="changed"))
    emu.reset()
    assert emu.get_client() == emu.get_client(emu.client_id)
    client = emu.get_client()
    assert client is not None
    assert (client.client_secret, client.redirect_uris) == (DEFAULT_CLIENT_SECRET, ())
    assert emu.get_client(OTHER_CLIENT) is None
    assert_token_error(refresh(api, emu, tokens["refresh_token"]), 400, "invalid_grant")
