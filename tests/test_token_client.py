"""``TokenClient`` and ``AsyncTokenClient``: through ``httpx.MockTransport`` (success, every
error, 5xx, timeouts, the form in the body) and against the emulator's real
``POST /auth/o2/token`` over HTTP (code with PKCE or secret, refresh, faults, deadlines)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import httpx
import pytest

from lwa_middleware import (
    AsyncTokenClient,
    GrantError,
    GrantUnavailable,
    InvalidClient,
    InvalidGrant,
    InvalidGrantRequest,
    InvalidScope,
    TokenClient,
    TokenGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.grants import (
    MAX_GRANT_BODY,
    code_challenge_s256,
    grant_request,
    new_code_verifier,
    refresh_grant,
)
from lwa_middleware.emulator import Emulator
from lwa_middleware.emulator.oauth import DEFAULT_CLIENT_SECRET, DEFAULT_REDIRECT_URI
from lwa_middleware.emulator.state import TOKEN_ENDPOINT
from lwa_middleware.upstream.client import LWAClient

T = TypeVar("T")

API = "https://api.amazon.com"
CODE = "ANdNAVhyhqirUelHGEHA"
SECRET = "amzn1.oa2-cs.v1.s3cr3t-value"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
ACCESS = "Atza|IwEBIA" + "a" * 360
REFRESH = "Atzr|IwEBIB" + "r" * 360
REDIRECT = "https://app.example.com/auth/callback"
CLIENT = "amzn1.application-oa2-client.abc"
MODES = ["sync", "async"]

Handler = Callable[[httpx.Request], httpx.Response]


def ok(**fields: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "access_token": ACCESS,
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": REFRESH,
        **fields,
    }
    return httpx.Response(
        200, json=body, headers={"content-type": "application/json;charset=UTF-8"}
    )


def lwa_error(status: int, error: str, description: str = "It failed") -> httpx.Response:
    return httpx.Response(status, json={"error": error, "error_description": description})


def run(
    mode: str,
    handler: Handler | None,
    call: Callable[[Any], Any],
    *,
    url: str = API,
    timeout: float = 5.0,
    async_handler: Callable[[httpx.Request], Awaitable[httpx.Response]] | None = None,
) -> Any:
    """``call(client)`` on a new client of ``mode`` (on a mock transport when a handler is
    given); returns the result, or the ``GrantError`` raised."""
    if mode == "sync":
        transport = None if handler is None else httpx.MockTransport(handler)
        with TokenClient(url, timeout=timeout, transport=transport) as client:
            try:
                return call(client)
            except GrantError as error:
                return error

    async def main() -> Any:
        chosen: Any = async_handler or handler
        transport = None if chosen is None else httpx.MockTransport(chosen)
        async with AsyncTokenClient(url, timeout=timeout, transport=transport) as client:
            try:
                return await call(client)
            except GrantError as error:
                return error

    return asyncio.run(main())


def exchange(client: Any) -> Any:
    return client.exchange_code(
        CODE, redirect_uri=REDIRECT, client_id=CLIENT, client_secret=SECRET, code_verifier=VERIFIER
    )


def refresh(client: Any) -> Any:
    return client.refresh(REFRESH, client_id=CLIENT, client_secret=SECRET)


# Through httpx.MockTransport -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
class TestMock:
    def test_code_exchange(self, mode: str) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return ok()

        grant = run(mode, handler, exchange)
        assert grant == TokenGrant(ACCESS, 3600, REFRESH)
        (request,) = seen
        assert request.method == "POST"
        assert str(request.url) == "https://api.amazon.com/auth/o2/token"  # nothing in the URL
        assert request.headers["content-type"] == "application/x-www-form-urlencoded;charset=UTF-8"
        assert request.headers["accept"] == "application/json"
        assert dict(parse_qsl(request.content.decode())) == {
            "grant_type": "authorization_code",
            "code": CODE,
            "redirect_uri": REDIRECT,
            "client_id": CLIENT,
            "client_secret": SECRET,
            "code_verifier": VERIFIER,
        }

    def test_refresh(self, mode: str) -> None:
        forms: list[dict[str, str]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            forms.append(dict(parse_qsl(request.content.decode())))
            return ok(refresh_token=None)

        grant = run(mode, handler, lambda c: c.refresh(REFRESH, client_id=CLIENT))
        assert grant.access_token == ACCESS and grant.refresh_token is None
        assert forms == [
            {"grant_type": "refresh_token", "refresh_token": REFRESH, "client_id": CLIENT}
        ]
        assert isinstance(run(mode, lambda r: ok(), refresh), TokenGrant)

    def test_the_generic_grant(self, mode: str) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            assert dict(parse_qsl(request.content.decode()))["grant_type"] == "refresh_token"
            return ok()

        request = refresh_grant(API, refresh_token=REFRESH, client_id=CLIENT)
        assert run(mode, handler, lambda c: c.grant(request)).access_token == ACCESS

    @pytest.mark.parametrize(
        ("status", "code", "cls"),
        [
            (400, "invalid_grant", InvalidGrant),
            (400, "invalid_request", InvalidGrantRequest),
            (401, "invalid_client", InvalidClient),
            (400, "unauthorized_client", UnauthorizedClient),
            (400, "unsupported_grant_type", UnsupportedGrantType),
            (400, "invalid_scope", InvalidScope),
            (500, "ServerError", GrantUnavailable),
        ],
    )
    def test_each_error(self, mode: str, status: int, code: str, cls: type[GrantError]) -> None:
        error = run(mode, lambda r: lwa_error(status, code, "Nope"), exchange)
        assert type(error) is cls
        assert error.error == code
        assert error.status == status

    @pytest.mark.parametrize("status", [500, 502, 503, 429])
    def test_5xx_and_429(self, mode: str, status: int) -> None:
        error = run(mode, lambda r: httpx.Response(status, text="<html>down</html>"), exchange)
        assert isinstance(error, GrantUnavailable)
        assert error.status == status

    def test_unusable_answers(self, mode: str) -> None:
        for response in (
            httpx.Response(200, text="<html>hi</html>", headers={"content-type": "text/html"}),
            httpx.Response(200, json={}),
            ok(expires_in="soon"),
            httpx.Response(200, content=b"{" + b" " * (MAX_GRANT_BODY + 10) + b"}"),
        ):
            error = run(mode, lambda r, response=response: response, exchange)  # type: ignore[misc]
            assert isinstance(error, GrantUnavailable), response
            assert error.status == 500

    def test_an_endless_body_is_not_read_to_its_end(self, mode: str) -> None:
        produced = 0

        def chunks() -> Any:
            nonlocal produced
            while produced < 10 * MAX_GRANT_BODY:
                produced += 1024
                yield b"x" * 1024

        class AsyncChunks(httpx.AsyncByteStream):
            async def __aiter__(self) -> Any:
                for chunk in chunks():
                    yield chunk

        class SyncChunks(httpx.SyncByteStream):
            def __iter__(self) -> Any:
                return chunks()

        stream: Any = SyncChunks() if mode == "sync" else AsyncChunks()
        error = run(mode, lambda r: httpx.Response(200, stream=stream), exchange)
        assert isinstance(error, GrantUnavailable)
        assert "too large" in error.description
        assert produced <= MAX_GRANT_BODY + 2048

    @pytest.mark.parametrize(
        ("exc", "words"),
        [
            (httpx.ReadTimeout, "timed out"),
            (httpx.ConnectTimeout, "timed out"),
            (httpx.ConnectError, "could not be reached"),
            (httpx.RemoteProtocolError, "could not be read"),
        ],
    )
    def test_transport_failures(
        self, mode: str, exc: type[httpx.TransportError], words: str
    ) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise exc(f"failed sending {request.content!r}", request=request)

        error = run(mode, handler, exchange)
        assert isinstance(error, GrantUnavailable)
        assert words in error.description
        assert error.status == 500
        # Nothing of the request (its form) is kept: no cause, no context.
        assert error.__cause__ is None and error.__context__ is None
        assert SECRET not in repr(error.args)

    def test_no_secret_in_logs(self, mode: str, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        run(mode, lambda r: ok(), exchange)
        run(mode, lambda r: lwa_error(400, "invalid_grant", f"bad code {CODE}"), exchange)
        text = caplog.text + repr([record.args for record in caplog.records])
        assert "auth/o2/token" in text  # httpx logged the request
        for secret in (CODE, SECRET, VERIFIER, ACCESS, REFRESH, "Atzr", "Atza"):
            assert secret not in text

    def test_bad_arguments(self, mode: str) -> None:
        with pytest.raises(ValueError, match="client_secret and/or code_verifier"):
            run(
                mode,
                lambda r: ok(),
                lambda c: c.exchange_code(CODE, redirect_uri=REDIRECT, client_id=CLIENT),
            )


def test_the_async_deadline_cancels_a_slow_answer() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return ok()

    started = time.monotonic()
    error = run("async", None, exchange, timeout=0.3, async_handler=slow)
    assert isinstance(error, GrantUnavailable)
    assert error.description == "Login with Amazon timed out."
    assert time.monotonic() - started < 2


def test_one_async_client_per_event_loop() -> None:
    loops: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        loops.append(id(asyncio.get_running_loop()))
        return ok()

    client = AsyncTokenClient(API, transport=httpx.MockTransport(handler))

    async def once() -> TokenGrant:
        return await client.exchange_code(
            CODE, redirect_uri=REDIRECT, client_id=CLIENT, client_secret=SECRET
        )

    for _ in range(3):  # a new loop each time, as Starlette's TestClient does
        assert asyncio.run(once()).access_token == ACCESS
    assert len(client._loops) <= 1  # the clients of closed loops are forgotten

    async def close() -> None:
        await client.aclose()

    asyncio.run(close())


class TestOptions:
    @pytest.mark.parametrize("cls", [TokenClient, AsyncTokenClient])
    def test_plain_http(self, cls: Any) -> None:
        with pytest.raises(ConfigurationError, match="allow_insecure_http"):
            cls("http://lwa.internal.example")
        assert cls("http://lwa.internal.example", allow_insecure_http=True).api_base_url == (
            "http://lwa.internal.example"
        )
        for loopback in ("http://127.0.0.1:8765", "http://localhost:1/", "http://[::1]:2"):
            assert cls(loopback).api_base_url == loopback.rstrip("/")

    @pytest.mark.parametrize("cls", [TokenClient, AsyncTokenClient])
    @pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True])
    def test_bad_timeouts(self, cls: Any, timeout: float) -> None:
        with pytest.raises(ConfigurationError):
            cls(API, timeout=timeout)

    def test_repr(self) -> None:
        assert repr(TokenClient(API)) == "TokenClient('https://api.amazon.com', timeout=5.0)"
        assert repr(AsyncTokenClient(API, timeout=2)) == (
            "AsyncTokenClient('https://api.amazon.com', timeout=2.0)"
        )


# Against the emulator, through real HTTP ------------------------------------------------------


def both(mode: str, url: str, call: Callable[[Any], Any], **options: Any) -> Any:
    """``call(client)`` on a real client of ``mode`` (no mock) pointed at ``url``."""
    return run(mode, None, call, url=url, **options)


def exchange_at(
    mode: str,
    emu: Emulator,
    url: str,
    code: str,
    *,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    timeout: float = 5.0,
    **fields: Any,
) -> Any:
    """The emulator's answer to a code exchange (``fields``: the secret and/or verifier)."""
    return both(
        mode,
        url,
        lambda c: c.exchange_code(
            code, redirect_uri=redirect_uri, client_id=emu.client_id, **fields
        ),
        timeout=timeout,
    )


