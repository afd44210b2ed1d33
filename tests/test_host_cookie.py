"""A ``__Host-`` cookie name works end to end, over TLS, in both shells; every response that
sets or clears a session cookie is ``Cache-Control: private, no-store``.

``cookie_name="__Host-lwa_token"`` (for sites on a shared parent domain: no sibling can set
or shadow a ``__Host-`` cookie) makes all three cookies ``__Host-`` ones, which a browser
keeps only when they are ``Secure``, ``Path=/`` and carry no ``Domain``: the session, the
refresh cookie, and the short-lived login cookie too. The site is served over https on
127.0.0.1 with a certificate made here (``cryptography``), by uvicorn (``ssl_keyfile``,
``ssl_certfile``: ``LWALogin`` beside ``LWAMiddleware``) and by werkzeug
(``ssl_context``: ``LWAWSGILogin`` beside ``LWAWSGIMiddleware``); the client trusts that
certificate only. The walk: ``/login``, Amazon's consent (the emulator's control), the
callback, a protected page, a transparent refresh (on a page whose app says ``public,
max-age=3600``), and the sign-out.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from lwa_middleware import LWALogin, LWAMiddleware, LWAWSGILogin, LWAWSGIMiddleware
from lwa_middleware.emulator import Emulator, ServerHandle, serve

from conftest import LateASGI, LateWSGI

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

SECRET = "host-cookie-secret-0123456789abcdef"
NAME = "__Host-lwa_token"
CONSENT = ("client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method")
NO_STORE = "private, no-store"


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 (an IP address SAN), made with cryptography."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    paths = Certificate(folder / "cert.pem", folder / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


# The sites ---------------------------------------------------------------------------------


async def me(request: Request) -> Response:
    """Who the middleware saw; a page a cache may keep (``public, max-age=3600``)."""
    identity = request.scope.get("lwa")
    user = None if identity is None else identity.user_id
    return JSONResponse({"user": user}, headers={"cache-control": "public, max-age=3600"})


def wsgi_me(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    identity = environ.get("lwa")
    body = json.dumps({"user": None if identity is None else identity.user_id}).encode()
    headers = [("content-type", "application/json"), ("cache-control", "public, max-age=3600")]
    start_response("200 OK", headers)
    return [body]


def login_options(emu: Emulator, url: str) -> dict[str, Any]:
    return {
        "redirect_uri": url + "/auth/callback",
        "secret_key": SECRET,
        "authorize_url": emu.url + "/ap/oa",
        "api_base_url": emu.url,
        "cookie_name": NAME,
    }


def serve_asgi_tls(emu: Emulator, certificate: Certificate) -> tuple[str, ServerHandle]:
    late = LateASGI()
    handle = serve(
        late,
        lifespan="off",
        ssl_certfile=str(certificate.cert),
        ssl_keyfile=str(certificate.key),
    )
    url = f"https://127.0.0.1:{handle.port}"
    login = LWALogin(emu.client_id, **login_options(emu, url))
    app = Starlette(routes=[Mount("/auth", app=login), Route("/{path:path}", me)])
    late.app = LWAMiddleware(
        app,
        client_ids=[emu.client_id],
        api_base_url=emu.url,
        login=login,
        cookie_name=NAME,
        exclude=["/auth/*"],
    )
    return url, handle


def serve_wsgi_tls(emu: Emulator, certificate: Certificate) -> tuple[str, ServerHandle]:
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            pass

    late = LateWSGI()
    server = make_server(
        "127.0.0.1",
        0,
        late,
        threaded=True,
        request_handler=Quiet,
        ssl_context=(str(certificate.cert), str(certificate.key)),
    )
    url = f"https://127.0.0.1:{server.server_port}"
    login = LWAWSGILogin(emu.client_id, **login_options(emu, url))
    protected = LWAWSGIMiddleware(
        wsgi_me, client_ids=[emu.client_id], api_base_url=emu.url, login=login, cookie_name=NAME
    )
    late.app = DispatcherMiddleware(protected, {"/auth": login})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    handle = ServerHandle(
        host="127.0.0.1",
        port=server.server_port,
        thread=thread,
        request_stop=server.shutdown,
        cleanup=server.server_close,
    )
    return url, handle


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def site(
    request: pytest.FixtureRequest, emulator: Emulator, certificate: Certificate
) -> Iterator[str]:
    """The https base URL of the site, behind one shell."""
    start = serve_asgi_tls if request.param == "asgi" else serve_wsgi_tls
    url, handle = start(emulator, certificate)
    with handle:
        yield url


# The walk ----------------------------------------------------------------------------------


def attributes(set_cookie: str) -> tuple[str, dict[str, str]]:
    """``(name, {attribute (lower case): value})`` of one ``Set-Cookie`` value."""
    pair, *rest = (part.strip() for part in set_cookie.split(";"))
    found = {}
    for item in rest:
        key, _, value = item.partition("=")
        found[key.lower()] = value
    return pair.partition("=")[0], found


def host_cookies(response: httpx.Response) -> dict[str, dict[str, str]]:
    """Every cookie the response sets or clears, checked against the ``__Host-`` rules and
    our own attributes; the response is ``Cache-Control: private, no-store``."""
    cookies = {}
    for value in response.headers.get_list("set-cookie"):
        name, attrs = attributes(value)
        assert name.startswith("__Host-lwa_token"), value
        assert "secure" in attrs, value
        assert attrs["path"] == "/", value
        assert "domain" not in attrs, value
        assert "httponly" in attrs and attrs["samesite"] == "Lax", value
        cookies[name] = attrs
    assert cookies, "no cookie set"
    assert response.headers.get_list("cache-control") == [NO_STORE]
    return cookies


def test_a_host_cookie_session_over_tls(
    site: str, emulator: Emulator, certificate: Certificate
) -> None:
    trust = ssl.create_default_context(cafile=str(certificate.cert))
    with httpx.Client(base_url=site, verify=trust, follow_redirects=False, timeout=10) as browser:
        start = browser.get("/auth/login", params={"next": "/me"})
        assert start.status_code == 302, start.text
        assert set(host_cookies(start)) == {NAME + "_login"}  # the login cookie too
        params = dict(httpx.URL(start.headers["location"]).params)
        body = {key: params[key] for key in CONSENT} | {"decision": "approve"}
        consent = httpx.post(emulator.url + "/_emulator/authorize", json=body, timeout=10)
        assert consent.status_code == 200, consent.text
        done = browser.get(consent.json()["redirect"])
        assert done.status_code == 302 and done.headers["location"] == "/me", done.text
        issued = host_cookies(done)
        assert set(issued) == {NAME, NAME + "_refresh", NAME + "_login"}
        assert issued[NAME + "_login"]["max-age"] == "0"  # cleared, by the same rules
        page = browser.get("/me")
        assert page.status_code == 200 and page.json()["user"], page.text
        assert page.headers["cache-control"] == "public, max-age=3600"  # no cookie set here

        # The access cookie is gone (the browser dropped it): refreshed transparently. The
        # app's "public, max-age=3600" must not let a cache keep the new cookies.
        browser.cookies.delete(NAME)
        refreshed = browser.get("/me")
        assert refreshed.status_code == 200 and refreshed.json()["user"], refreshed.text
        assert NAME in host_cookies(refreshed)

        signed_out = browser.post(
            "/auth/logout", headers={"origin": site, "accept": "application/json"}
        )
        assert signed_out.status_code == 200, signed_out.text
        cleared = host_cookies(signed_out)
        assert set(cleared) == {NAME, NAME + "_refresh", NAME + "_login"}
        assert all(attrs["max-age"] == "0" for attrs in cleared.values())
