"""Both shells against the emulator: what the app sees, the audience (``client_ids`` and
``app_ids``), ``require_scopes`` and the path rules (``exclude``, ``optional``, ``protect``,
judged on the normalized path).

Each test runs once per shell (the ``served`` fixture in ``conftest.py``); ``principal`` in
the app's answer is Starlette's ``request.user`` (ASGI) or ``REMOTE_USER`` (WSGI).
"""

from __future__ import annotations

import httpx

from lwa_middleware.emulator import Emulator

from conftest import OTHER_CLIENT, Served, assert_error, bearer, raw_get

NO_CALLS = {"tokeninfo": 0, "profile": 0}
UNKNOWN = "Atza|" + "x" * 400  # well formed, but LWA does not know it


def test_identity_seen_by_the_app(served: Served, emu: Emulator, http: httpx.Client) -> None:
    url = served()
    user, token = emu.mint_for(
        name="Ada Lovelace", email="ada@example.com", scopes=("profile", "postal_code")
    )
    body = http.get(url + "/me", headers=bearer(token)).json()
    assert body == {
        "path": "/me",
        "has_lwa": True,
        "principal": user.user_id,
        "user": user.user_id,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "postal_code": "98101",
        "scopes": ["postal_code", "profile", "profile:user_id"],
        "aud": emu.client_id,
    }


def test_app_id_accepted_when_configured(served: Served, emu: Emulator, http: httpx.Client) -> None:
    user = emu.add_user(name="Ada")
    mobile = emu.mint(user.user_id, client_id="amzn1.application-oa2-client.mobile")
    strict = served()
    assert_error(http.get(strict + "/me", headers=bearer(mobile)), "invalid_token", 400)
    lenient = served(app_ids=[emu.app_id])
    body = http.get(lenient + "/me", headers=bearer(mobile)).json()
    assert body["user"] == user.user_id
    assert body["aud"] == "amzn1.application-oa2-client.mobile"
    other_app = emu.mint(user.user_id, client_id=OTHER_CLIENT, app_id="amzn1.application.other")
    assert_error(http.get(lenient + "/me", headers=bearer(other_app)), "invalid_token", 400)


def test_require_scopes_profile_satisfies_user_id(
    served: Served, emu: Emulator, http: httpx.Client
) -> None:
    url = served(require_scopes={"/ids/*": "profile:user_id", "/names/*": "profile"})
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
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served(exclude=["/health", "/static/*"])
        for path in ("/health", "/static/app.css"):
            for headers in ({}, bearer(UNKNOWN), bearer("not a token!")):
                response = http.get(url + path, headers=headers)
                assert response.status_code == 200
                body = response.json()
                assert body["has_lwa"] is False  # passed through untouched
                assert body["principal"] is None
        assert emu.calls == NO_CALLS
        assert_error(http.get(url + "/healthz"), "invalid_request", 400)

    def test_exclude_wins_over_optional_and_protect(
        self, served: Served, http: httpx.Client
    ) -> None:
        url = served(exclude=["/a/*"], optional=["/a/*", "/b/*"], protect=["/*"])
        assert http.get(url + "/a/1").json()["has_lwa"] is False
        assert http.get(url + "/b/1").json()["has_lwa"] is True
        assert_error(http.get(url + "/c/1"), "invalid_request", 400)

    def test_exclude_is_judged_on_the_normalized_path(
        self, served: Served, http: httpx.Client
    ) -> None:
        url = served(exclude=["/public/*"])
        for raw_path in (b"/public/../admin", b"/public/%2e%2e/private", b"//public/../private"):
            response = raw_get(http, url, raw_path)
            assert response.status_code == 400, raw_path
            assert_error(response, "invalid_request", 400)
        for path in ("/public/%2e%2e/private", "//public/../private"):  # as httpx sends them
            assert_error(http.get(url + path), "invalid_request", 400)

    def test_optional_without_token_is_anonymous(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served(optional=["/feed*"])
        body = http.get(url + "/feed").json()
        assert body["has_lwa"] is True
        assert body["user"] is None
        assert body["principal"] is None
        assert emu.calls == NO_CALLS

    def test_optional_with_tokens(self, served: Served, emu: Emulator, http: httpx.Client) -> None:
        url = served(optional=["/feed*"], require_scopes={"/feed/zip": "postal_code"})
        user, token = emu.mint_for(name="Ada")
        body = http.get(url + "/feed", headers=bearer(token)).json()
        assert body["user"] == user.user_id
        assert body["principal"] == user.user_id
        _, revoked = emu.mint_for(name="Bob")
        emu.revoke(revoked)
        assert_error(http.get(url + "/feed", headers=bearer(revoked)), "invalid_token", 400)
        assert_error(http.get(url + "/feed", headers=bearer(UNKNOWN)), "invalid_token", 400)
        assert_error(http.get(url + "/feed", headers=bearer("a b")), "invalid_request", 400)
        # anonymous on a scoped optional path is allowed; a token lacking the scope is not
        assert http.get(url + "/feed/zip").json()["user"] is None
        _, narrow = emu.mint_for(name="Cy", scopes=("profile",))
        assert_error(http.get(url + "/feed/zip", headers=bearer(narrow)), "insufficient_scope", 401)

    def test_unmatched_path_passes_untouched(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served(protect=["/api/*"])
        for headers in ({}, bearer(UNKNOWN)):
            body = http.get(url + "/elsewhere", headers=headers).json()
            assert body["has_lwa"] is False
            assert body["principal"] is None
        assert emu.calls == NO_CALLS
        assert_error(http.get(url + "/api/me"), "invalid_request", 400)
        user, token = emu.mint_for(name="Ada")
        assert http.get(url + "/api/me", headers=bearer(token)).json()["user"] == user.user_id