@pytest.mark.parametrize("mode", MODES)
class TestEmulator:
    def test_pkce_code_exchange_then_refresh(self, mode: str, emu: Emulator, emu_url: str) -> None:
        user = emu.add_user(name="Ada")
        verifier = new_code_verifier()
        code = emu.authorize(
            code_challenge=code_challenge_s256(verifier), code_challenge_method="S256", user=user
        )
        grant = exchange_at(mode, emu, emu_url, code, code_verifier=verifier)
        assert isinstance(grant, TokenGrant), grant
        assert grant.token_type == "bearer" and grant.expires_in == 3600
        assert grant.access_token.startswith("Atza|")
        assert grant.refresh_token is not None and grant.refresh_token.startswith("Atzr|")
        with LWAClient(emu_url) as lwa:  # the token is good at token-info
            info = lwa.tokeninfo(grant.access_token)
        assert (info.user_id, info.aud) == (user.user_id, emu.client_id)
        # The code is good once.
        again = exchange_at(mode, emu, emu_url, code, code_verifier=verifier)
        assert isinstance(again, InvalidGrant)
        assert again.status == 400
        assert code not in again.description

    def test_secret_code_exchange_and_refreshes(
        self, mode: str, emu: Emulator, emu_url: str
    ) -> None:
        code = emu.authorize()
        grant = exchange_at(mode, emu, emu_url, code, client_secret=DEFAULT_CLIENT_SECRET)
        assert isinstance(grant, TokenGrant), grant
        refresh_token = grant.refresh_token
        assert refresh_token is not None
        renewed = both(
            mode,
            emu_url,
            lambda c: c.refresh(
                refresh_token, client_id=emu.client_id, client_secret=DEFAULT_CLIENT_SECRET
            ),
        )
        assert isinstance(renewed, TokenGrant), renewed
        assert renewed.access_token != grant.access_token
        assert renewed.refresh_token is not None
        public = both(mode, emu_url, lambda c: c.refresh(refresh_token, client_id=emu.client_id))
        assert isinstance(public, TokenGrant), public
        assert public.refresh_token is None  # no secret, no new refresh token
        assert emu.token_calls["authorization_code"] == 1
        assert emu.token_calls["refresh_token"] == 2

    def test_refusals(self, mode: str, emu: Emulator, emu_url: str) -> None:
        verifier = new_code_verifier()
        code = emu.authorize(
            code_challenge=code_challenge_s256(verifier), code_challenge_method="S256"
        )
        wrong_secret = exchange_at(mode, emu, emu_url, code, client_secret="wrong")
        assert isinstance(wrong_secret, InvalidClient)
        wrong_verifier = exchange_at(mode, emu, emu_url, code, code_verifier=new_code_verifier())
        assert isinstance(wrong_verifier, InvalidGrant)
        wrong_redirect = exchange_at(
            mode, emu, emu_url, code, redirect_uri="http://127.0.0.1/other", code_verifier=verifier
        )
        assert isinstance(wrong_redirect, InvalidGrant)
        bad_refresh = both(
            mode,
            emu_url,
            lambda c: c.refresh(
                "Atzr|unknown", client_id=emu.client_id, client_secret=DEFAULT_CLIENT_SECRET
            ),
        )
        assert isinstance(bad_refresh, InvalidGrant)

    @pytest.mark.parametrize(
        ("fault", "status"),
        [
            ("500", 500),
            ("503", 503),
            ("429", 429),
            ("non_json", 500),
            ("missing_fields", 500),
            ("reset", 500),
        ],
    )
    def test_faults(self, mode: str, emu: Emulator, emu_url: str, fault: str, status: int) -> None:
        code = emu.authorize()
        emu.fault(fault, endpoint=TOKEN_ENDPOINT)
        error = exchange_at(mode, emu, emu_url, code, client_secret=DEFAULT_CLIENT_SECRET)
        assert isinstance(error, GrantUnavailable), error
        assert error.status == status
        assert emu.token_calls["authorization_code"] == 1  # never retried

    @pytest.mark.parametrize("fault", ["hang", "trickle_body"])
    def test_the_deadline(self, mode: str, emu: Emulator, emu_url: str, fault: str) -> None:
        code = emu.authorize()
        emu.fault(fault, endpoint=TOKEN_ENDPOINT)
        started = time.monotonic()
        error = exchange_at(
            mode, emu, emu_url, code, client_secret=DEFAULT_CLIENT_SECRET, timeout=0.5
        )
        elapsed = time.monotonic() - started
        assert isinstance(error, GrantUnavailable), error
        assert error.description == "Login with Amazon timed out."
        assert elapsed < 1.5, elapsed


def test_an_unsupported_grant_at_the_emulator(emu: Emulator, emu_url: str) -> None:
    """The generic builder and ``grant``: a grant type LWA does not know is refused."""
    request = grant_request(emu_url, "password", {"client_id": emu.client_id})
    with TokenClient(emu_url) as client, pytest.raises(UnsupportedGrantType) as caught:
        client.grant(request)
    assert caught.value.status == 400
