"""The gateway behind a real nginx (``auth_request``), configured by the example in
``examples/gateway/nginx/``: one nginx, one gateway (uvicorn, ``--proxy nginx``, with the
website sign-in) and one app for the module, against the module's LWA emulator.

What must hold: nothing unverified reaches the app (missing, invalid and other-app tokens,
dot segments that would borrow an excluded path, spoofed ``X-Original-*`` headers from the
client, questions from an untrusted peer); the app gets the gateway's identity and never
a client's own ``X-Auth-Request-*``; the access policy and the cross-site rule hold; a
browser signs in through nginx and comes back (headless Chromium, screenshots).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from browser import chromium
from gateway_apps import Upstream
from lwa_middleware.core.tokens import cookie_signer
from lwa_middleware.emulator import Emulator, ServerHandle, serve
from lwa_middleware.gateway import LWAGateway
from lwa_middleware.gateway.core import encode_target
from lwa_middleware.login import LWALogin
from proxies import Proxy, free_port, start_nginx

from conftest import bearer

SECRET = "gateway-test-secret-0123456789abcdef"
OTHER_CLIENT = "amzn1.application-oa2-client.someone-else"
NAME = "Zoë Ångström"


@dataclass
class Site:
    url: str
    nginx: Proxy
    gateway: LWAGateway
    gateway_url: str
    app: Upstream
    emu: Emulator


@pytest.fixture(scope="module")
def site(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("nginx")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    login = LWALogin(
        emulator.client_id,
        redirect_uri=f"{url}/_lwa/callback",
        secret_key=SECRET,
        authorize_url=emulator.url + "/ap/oa",
        api_base_url=emulator.url,
    )
    gateway = LWAGateway(
        proxy="nginx",
        client_ids=[emulator.client_id],
        api_base_url=emulator.url,
        exclude=["/health"],
        require_scopes={"/api/zip/*": "postal_code"},
        allow={"/api/staff/*": ["domain:example.com"]},
        login=login,
        allowed_hosts=["localhost:*"],
    )
    app = Upstream()
    handles: list[ServerHandle] = []
    try:
        handles.append(gw := serve(gateway, lifespan="on", proxy_headers=False))
        handles.append(up := serve(app, lifespan="off"))
        nginx = start_nginx(
            folder, gateway=f"127.0.0.1:{gw.port}", app=f"127.0.0.1:{up.port}", port=port
        )
        try:
            yield Site(url, nginx, gateway, gw.url, app, emulator)
        finally:
            nginx.stop()
    finally:
        for handle in handles:
            handle.stop()


@pytest.fixture(scope="module")
def http(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=10, follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="module")
def token(site: Site) -> str:
    _, token = site.emu.mint_for(name=NAME, email="zoe@example.com")
    return token


def reached(site: Site, answer: httpx.Response, before: int) -> bool:
    """Whether the request reached the app (its count moved)."""
    return site.app.requests != before


# Paths and tokens ----------------------------------------------------------------------


def test_an_excluded_path_reaches_the_app_anonymous(site: Site, http: httpx.Client) -> None:
    answer = http.get("/health")
    assert answer.status_code == 200, answer.text
    assert answer.json()["identity"] == []  # nginx drops the empty identity headers
    assert "set-cookie" not in answer.headers


@pytest.mark.parametrize(
    ("title", "headers"),
    [
        ("missing", {}),
        ("invalid", {"authorization": "Bearer Atza|not-a-token-LWA-ever-issued"}),
        ("malformed", {"authorization": "Bearer has spaces"}),
    ],
)
def test_token_problems_are_401_and_never_reach_the_app(
    site: Site, http: httpx.Client, title: str, headers: dict[str, str]
) -> None:
    before = site.app.requests
    answer = http.get("/api/orders", headers=headers)
    assert answer.status_code == 401, (title, answer.text)
    assert answer.headers["www-authenticate"].startswith('Bearer realm="lwa"')
    assert not reached(site, answer, before)


def test_another_apps_token_is_401(site: Site, http: httpx.Client) -> None:
    _, other = site.emu.mint_for(client_id=OTHER_CLIENT)
    before = site.app.requests
    answer = http.get("/api/orders", headers=bearer(other))
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert not reached(site, answer, before)


def test_a_verified_customer_reaches_the_app_with_the_identity(
    site: Site, http: httpx.Client, token: str
) -> None:
    for _ in range(2):  # the second answer comes from the gateway's warm path
        answer = http.get("/api/orders?page=2", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        identity = dict(answer.json()["identity"])
        assert identity["x-auth-request-user"].startswith("amzn1.account.")
        assert identity["x-auth-request-email"] == "zoe@example.com"
        assert identity["x-auth-request-name"] == quote(NAME, safe=" ")  # UTF-8, percent-encoded
        assert identity["x-auth-request-scopes"] == "profile profile:user_id"
        assert answer.json()["raw_path"] == "/api/orders"


def test_a_browser_without_a_session_is_sent_to_sign_in(site: Site, http: httpx.Client) -> None:
    answer = http.get("/page/reports?month=5&year=2026")
    assert answer.status_code == 302
    assert answer.headers["location"].endswith("/_lwa/login?rd=/page/reports?month=5&year=2026")


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/api/%2e%2e/health",
        b"/api/%2E%2E/health",
        b"/api/..%2fhealth",
        b"/api/..;/health",
        b"/health/../api/orders",
        b"/health/%2e%2e/api/orders",
    ],
)
def test_dot_segments_never_borrow_the_excluded_path(
    site: Site, http: httpx.Client, raw_path: bytes
) -> None:
    before = site.app.requests
    request = http.build_request("GET", "/x", extensions={"target": raw_path})
    answer = http.send(request)
    assert answer.status_code in (302, 400, 401), (raw_path, answer.status_code)
    assert not reached(site, answer, before)


def test_scopes_and_the_access_policy_are_403(site: Site, http: httpx.Client, token: str) -> None:
    assert http.get("/api/zip/98101", headers=bearer(token)).status_code == 403
    _, stranger = site.emu.mint_for(email="someone@elsewhere.org")
    before = site.app.requests
    answer = http.get("/api/staff/payroll", headers=bearer(stranger))
    assert answer.status_code == 403
    assert not reached(site, answer, before)
    assert http.get("/api/staff/payroll", headers=bearer(token)).status_code == 200


# Spoofing --------------------------------------------------------------------------------


def test_the_clients_own_original_headers_are_ignored(site: Site, http: httpx.Client) -> None:
    spoofed = {
        "x-original-uri": "/health",
        "x-original-method": "GET",
        "x-original-url": f"{site.url}/health",
        "x-forwarded-uri": "/health",
        "x-forwarded-method": "GET",
        "x-forwarded-host": "127.0.0.1",
    }
    before = site.app.requests
    answer = http.get("/api/orders", headers=spoofed)
    assert answer.status_code == 401
    assert not reached(site, answer, before)


def test_the_clients_own_identity_headers_never_reach_the_app(
    site: Site, http: httpx.Client, token: str
) -> None:
    spoofed = {
        "x-auth-request-user": "amzn1.account.ADMIN",
        "x-auth-request-email": "admin@example.com",
        "x-auth-request-scopes": "admin",
        "x_auth_request_name": "Admin",
    }
    anonymous = http.get("/health", headers=spoofed)
    assert anonymous.status_code == 200
    assert anonymous.json()["identity"] == []
    verified = http.get("/api/orders", headers={**spoofed, **bearer(token)})
    assert verified.status_code == 200
    identity = verified.json()["identity"]
    names = [name.lower() for name, _ in identity]
    assert sorted(names) == sorted(set(names))  # one of each, the gateway's
    assert dict(identity)["x-auth-request-email"] == "zoe@example.com"
    assert "admin" not in str(identity).lower()


def test_an_untrusted_peer_is_refused(site: Site, emulator: Emulator) -> None:
    """The gateway straight from 127.0.0.2: it is not a trusted proxy, whatever it says."""
    headers = {"x-original-uri": "/health", "x-original-method": "GET"}
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=site.gateway_url, transport=transport, timeout=10) as direct:
        answer = direct.get("/auth", headers=headers)
    assert answer.status_code == 403
    assert answer.json()["error"] == "invalid_request"
    with httpx.Client(base_url=site.gateway_url, timeout=10) as trusted:
        assert trusted.get("/auth", headers=headers).status_code == 200
        # A trusted peer that does not say which request: never judged as /auth or /.
        assert trusted.get("/auth").status_code == 403
        assert trusted.get("/auth", headers={"x-original-uri": "/health"}).status_code == 403


# Cookies: the cross-site rule, the refresh --------------------------------------------------


def test_a_cross_site_cookie_post_is_403(site: Site, http: httpx.Client, token: str) -> None:
    cookie = {"cookie": f"lwa_token={cookie_signer(SECRET).sign(token).decode()}"}
    before = site.app.requests
    evil = http.post("/api/orders", headers={**cookie, "origin": "https://evil.example"})
    assert evil.status_code == 403
    assert evil.headers.get("www-authenticate") is None
    assert not reached(site, evil, before)
    no_origin = http.post("/api/orders", headers=cookie)
    assert no_origin.status_code == 403
    same = http.post("/api/orders", headers={**cookie, "origin": site.url})
    assert same.status_code == 200, same.text
    assert same.json()["method"] == "POST"
    # A bearer token is no cookie: no forgery check.
    assert http.post("/api/orders", headers=bearer(token)).status_code == 200


def test_return_links_lead_only_to_allowed_hosts(site: Site, http: httpx.Client) -> None:
    allowed = "http://localhost:8080/app?x=1"
    answer = http.get(f"/_lwa/return/{encode_target(allowed)}")
    assert answer.status_code == 302
    assert answer.headers["location"] == allowed
    for target in ("https://evil.example/", "http://localhost.evil.example/", "//evil.example"):
        refused = http.get(f"/_lwa/return/{encode_target(target)}")
        assert refused.status_code == 400, target


# A browser -------------------------------------------------------------------------------


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("LWA_SCREENSHOT_DIR") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_a_browser_signs_in_through_nginx_and_comes_back(site: Site, shots: Path) -> None:
    user = site.emu.add_user(name="Grace Hopper", email="grace@example.com")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        page.goto(f"{site.url}/page/reports?month=5")
        # nginx sent the browser to the gateway's sign-in, which sent it to "Amazon".
        page.wait_for_selector("#approve")
        assert page.url.startswith(site.emu.url + "/ap/oa")
        page.select_option("#user", user.user_id)
        page.screenshot(path=str(shots / "gateway-1-consent.png"))
        with page.expect_navigation(url=f"{site.url}/page/reports?month=5"):
            page.click("#approve")
        assert page.inner_text("#hello") == "Hello, Grace Hopper"
        assert page.inner_text("#email") == "grace@example.com"
        page.screenshot(path=str(shots / "gateway-2-signed-in.png"))
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert cookies["lwa_token"]["httpOnly"] and "lwa_token_refresh" in cookies
        old = cookies["lwa_token"]["value"]

        # The access cookie gone (as after its Max-Age): the gateway refreshes the session
        # on the next check and nginx hands the new cookie to the browser.
        page.context.clear_cookies(name="lwa_token")
        answer = page.goto(f"{site.url}/page/again")
        assert answer is not None and answer.status == 200
        assert page.inner_text("#hello") == "Hello, Grace Hopper"
        renewed = {c["name"]: c for c in page.context.cookies()}
        assert renewed["lwa_token"]["value"] not in ("", old)
        assert site.emu.token_calls["refresh_token"] >= 1
