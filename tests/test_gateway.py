"""The gateway's own decisions (``lwa_middleware.gateway.core``, pure) and the gateway served
by uvicorn, asked directly as each proxy family asks (Envoy's ``/auth/<path>``, the
forwarded headers, WebSocket handshakes), its sign-in links (``rd``), ``from_env`` and the
``gateway`` command. The real nginx and Caddy are in ``test_gateway_nginx.py`` and
``test_gateway_caddy.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from lwa_middleware import ConfigurationError, LWALogin
from lwa_middleware.cli import build_parser
from lwa_middleware.core.csrf import WEBSOCKET
from lwa_middleware.core.errors import (
    AccessDenied,
    CrossSiteRequest,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAError,
    LWAUnavailable,
    MissingToken,
)
from lwa_middleware.core.tokens import cookie_signer
from lwa_middleware.emulator import Emulator, serve
from lwa_middleware.gateway import LWAGateway, from_env
from lwa_middleware.gateway.core import (
    AllowedHosts,
    TrustedPeers,
    UntrustedRequest,
    decode_target,
    encode_target,
    gateway_status,
    header_value,
    identity_headers,
    read_original,
    redirect_param,
    safe_target,
)

SECRET = "gateway-unit-secret-0123456789abcdef"


def h(**headers: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]


# The original request ----------------------------------------------------------------------


def test_nginx_reads_only_its_own_family() -> None:
    original = read_original(
        "nginx",
        h(x_original_uri="/app/%2e%2e/health?x=1", x_original_method="POST"),
        method="GET",
        target=b"/auth",
    )
    assert (original.method, original.raw_path, original.query_string) == (
        "POST",
        b"/app/%2e%2e/health",
        b"x=1",
    )
    assert original.path == "/app/../health"
    assert (original.scheme, original.host) == (None, None)  # no X-Original-URL: unknown
    with pytest.raises(UntrustedRequest):  # the forwarded family is never read here
        read_original(
            "nginx",
            h(x_forwarded_uri="/health", x_forwarded_method="GET"),
            method="GET",
            target=b"/auth",
        )


def test_nginx_with_x_original_url_knows_the_origin_and_refuses_disagreement() -> None:
    url = "https://App.Example.com/orders?page=2"
    original = read_original(
        "nginx", h(x_original_url=url, x_original_method="GET"), method="GET", target=b"/auth"
    )
    assert (original.scheme, original.host, original.raw_path) == (
        "https",
        "App.Example.com",
        b"/orders",
    )
    # ingress-nginx sets X-Original-URL; a client's own X-Original-URI beside it is refused.
    with pytest.raises(UntrustedRequest, match="disagree"):
        read_original(
            "nginx",
            h(x_original_url=url, x_original_uri="/health", x_original_method="GET"),
            method="GET",
            target=b"/auth",
        )


@pytest.mark.parametrize(
    "headers",
    [
        [],  # nothing: never judged as /auth or /
        h(x_original_uri="/app"),  # no method
        h(x_original_method="GET"),  # no URI
        h(x_original_uri="/app", x_original_method="G ET"),
        h(x_original_uri="app", x_original_method="GET"),
        h(x_original_uri="/a b", x_original_method="GET"),
        h(x_original_uri="/app#x", x_original_method="GET"),
        h(x_original_uri="*", x_original_method="OPTIONS"),
        h(x_original_uri="/app", x_original_method="GET") + h(x_original_uri="/health"),
        h(x_original_uri="/" + "a" * 9000, x_original_method="GET"),
        h(x_original_uri="/app", x_original_method="GET", x_original_url="not a url"),
    ],
)
def test_nginx_fails_closed(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(UntrustedRequest):
        read_original("nginx", headers, method="GET", target=b"/auth")


def test_forwarded_reads_uri_method_host_proto() -> None:
    original = read_original(
        "forwarded",
        h(
            x_forwarded_uri="/x?y",
            x_forwarded_method="DELETE",
            x_forwarded_host="app.example.com:8443",
            x_forwarded_proto="https",
            x_original_uri="/health",
        ),
        method="GET",
        target=b"/auth",
    )
    assert (original.method, original.raw_path, original.scheme, original.host) == (
        "DELETE",
        b"/x",
        "https",
        "app.example.com:8443",
    )
    # An origin it cannot read is unknown (the cross-site rule then refuses cookie posts).
    odd = read_original(
        "forwarded",
        h(x_forwarded_uri="/x", x_forwarded_method="GET", x_forwarded_proto="ftp"),
        method="GET",
        target=b"/auth",
    )
    assert (odd.scheme, odd.host) == (None, None)
    with pytest.raises(UntrustedRequest):
        read_original(
            "forwarded",
            h(x_original_uri="/x", x_original_method="GET"),
            method="GET",
            target=b"/auth",
        )


def test_envoy_reads_the_path_after_auth_and_the_checks_method() -> None:
    original = read_original(
        "envoy",
        h(host="app.example.com", x_forwarded_proto="https", x_original_uri="/health"),
        method="PUT",
        target=b"/auth/app/%2e%2e/health?access_token=x",
    )
    assert (original.method, original.raw_path, original.query_string, original.host) == (
        "PUT",
        b"/app/%2e%2e/health",
        b"access_token=x",
        "app.example.com",
    )
    for raw in (b"/auth", b"/authx/y", b"/other"):
        with pytest.raises(UntrustedRequest):
            read_original("envoy", [], method="GET", target=raw)


def test_a_websocket_handshake_is_judged_as_one() -> None:
    for headers in (h(upgrade="WebSocket"), h(sec_websocket_key="dGhlIHNhbXBsZQ==")):
        original = read_original(
            "nginx",
            h(x_original_uri="/ws", x_original_method="GET") + headers,
            method="GET",
            target=b"/auth",
        )
        assert original.method == WEBSOCKET


def test_trusted_peers() -> None:
    peers = TrustedPeers(["10.0.0.0/8", "::1"])
    assert peers.trusts(("10.1.2.3", 1)) and peers.trusts(("::1", 1))
    assert peers.trusts(("::ffff:10.0.0.9", 1))  # IPv4-mapped
    assert not peers.trusts(("11.0.0.1", 1))
    assert not peers.trusts(None) and not peers.trusts(("not-an-ip", 1))
    assert TrustedPeers().trusts(("127.0.0.1", 5)) and not TrustedPeers().trusts(("127.0.0.2", 5))
    with pytest.raises(ConfigurationError):
        TrustedPeers(["example.com"])
    with pytest.raises(ConfigurationError):
        TrustedPeers([])


# The answers -------------------------------------------------------------------------------


def test_identity_header_values() -> None:
    assert header_value("Zoë Ångström") == b"Zo%C3%AB %C3%85ngstr%C3%B6m"
    assert header_value("Ada\r\nX-Evil: 1\x00\x7f") == b"AdaX-Evil: 1"
    assert header_value(" 100% ") == b"100%25"
    assert header_value(None) == b"" and header_value("") == b""
    empty = identity_headers(None)
    assert [name for name, _ in empty] == [
        b"x-auth-request-user",
        b"x-auth-request-email",
        b"x-auth-request-name",
        b"x-auth-request-scopes",
    ]
    assert all(value == b"" for _, value in empty)


def test_statuses_a_proxy_understands() -> None:
    token_problems: list[LWAError] = [MissingToken(), InvalidRequest(), InvalidToken()]
    for error in token_problems:
        assert gateway_status(error, "lwa") == gateway_status(error, "rfc6750") == 401
    refusals: list[LWAError] = [
        InsufficientScope(),
        AccessDenied(),
        CrossSiteRequest(),
        UntrustedRequest(),
    ]
    for error in refusals:
        assert gateway_status(error, "lwa") == 403
    assert gateway_status(LWAUnavailable(), "lwa") == 500


# Where a browser goes after signing in ----------------------------------------------------


def test_redirect_param() -> None:
    assert redirect_param("rd=/app/x?a=1&b=2") == "/app/x?a=1&b=2"  # nginx's $request_uri
    assert redirect_param("rd=https://app.example.com/x?a=1&b=2") == (
        "https://app.example.com/x?a=1&b=2"
    )
    assert redirect_param("next=/x&rd=%2Fapp%3Fa%3D1&z=2") == "/app?a=1"
    assert redirect_param("next=/x") is None and redirect_param("") is None


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("/app/x?y=1", True),
        ("https://app.example.com/x", True),
        ("https://APP.example.com/x", True),
        ("https://app.example.com:443/x", True),
        ("http://a.b.example.org:8080/", True),
        ("https://example.org/", True),
        ("https://app.example.com:8443/x", False),
        ("https://evil.example/", False),
        ("https://app.example.com.evil.example/", False),
        ("https://app.example.com@evil.example/", False),
        ("https://evil.example\\@app.example.com/", False),
        ("https://evil.example%2f@app.example.com/", False),
        ("//evil.example/", False),
        ("/\\evil.example", False),
        ("/%2F%2Fevil.example", False),
        ("/./%2f/evil.example", False),
        ("javascript:alert(1)", False),
        ("https://app.example.com/\tx", False),
        ("ftp://app.example.com/", False),
        ("https:///x", False),
    ],
)
def test_safe_target(value: str, allowed: bool) -> None:
    hosts = AllowedHosts(["app.example.com", ".example.org:*"])
    assert (safe_target(value, hosts) == value) is allowed


def test_allowed_hosts_forms() -> None:
    only_subdomains = AllowedHosts(["*.example.com"])
    assert only_subdomains.allows("https", "a.example.com", None)
    assert not only_subdomains.allows("https", "example.com", None)
    assert AllowedHosts(["app.example.com:8443"]).allows("https", "app.example.com", 8443)
    for bad in ("https://app.example.com", "app.example.com:x", "app.example.com:0", "a b"):
        with pytest.raises(ConfigurationError):
            AllowedHosts([bad])


def test_return_segments() -> None:
    url = "https://app.example.com/x?y=1&z=%20"
    segment = encode_target(url)
    assert "%" not in segment and "/" not in segment and decode_target(segment) == url
    assert decode_target(segment + "A") is None
    assert decode_target("!!") is None and decode_target("") is None


# The gateway, asked directly ---------------------------------------------------------------


@pytest.fixture(scope="module")
def envoy(emulator: Emulator) -> Iterator[str]:
    gateway = LWAGateway(
        proxy="envoy",
        client_ids=[emulator.client_id],
        api_base_url=emulator.url,
        exclude=["/health"],
        secret_key=SECRET,
    )
    with serve(gateway, lifespan="on", proxy_headers=False) as handle:
        yield handle.url


def test_envoy_mode_judges_the_path_after_auth(envoy: str, emulator: Emulator) -> None:
    _, token = emulator.mint_for(name="Ada", email="ada@example.com")
    with httpx.Client(base_url=envoy, timeout=10) as http:
        assert http.get("/auth/health").status_code == 200
        assert http.get("/auth/app").status_code == 401
        assert http.get("/auth").status_code == 403  # no original path: never judged
        dots = http.build_request("GET", "/x", extensions={"target": b"/auth/app/%2e%2e/health"})
        assert http.send(dots).status_code == 401
        ok = http.post("/auth/app?x=1", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert ok.headers["x-auth-request-email"] == "ada@example.com"
        assert ok.headers["cache-control"] == "no-store"


def test_a_cross_site_websocket_with_the_cookie_is_refused(envoy: str, emulator: Emulator) -> None:
    _, token = emulator.mint_for()
    cookie = f"lwa_token={cookie_signer(SECRET).sign(token).decode()}"
    handshake = {
        "cookie": cookie,
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "host": "app.example.com",
        "x-forwarded-proto": "https",
    }
    with httpx.Client(base_url=envoy, timeout=10) as http:
        evil = http.get("/auth/ws", headers={**handshake, "origin": "https://evil.example"})
        assert evil.status_code == 403
        same = http.get("/auth/ws", headers={**handshake, "origin": "https://app.example.com"})
        assert same.status_code == 200
        # A plain GET with the cookie is no handshake: no forgery check.
        assert http.get("/auth/page", headers={"cookie": cookie}).status_code == 200


@pytest.fixture(scope="module")
def signing_in(emulator: Emulator) -> Iterator[tuple[str, LWAGateway]]:
    from lwa_middleware.cli.demo import free_port

    port = free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    gateway = from_env(
        {
            "LWA_CLIENT_IDS": emulator.client_id,
            "LWA_API_BASE_URL": emulator.url,
            "LWA_SECRET_KEY": SECRET,
        },
        proxy="nginx",
        redirect_uri=f"{url}/_lwa/callback",
        authorize_url=emulator.url + "/ap/oa",
        allowed_hosts=["app.example.com"],
        cookie_domain="127.0.0.1",
    )
    with serve(gateway, port=port, lifespan="on", proxy_headers=False):
        yield url, gateway


def _sign_in(url: str, emulator: Emulator, query: str) -> httpx.Response:
    """The flow from ``/_lwa/login?<query>`` to the callback's answer."""
    emulator.add_user(name="Ada", email="ada@example.com")
    with httpx.Client(base_url=url, timeout=10) as browser:
        start = browser.get(f"/_lwa/login?{query}")
        assert start.status_code == 302, start.text
        params = dict(httpx.URL(start.headers["location"]).params)
        keys = (
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
        )
        consent = httpx.post(
            emulator.url + "/_emulator/authorize",
            json={key: params[key] for key in keys} | {"decision": "approve"},
            timeout=10,
        )
        return browser.get(consent.json()["redirect"])


