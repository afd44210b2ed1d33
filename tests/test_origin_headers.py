"""Every ``Origin``, ``Referer`` and ``Host`` value is read, by the middlewares and by both
sign-in apps alike (one function, :func:`lwa_middleware.core.csrf.origin_headers`), through real
servers: a request carrying this site's ``Origin`` and then another site's (or the other
way round, or both on one line) is refused, never judged by the first value alone.

The requests are written on raw sockets: an HTTP client could merge repeated headers.
uvicorn hands the app every header line; wsgiref joins a repeated header's values with
commas.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from lwa_middleware import LWALogin, LWAWSGILogin
from lwa_middleware.core.csrf import origin_headers
from lwa_middleware.emulator import Emulator, serve, serve_wsgi

from conftest import Served

SECRET = "origin-headers-secret-0123456789ab"
EVIL = "http://evil.example"


def raw_post(url: str, path: str, headers: list[tuple[str, str]]) -> int:
    """``POST path`` with ``Host: <url's>`` and then exactly these header lines; the status."""
    address = url.removeprefix("http://")
    name, port = address.split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {address}"]
    lines += [f"{key}: {value}" for key, value in headers]
    lines += ["Content-Length: 0", "Connection: close", "", ""]
    with socket.create_connection((name, int(port)), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


TWO_HOSTS = "two Hosts, the second evil's"


def forged(self_origin: str, case: str) -> list[tuple[str, str]]:
    """The header lines (after the server's own ``Host``) of a forged request."""
    return {
        "Origin: self, then Origin: evil": [("Origin", self_origin), ("Origin", EVIL)],
        "Origin: evil, then Origin: self": [("Origin", EVIL), ("Origin", self_origin)],
        "both origins on one line": [("Origin", f"{self_origin}, {EVIL}")],
        "Referer: self, then Referer: evil (no Origin)": [
            ("Referer", self_origin + "/page"),
            ("Referer", EVIL + "/page"),
        ],
        TWO_HOSTS: [("Host", "evil.example"), ("Origin", EVIL)],
    }[case]


CASES = [
    "Origin: self, then Origin: evil",
    "Origin: evil, then Origin: self",
    "both origins on one line",
    "Referer: self, then Referer: evil (no Origin)",
    TWO_HOSTS,
]


def refused(status: int, case: str) -> bool:
    """403 from our check; two ``Host`` lines a server may refuse itself (400)."""
    return status == 403 or (case == TWO_HOSTS and status == 400)


# The sign-in apps -------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def sign_in(request: pytest.FixtureRequest, emulator: Emulator) -> Iterator[str]:
    """``LWALogin`` (uvicorn) or ``LWAWSGILogin`` (threaded wsgiref) at the root; its
    ``redirect_uri`` is another origin, so only the request's own (its ``Host``) passes."""
    options: dict[str, Any] = {
        "redirect_uri": "https://shop.example/callback",
        "secret_key": SECRET,
        "api_base_url": emulator.url,
    }
    if request.param == "asgi":
        with serve(LWALogin(emulator.client_id, **options), lifespan="on") as handle:
            yield handle.url
    else:
        login = LWAWSGILogin(emulator.client_id, **options)
        with serve_wsgi(login) as handle:
            yield handle.url
        login.close()


def test_sign_out_from_this_site_is_accepted(sign_in: str) -> None:
    assert raw_post(sign_in, "/logout", [("Origin", sign_in)]) == 303
    assert raw_post(sign_in, "/logout", [("Referer", sign_in + "/account")]) == 303


@pytest.mark.parametrize("case", CASES)
def test_sign_out_with_a_repeated_header_is_refused(sign_in: str, case: str) -> None:
    status = raw_post(sign_in, "/logout", forged(sign_in, case))
    assert refused(status, case), status


# The middlewares (the same rule, the same function) --------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_cookie_post_with_a_repeated_header_is_refused(
    served: Served, emu: Emulator, case: str
) -> None:
    url = served()
    _, token = emu.mint_for(name="Ada")
    cookie = ("Cookie", f"lwa_token={token}")
    assert raw_post(url, "/me", [cookie, ("Origin", url)]) == 200
    status = raw_post(url, "/me", [cookie, *forged(url, case)])
    assert refused(status, case), status


def test_the_one_function_reads_every_value() -> None:
    self_origin = "http://127.0.0.1:8000"
    read = origin_headers(
        "http",
        [
            (b"host", b"127.0.0.1:8000"),
            (b"origin", self_origin.encode()),
            (b"origin", EVIL.encode()),
            (b"referer", b"http://127.0.0.1:8000/a,b?c, http://evil.example/"),
        ],
    )
    assert read.target == self_origin
    assert list(read.origin) == [self_origin, EVIL]
    assert list(read.referer) == ["http://127.0.0.1:8000/a,b?c", "http://evil.example/"]
    assert origin_headers("http", [(b"host", b"a.example,evil.example")]).target is None
    single = origin_headers("https", [(b"referer", b"https://a.example/x,y")])
    assert list(single.referer) == ["https://a.example/x,y"]  # a comma inside one URL
