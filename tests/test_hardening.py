"""Regression tests for the outside review's findings, through real servers: uvicorn with
h11 and with httptools (``LWAMiddleware``), wsgiref and werkzeug (``LWAWSGIMiddleware``).

Path tricks are in ``test_path_attacks.py`` and ``test_path_property.py``, the deadline and
the flood in ``test_client_deadline.py`` and ``test_flood.py``; settings and the CLI in
``test_settings.py`` and ``test_cli.py``. Here: rejections cannot evict identities, the
query read by its decoded keys, nothing of a token relayed, CORS preflights, duplicate
cookies, the ``Atza|`` prefix, outages logged at WARNING.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.emulator import Emulator, serve

from conftest import APP_HEADER, Served, assert_error, bearer

UNKNOWN = "Atza|" + "u" * 400  # well formed, unknown to LWA


def test_rejections_never_evict_identities(
    any_server: Served, emu: Emulator, http: httpx.Client
) -> None:
    """More distinct bogus tokens than the identity cache holds leave a signed-in customer
    cached: they fill only the rejection cache (its own ``negative_maxsize``)."""
    url = any_server(cache_maxsize=5, negative_maxsize=20)
    user, token = emu.mint_for(name="Ada")
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    for i in range(40):
        bogus = f"Atza|{i:04d}" + "b" * 400
        assert_error(http.get(url + "/me", headers=bearer(bogus)), "invalid_token", 400)
    emu.reset_counts()
    assert http.get(url + "/me", headers=bearer(token)).json()["user"] == user.user_id
    assert emu.calls["tokeninfo"] == 0  # still cached: no new LWA call


def test_rejections_still_cached_for_negative_ttl(
    any_server: Served, emu: Emulator, http: httpx.Client
) -> None:
    url = any_server(negative_ttl=30)
    for _ in range(3):
        assert_error(http.get(url + "/me", headers=bearer(UNKNOWN)), "invalid_token", 400)
    assert emu.calls["tokeninfo"] == 1


class TestQueryByDecodedKeys:
    def test_encoded_key_is_a_token(
        self, any_server: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = any_server(token_sources=["header", "query"])
        user, token = emu.mint_for(name="Ada")
        encoded = token.replace("|", "%7C")
        body = http.get(f"{url}/me?access%5Ftoken={encoded}").json()
        assert body["user"] == user.user_id

    def test_header_plus_encoded_query_key_is_two_methods(
        self, any_server: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = any_server(token_sources=["header", "query"])
        _, a = emu.mint_for(name="Ada")
        _, b = emu.mint_for(name="Bob")
        for key in ("access%5Ftoken", "%61ccess_token", "access_token"):
            response = http.get(f"{url}/me?{key}={b.replace('|', '%7C')}", headers=bearer(a))
            assert_error(response, "invalid_request", 400)
        emu.reset_counts()
        # Warm path too: A cached first, then the same request with B in the query.
        assert http.get(url + "/me", headers=bearer(a)).status_code == 200
        response = http.get(f"{url}/me?access%5Ftoken={b.replace('|', '%7C')}", headers=bearer(a))
        assert_error(response, "invalid_request", 400)

    def test_query_ignored_when_not_a_source(
        self, any_server: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = any_server()
        user, a = emu.mint_for(name="Ada")
        body = http.get(f"{url}/me?access%5Ftoken=whatever", headers=bearer(a)).json()
        assert body["user"] == user.user_id


def _echoing_lwa() -> Starlette:
    """An upstream that echoes the token it was sent, without its prefix, in every error."""

    async def echo(request: Request) -> JSONResponse:
        token = request.headers.get("x-amz-access-token") or request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")
        return JSONResponse(
            {"error": "invalid_token", "error_description": f"token {token[5:45]} is bad"},
            status_code=400,
        )

    return Starlette(routes=[Route("/auth/o2/tokeninfo", echo), Route("/user/profile", echo)])


@pytest.fixture(scope="module")
def echoing_lwa() -> Iterator[str]:
    with serve(_echoing_lwa()) as handle:
        yield handle.url


def test_nothing_of_a_token_is_relayed(
    any_server: Served, echoing_lwa: str, http: httpx.Client
) -> None:
    url = any_server(api_base_url=echoing_lwa)
    token = "Atza|" + "Zq9" * 140
    response = http.get(url + "/me", headers=bearer(token))
    body = assert_error(response, "invalid_token", 400)
    assert "Zq9Zq9Zq" not in response.text
    assert body["error_description"].startswith("The access token provided is expired")


class TestCorsPreflight:
    PREFLIGHT = {"origin": "https://app.example", "access-control-request-method": "GET"}

    def test_preflight_passes_unverified(self, any_server: Served, http: httpx.Client) -> None:
        url = any_server()
        response = http.options(url + "/me", headers=self.PREFLIGHT)
        assert response.status_code == 200
        assert response.headers[APP_HEADER[0]] == APP_HEADER[1]
        body = response.json()
        assert body["has_lwa"] is False and body["user"] is None

    def test_plain_options_and_incomplete_preflights_are_verified(
        self, any_server: Served, http: httpx.Client
    ) -> None:
        url = any_server()
        for headers in (
            {},
            {"origin": "https://app.example"},
            {"access-control-request-method": "GET"},
        ):
            assert_error(http.options(url + "/me", headers=headers), "invalid_request", 400)
        assert_error(http.get(url + "/me", headers=self.PREFLIGHT), "invalid_request", 400)

    def test_verify_preflight_setting(self, any_server: Served, http: httpx.Client) -> None:
        url = any_server(verify_preflight=True)
        assert_error(http.options(url + "/me", headers=self.PREFLIGHT), "invalid_request", 400)


def test_two_session_cookies_are_invalid_request(
    any_server: Served, emu: Emulator, http: httpx.Client
) -> None:
    url = any_server()
    _, a = emu.mint_for(name="Ada")
    _, b = emu.mint_for(name="Bob")
    one = http.get(url + "/me", headers={"cookie": f"lwa_token={a}; theme=dark"})
    assert one.status_code == 200
    for cookie in (f"lwa_token={a}; lwa_token={b}", f"lwa_token={b}; x=1; lwa_token={b}"):
        response = http.get(url + "/me", headers={"cookie": cookie})
        assert_error(response, "invalid_request", 400)


class TestTokenPrefix:
    def test_not_an_access_token_never_reaches_lwa(
        self, any_server: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = any_server()
        for token in ("x" * 400, "Atzr|" + "r" * 400, "atza|" + "a" * 400, "Atza" + "a" * 400):
            assert_error(http.get(url + "/me", headers=bearer(token)), "invalid_token", 400)
        assert emu.calls == {"tokeninfo": 0, "profile": 0}

    def test_check_can_be_turned_off(
        self, any_server: Served, emu: Emulator, http: httpx.Client
    ) -> None:
        url = any_server(check_token_prefix=False)
        assert_error(http.get(url + "/me", headers=bearer("x" * 400)), "invalid_token", 400)
        assert emu.calls["tokeninfo"] == 1


def test_outage_logged_at_warning_rate_limited(
    any_server: Served, emu: Emulator, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    url = any_server()
    emu.fault("503")
    with caplog.at_level(logging.INFO, logger="lwa_middleware"):
        for i in range(5):
            token = f"Atza|{i}" + "o" * 400
            assert_error(http.get(url + "/me", headers=bearer(token)), "ServerError", 500)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # The fifth failure also opens the circuit breaker (default breaker_failures=5), which
    # logs its own WARNING: the outage line itself is the one counted here.
    outage = [r for r in warnings if "verification is failing" in r.getMessage()]
    assert len(outage) == 1, [r.getMessage() for r in warnings]
    message = outage[0].getMessage()
    assert "failing" in message and "503" in message
    breaker = [r for r in warnings if "circuit breaker" in r.getMessage()]
    assert len(breaker) == 1 and "closed -> open" in breaker[0].getMessage()
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    assert "Atza" not in caplog.text and "oooooooo" not in caplog.text


@pytest.mark.parametrize("shell", [LWAMiddleware, LWAWSGIMiddleware])
def test_on_error_must_be_callable(shell: Any) -> None:
    with pytest.raises(ConfigurationError, match="on_error must be callable"):
        shell(lambda *a: None, client_ids=["amzn1.application-oa2-client.x"], on_error="oops")


@pytest.mark.parametrize("fault", ["trickle", "trickle_body"])
def test_trickling_lwa_cannot_hold_a_request_past_timeout(
    any_server: Served, emu: Emulator, http: httpx.Client, fault: str
) -> None:
    """An LWA that trickles its answer a byte every 0.4 s (never tripping a per-read
    timeout) is cut at ``timeout``: the request is answered ``ServerError`` in time."""
    url = any_server(timeout=1.0)
    _, token = emu.mint_for(name="Ada")
    emu.fault(fault, "tokeninfo")
    start = time.monotonic()
    response = http.get(url + "/me", headers=bearer(token))
    seconds = time.monotonic() - start
    print(f"\n{fault}: answered {response.status_code} after {seconds:.2f} s (timeout 1.0 s)")
    assert_error(response, "ServerError", 500)
    assert seconds < 1.8
