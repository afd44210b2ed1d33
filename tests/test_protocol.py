"""Unit tests of :mod:`lwa_middleware.core.protocol`: the LWA wire protocol without I/O.

Requests are built with the token in headers only, answers are parsed into models or
typed errors, and :func:`~lwa_middleware.core.protocol.exchange` owns the retry policy (at
most one retry, on connection/protocol errors and 5xx only). Nothing here touches a
socket or a clock: ``now`` is passed in and outcomes are fed to the generator by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from lwa_middleware.core.errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAError,
    LWAUnavailable,
    ServerError,
)
from lwa_middleware.core.models import Profile, TokenInfo
from lwa_middleware.core.protocol import (
    PROFILE_PATH,
    TOKENINFO_PATH,
    HTTPRequest,
    HTTPResponse,
    Outcome,
    TransportFailure,
    drive,
    exchange,
    lwa_error,
    parse_profile,
    parse_tokeninfo,
    profile_request,
    tokeninfo_request,
)

BASE = "https://api.amazon.com"
RANDOM_PART = "IwEBIPr0t0c0l-Test_T0ken.value~with+all/allowed-chars" * 8
TOKEN = "Atza|" + RANDOM_PART
NOW = 1_700_000_000.0
USER_ID = "amzn1.account.AEXAMPLEUSERIDXXXXXXXXXXXXXX"
CLIENT_ID = "amzn1.application-oa2-client.0123456789abcdef"
APP_ID = "amzn1.application.0123456789abcdef"
JSON_HEADERS = {"content-type": "application/json;charset=UTF-8", "x-amzn-requestid": "r-1"}


def answer(status: int, body: Any = None, *, raw: bytes | None = None) -> HTTPResponse:
    """An :class:`HTTPResponse` with a JSON body (or ``raw`` bytes as they are)."""
    content = raw if raw is not None else json.dumps(body).encode()
    return HTTPResponse(status, JSON_HEADERS, content)


def tokeninfo_body(**changes: Any) -> dict[str, Any]:
    """A token-info body shaped like Amazon's, with ``changes`` applied (None removes)."""
    body: dict[str, Any] = {
        "iss": "https://www.amazon.com",
        "user_id": USER_ID,
        "aud": CLIENT_ID,
        "app_id": APP_ID,
        "exp": 3597,
        "iat": 1_699_999_997,
    }
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def lwa_error_body(error: str, description: str = "Something happened.") -> dict[str, Any]:
    """Amazon's documented error body."""
    return {"error": error, "error_description": description, "request_id": "r-1"}


# Request building ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "path"), [(tokeninfo_request, TOKENINFO_PATH), (profile_request, PROFILE_PATH)]
)
def test_requests_carry_the_token_in_headers_never_in_the_url(
    build: Callable[[str, str], HTTPRequest], path: str
) -> None:
    request = build(BASE, TOKEN)
    assert request.method == "GET"
    assert request.url == BASE + path
    assert RANDOM_PART not in request.url
    assert "access_token" not in request.url
    assert "?" not in request.url
    assert any(RANDOM_PART in value for _, value in request.headers)
    names = [name for name, _ in request.headers]
    assert names == [name.lower() for name in names], "header names are lower case"
    assert ("accept", "application/json") in request.headers


def test_tokeninfo_request_uses_the_amazon_sdk_header() -> None:
    headers = dict(tokeninfo_request(BASE, TOKEN).headers)
    assert headers["x-amz-access-token"] == TOKEN
    assert "authorization" not in headers


def test_profile_request_uses_bearer_and_asks_for_en_us_json() -> None:
    headers = dict(profile_request(BASE, TOKEN).headers)
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["accept-language"] == "en-US"
    assert "x-amz-access-token" not in headers


@pytest.mark.parametrize("build", [tokeninfo_request, profile_request])
def test_request_repr_and_str_hide_the_token(build: Callable[[str, str], HTTPRequest]) -> None:
    request = build(BASE, TOKEN)
    for text in (repr(request), str(request), f"{request}", f"{[request]}"):
        assert RANDOM_PART[:16] not in text
        assert "Atza" not in text
    assert BASE in repr(request)


# Token-info ---------------------------------------------------------------------


def test_parse_tokeninfo_turns_seconds_remaining_into_expires_at() -> None:
    info = parse_tokeninfo(answer(200, tokeninfo_body()), NOW)
    assert info == TokenInfo(
        user_id=USER_ID,
        aud=CLIENT_ID,
        app_id=APP_ID,
        iss="https://www.amazon.com",
        expires_at=NOW + 3597,
        issued_at=1_699_999_997.0,
    )


