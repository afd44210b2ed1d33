"""LWAMiddleware through uvicorn against the emulator: every row of the error table in both
styles, the headers and body of every error, the token sources and the two-methods rule."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import httpx
import pytest

from lwa_middleware.emulator import Emulator

from conftest import EXPECTED, STYLES, ServeProtected, assert_error


@pytest.mark.parametrize("style", STYLES)
def test_missing_token(protected: ServeProtected, style: str) -> None:
    url = protected(error_style=style)
    response = httpx.get(url + "/me")
    status = EXPECTED["missing"][style]
    if style == "rfc6750":
        assert_error(response, "invalid_request", status, challenge=False)
        assert response.headers["www-authenticate"] == 'Bearer realm="lwa"'
    else:
        assert_error(response, "invalid_request", status)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"x-amz-access-token": "TOKEN", "authorization": "Bearer TOKEN"}, id="two"),
        pytest.param({"authorization": "Bearer Atza|" + "a" * 2100}, id="oversized"),
        pytest.param({"authorization": "Bearer Atza|abc\tdef"}, id="control-char"),
        pytest.param({"x-amz-access-token": "Atza|abc def"}, id="space"),
        pytest.param({"authorization": "Bearer"}, id="empty-bearer"),
        pytest.param({"x-amz-access-token": ""}, id="empty-amz"),
        pytest.param({"authorization": "Bearer Atza%257Cabc"}, id="double-encoded"),
    ],
)
def test_local_invalid_request(
    protected: ServeProtected, emu: Emulator, style: str, headers: dict[str, str]
) -> None:
    _, token = emu.mint_for(name="Ada")
    url = protected(error_style=style)
    headers = {k: v.replace("TOKEN", token) for k, v in headers.items()}
    response = httpx.get(url + "/me", headers=headers)
    assert_error(response, "invalid_request", EXPECTED["invalid_request"][style])
    assert emu.calls["tokeninfo"] == 0 and emu.calls["profile"] == 0


@pytest.mark.parametrize("style", STYLES)
def test_invalid_expired_revoked_and_foreign_tokens(
    protected: ServeProtected, emu: Emulator, style: str
) -> None:
    url = protected(error_style=style)
    status = EXPECTED["invalid_token"][style]
    user = emu.add_user(name="Ada")
    unknown = "Atza|" + "x" * 400
    revoked = emu.mint(user.user_id)
    emu.revoke(revoked)
    expired = emu.mint(user.user_id, lifetime=0)
    foreign = emu.mint(user.user_id, client_id="amzn1.application-oa2-client.someone-else")
    for token in (unknown, revoked, expired, foreign):
        response = httpx.get(url + "/me", headers={"authorization": f"Bearer {token}"})
        assert_error(response, "invalid_token", status)
    foreign_body = httpx.get(url + "/me", headers={"x-amz-access-token": foreign}).json()
    assert "not issued to this application" in foreign_body["error_description"]


@pytest.mark.parametrize("style", STYLES)
def test_insufficient_scope(protected: ServeProtected, emu: Emulator, style: str) -> None:
    url = protected(error_style=style, require_scopes={"/zip/*": "postal_code"})
    _, token = emu.mint_for(name="Ada", postal_code="98101", scopes=("profile",))
    response = httpx.get(url + "/zip/code", headers={"authorization": f"Bearer {token}"})
    assert_error(response, "insufficient_scope", EXPECTED["insufficient_scope"][style])
    assert 'scope="postal_code"' in response.headers["www-authenticate"]
    # LWA itself answering insufficient_scope (a token with no profile scope at all)
    _, bare = emu.mint_for(name="Bob", scopes=())
    response = httpx.get(url + "/me", headers={"authorization": f"Bearer {bare}"})
    assert_error(response, "insufficient_scope", EXPECTED["insufficient_scope"][style])


@pytest.mark.parametrize("style", STYLES)
def test_server_error_when_lwa_fails(protected: ServeProtected, emu: Emulator, style: str) -> None:
    url = protected(error_style=style)
    _, token = emu.mint_for(name="Ada")
    emu.fault("503")
    response = httpx.get(url + "/me", headers={"authorization": f"Bearer {token}"})
    assert_error(response, "ServerError", EXPECTED["ServerError"][style])


def test_request_id_reused_when_sane(protected: ServeProtected) -> None:
    url = protected()
    sane = httpx.get(url + "/me", headers={"x-request-id": "req-123.abc:9"})
    assert sane.json()["request_id"] == "req-123.abc:9"
    for bad in ("has space", "x" * 200, "<script>"):
        insane = httpx.get(url + "/me", headers={"x-request-id": bad})
        rid = insane.json()["request_id"]
        assert rid != bad
        uuid.UUID(rid)


def test_on_error_hook(protected: ServeProtected) -> None:
    from starlette.requests import HTTPConnection
    from starlette.responses import PlainTextResponse

    from lwa_middleware import LWAError

    seen: list[str] = []

    async def on_error(conn: HTTPConnection, error: LWAError) -> PlainTextResponse | None:
        seen.append(error.error)
        if conn.url.path.startswith("/custom"):
            return PlainTextResponse(f"custom {error.error}", status_code=418)
        return None

    url = protected(on_error=on_error)
    custom = httpx.get(url + "/custom")
    assert custom.status_code == 418 and custom.text == "custom invalid_request"
    default = httpx.get(url + "/other")
    assert_error(default, "invalid_request", 400)
    assert seen == ["invalid_request", "invalid_request"]


class TestTokenSources:
    def test_bearer_any_case_and_amz_header(self, protected: ServeProtected, emu: Emulator) -> None:
        url = protected()
        user, token = emu.mint_for(name="Ada")
        for headers in (
            {"authorization": f"Bearer {token}"},
            {"authorization": f"bearer {token}"},
            {"authorization": f"BEARER {token}"},
            {"x-amz-access-token": token},
            {"authorization": f"Bearer {quote(token, safe='')}"},
        ):
            response = httpx.get(url + "/me", headers=headers)
            assert response.status_code == 200, (headers.keys(), response.text)
            assert response.json()["user"] == user.user_id

    def test_non_bearer_authorization_is_not_a_token(self, protected: ServeProtected) -> None:
        url = protected()
        response = httpx.get(url + "/me", headers={"authorization": "Basic dXNlcjpwYXNz"})
        assert_error(response, "invalid_request", 400)
        assert "missing" in response.json()["error_description"]

    def test_cookie(self, protected: ServeProtected, emu: Emulator) -> None:
        url = protected()
        user, token = emu.mint_for(name="Ada")
        response = httpx.get(url + "/me", headers={"cookie": f"other=1; lwa_token={token}"})
        assert response.json()["user"] == user.user_id
        encoded = httpx.get(url + "/me", headers={"cookie": f"lwa_token={quote(token, safe='')}"})
        assert encoded.json()["user"] == user.user_id

    def test_cookie_ignored_when_header_present(
        self, protected: ServeProtected, emu: Emulator
    ) -> None:
        url = protected()
        ada, ada_token = emu.mint_for(name="Ada")
        _, bob_token = emu.mint_for(name="Bob")
        response = httpx.get(
            url + "/me",
            headers={"authorization": f"Bearer {ada_token}", "cookie": f"lwa_token={bob_token}"},
        )
        assert response.status_code == 200
        assert response.json()["user"] == ada.user_id
        bad_cookie = httpx.get(
            url + "/me",
            headers={"authorization": f"Bearer {ada_token}", "cookie": "lwa_token=garbage"},
        )
        assert bad_cookie.json()["user"] == ada.user_id

    def test_cookie_source_can_be_disabled(self, protected: ServeProtected, emu: Emulator) -> None:
        url = protected(token_sources=["header"])
        _, token = emu.mint_for(name="Ada")
        response = httpx.get(url + "/me", headers={"cookie": f"lwa_token={token}"})
        assert_error(response, "invalid_request", 400)

    def test_signed_cookie(self, protected: ServeProtected, emu: Emulator) -> None:
        from lwa_middleware.tokens import cookie_signer

        url = protected(secret_key="s3cret")
        user, token = emu.mint_for(name="Ada")
        signed = cookie_signer("s3cret").sign(token).decode()
        good = httpx.get(url + "/me", headers={"cookie": f"lwa_token={signed}"})
        assert good.json()["user"] == user.user_id
        unsigned = httpx.get(url + "/me", headers={"cookie": f"lwa_token={token}"})
        assert_error(unsigned, "invalid_token", 400)
        forged = cookie_signer("other").sign(token).decode()
        assert httpx.get(url + "/me", headers={"cookie": f"lwa_token={forged}"}).status_code == 400
        # a header token needs no signature
        header = httpx.get(url + "/me", headers={"authorization": f"Bearer {token}"})
        assert header.json()["user"] == user.user_id

    def test_query_only_when_enabled(self, protected: ServeProtected, emu: Emulator) -> None:
        user, token = emu.mint_for(name="Ada")
        off = protected()
        response = httpx.get(off + "/me", params={"access_token": token})
        assert_error(response, "invalid_request", 400)
        on = protected(token_sources=["header", "query"])
        response = httpx.get(on + "/me", params={"access_token": token})
        assert response.json()["user"] == user.user_id

    def test_query_decoded_once_never_twice(self, protected: ServeProtected, emu: Emulator) -> None:
        url = protected(token_sources=["header", "query"])
        user, token = emu.mint_for(name="Ada")
        once = httpx.get(url + "/me?access_token=" + quote(token, safe=""))
        assert once.json()["user"] == user.user_id
        twice = httpx.get(url + "/me?access_token=" + quote(quote(token, safe=""), safe=""))
        assert_error(twice, "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 1

    @pytest.mark.parametrize(
        "where",
        [("authorization", "query"), ("x-amz-access-token", "query"), ("authorization", "amz")],
    )
    def test_two_methods_is_invalid_request(
        self, protected: ServeProtected, emu: Emulator, where: tuple[str, str]
    ) -> None:
        url = protected(token_sources=["header", "query", "cookie"])
        _, token = emu.mint_for(name="Ada")
        headers: dict[str, str] = {}
        params: dict[str, str] = {}
        for place in where:
            if place == "authorization":
                headers["authorization"] = f"Bearer {token}"
            elif place in ("amz", "x-amz-access-token"):
                headers["x-amz-access-token"] = token
            else:
                params["access_token"] = token
        response = httpx.get(url + "/me", headers=headers, params=params)
        assert_error(response, "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 0

    def test_two_bearer_headers(self, protected: ServeProtected, emu: Emulator) -> None:
        url = protected()
        _, token = emu.mint_for(name="Ada")
        response = httpx.get(
            url + "/me",
            headers=[("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")],
        )
        assert_error(response, "invalid_request", 400)
