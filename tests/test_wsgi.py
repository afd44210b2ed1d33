"""LWAWSGIMiddleware through a threaded WSGI server against the emulator: every row of the
error table in both styles, the headers and body of every error, the token sources, the
path rules, what the app sees in ``environ`` and the ``on_error`` hook.

The ``wsgi_protected`` and ``http`` fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import pytest

from lwa_middleware import LWAError, LWAWSGIMiddleware
from lwa_middleware.emulator import Emulator, serve_wsgi

from conftest import (
    EXPECTED,
    OTHER_CLIENT,
    STYLES,
    ServeWSGI,
    assert_error,
    bearer,
    wsgi_whoami,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# The error table ------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_missing_token(
    wsgi_protected: ServeWSGI, emu: Emulator, style: str, http: httpx.Client
) -> None:
    url = wsgi_protected(error_style=style)
    response = http.get(url + "/me")
    status = EXPECTED["missing"][style]
    if style == "rfc6750":
        assert_error(response, "invalid_request", status, challenge=False)
        assert response.headers["www-authenticate"] == 'Bearer realm="lwa"'
    else:
        assert_error(response, "invalid_request", status)
    assert emu.calls == {"tokeninfo": 0, "profile": 0}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"x-amz-access-token": "TOKEN", "authorization": "Bearer TOKEN"}, id="two"),
        pytest.param({"authorization": "Bearer Atza|" + "a" * 2100}, id="oversized"),
        pytest.param({"x-amz-access-token": "Atza|" + "a" * 2044}, id="2049-bytes"),
        pytest.param({"authorization": "Bearer Atza|abc\tdef"}, id="control-char"),
        pytest.param({"x-amz-access-token": "Atza|abc def"}, id="space"),
        pytest.param({"x-amz-access-token": "Atza|abc<def>"}, id="angle-brackets"),
        pytest.param({"authorization": "Bearer"}, id="empty-bearer"),
        pytest.param({"x-amz-access-token": ""}, id="empty-amz"),
        pytest.param({"cookie": "lwa_token="}, id="empty-cookie"),
        pytest.param({"authorization": "Bearer Atza%257Cabc"}, id="double-encoded"),
    ],
)
def test_local_invalid_request(
    wsgi_protected: ServeWSGI,
    emu: Emulator,
    style: str,
    headers: dict[str, str],
    http: httpx.Client,
) -> None:
    _, token = emu.mint_for(name="Ada")
    url = wsgi_protected(error_style=style)
    headers = {k: v.replace("TOKEN", token) for k, v in headers.items()}
    response = http.get(url + "/me", headers=headers)
    assert_error(response, "invalid_request", EXPECTED["invalid_request"][style])
    assert emu.calls == {"tokeninfo": 0, "profile": 0}


def test_a_2048_byte_token_is_sent_to_lwa(
    wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
) -> None:
    url = wsgi_protected()
    response = http.get(url + "/me", headers={"x-amz-access-token": "Atza|" + "a" * 2043})
    assert_error(response, "invalid_token", 400)  # the largest legal size: LWA decides
    assert emu.calls["tokeninfo"] == 1


@pytest.mark.parametrize("style", STYLES)
def test_invalid_expired_revoked_and_foreign_tokens(
    wsgi_protected: ServeWSGI, emu: Emulator, style: str, http: httpx.Client
) -> None:
    url = wsgi_protected(error_style=style)
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
def test_insufficient_scope(
    wsgi_protected: ServeWSGI, emu: Emulator, style: str, http: httpx.Client
) -> None:
    url = wsgi_protected(error_style=style, require_scopes={"/zip/*": "postal_code"})
    _, token = emu.mint_for(name="Ada", scopes=("profile",))
    response = http.get(url + "/zip/code", headers=bearer(token))
    assert_error(response, "insufficient_scope", EXPECTED["insufficient_scope"][style])
    assert 'scope="postal_code"' in response.headers["www-authenticate"]
    # LWA itself answering insufficient_scope: a token with no profile scope at all.
    _, bare = emu.mint_for(name="Bob", scopes=())
    response = http.get(url + "/me", headers=bearer(bare))
    assert_error(response, "insufficient_scope", EXPECTED["insufficient_scope"][style])


@pytest.mark.parametrize("style", STYLES)
def test_server_error_when_lwa_fails(
    wsgi_protected: ServeWSGI, emu: Emulator, style: str, http: httpx.Client
) -> None:
    url = wsgi_protected(error_style=style)
    _, token = emu.mint_for(name="Ada")
    emu.fault("503")
    response = http.get(url + "/me", headers=bearer(token))
    assert_error(response, "ServerError", EXPECTED["ServerError"][style])


def test_request_id_reused_when_sane(wsgi_protected: ServeWSGI, http: httpx.Client) -> None:
    url = wsgi_protected()
    sane = http.get(url + "/me", headers={"x-request-id": "req-123.abc:9"})
    assert sane.json()["request_id"] == "req-123.abc:9"
    assert sane.headers["x-request-id"] == "req-123.abc:9"
    for bad in ("has space", "x" * 129, "<script>", ""):
        insane = http.get(url + "/me", headers={"x-request-id": bad})
        request_id = insane.json()["request_id"]
        assert request_id != bad
        assert insane.headers["x-request-id"] == request_id
        uuid.UUID(request_id)
    fresh = {http.get(url + "/me").json()["request_id"] for _ in range(3)}
    assert len(fresh) == 3


def test_on_error_hook(wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client) -> None:
    seen: list[tuple[str, str]] = []

    def teapot(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("418 I'm a teapot", [("content-type", "text/plain")])
        return [b"custom"]

    def on_error(environ: WSGIEnvironment, error: LWAError) -> WSGIApplication | None:
        seen.append((environ["PATH_INFO"], error.error))
        return teapot if environ["PATH_INFO"].startswith("/custom") else None

    url = wsgi_protected(on_error=on_error)
    custom = http.get(url + "/custom")
    assert custom.status_code == 418
    assert custom.text == "custom"
    assert_error(http.get(url + "/other"), "invalid_request", 400)
    _, token = emu.mint_for(name="Ada")
    emu.revoke(token)
    assert http.get(url + "/custom/x", headers=bearer(token)).status_code == 418
    assert seen == [
        ("/custom", "invalid_request"),
        ("/other", "invalid_request"),
        ("/custom/x", "invalid_token"),
    ]


# Token sources --------------------------------------------------------------------------


class TestTokenSources:
    def test_bearer_any_case_and_amz_header(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected()
        user, token = emu.mint_for(name="Ada")
        for headers in (
            {"authorization": f"Bearer {token}"},
            {"authorization": f"bearer {token}"},
            {"authorization": f"BEARER {token}"},
            {"authorization": f"bEaReR {token}"},
            {"x-amz-access-token": token},
        ):
            response = http.get(url + "/me", headers=headers)
            assert response.status_code == 200, (list(headers), response.text)
            assert response.json()["user"] == user.user_id
        assert emu.calls == {"tokeninfo": 1, "profile": 1}

    def test_encoded_token_decoded_once_never_twice(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected()
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
        self, wsgi_protected: ServeWSGI, http: httpx.Client
    ) -> None:
        url = wsgi_protected()
        response = http.get(url + "/me", headers={"authorization": "Basic dXNlcjpwYXNz"})
        assert_error(response, "invalid_request", 400)
        assert "missing" in response.json()["error_description"]

    def test_cookie(self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client) -> None:
        url = wsgi_protected()
        user, token = emu.mint_for(name="Ada")
        response = http.get(url + "/me", headers={"cookie": f"other=1; lwa_token={token}; x=2"})
        assert response.json()["user"] == user.user_id
        quoted = http.get(url + "/me", headers={"cookie": f'lwa_token="{token}"'})
        assert quoted.json()["user"] == user.user_id
        other_name = http.get(url + "/me", headers={"cookie": f"session={token}"})
        assert_error(other_name, "invalid_request", 400)

    def test_cookie_name_option(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected(cookie_name="amzn_at")
        user, token = emu.mint_for(name="Ada")
        response = http.get(url + "/me", headers={"cookie": f"amzn_at={token}"})
        assert response.json()["user"] == user.user_id
        ignored = http.get(url + "/me", headers={"cookie": f"lwa_token={token}"})
        assert_error(ignored, "invalid_request", 400)

    def test_cookie_ignored_when_header_present(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected()
        ada, ada_token = emu.mint_for(name="Ada")
        _, bob_token = emu.mint_for(name="Bob")
        for headers in (bearer(ada_token), {"x-amz-access-token": ada_token}):
            for cookie in (f"lwa_token={bob_token}", "lwa_token=garbage here", "lwa_token="):
                response = http.get(url + "/me", headers={**headers, "cookie": cookie})
                assert response.status_code == 200, response.text
                assert response.json()["user"] == ada.user_id
        assert emu.calls["tokeninfo"] == 1  # Bob's cookie token was never looked at

    def test_cookie_source_can_be_disabled(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected(token_sources=["header"])
        _, token = emu.mint_for(name="Ada")
        response = http.get(url + "/me", headers={"cookie": f"lwa_token={token}"})
        assert_error(response, "invalid_request", 400)

    def test_header_source_can_be_disabled(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected(token_sources=["cookie"])
        user, token = emu.mint_for(name="Ada")
        assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_request", 400)
        # a header that is not a source does not displace the cookie
        both = http.get(url + "/me", headers={**bearer("x"), "cookie": f"lwa_token={token}"})
        assert both.json()["user"] == user.user_id

    def test_query_only_when_enabled(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        user, token = emu.mint_for(name="Ada")
        off = wsgi_protected()
        assert_error(http.get(off + "/me", params={"access_token": token}), "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 0
        on = wsgi_protected(token_sources=["header", "query"])
        response = http.get(on + "/me", params={"access_token": token, "q": "1"})
        assert response.json()["user"] == user.user_id

    def test_query_decoded_once_never_twice(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected(token_sources=["header", "query"])
        user, token = emu.mint_for(name="Ada")
        once = http.get(url + "/me?access_token=" + quote(token, safe=""))
        assert once.json()["user"] == user.user_id
        twice = http.get(url + "/me?access_token=" + quote(quote(token, safe=""), safe=""))
        assert_error(twice, "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 1

    @pytest.mark.parametrize(
        "where",
        [("authorization", "query"), ("amz", "query"), ("authorization", "amz")],
    )
    def test_two_methods_is_invalid_request(
        self, wsgi_protected: ServeWSGI, emu: Emulator, where: tuple[str, str], http: httpx.Client
    ) -> None:
        url = wsgi_protected(token_sources=["header", "query", "cookie"])
        _, token = emu.mint_for(name="Ada")
        headers: dict[str, str] = {}
        params: dict[str, str] = {}
        for place in where:
            if place == "authorization":
                headers["authorization"] = f"Bearer {token}"
            elif place == "amz":
                headers["x-amz-access-token"] = token
            else:
                params["access_token"] = token
        response = http.get(url + "/me", headers=headers, params=params)
        assert_error(response, "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 0

    def test_two_bearer_headers(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected()
        _, token = emu.mint_for(name="Ada")
        response = http.get(url + "/me", headers=[("authorization", f"Bearer {token}")] * 2)
        assert_error(response, "invalid_request", 400)
        assert emu.calls["tokeninfo"] == 0


# Audience, scopes and what the app sees --------------------------------------------------


def test_identity_and_remote_user_set_for_the_app(
    wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
) -> None:
    url = wsgi_protected()
    user, token = emu.mint_for(
        name="Ada Lovelace", email="ada@example.com", scopes=("profile", "postal_code")
    )
    body = http.get(url + "/me", headers=bearer(token)).json()
    assert body == {
        "path": "/me",
        "has_lwa": True,
        "remote_user": user.user_id,
        "user": user.user_id,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "postal_code": "98101",
        "scopes": ["postal_code", "profile", "profile:user_id"],
        "aud": emu.client_id,
    }


def test_app_id_accepted_when_configured(
    wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
) -> None:
    user = emu.add_user(name="Ada")
    mobile = emu.mint(user.user_id, client_id="amzn1.application-oa2-client.mobile")
    strict = wsgi_protected()
    assert_error(http.get(strict + "/me", headers=bearer(mobile)), "invalid_token", 400)
    lenient = wsgi_protected(app_ids=[emu.app_id])
    body = http.get(lenient + "/me", headers=bearer(mobile)).json()
    assert body["user"] == user.user_id
    assert body["aud"] == "amzn1.application-oa2-client.mobile"
    other_app = emu.mint(user.user_id, client_id=OTHER_CLIENT, app_id="amzn1.application.other")
    assert_error(http.get(lenient + "/me", headers=bearer(other_app)), "invalid_token", 400)


def test_require_scopes_profile_satisfies_user_id(
    wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
) -> None:
    url = wsgi_protected(require_scopes={"/ids/*": "profile:user_id", "/names/*": "profile"})
    user, narrow = emu.mint_for(name="Ada", scopes=("profile:user_id",))
    body = http.get(url + "/ids/1", headers=bearer(narrow)).json()
    assert body["user"] == user.user_id
    assert body["name"] is None
    assert body["scopes"] == ["profile:user_id"]
    assert_error(http.get(url + "/names/1", headers=bearer(narrow)), "insufficient_scope", 401)
    _, full = emu.mint_for(name="Bob", scopes=("profile",))
    assert http.get(url + "/ids/1", headers=bearer(full)).status_code == 200  # ⊇ user_id
    assert http.get(url + "/names/1", headers=bearer(full)).status_code == 200


class TestPathRules:
    def test_exclude_skips_verification_even_with_a_bad_token(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected(exclude=["/health", "/static/*"])
        for path in ("/health", "/static/app.css"):
            for headers in ({}, bearer("Atza|" + "x" * 400), bearer("not a token!")):
                response = http.get(url + path, headers=headers)
                assert response.status_code == 200
                assert response.json()["has_lwa"] is False
        assert emu.calls == {"tokeninfo": 0, "profile": 0}
        assert_error(http.get(url + "/healthz"), "invalid_request", 400)

    def test_exclude_is_judged_on_the_normalized_path(
        self, wsgi_protected: ServeWSGI, http: httpx.Client
    ) -> None:
        url = wsgi_protected(exclude=["/public/*"])
        # httpx would resolve the dots itself: send the raw path.
        request = http.build_request("GET", url + "/x")
        request.url = request.url.copy_with(raw_path=b"/public/../admin")
        response = http.send(request)
        assert_error(response, "invalid_request", 400)

    def test_optional_without_token_is_anonymous(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected(optional=["/feed*"])
        body = http.get(url + "/feed").json()
        assert body["has_lwa"] is True
        assert body["user"] is None
        assert body["remote_user"] is None
        assert emu.calls == {"tokeninfo": 0, "profile": 0}

    def test_anonymous_request_drops_a_remote_user_set_in_front(
        self, emu: Emulator, emu_url: str, http: httpx.Client
    ) -> None:
        middleware = LWAWSGIMiddleware(
            wsgi_whoami, client_ids=[emu.client_id], api_base_url=emu_url, optional=["/*"]
        )

        def in_front(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            environ["REMOTE_USER"] = "someone-upstream"
            return middleware(environ, start_response)

        try:
            with serve_wsgi(in_front) as handle:
                body = http.get(handle.url + "/feed").json()
        finally:
            middleware.close()
        assert body["has_lwa"] is True
        assert body["user"] is None
        assert body["remote_user"] is None

    def test_optional_with_tokens(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected(optional=["/feed*"], require_scopes={"/feed/zip": "postal_code"})
        user, token = emu.mint_for(name="Ada")
        body = http.get(url + "/feed", headers=bearer(token)).json()
        assert body["user"] == user.user_id
        assert body["remote_user"] == user.user_id
        _, revoked = emu.mint_for(name="Bob")
        emu.revoke(revoked)
        assert_error(http.get(url + "/feed", headers=bearer(revoked)), "invalid_token", 400)
        assert_error(http.get(url + "/feed", headers=bearer("a b")), "invalid_request", 400)
        # anonymous on a scoped optional path is allowed; a token lacking the scope is not
        assert http.get(url + "/feed/zip").json()["user"] is None
        _, narrow = emu.mint_for(name="Cy", scopes=("profile",))
        assert_error(http.get(url + "/feed/zip", headers=bearer(narrow)), "insufficient_scope", 401)

    def test_unmatched_path_passes_untouched(
        self, wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client
    ) -> None:
        url = wsgi_protected(protect=["/api/*"])
        for headers in ({}, bearer("Atza|" + "x" * 400)):
            body = http.get(url + "/elsewhere", headers=headers).json()
            assert body["has_lwa"] is False
            assert body["remote_user"] is None
        assert emu.calls == {"tokeninfo": 0, "profile": 0}
        assert_error(http.get(url + "/api/me"), "invalid_request", 400)