def test_parse_tokeninfo_anchors_expiry_on_the_given_now_not_on_iat() -> None:
    body = tokeninfo_body(exp=60, iat=1)
    assert parse_tokeninfo(answer(200, body), 5000.0).expires_at == 5060.0
    assert parse_tokeninfo(answer(200, body), 9000.0).expires_at == 9060.0


@pytest.mark.parametrize(
    ("exp", "iat", "expires_in", "issued_at"),
    [
        ("3600", "1699999997", 3600.0, 1_699_999_997.0),
        (" 42 ", None, 42.0, None),
        (12.5, 1.5, 12.5, 1.5),
        ("7.25", "not a number", 7.25, None),
    ],
)
def test_parse_tokeninfo_accepts_numeric_strings(
    exp: Any, iat: Any, expires_in: float, issued_at: float | None
) -> None:
    info = parse_tokeninfo(answer(200, tokeninfo_body(exp=exp, iat=iat)), NOW)
    assert info.expires_at == NOW + expires_in
    assert info.issued_at == issued_at


def test_parse_tokeninfo_optional_fields_may_be_absent() -> None:
    body = tokeninfo_body(app_id=None, iss=None, iat=None)
    info = parse_tokeninfo(answer(200, body), NOW)
    assert (info.app_id, info.iss, info.issued_at) == (None, None, None)


@pytest.mark.parametrize(
    "changes",
    [
        {"user_id": None},
        {"aud": None},
        {"exp": None},
        {"user_id": ""},
        {"aud": 42},
        {"exp": "soon"},
        {"exp": True},
        {"exp": [3600]},
    ],
    ids=str,
)
def test_parse_tokeninfo_missing_or_bad_fields_are_unavailable(changes: dict[str, Any]) -> None:
    with pytest.raises(LWAUnavailable):
        parse_tokeninfo(answer(200, tokeninfo_body(**changes)), NOW)


@pytest.mark.parametrize("exp", [0, -1, "0", "-30", 0.0])
def test_parse_tokeninfo_exp_not_positive_is_invalid_token(exp: Any) -> None:
    with pytest.raises(InvalidToken) as caught:
        parse_tokeninfo(answer(200, tokeninfo_body(exp=exp)), NOW)
    assert "expired" in caught.value.description


@pytest.mark.parametrize("raw_exp", [b"NaN", b'"nan"', b"Infinity", b'"inf"'])
def test_parse_tokeninfo_non_finite_exp_is_unavailable(raw_exp: bytes) -> None:
    body = b'{"user_id": "%s", "aud": "%s", "exp": %s}' % (
        USER_ID.encode(),
        CLIENT_ID.encode(),
        raw_exp,
    )
    with pytest.raises(LWAUnavailable):
        parse_tokeninfo(answer(200, raw=body), NOW)


@pytest.mark.parametrize(
    "response",
    [
        answer(200, raw=b"<html>oops</html>"),
        answer(200, raw=b""),
        answer(200, raw=b"\xff\xfe\x00"),
        answer(200, ["user_id"]),
        answer(200, "a string"),
        answer(200, None),
        answer(200, {}),
    ],
    ids=["html", "empty", "binary", "list", "string", "null", "empty-object"],
)
def test_parse_tokeninfo_unusable_bodies_are_unavailable(response: HTTPResponse) -> None:
    with pytest.raises(LWAUnavailable):
        parse_tokeninfo(response, NOW)


def test_parse_tokeninfo_maps_lwa_errors() -> None:
    body = {**lwa_error_body("invalid_token", "The access token is invalid."), "error_index": "x"}
    with pytest.raises(InvalidToken) as caught:
        parse_tokeninfo(answer(400, body), NOW)
    assert caught.value.description == "The access token is invalid."


# Profile ------------------------------------------------------------------------


def test_parse_profile_current_shape_keeps_unknown_fields_in_raw() -> None:
    body = {
        "user_id": USER_ID,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "postal_code": "98101",
        "favorite_color": "green",
    }
    profile = parse_profile(answer(200, body))
    assert profile == Profile(USER_ID, "Ada Lovelace", "ada@example.com", "98101")
    assert profile.raw == body
    assert profile.raw["favorite_color"] == "green"
    assert profile.scopes == {"profile", "profile:user_id", "postal_code"}


@pytest.mark.parametrize(
    ("body", "scopes"),
    [
        ({"user_id": USER_ID}, {"profile:user_id"}),
        ({"user_id": USER_ID, "name": "Ada"}, {"profile", "profile:user_id"}),
        ({"user_id": USER_ID, "email": "a@example.com"}, {"profile", "profile:user_id"}),
        ({"user_id": USER_ID, "postal_code": "98101"}, {"profile:user_id", "postal_code"}),
    ],
)
def test_parse_profile_partial_answers(body: dict[str, Any], scopes: set[str]) -> None:
    profile = parse_profile(answer(200, body))
    assert profile.user_id == USER_ID
    assert profile.scopes == scopes
    assert profile.raw == body


