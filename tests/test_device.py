"""The code-pair core without I/O: the requests, the strict parsing of a code pair, the poll
decisions (interval, ``slow_down``, ``ServerError`` retries, expiry, the stop on every
other error), the device grant's typed errors, and ``TokenClient``/``AsyncTokenClient``'s
code-pair calls through ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from lwa_middleware import (
    AsyncTokenClient,
    AuthorizationPending,
    CodePair,
    GrantError,
    GrantUnavailable,
    InvalidClient,
    InvalidCodePair,
    InvalidGrant,
    InvalidGrantRequest,
    SlowDown,
    TokenClient,
    TokenGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from lwa_middleware.core.device import (
    CODE_PAIR_PATH,
    DEFAULT_INTERVAL,
    DevicePoll,
    Granted,
    Poll,
    Stop,
    Wait,
    code_pair_request,
    parse_code_pair,
)
from lwa_middleware.core.grants import DEVICE_GRANT_ERRORS, GRANT_ERRORS, device_grant, parse_grant

API = "https://api.amazon.com"
CLIENT = "amzn1.application-oa2-client.abc"
DEVICE_CODE = "5aa7ea8e-7c4d-4ba4-a2d5-" + "d" * 40
T0 = 1_800_000_000.0
JSON = "application/json;charset=UTF-8"
ACCESS = "Atza|IwEBIA" + "a" * 360
REFRESH = "Atzr|IwEBIB" + "r" * 360


def pair_json(**fields: Any) -> bytes:
    body: dict[str, Any] = {
        "user_code": "KJ7PQ2",
        "device_code": DEVICE_CODE,
        "verification_uri": "https://amazon.com/us/code",
        "expires_in": 600,
        "interval": 5,
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def a_pair(interval: int = 5, expires_in: int = 600) -> CodePair:
    return parse_code_pair(200, JSON, pair_json(interval=interval, expires_in=expires_in), now=T0)


def grant() -> TokenGrant:
    return TokenGrant(access_token=ACCESS, expires_in=3600, refresh_token=REFRESH)


def error_body(code: str) -> bytes:
    return json.dumps({"error": code, "error_description": "x"}).encode()


# Requests -------------------------------------------------------------------------------


def test_code_pair_request() -> None:
    request = code_pair_request(API + "/", client_id=CLIENT, scope="profile postal_code")
    assert request.url == API + CODE_PAIR_PATH
    assert request.method == "POST"
    assert dict(parse_qsl(request.body.decode())) == {
        "response_type": "device_code",
        "client_id": CLIENT,
        "scope": "profile postal_code",
    }
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert request.sensitive_values == ()
    with pytest.raises(ValueError, match="client_id"):
        code_pair_request(API, client_id=" ")


def test_device_grant_sends_both_codes_and_hides_them() -> None:
    request = device_grant(API, device_code=DEVICE_CODE, user_code="KJ7PQ2")
    assert dict(parse_qsl(request.body.decode())) == {
        "grant_type": "device_code",
        "device_code": DEVICE_CODE,
        "user_code": "KJ7PQ2",
    }
    assert DEVICE_CODE not in repr(request)
    assert "KJ7PQ2" not in repr(request)
    assert set(request.sensitive_values) == {DEVICE_CODE, "KJ7PQ2"}


# Parsing --------------------------------------------------------------------------------


def test_parse_code_pair() -> None:
    pair = a_pair()
    assert pair.user_code == "KJ7PQ2"
    assert pair.device_code == DEVICE_CODE
    assert pair.verification_uri == "https://amazon.com/us/code"
    assert (pair.expires_in, pair.interval, pair.received_at) == (600, 5, T0)
    assert pair.expires_at == T0 + 600
    assert DEVICE_CODE not in repr(pair)
    assert "KJ7PQ2" in repr(pair)


def test_interval_defaults_to_five_seconds() -> None:
    assert parse_code_pair(200, JSON, pair_json(interval=None), now=T0).interval == DEFAULT_INTERVAL


@pytest.mark.parametrize(
    "fields",
    [
        {"user_code": None},
        {"user_code": ""},
        {"user_code": "A B"},
        {"user_code": "X" * 65},
        {"device_code": None},
        {"device_code": 5},
        {"verification_uri": "ftp://amazon.com/code"},
        {"verification_uri": "http://amazon.com/us/code"},  # plain http beyond loopback
        {"verification_uri": "/activate"},
        {"expires_in": 0},
        {"expires_in": True},
        {"expires_in": "600"},
        {"expires_in": None},
        {"interval": -1},
        {"interval": 1.5},
        {"interval": 3601},
    ],
)
def test_unusable_code_pairs(fields: dict[str, Any]) -> None:
    with pytest.raises(GrantUnavailable):
        parse_code_pair(200, JSON, pair_json(**fields), now=T0)


def test_loopback_http_verification_uri_is_fine() -> None:
    pair = parse_code_pair(
        200, JSON, pair_json(verification_uri="http://127.0.0.1:8765/activate"), now=T0
    )
    assert pair.verification_uri == "http://127.0.0.1:8765/activate"


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (200, "text/html", pair_json()),
        (200, JSON, b"[]"),
        (200, JSON, b"{" * 10),
        (200, JSON, b" " * 20_000),
        (500, JSON, error_body("ServerError")),
        (503, JSON, b"{}"),
        (429, JSON, b"{}"),
        (400, "text/plain", b"nope"),
    ],
)
def test_code_pair_answers_that_are_not_pairs(status: int, content_type: str, body: bytes) -> None:
    with pytest.raises(GrantUnavailable):
        parse_code_pair(status, content_type, body, now=T0)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("invalid_client", InvalidClient),
        ("invalid_request", InvalidGrantRequest),
        ("unauthorized_client", UnauthorizedClient),
    ],
)
def test_code_pair_errors(code: str, cls: type[GrantError]) -> None:
    with pytest.raises(cls):
        parse_code_pair(400, JSON, error_body(code), now=T0)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("authorization_pending", AuthorizationPending),
        ("slow_down", SlowDown),
        ("invalid_code_pair", InvalidCodePair),
        ("invalid_grant", InvalidGrant),
        ("invalid_client", InvalidClient),
        ("invalid_request", InvalidGrantRequest),
        ("unauthorized_client", UnauthorizedClient),
        ("unsupported_grant_type", UnsupportedGrantType),
        ("ServerError", GrantUnavailable),
    ],
)
def test_every_documented_poll_error_is_typed(code: str, cls: type[GrantError]) -> None:
    with pytest.raises(cls) as caught:
        parse_grant(400, JSON, error_body(code), errors=DEVICE_GRANT_ERRORS)
    assert caught.value.error == code


def test_device_errors_are_not_mapped_for_other_grants() -> None:
    assert "authorization_pending" not in GRANT_ERRORS
    with pytest.raises(GrantError) as caught:
        parse_grant(400, JSON, error_body("authorization_pending"))
    assert type(caught.value) is GrantError


# The poll decisions ------------------------------------------------------------------------


def test_wait_the_interval_then_poll_then_granted() -> None:
    poll = DevicePoll(a_pair(interval=5), API)
    first = poll.decide(T0)
    assert first == Wait(5.0, 5.0, 600.0, 0)
    assert poll.decide(T0 + 2) == Wait(3.0, 5.0, 598.0, 0)
    sent = poll.decide(T0 + 5)
    assert isinstance(sent, Poll)
    assert dict(sent.request.form)["grant_type"] == "device_code"
    assert poll.polls == 1
    assert poll.decide(T0 + 5.5, AuthorizationPending()) == Wait(5.0, 5.0, 594.5, 1)
    assert isinstance(poll.decide(T0 + 10.5), Poll)
    done = poll.decide(T0 + 11, grant())
    assert done == Granted(grant())
    assert poll.done
    assert poll.decide(T0 + 12) is done  # over: the same answer


def test_slow_down_adds_five_seconds_for_every_later_poll() -> None:
    poll = DevicePoll(a_pair(interval=5), API)
    assert isinstance(poll.decide(T0 + 5), Poll)
    assert poll.decide(T0 + 5, SlowDown()) == Wait(10.0, 10.0, 595.0, 1)
    assert isinstance(poll.decide(T0 + 15), Poll)
    assert poll.decide(T0 + 15, AuthorizationPending()) == Wait(10.0, 10.0, 585.0, 2)
    assert isinstance(poll.decide(T0 + 25), Poll)
    assert poll.decide(T0 + 25, SlowDown()).interval == 15.0  # type: ignore[union-attr]
    assert poll.slowed == 2


def test_a_429_slows_down_too_and_the_interval_is_capped() -> None:
    poll = DevicePoll(a_pair(interval=5, expires_in=3600), API, max_interval=12)
    now = T0 + 5
    for expected in (10.0, 12.0, 12.0):
        assert isinstance(poll.decide(now), Poll)
        wait = poll.decide(now, GrantUnavailable("429", status=429))
        assert isinstance(wait, Wait)
        assert wait.interval == expected
        now += wait.seconds


def test_server_errors_are_retried_three_times_in_a_row_at_most() -> None:
    poll = DevicePoll(a_pair(interval=1), API)
    now = T0 + 1
    assert isinstance(poll.decide(now), Poll)
    assert isinstance(poll.decide(now, GrantUnavailable()), Wait)
    assert isinstance(poll.decide(now + 1), Poll)
    assert isinstance(poll.decide(now + 1, AuthorizationPending()), Wait)  # the run ends
    for step in range(2, 4):
        assert isinstance(poll.decide(now + step), Poll)
        assert isinstance(poll.decide(now + step, GrantUnavailable()), Wait)
    assert isinstance(poll.decide(now + 4), Poll)
    failure = GrantUnavailable("down")
    stop = poll.decide(now + 4, failure)
    assert stop == Stop(failure)


@pytest.mark.parametrize(
    "error",
    [
        InvalidCodePair(),
        InvalidGrant(),
        InvalidClient(),
        InvalidGrantRequest(),
        UnauthorizedClient(),
        UnsupportedGrantType(),
        GrantError("odd", error="something_new"),
    ],
)
def test_every_other_error_stops(error: GrantError) -> None:
    poll = DevicePoll(a_pair(interval=0), API)
    assert isinstance(poll.decide(T0), Poll)
    assert poll.decide(T0, error) == Stop(error)
    assert poll.done


def test_no_poll_after_the_pair_expires() -> None:
    poll = DevicePoll(a_pair(interval=5, expires_in=12), API)
    assert isinstance(poll.decide(T0 + 5), Poll)
    assert isinstance(poll.decide(T0 + 5, AuthorizationPending()), Wait)
    assert isinstance(poll.decide(T0 + 10), Poll)
    stop = poll.decide(T0 + 10, AuthorizationPending())  # next poll at 15 > 12: over
    assert isinstance(stop, Stop)
    assert isinstance(stop.error, InvalidCodePair)
    assert "expired" in stop.error.description
    late = DevicePoll(a_pair(interval=5), API)
    assert isinstance(late.decide(T0 + 601), Stop)


def test_min_interval() -> None:
    poll = DevicePoll(a_pair(interval=0), API, min_interval=1)
    assert poll.interval == 1.0
    assert poll.decide(T0) == Wait(1.0, 1.0, 600.0, 0)


def test_misuse_is_refused() -> None:
    poll = DevicePoll(a_pair(interval=0), API)
    with pytest.raises(RuntimeError, match="no poll was sent"):
        poll.decide(T0, AuthorizationPending())
    assert isinstance(poll.decide(T0), Poll)
    with pytest.raises(RuntimeError, match="pass its answer"):
        poll.decide(T0)
    with pytest.raises(ValueError):
        DevicePoll(a_pair(), API, slow_down_step=-1)
    with pytest.raises(TypeError):
        DevicePoll(a_pair(), API, max_unavailable=1.5)  # type: ignore[arg-type]


def test_poll_repr_hides_the_device_code() -> None:
    poll = DevicePoll(a_pair(), API)
    assert DEVICE_CODE not in repr(poll)
    assert isinstance(poll.decide(T0 + 5), Poll)
    assert DEVICE_CODE not in repr(poll.decide(T0 + 5, AuthorizationPending()))


# The token clients' code-pair calls ---------------------------------------------------------


def handler(request: httpx.Request) -> httpx.Response:
    form = dict(parse_qsl(request.content.decode()))
    if request.url.path == CODE_PAIR_PATH:
        assert form == {"response_type": "device_code", "client_id": CLIENT, "scope": "profile"}
        return httpx.Response(200, content=pair_json(), headers={"content-type": JSON})
    assert request.url.path == "/auth/o2/token"
    assert form == {"grant_type": "device_code", "device_code": DEVICE_CODE, "user_code": "KJ7PQ2"}
    return httpx.Response(400, content=error_body("slow_down"), headers={"content-type": JSON})


def test_token_client_code_pair() -> None:
    with TokenClient(API, transport=httpx.MockTransport(handler)) as client:
        pair = client.create_code_pair(CLIENT, clock=lambda: T0)
        assert pair == a_pair()
        with pytest.raises(SlowDown):
            client.poll_code_pair(pair)


def test_async_token_client_code_pair() -> None:
    async def run() -> None:
        async with AsyncTokenClient(API, transport=httpx.MockTransport(handler)) as client:
            pair = await client.create_code_pair(CLIENT, clock=lambda: T0)
            assert pair == replace(a_pair())
            with pytest.raises(SlowDown):
                await client.poll_code_pair(pair)

    asyncio.run(run())
