"""Cross-site request forgery protection: the pure rule (``lwa_middleware.core.csrf``) and both
shells through real servers against the emulator.

A cookie-authenticated request whose method can change state needs an ``Origin`` (or,
without one, a ``Referer``) of the request's own origin or a trusted one; anything else is
403 ``invalid_request`` with no ``WWW-Authenticate``, before any call to LWA and before the
app, warm (cached) token or not.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from lwa_middleware.core.csrf import (
    CSRFPolicy,
    OriginHeaders,
    normalize_origin,
    referer_origin,
    request_origin,
)
from lwa_middleware.core.errors import (
    ConfigurationError,
    CrossSiteRequest,
    ErrorStyle,
    render_error,
    www_authenticate,
)
from lwa_middleware.core.gate import Gate
from lwa_middleware.core.settings import LWASettings
from lwa_middleware.core.tokens import cookie_signer
from lwa_middleware.emulator import Emulator

from conftest import APP_HEADER, STYLES, Served, assert_error, bearer

NO_CALLS = {"tokeninfo": 0, "profile": 0}
EVIL = "https://evil.example"


def cookie(token: str, name: str = "lwa_token") -> dict[str, str]:
    return {"cookie": f"{name}={token}"}


def assert_forgery(response: httpx.Response) -> None:
    """The 403 forgery answer: documented body, no challenge, the app never ran."""
    body = assert_error(response, "invalid_request", 403, challenge=False)
    assert "www-authenticate" not in response.headers
    assert body["error_description"].startswith("Cross-site request refused")


# The pure rule ----------------------------------------------------------------------------


class TestOrigins:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("https://App.Example.com", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://app.example.com:80", "http://app.example.com"),
            ("http://app.example.com:8080", "http://app.example.com:8080"),
            ("https://app.example.com:80", "https://app.example.com:80"),
            ("http://[::1]:8000", "http://[::1]:8000"),
            ("null", None),
            ("", None),
            ("ftp://app.example.com", None),
            ("https://app.example.com/", None),
            ("https://app.example.com/path", None),
            ("https://user@app.example.com", None),
            ("https://app.example.com:99999", None),
            ("https://a.example, https://b.example", None),
            ("https://", None),
        ],
    )
    def test_normalize_origin(self, value: str, expected: str | None) -> None:
        assert normalize_origin(value) == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("https://app.example.com/page?q=1#x", "https://app.example.com"),
            ("http://app.example.com:80/", "http://app.example.com"),
            ("https://user:pw@app.example.com/", None),
            ("/relative/path", None),
            ("android-app://com.example/", None),
            ("http://[::1/", None),
        ],
    )
    def test_referer_origin(self, value: str, expected: str | None) -> None:
        assert referer_origin(value) == expected

    def test_request_origin(self) -> None:
        assert request_origin("http", ["Example.com:80"]) == "http://example.com"
        assert request_origin("https", ["example.com:443"]) == "https://example.com"
        assert request_origin("https", ["example.com:8443"]) == "https://example.com:8443"
        assert request_origin("wss", ["example.com"]) == "https://example.com"
        assert request_origin("http", [], ("127.0.0.1", 8000)) == "http://127.0.0.1:8000"
        assert request_origin("http", [], ("::1", 80)) == "http://[::1]"
        assert request_origin("http", [], ("/tmp/app.sock", None)) is None
        assert request_origin("http", []) is None
        assert request_origin("http", ["a.example", "b.example"]) is None  # two Host headers
        assert request_origin("http", ["a.example/evil"]) is None

    def test_the_policy(self) -> None:
        policy = CSRFPolicy(True, ["https://app.example.com:443"])
        assert policy.trusted == {"https://app.example.com"}
        for method in ("GET", "HEAD", "OPTIONS", "TRACE", None):
            assert not policy.guards(method)
        for method in ("POST", "PUT", "PATCH", "DELETE", "PROPFIND", "get"):
            assert policy.guards(method)
        assert not CSRFPolicy(False).guards("POST")
        own = "http://site.example"
        passing = [
            OriginHeaders(own, [own]),
            OriginHeaders(own, ["http://SITE.example:80"]),
            OriginHeaders(own, [], [own + "/form"]),
            OriginHeaders(own, ["https://app.example.com"]),
            OriginHeaders(None, ["https://app.example.com"]),
        ]
        for request in passing:
            policy.check(request)
        refused = [
            OriginHeaders(own),
            OriginHeaders(own, ["null"]),
            OriginHeaders(own, [EVIL]),
            OriginHeaders(own, [EVIL], [own + "/form"]),  # the Origin decides when present
            OriginHeaders(own, [own, EVIL]),
            OriginHeaders(own, [], [own, own]),
            OriginHeaders(own, [], [EVIL + "/"]),
            OriginHeaders(own, ["https://site.example"]),  # another scheme
            OriginHeaders(own, ["http://site.example:8080"]),  # another port
            OriginHeaders(None, [own]),  # the request's own origin is unknown
        ]
        for request in refused:
            with pytest.raises(CrossSiteRequest):
                policy.check(request)

    def test_a_trusted_origin_that_is_no_origin_is_refused(self) -> None:
        with pytest.raises(ConfigurationError):
            CSRFPolicy(True, ["https://user@app.example.com"])

    @pytest.mark.parametrize("style", STYLES)
    def test_the_error(self, style: ErrorStyle) -> None:
        error = CrossSiteRequest()
        assert error.error == "invalid_request"
        assert error.status(style) == 403
        assert www_authenticate(error, style, "lwa") is None
        status, headers, _ = render_error(error, style, "lwa", "rid")
        assert status == 403
        assert "www-authenticate" not in dict(headers)


class TestGate:
    """The core decision both shells call (``Gate.resolve`` and ``Gate.token``)."""

    gate = Gate(LWASettings(client_ids=("amzn1.application-oa2-client.x",)))
    token = "Atza|" + "t" * 40

    def resolve(self, method: str | None, origins: OriginHeaders, **headers: Any) -> Any:
        return self.gate.resolve(
            self.gate.route("/p"),
            headers.get("authorization", ()),
            headers.get("amz", ()),
            headers.get("cookies", ()),
            "",
            lambda raw: None,
            method=method,
            origins=lambda: origins,
        )

    def test_cookie_post_is_checked(self) -> None:
        cookies = [f"lwa_token={self.token}".encode()]
        with pytest.raises(CrossSiteRequest):
            self.resolve("POST", OriginHeaders("http://a.example", [EVIL]), cookies=cookies)
        found = self.resolve(
            "POST", OriginHeaders("http://a.example", ["http://a.example"]), cookies=cookies
        )
        assert found == self.token
        assert self.resolve(None, OriginHeaders(None), cookies=cookies) == self.token
        assert self.resolve("GET", OriginHeaders(None), cookies=cookies) == self.token

    def test_header_tokens_are_never_checked(self) -> None:
        bearer_header = [f"Bearer {self.token}".encode()]
        cookies = [b"lwa_token=Atza|other"]
        found = self.resolve(
            "POST", OriginHeaders(None), authorization=bearer_header, cookies=cookies
        )
        assert found == self.token
        assert self.resolve("POST", OriginHeaders(None), amz=[self.token.encode()]) == self.token

    def test_a_cached_cookie_token_is_checked_too(self) -> None:
        cookies = [f"lwa_token={self.token}".encode()]
        hit = object()
        with pytest.raises(CrossSiteRequest):
            self.gate.resolve(
                self.gate.route("/p"),
                (),
                (),
                cookies,
                "",
                lambda raw: hit,  # type: ignore[arg-type,return-value]
                method="POST",
                origins=lambda: OriginHeaders("http://a.example", [EVIL]),
            )


# Both shells, through real servers --------------------------------------------------------


def post(
    http: httpx.Client, url: str, headers: dict[str, str], method: str = "POST"
) -> httpx.Response:
    return http.request(method, url + "/me", headers=headers)


class TestShells:
    def test_cookie_post_without_origin_or_referer(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        _, token = emu.mint_for()
        url = served()
        assert_forgery(post(http, url, cookie(token)))
        assert emu.calls == NO_CALLS  # refused before LWA is asked

    @pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1", "https://127.0.0.1"])
    def test_cookie_post_from_another_origin(
        self, served: Served, emu: Emulator, http: httpx.Client, origin: str
    ) -> None:
        _, token = emu.mint_for()
        url = served()
        assert_forgery(post(http, url, {**cookie(token), "origin": origin}))
        assert emu.calls == NO_CALLS

    def test_cookie_post_from_the_same_origin(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        user, token = emu.mint_for()
        url = served()
        response = post(http, url, {**cookie(token), "origin": url})
        assert response.status_code == 200, response.text
        assert response.json()["user"] == user.user_id

    def test_referer_fallback(self, served: Served, emu: Emulator, http: httpx.Client) -> None:
        user, token = emu.mint_for()
        url = served()
        same = post(http, url, {**cookie(token), "referer": url + "/form?step=2"})
        assert same.status_code == 200, same.text
        assert same.json()["user"] == user.user_id
        assert_forgery(post(http, url, {**cookie(token), "referer": EVIL + "/page"}))
        # With an Origin, the Origin decides.
        assert_forgery(post(http, url, {**cookie(token), "origin": EVIL, "referer": url + "/"}))

    def test_trusted_origin(self, served: Served, emu: Emulator, http: httpx.Client) -> None:
        user, token = emu.mint_for()
        url = served(csrf_trusted_origins=["https://app.example.com"])
        for origin in ("https://app.example.com", "https://APP.example.com:443"):
            response = post(http, url, {**cookie(token), "origin": origin})
            assert response.status_code == 200, response.text
            assert response.json()["user"] == user.user_id
        assert_forgery(post(http, url, {**cookie(token), "origin": "https://app.example.org"}))

    def test_header_token_is_never_checked(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        user, token = emu.mint_for()
        url = served()
        for headers in (
            bearer(token),
            {"x-amz-access-token": token},
            {**bearer(token), "origin": EVIL},
            {**bearer(token), **cookie("Atza|another"), "origin": EVIL},  # the header wins
        ):
            response = post(http, url, headers)
            assert response.status_code == 200, (headers, response.text)
            assert response.json()["user"] == user.user_id

    def test_safe_methods_are_never_checked(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        user, token = emu.mint_for()
        url = served()
        for method in ("GET", "OPTIONS"):
            response = post(http, url, {**cookie(token), "origin": EVIL}, method)
            assert response.status_code == 200, (method, response.text)
            assert response.json()["user"] == user.user_id
        head = http.head(url + "/me", headers={**cookie(token), "origin": EVIL})
        assert head.status_code in (200, 405)  # the app's answer, not the middleware's
        assert head.headers.get(APP_HEADER[0]) == APP_HEADER[1] or head.status_code == 405

    @pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "PROPFIND"])
    def test_every_other_method_is_checked(
        self, served: Served, emu: Emulator, http: httpx.Client, method: str
    ) -> None:
        _, token = emu.mint_for()
        url = served()
        assert_forgery(post(http, url, {**cookie(token), "origin": EVIL}, method))

    def test_protection_off(self, served: Served, emu: Emulator, http: httpx.Client) -> None:
        user, token = emu.mint_for()
        url = served(csrf_protection=False)
        for headers in (cookie(token), {**cookie(token), "origin": EVIL}):
            response = post(http, url, headers)
            assert response.status_code == 200, response.text
            assert response.json()["user"] == user.user_id

    def test_a_warm_cookie_token_is_still_checked(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        user, token = emu.mint_for()
        url = served()
        warm = http.get(url + "/me", headers=cookie(token))  # verified and cached
        assert warm.json()["user"] == user.user_id
        calls = emu.calls
        assert_forgery(post(http, url, {**cookie(token), "origin": EVIL}))
        assert_forgery(post(http, url, cookie(token)))
        # Other cookies around the session one take the full rules: still checked.
        assert_forgery(post(http, url, {"cookie": f"a=1; lwa_token={token}", "origin": EVIL}))
        same = post(http, url, {**cookie(token), "origin": url})
        assert same.status_code == 200, same.text
        assert same.json()["user"] == user.user_id
        assert emu.calls == calls  # served from the cache

    def test_signed_cookie(self, served: Served, emu: Emulator, http: httpx.Client) -> None:
        user, token = emu.mint_for()
        url = served(secret_key="k" * 32)
        signed = cookie_signer("k" * 32).sign(token).decode()
        assert_forgery(post(http, url, {**cookie(signed), "origin": EVIL}))
        response = post(http, url, {**cookie(signed), "origin": url})
        assert response.status_code == 200, response.text
        assert response.json()["user"] == user.user_id

    @pytest.mark.parametrize("style", STYLES)
    def test_both_styles_and_bad_tokens(
        self, served: Served, emu: Emulator, http: httpx.Client, style: str
    ) -> None:
        url = served(error_style=style)
        # Checked before anything else is: even a token LWA would refuse.
        assert_forgery(post(http, url, {**cookie("Atza|not-a-real-one"), "origin": EVIL}))
        assert emu.calls == NO_CALLS

    def test_no_cookie_is_no_session(
        self, served: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = served(optional=["/*"])
        response = post(http, url, {"origin": EVIL, "cookie": "theme=dark"})
        assert response.status_code == 200, response.text
        assert response.json()["user"] is None  # anonymous: nothing to forge

    @pytest.mark.parametrize(
        ("host", "origin", "passes"),
        [
            ("site.example", "http://site.example:80", True),
            ("site.example:80", "http://site.example", True),
            ("Site.Example", "http://site.example", True),
            ("site.example:8080", "http://site.example", False),
            ("site.example", "http://site.example:8080", False),
            ("site.example", "https://site.example", False),
        ],
    )
    def test_host_with_and_without_the_default_port(
        self,
        served: Served,
        emu: Emulator,
        http: httpx.Client,
        host: str,
        origin: str,
        passes: bool,
    ) -> None:
        _, token = emu.mint_for()
        url = served()
        response = post(http, url, {**cookie(token), "host": host, "origin": origin})
        if passes:
            assert response.status_code == 200, response.text
        else:
            assert_forgery(response)


def test_every_server(any_server: Served, emu: Emulator, http: httpx.Client) -> None:
    """uvicorn (h11, httptools), wsgiref and werkzeug: the same decisions."""
    user, token = emu.mint_for()
    url = any_server()
    assert_forgery(post(http, url, cookie(token)))
    assert_forgery(post(http, url, {**cookie(token), "origin": EVIL}))
    same = post(http, url, {**cookie(token), "origin": url})
    assert same.status_code == 200, same.text
    assert same.json()["user"] == user.user_id
    assert post(http, url, bearer(token)).status_code == 200


@pytest.mark.anyio
async def test_cookie_websocket_from_another_site_is_refused(protected: Any, emu: Emulator) -> None:
    """Cross-site WebSocket hijacking: a page elsewhere opening a WebSocket that the browser
    authenticates with the session cookie. Refused cold and warm; same-origin and header
    tokens pass."""
    import websockets
    from websockets.typing import Origin

    url = protected()
    ws_url = url.replace("http://", "ws://") + "/ws"
    user, token = emu.mint_for(name="Ada")
    cookie = {"cookie": f"lwa_token={token}"}
    for attempt in ("cold", "warm"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url, additional_headers=cookie, origin=Origin(EVIL)):
                pass  # pragma: no cover - the handshake is refused
        assert refused.value.response.status_code == 403, attempt
        async with websockets.connect(ws_url, additional_headers=cookie, origin=Origin(url)) as ws:
            assert await ws.recv() == user.user_id
    async with websockets.connect(
        ws_url, additional_headers=bearer(token), origin=Origin(EVIL)
    ) as ws:
        assert await ws.recv() == user.user_id


def test_a_refusal_logs_both_origins_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Behind a TLS-terminating proxy the server computes http://, the browser sends
    https://: the DEBUG line shows both, so the mismatch is visible."""
    from lwa_middleware.core.csrf import CSRFPolicy, OriginHeaders
    from lwa_middleware.core.errors import CrossSiteRequest

    caplog.set_level(logging.DEBUG, logger="lwa_middleware")
    request = OriginHeaders("http://app.example.com", origin=("https://app.example.com",))
    with pytest.raises(CrossSiteRequest):
        CSRFPolicy(True).check(request)
    (line,) = [r.getMessage() for r in caplog.records if "cross-site" in r.getMessage()]
    assert "'http://app.example.com'" in line and "'https://app.example.com'" in line
    assert "Origin" in line