def test_sign_in_returns_to_an_allowed_host(
    signing_in: tuple[str, LWAGateway], emulator: Emulator
) -> None:
    url, _ = signing_in
    target = "https://app.example.com/reports?month=5&year=2026"
    done = _sign_in(url, emulator, f"rd={target}")
    assert done.status_code == 302, done.text
    cookies = done.headers.get_list("set-cookie")
    assert any(c.startswith("lwa_token=") and "; Domain=127.0.0.1" in c for c in cookies)
    with httpx.Client(base_url=url, timeout=10) as http:
        back = http.get(done.headers["location"])
    assert back.status_code == 302 and back.headers["location"] == target


@pytest.mark.parametrize(
    ("query", "location"),
    [
        ("rd=https://evil.example/steal", "/"),
        (f"rd={quote('//evil.example/', safe='')}", "/"),
        ("rd=/page?a=1&b=2", "/page?a=1&b=2"),
    ],
)
def test_sign_in_never_returns_elsewhere(
    signing_in: tuple[str, LWAGateway], emulator: Emulator, query: str, location: str
) -> None:
    url, _ = signing_in
    done = _sign_in(url, emulator, query)
    assert done.status_code == 302 and done.headers["location"] == location


def test_from_env_and_the_command(emulator: Emulator) -> None:
    env = {
        "LWA_CLIENT_IDS": emulator.client_id,
        "LWA_API_BASE_URL": emulator.url,
        "LWA_GATEWAY_PROXY": "forwarded",
        "LWA_GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8 ::1",
    }
    gateway = from_env(env)
    assert gateway.mode == "forwarded" and gateway.login is None
    assert [str(n) for n in gateway.peers.networks] == ["10.0.0.0/8", "::1/128"]
    assert from_env(env, proxy="envoy").mode == "envoy"
    with pytest.raises(ConfigurationError, match="LWA_SECRET_KEY"):
        from_env(env, redirect_uri="http://127.0.0.1:1/_lwa/callback")
    with pytest.raises(ConfigurationError, match="below /_lwa/"):
        from_env({**env, "LWA_SECRET_KEY": SECRET}, redirect_uri="http://127.0.0.1:1/cb")
    with pytest.raises(ConfigurationError, match="LWA_REDIRECT_URI"):
        from_env(env, cookie_domain="example.com")
    with pytest.raises(ConfigurationError, match="proxy must be one of"):
        from_env({**env, "LWA_GATEWAY_PROXY": "haproxy"})
    args = build_parser().parse_args(
        [
            "gateway",
            "--proxy",
            "nginx",
            "--trusted-proxy",
            "10.0.0.1",
            "--trusted-proxy",
            "10.0.0.2",
            "--allowed-host",
            ".example.com",
            "--port",
            "0",
        ]
    )
    assert args.proxy == "nginx" and args.trusted_proxies == ["10.0.0.1", "10.0.0.2"]
    assert args.allowed_hosts == [".example.com"] and args.port == 0


def test_the_sign_ins_cookie_domain() -> None:
    login = LWALogin(
        "amzn1.application-oa2-client.x",
        redirect_uri="https://auth.example.com/cb",
        secret_key=SECRET,
        cookie_domain=".Example.COM",
    )
    assert login.core.config.cookie_domain == "example.com"
    assert all("; Domain=example.com" in v for _, v in login.core.session.cleared())
    for bad in ("exa mple.com", "https://example.com", ""):
        with pytest.raises(ConfigurationError):
            LWALogin(
                "amzn1.application-oa2-client.x",
                redirect_uri="https://a.example.com/cb",
                secret_key=SECRET,
                cookie_domain=bad,
            )
    with pytest.raises(ConfigurationError, match="__Host-"):
        LWALogin(
            "amzn1.application-oa2-client.x",
            redirect_uri="https://a.example.com/cb",
            secret_key=SECRET,
            cookie_name="__Host-lwa",
            cookie_domain="example.com",
        )