def test_parse_profile_legacy_shape() -> None:
    body = {
        "Profile": {
            "CustomerId": USER_ID,
            "Name": "Ada Lovelace",
            "PrimaryEmail": "ada@example.com",
            "Extra": 1,
        },
        "RequestId": "r-9",
    }
    profile = parse_profile(answer(200, body))
    assert (profile.user_id, profile.name, profile.email) == (
        USER_ID,
        "Ada Lovelace",
        "ada@example.com",
    )
    assert profile.postal_code is None
    assert profile.raw == body
    assert profile.scopes == {"profile", "profile:user_id"}


def test_parse_profile_current_shape_wins_over_a_profile_field() -> None:
    body = {"user_id": USER_ID, "Profile": {"CustomerId": "amzn1.account.OTHER"}}
    assert parse_profile(answer(200, body)).user_id == USER_ID


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "Ada"},
        {"user_id": ""},
        {"user_id": 7},
        {"Profile": {"Name": "Ada"}},
        {"Profile": "Ada"},
    ],
    ids=str,
)
def test_parse_profile_without_user_id_is_unavailable(body: dict[str, Any]) -> None:
    with pytest.raises(LWAUnavailable):
        parse_profile(answer(200, body))


def test_parse_profile_non_json_is_unavailable() -> None:
    with pytest.raises(LWAUnavailable):
        parse_profile(answer(200, raw=b"<html>oops</html>"))


def test_parse_profile_maps_insufficient_scope() -> None:
    with pytest.raises(InsufficientScope):
        parse_profile(answer(401, lwa_error_body("insufficient_scope")))


# Error mapping ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (400, "invalid_request", InvalidRequest),
        (400, "invalid_token", InvalidToken),
        (401, "invalid_token", InvalidToken),
        (401, "insufficient_scope", InsufficientScope),
        (403, "insufficient_scope", InsufficientScope),
        (500, "ServerError", LWAUnavailable),
        (500, "invalid_token", LWAUnavailable),
        (502, "BadGateway", LWAUnavailable),
        (503, "ServiceUnavailable", LWAUnavailable),
        (504, "GatewayTimeout", LWAUnavailable),
        (429, "TooManyRequests", LWAUnavailable),
        (429, "invalid_token", LWAUnavailable),
        (400, "unsupported_grant_type", LWAUnavailable),
        (404, "not_found", LWAUnavailable),
        (401, "unauthorized_client", LWAUnavailable),
    ],
)
def test_lwa_error_maps_documented_codes(status: int, error: str, expected: type[LWAError]) -> None:
    mapped = lwa_error(answer(status, lwa_error_body(error, "Told by LWA.")))
    assert type(mapped) is expected
    if expected is not LWAUnavailable:
        assert mapped.description == "Told by LWA."


def test_lwa_error_server_errors_are_server_error_class() -> None:
    for status in (429, 500, 503):
        mapped = lwa_error(answer(status, lwa_error_body("ServerError")))
        assert isinstance(mapped, ServerError)
        assert mapped.error == "ServerError"
        assert str(status) in mapped.description


@pytest.mark.parametrize(
    "response",
    [
        answer(400, raw=b"<html>Bad Request</html>"),
        answer(401, raw=b""),
        answer(400, ["invalid_token"]),
        answer(400, {"error": 7}),
        answer(400, {"message": "no error field"}),
    ],
    ids=["html", "empty", "list", "non-string-error", "no-error-field"],
)
def test_lwa_error_undocumented_4xx_is_unavailable(response: HTTPResponse) -> None:
    assert type(lwa_error(response)) is LWAUnavailable


def test_lwa_error_without_description_uses_the_default() -> None:
    for body in ({"error": "invalid_token"}, {"error": "invalid_token", "error_description": " "}):
        mapped = lwa_error(answer(400, body))
        assert isinstance(mapped, InvalidToken)
        assert mapped.description == InvalidToken.default_description


def test_lwa_error_truncates_long_descriptions() -> None:
    mapped = lwa_error(answer(400, lwa_error_body("invalid_token", "x" * 10_000)))
    assert 0 < len(mapped.description) <= 300


def test_lwa_error_ignores_non_string_description() -> None:
    mapped = lwa_error(answer(400, {"error": "invalid_request", "error_description": ["a"]}))
    assert isinstance(mapped, InvalidRequest)
    assert mapped.description == InvalidRequest.default_description


# The retry generator ------------------------------------------------------------

OK = answer(200, {"value": 1})


