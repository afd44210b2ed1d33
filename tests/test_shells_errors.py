"""Both shells (``LWAMiddleware`` under uvicorn, ``LWAWSGIMiddleware`` under wsgiref) against
the emulator: every row of the error table in both styles, the headers and body of every
error, the request id, the token sources and the two-methods rule.

Each test runs once per shell (the ``served`` fixture in ``conftest.py``).
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import httpx
import pytest

from lwa_middleware.core.tokens import cookie_signer
from lwa_middleware.emulator import Emulator

from conftest import EXPECTED, OTHER_CLIENT, STYLES, Served, assert_error, bearer

NO_CALLS = {"tokeninfo": 0, "profile": 0}

# The error table ------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_missing_token(served: Served, emu: Emulator, http: httpx.Client, style: str) -> None:
    url = served(error_style=style)
    response = http.get(url + "/me")
    status = EXPECTED["missing"][style]
    if style == "rfc6750":
        assert_error(response, "invalid_request", status, challenge=False)
        assert response.headers["www-authenticate"] == 'Bearer realm="lwa"'
    else:
        assert_error(response, "invalid_request", status)
    assert emu.calls == NO_CALLS


#: Requests refused before LWA is asked ("TOKEN" stands for a good token).
LOCALLY_INVALID = {
    "two": {"x-amz-access-token": "TOKEN", "authorization": "Bearer TOKEN"},
    "oversized": {"authorization": "Bearer Atza|" + "a" * 2100},
    "2049-bytes": {"x-amz-access-token": "Atza|" + "a" * 2044},
    "control-char": {"authorization": "Bearer Atza|abc\tdef"},
    "space": {"x-amz-access-token": "Atza|abc def"},
    "angle-brackets": {"x-amz-access-token": "Atza|abc<def>"},
    "empty-bearer": {"authorization": "Bearer"},
    "empty-amz": {"x-amz-access-token": ""},
    "empty-cookie": {"cookie": "lwa_token="},
    "double-encoded": {"authorization": "Bearer Atza%257Cabc"},
}


@pytest.mark.parametrize("style", STYLES)
def test_local_invalid_request(
    served: Served, emu: Emulator, http: httpx.Client, style: str
) -> None:
    _, token = emu.mint_for(name="Ada")
    url = served(error_style=style)
    for case, headers in LOCALLY_INVALID.items():
        sent = {k: v.replace("TOKEN", token) for k, v in headers.items()}
        response = http.get(url + "/me", headers=sent)
        assert response.status_code == EXPECTED["invalid_request"][style], case
        assert_error(response, "invalid_request", EXPECTED["invalid_request"][style])
    assert emu.calls == NO_CALLS


def test_a_2048_byte_token_is_sent_to_lwa(
    served: Served, emu: Emulator, http: httpx.Client
) -> None:
    url = served()
    response = http.get(url + "/me", headers={"x-amz-access-token": "Atza|" + "a" * 2043})
    assert_error(response, "invalid_token", 400)  # the largest legal size: LWA decides
    assert emu.calls["tokeninfo"] == 1


@pytest.mark.parametrize("style", STYLES)
def test_invalid_expired_revoked_and_foreign_tokens(
    served: Served, emu: Emulator, http: httpx.Client, style: str
) -> None:
    url = served(error_style=style)
    status = EXPECTED["invalid_token"][style]
    user = emu.add_user(name="Ada")
    unknown = "Atza|" + "x" * 400
    revoked = emu.mint(user.user_id)
    emu.revoke(revoked)
    expired = emu.mint(user.user_id, lifetime=0)
    foreign = emu.mint(user.user_id, client_id=OTHER_CLIENT)
    for token in (unknown, revoked, expired, foreign):
        assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_token", status)
    foreign_body = http.get(url + "/me", headers={"x-amz-access-token": foreign}).json()
    assert "not issued to this application" in foreign_body["error_description"]


@pytest.mark.parametrize("style", STYLES)
def test_insufficient_scope(served: Served, emu: Emulator, http: httpx.Client, style: str) -> None:
    url = served(error_style=style, require_scopes={"/zip/*": "postal_code"})
    _, token = emu.mint_for(name="Ada", postal_code="98101", scopes=("profile",))
    response = http.get(url + "/zip/code", headers=bearer(token))
    assert_error(response, "insufficient_scope", EXPECTED["insufficient_scope"][style])
    assert 'scope="postal_code"' in response.headers["www-authenticate"]
    # LWA itself answering insufficient_scope: a token with no profile scope at all.
    _, bare = emu.mint_for(name="Bob", scopes=())
    response = http.get(url + "/me", headers=bearer(bare))
    assert_error(response, "insufficient_scope", EXPECTED["insufficient_scope"][style])


@pytest.mark.parametrize("style", STYLES)
def test_server_error_when_lwa_fails(
    served: Served, emu: Emulator, http: httpx.Client, style: str
) -> None:
    url = served(error_style=style)
    _, token = emu.mint_for(name="Ada")
    emu.fault("503")
    response = http.get(url + "/me", headers=bearer(token))
    assert_error(response, "ServerError", EXPECTED["ServerError"][style])


def test_request_id_reused_when_sane(served: Served, http: httpx.Client) -> None:
    url = served()
    sane = http.get(url + "/me", headers={"x-request-id": "req-123.abc:9"})
    assert sane.json()["request_id"] == "req-123.abc:9"
    assert sane.headers["x-request-id"] == "req-123.abc:9"
    for bad in ("has space", "x" * 129, "x" * 200, "<script>", ""):
        insane = http.get(url + "/me", headers={"x-request-id": bad})
        request_id = insane.json()["request_id"]
        assert request_id != bad
        assert insane.headers["x-request-id"] == request_id
        uuid.UUID(request_id)
    fresh = {http.get(url + "/me").json()["request_id"] for _ in range(3)}
    assert len(fresh) == 3


# Token sources --------------------------------------------------------------------------


class TestTokenSources:
    def test_bearer_any_case_and_amz_header(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served()
        user, token = emu.mint_for(name="Ada")
        for headers in (
            {"authorization": f"Bearer {token}"},
            {"authorization": f"bearer {token}"},
            {"authorization": f"BEARER {token}"},
            {"authorization": f"bEaReR {token}"},
            {"authorization": f"Bearer {quote(token, safe='')}"},
            {"x-amz-access-token": token},
        ):
            response = http.get(url + "/me", headers=headers)
            assert response.status_code == 200, (list(headers), response.text)
            assert response.json()["user"] == user.user_id
        assert emu.calls == {"tokeninfo": 1, "profile": 1}

    def test_encoded_token_decoded_once_never_twice(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served()
        user, token = emu.mint_for(name="Ada")
        once = quote(token, safe="")
        assert once.startswith("Atza%7C")
        twice = quote(once, safe="")
        for headers in (
            bearer(once),
            {"x-amz-access-token": once},
            {"cookie": f"lwa_token={once}"},
        ):
            assert http.get(url + "/me", headers=headers).json()["user"] == user.user_id
        for headers in (
            bearer(twice),
            {"x-amz-access-token": twice},
            {"cookie": f"lwa_token={twice}"},
        ):
            assert_error(http.get(url + "/me", headers=headers), "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 1  # the doubly encoded token never reached LWA

    def test_non_bearer_authorization_is_not_a_token(
        self, served: Served, http: httpx.Client
    ) -> None:
        url = served()
        response = http.get(url + "/me", headers={"authorization": "Basic dXNlcjpwYXNz"})
        assert_error(response, "invalid_request", 400)
        assert "missing" in response.json()["error_description"]

    def test_cookie(self, served: Served, emu: Emulator, http: httpx.Client) -> None:
        url = served()
        user, token = emu.mint_for(name="Ada")
        for cookie in (
            f"other=1; lwa_token={token}",
            f"other=1; lwa_token={token}; x=2",
            f'lwa_token="{token}"',
            f"lwa_token={quote(token, safe='')}",
        ):
            response = http.get(url + "/me", headers={"cookie": cookie})
            assert response.json()["user"] == user.user_id, cookie
        other_name = http.get(url + "/me", headers={"cookie": f"session={token}"})
        assert_error(other_name, "invalid_request", 400)

    def test_cookie_name_option(self, served: Served, emu: Emulator, http: httpx.Client) -> None:
        url = served(cookie_name="amzn_at")
        user, token = emu.mint_for(name="Ada")
        response = http.get(url + "/me", headers={"cookie": f"amzn_at={token}"})
        assert response.json()["user"] == user.user_id
        ignored = http.get(url + "/me", headers={"cookie": f"lwa_token={token}"})
        assert_error(ignored, "invalid_request", 400)

    def test_cookie_ignored_when_header_present(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served()
        ada, ada_token = emu.mint_for(name="Ada")
        _, bob_token = emu.mint_for(name="Bob")
        cookies = (
            f"lwa_token={bob_token}",
            "lwa_token=garbage",
            "lwa_token=garbage here",
            "lwa_token=",
        )
        for headers in (bearer(ada_token), {"x-amz-access-token": ada_token}):
            for cookie in cookies:
                response = http.get(url + "/me", headers={**headers, "cookie": cookie})
                assert response.status_code == 200, response.text
                assert response.json()["user"] == ada.user_id
        assert emu.calls["tokeninfo"] == 1  # Bob's cookie token was never looked at

    def test_cookie_source_can_be_disabled(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served(token_sources=["header"])
        _, token = emu.mint_for(name="Ada")
        response = http.get(url + "/me", headers={"cookie": f"lwa_token={token}"})
        assert_error(response, "invalid_request", 400)

    def test_header_source_can_be_disabled(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served(token_sources=["cookie"])
        user, token = emu.mint_for(name="Ada")
        assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_request", 400)
        # a header that is not a source does not displace the cookie
        both = http.get(url + "/me", headers={**bearer("x"), "cookie": f"lwa_token={token}"})
        assert both.json()["user"] == user.user_id

    def test_signed_cookie(self, served: Served, emu: Emulator, http: httpx.Client) -> None:
        url = served(secret_key="s3cret-s3cret-s3cret")
        user, token = emu.mint_for(name="Ada")
        signed = cookie_signer("s3cret-s3cret-s3cret").sign(token).decode()
        good = http.get(url + "/me", headers={"cookie": f"lwa_token={signed}"})
        assert good.json()["user"] == user.user_id
        unsigned = http.get(url + "/me", headers={"cookie": f"lwa_token={token}"})
        assert_error(unsigned, "invalid_token", 400)
        forged = cookie_signer("other-other-other").sign(token).decode()
        assert http.get(url + "/me", headers={"cookie": f"lwa_token={forged}"}).status_code == 400
        # a header token needs no signature
        header = http.get(url + "/me", headers=bearer(token))
        assert header.json()["user"] == user.user_id

    def test_query_only_when_enabled(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        user, token = emu.mint_for(name="Ada")
        off = served()
        assert_error(http.get(off + "/me", params={"access_token": token}), "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 0
        on = served(token_sources=["header", "query"])
        response = http.get(on + "/me", params={"access_token": token, "q": "1"})
        assert response.json()["user"] == user.user_id

    def test_query_decoded_once_never_twice(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served(token_sources=["header", "query"])
        user, token = emu.mint_for(name="Ada")
        once = http.get(url + "/me?access_token=" + quote(token, safe=""))
        assert once.json()["user"] == user.user_id
        twice = http.get(url + "/me?access_token=" + quote(quote(token, safe=""), safe=""))
        assert_error(twice, "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 1

    def test_two_methods_is_invalid_request(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served(token_sources=["header", "query", "cookie"])
        _, token = emu.mint_for(name="Ada")
        places = {
            "authorization": ({"authorization": f"Bearer {token}"}, {}),
            "amz": ({"x-amz-access-token": token}, {}),
            "query": ({}, {"access_token": token}),
        }
        for first, second in [
            ("authorization", "query"),
            ("amz", "query"),
            ("authorization", "amz"),
        ]:
            headers = places[first][0] | places[second][0]
            params = places[first][1] | places[second][1]
            response = http.get(url + "/me", headers=headers, params=params)
            assert response.status_code == 400, (first, second)
            assert_error(response, "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 0

    def test_two_bearer_headers(self, served: Served, emu: Emulator, http: httpx.Client) -> None:
        url = served()
        _, token = emu.mint_for(name="Ada")
        response = http.get(url + "/me", headers=[("authorization", f"Bearer {token}")] * 2)
        assert_error(response, "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 0