def parse_value(response: HTTPResponse) -> int:
    """A toy parser: the ``value`` of a 200 answer, else the mapped LWA error."""
    if response.status != 200:
        raise lwa_error(response)
    return int(json.loads(response.body)["value"])


def run(outcomes: Sequence[Outcome], retries: int = 1) -> tuple[int | LWAError, int]:
    """Feed ``outcomes`` to :func:`exchange`; return (result or error, requests yielded)."""
    request = tokeninfo_request(BASE, TOKEN)
    steps = exchange(request, parse_value, retries)
    feed = iter(outcomes)
    sent = 0
    try:
        yielded = next(steps)
        while True:
            assert yielded is request, "every attempt sends the same request"
            sent += 1
            yielded = steps.send(next(feed))
    except StopIteration as done:
        return done.value, sent
    except LWAError as error:
        return error, sent


CONNECT = TransportFailure("connect", "ConnectError")
PROTOCOL = TransportFailure("protocol", "RemoteProtocolError")
TIMEOUT = TransportFailure("timeout", "ReadTimeout")


def test_exchange_success_needs_one_request() -> None:
    assert run([OK]) == (1, 1)


@pytest.mark.parametrize("failure", [CONNECT, PROTOCOL])
def test_exchange_retries_once_after_connect_or_protocol_errors(
    failure: TransportFailure,
) -> None:
    assert run([failure, OK]) == (1, 2)


@pytest.mark.parametrize("failure", [CONNECT, PROTOCOL])
def test_exchange_gives_up_after_the_second_transport_failure(
    failure: TransportFailure,
) -> None:
    error, sent = run([failure, failure, OK])
    assert isinstance(error, LWAUnavailable)
    assert sent == 2
    assert "could not be reached" in error.description


def test_exchange_never_retries_a_timeout() -> None:
    error, sent = run([TIMEOUT, OK])
    assert isinstance(error, LWAUnavailable)
    assert sent == 1
    assert "timed out" in error.description


def test_exchange_timeout_on_the_retry_is_unavailable() -> None:
    error, sent = run([CONNECT, TIMEOUT, OK])
    assert isinstance(error, LWAUnavailable)
    assert sent == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_exchange_retries_once_after_5xx(status: int) -> None:
    assert run([answer(status, lwa_error_body("ServerError")), OK]) == (1, 2)


def test_exchange_two_5xx_give_up() -> None:
    error, sent = run([answer(500, {}), answer(503, {}), OK])
    assert isinstance(error, LWAUnavailable)
    assert sent == 2


def test_exchange_mixed_failures_still_one_retry() -> None:
    error, sent = run([CONNECT, answer(500, {}), OK])
    assert isinstance(error, LWAUnavailable)
    assert sent == 2
    error, sent = run([answer(500, {}), CONNECT, OK])
    assert isinstance(error, LWAUnavailable)
    assert sent == 2


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (answer(429, lwa_error_body("TooManyRequests")), LWAUnavailable),
        (answer(400, lwa_error_body("invalid_token")), InvalidToken),
        (answer(400, lwa_error_body("invalid_request")), InvalidRequest),
        (answer(401, lwa_error_body("insufficient_scope")), InsufficientScope),
        (answer(404, raw=b"nope"), LWAUnavailable),
    ],
)
def test_exchange_never_retries_429_or_4xx(response: HTTPResponse, expected: type) -> None:
    error, sent = run([response, OK])
    assert type(error) is expected
    assert sent == 1


def test_exchange_with_no_retries() -> None:
    error, sent = run([CONNECT, OK], retries=0)
    assert isinstance(error, LWAUnavailable)
    assert sent == 1
    error, sent = run([answer(500, {}), OK], retries=0)
    assert isinstance(error, LWAUnavailable)
    assert sent == 1


def test_transport_failure_retryable() -> None:
    assert CONNECT.retryable
    assert PROTOCOL.retryable
    assert not TIMEOUT.retryable


def test_drive_runs_an_exchange_with_a_blocking_sender() -> None:
    outcomes: list[Outcome] = [CONNECT, answer(200, tokeninfo_body())]
    seen: list[HTTPRequest] = []

    def send(request: HTTPRequest) -> Outcome:
        seen.append(request)
        return outcomes.pop(0)

    request = tokeninfo_request(BASE, TOKEN)
    info = drive(exchange(request, lambda r: parse_tokeninfo(r, NOW)), send)
    assert info.user_id == USER_ID
    assert info.expires_at == NOW + 3597
    assert seen == [request, request]


def test_drive_propagates_the_typed_error() -> None:
    request = profile_request(BASE, TOKEN)
    with pytest.raises(InvalidToken):
        drive(
            exchange(request, parse_profile),
            lambda _: answer(400, lwa_error_body("invalid_token")),
        )
