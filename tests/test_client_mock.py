"""``LWAClient`` and ``AsyncLWAClient`` over ``httpx.MockTransport``.

Every scenario runs on both clients (``mode`` is ``"sync"`` or ``"async"``): whatever the
transport does, the caller gets a model or a typed :class:`LWAError`, never an httpx
exception; retries happen at most once and only where the protocol allows; the overall
timeout holds across the retry; bad tokens never leave the process.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from lwa_middleware.core.errors import (
    ConfigurationError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAError,
    LWAUnavailable,
)
from lwa_middleware.core.protocol import profile_request, tokeninfo_request
from lwa_middleware.core.settings import REGIONS
from lwa_middleware.upstream.client import AsyncLWAClient, LWAClient

Handler = Callable[[httpx.Request], httpx.Response]

RANDOM_PART = "IwEBIMockTransport-T0ken_value" * 14
TOKEN = "Atza|" + RANDOM_PART
USER_ID = "amzn1.account.AMOCKUSERIDXXXXXXXXXXXXXXXXX"
CLIENT_ID = "amzn1.application-oa2-client.mock"
BASE = "https://api.amazon.com"
NOW = 1_700_000_000.0
TOKENINFO = {
    "iss": "https://www.amazon.com",
    "user_id": USER_ID,
    "aud": CLIENT_ID,
    "app_id": "amzn1.application.mock",
    "exp": 3600,
    "iat": 1_699_999_990,
}
PROFILE = {"user_id": USER_ID, "name": "Ada Lovelace", "email": "ada@example.com"}
MODES = ["sync", "async"]


def lwa_json(status: int, body: Any, request: httpx.Request | None = None) -> httpx.Response:
    """A response shaped like Amazon's (JSON content type, request id header)."""
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json;charset=UTF-8", "x-amzn-RequestId": "r-1"},
        request=request,
    )


def ok(request: httpx.Request) -> httpx.Response:
    """The success answer for whichever endpoint was asked."""
    body = TOKENINFO if request.url.path == "/auth/o2/tokeninfo" else PROFILE
    return lwa_json(200, body, request)


class Recorder:
    """A MockTransport handler playing a script of answers, recording each request.

    Each step is a response factory, or an exception class to raise (httpx style).
    The last step repeats when the script runs out.
    """

    def __init__(self, *steps: Handler | type[Exception], sleep: float = 0.0) -> None:
        self.steps = list(steps) or [ok]
        self.sleep = sleep
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if self.sleep:
            time.sleep(self.sleep)
        if isinstance(step, type):
            raise step("injected by the test", request=request)
        return step(request)

    @property
    def count(self) -> int:
        """How many requests reached the transport."""
        return len(self.requests)

    def timeouts(self) -> list[float]:
        """The read timeout httpx was given for each request."""
        return [float(r.extensions["timeout"]["read"]) for r in self.requests]


def status(code: int, body: Any = None) -> Handler:
    """A handler answering ``code`` with a JSON body."""
    payload = body if body is not None else {"error": "ServerError", "error_description": "x"}
    return lambda request: lwa_json(code, payload, request)


def raw(code: int, content: bytes, content_type: str = "text/html") -> Handler:
    """A handler answering ``code`` with ``content`` as it is."""
    return lambda request: httpx.Response(
        code, content=content, headers={"content-type": content_type}, request=request
    )


def call(
    mode: str,
    handler: Recorder,
    endpoint: str = "tokeninfo",
    token: str = TOKEN,
    **options: Any,
) -> Any:
    """Build the ``mode`` client on a MockTransport, call ``endpoint`` once, close it."""
    options.setdefault("api_base_url", BASE)
    transport = httpx.MockTransport(handler)
    if mode == "sync":
        with LWAClient(transport=transport, **options) as client:
            if endpoint == "tokeninfo":
                return client.tokeninfo(token, now=NOW)
            return client.profile(token)

    async def main() -> Any:
        async with AsyncLWAClient(transport=transport, **options) as client:
            if endpoint == "tokeninfo":
                return await client.tokeninfo(token, now=NOW)
            return await client.profile(token)

    return asyncio.run(main())


def failure(mode: str, handler: Recorder, endpoint: str = "tokeninfo", **options: Any) -> LWAError:
    """The :class:`LWAError` a call raises; fails the test on anything else."""
    try:
        result = call(mode, handler, endpoint, **options)
    except LWAError as error:
        assert_clean(error)
        return error
    pytest.fail(f"expected an LWAError, got {result!r}")


def assert_clean(error: BaseException) -> None:
    """No httpx exception (which carries the request, so the token) in the chain or text."""
    seen: BaseException | None = error
    while seen is not None:
        assert not isinstance(seen, httpx.HTTPError), f"httpx error leaked: {seen!r}"
        for text in (str(seen), repr(seen)):
            assert RANDOM_PART[:16] not in text
        seen = seen.__cause__ or seen.__context__


# Success ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_tokeninfo_success_sends_one_header_only_request(mode: str) -> None:
    handler = Recorder(ok)
    info = call(mode, handler)
    assert info.user_id == USER_ID
    assert info.aud == CLIENT_ID
    assert info.expires_at == NOW + 3600
    assert handler.count == 1
    request = handler.requests[0]
    assert request.method == "GET"
    assert str(request.url) == BASE + "/auth/o2/tokeninfo"
    assert RANDOM_PART not in str(request.url)
    assert request.headers["x-amz-access-token"] == TOKEN
    assert "authorization" not in request.headers


@pytest.mark.parametrize("mode", MODES)
def test_profile_success_sends_bearer(mode: str) -> None:
    handler = Recorder(ok)
    profile = call(mode, handler, "profile")
    assert (profile.user_id, profile.name, profile.email) == (
        USER_ID,
        "Ada Lovelace",
        "ada@example.com",
    )
    request = handler.requests[0]
    assert str(request.url) == BASE + "/user/profile"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept-language"] == "en-US"
    assert "x-amz-access-token" not in request.headers


@pytest.mark.parametrize("mode", MODES)
def test_tokeninfo_without_now_uses_the_wall_clock(mode: str) -> None:
    before = time.time()
    transport = httpx.MockTransport(Recorder(ok))
    if mode == "sync":
        with LWAClient(BASE, transport=transport) as client:
            info = client.tokeninfo(TOKEN)
    else:

        async def main() -> Any:
            async with AsyncLWAClient(BASE, transport=transport) as client:
                return await client.tokeninfo(TOKEN)

        info = asyncio.run(main())
    assert before + 3600 <= info.expires_at <= time.time() + 3600


@pytest.mark.parametrize("mode", MODES)
def test_redirects_are_not_followed(mode: str) -> None:
    handler = Recorder(
        lambda r: httpx.Response(302, headers={"location": "https://evil.example/"}, request=r)
    )
    assert isinstance(failure(mode, handler), LWAUnavailable)
    assert handler.count == 1


# Failures -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", ["tokeninfo", "profile"])
@pytest.mark.parametrize(
    "exc", [httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError]
)
def test_transport_errors_are_retried_once(mode: str, endpoint: str, exc: type[Exception]) -> None:
    handler = Recorder(exc, ok)
    result = call(mode, handler, endpoint)
    assert result.user_id == USER_ID
    assert handler.count == 2
    handler = Recorder(exc)
    assert isinstance(failure(mode, handler, endpoint), LWAUnavailable)
    assert handler.count == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteTimeout]
)
def test_timeouts_are_not_retried(mode: str, exc: type[Exception]) -> None:
    handler = Recorder(exc, ok)
    error = failure(mode, handler)
    assert isinstance(error, LWAUnavailable)
    assert "timed out" in error.description
    assert handler.count == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", ["tokeninfo", "profile"])
@pytest.mark.parametrize("code", [500, 502, 503])
def test_5xx_then_success_is_retried_once(mode: str, endpoint: str, code: int) -> None:
    handler = Recorder(status(code), ok)
    assert call(mode, handler, endpoint).user_id == USER_ID
    assert handler.count == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", ["tokeninfo", "profile"])
def test_5xx_twice_is_unavailable(mode: str, endpoint: str) -> None:
    handler = Recorder(status(500), status(503), ok)
    assert isinstance(failure(mode, handler, endpoint), LWAUnavailable)
    assert handler.count == 2


@pytest.mark.parametrize("mode", MODES)
def test_retries_zero_disables_the_retry(mode: str) -> None:
    handler = Recorder(status(500), ok)
    assert isinstance(failure(mode, handler, retries=0), LWAUnavailable)
    assert handler.count == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("handler_factory", "expected"),
    [
        (lambda: status(429, {"error": "TooManyRequests"}), LWAUnavailable),
        (lambda: status(400, {"error": "invalid_token"}), InvalidToken),
        (lambda: status(400, {"error": "invalid_request"}), InvalidRequest),
        (lambda: status(401, {"error": "insufficient_scope"}), InsufficientScope),
        (lambda: status(403, {"message": "Forbidden"}), LWAUnavailable),
        (lambda: raw(404, b"<html>not here</html>"), LWAUnavailable),
        (lambda: raw(200, b"<html>oops</html>"), LWAUnavailable),
        (lambda: raw(200, b""), LWAUnavailable),
        (lambda: status(200, {}), LWAUnavailable),
        (lambda: status(200, {"user_id": USER_ID}), LWAUnavailable),
        (lambda: status(200, ["not", "an", "object"]), LWAUnavailable),
    ],
    ids=[
        "429",
        "invalid_token",
        "invalid_request",
        "insufficient_scope",
        "403",
        "404-html",
        "non-json",
        "empty",
        "missing-fields",
        "no-aud-exp",
        "json-list",
    ],
)
def test_answers_map_to_typed_errors_without_retry(
    mode: str, handler_factory: Callable[[], Handler], expected: type[LWAError]
) -> None:
    handler = Recorder(handler_factory(), ok)
    error = failure(mode, handler)
    assert type(error) is expected
    assert handler.count == 1


@pytest.mark.parametrize("mode", MODES)
def test_profile_missing_user_id_is_unavailable(mode: str) -> None:
    handler = Recorder(status(200, {"name": "Ada"}))
    assert isinstance(failure(mode, handler, "profile"), LWAUnavailable)


@pytest.mark.parametrize("mode", MODES)
def test_each_call_gets_its_own_retry(mode: str) -> None:
    """The retry allowance is per call, not per client."""
    handler = Recorder(status(500), ok, status(500), ok)
    transport = httpx.MockTransport(handler)
    if mode == "sync":
        with LWAClient(BASE, transport=transport) as client:
            client.tokeninfo(TOKEN)
            client.profile(TOKEN)
    else:

        async def main() -> None:
            async with AsyncLWAClient(BASE, transport=transport) as client:
                await client.tokeninfo(TOKEN)
                await client.profile(TOKEN)

        asyncio.run(main())
    assert handler.count == 4


# The overall timeout ------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_timeout_budget_is_shared_by_the_retry(mode: str) -> None:
    """A first attempt that uses the whole budget leaves nothing for the retry."""
    handler = Recorder(status(503), ok, sleep=0.15)
    error = failure(mode, handler, timeout=0.05)
    assert isinstance(error, LWAUnavailable)
    assert handler.count == 1, "the retry was sent after the budget was spent"


@pytest.mark.parametrize("mode", MODES)
def test_retry_gets_only_what_is_left_of_the_budget(mode: str) -> None:
    handler = Recorder(httpx.ConnectError, ok, sleep=0.02)
    assert call(mode, handler, timeout=3.0).user_id == USER_ID
    first, second = handler.timeouts()
    assert 0 < second < first <= 3.0


@pytest.mark.parametrize("mode", MODES)
def test_every_httpx_timeout_is_bounded_by_the_budget(mode: str) -> None:
    handler = Recorder(ok)
    call(mode, handler, timeout=0.75)
    timeout = handler.requests[0].extensions["timeout"]
    assert all(0 < float(timeout[k]) <= 0.75 for k in ("connect", "read", "write", "pool"))


# Configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "host"),
    [("NA", "api.amazon.com"), ("EU", "api.amazon.co.uk"), ("FE", "api.amazon.co.jp")],
)
@pytest.mark.parametrize("mode", MODES)
def test_regions_pick_the_documented_host(mode: str, region: str, host: str) -> None:
    handler = Recorder(ok)
    call(mode, handler, api_base_url=None, region=region)
    assert handler.requests[0].url.scheme == "https"
    assert handler.requests[0].url.host == host
    assert REGIONS[region] == f"https://{host}"


@pytest.mark.parametrize("mode", MODES)
def test_default_is_north_america(mode: str) -> None:
    handler = Recorder(ok)
    call(mode, handler, api_base_url=None)
    assert str(handler.requests[0].url) == "https://api.amazon.com/auth/o2/tokeninfo"


@pytest.mark.parametrize("mode", MODES)
def test_api_base_url_is_used_and_its_trailing_slash_dropped(mode: str) -> None:
    handler = Recorder(ok)
    call(mode, handler, "profile", api_base_url="http://127.0.0.1:8123/lwa/")
    assert str(handler.requests[0].url) == "http://127.0.0.1:8123/lwa/user/profile"


@pytest.mark.parametrize("client_class", [LWAClient, AsyncLWAClient])
def test_region_and_api_base_url_conflict(client_class: type[LWAClient | AsyncLWAClient]) -> None:
    with pytest.raises(ConfigurationError):
        client_class("https://api.amazon.co.uk", region="NA")
    with pytest.raises(ConfigurationError):
        client_class("http://127.0.0.1:9000", region="EU")


@pytest.mark.parametrize("client_class", [LWAClient, AsyncLWAClient])
def test_region_with_its_own_url_is_not_a_conflict(
    client_class: type[LWAClient | AsyncLWAClient],
) -> None:
    assert client_class("https://api.amazon.co.uk/", region="EU").api_base_url == REGIONS["EU"]


@pytest.mark.parametrize("client_class", [LWAClient, AsyncLWAClient])
@pytest.mark.parametrize(
    ("api_base_url", "region"),
    [
        (None, "US"),
        (None, "eu"),
        ("ftp://api.amazon.com", None),
        ("api.amazon.com", None),
        ("https://api.amazon.com?x=1", None),
        ("https://api.amazon.com#frag", None),
    ],
)
def test_bad_configuration_is_rejected(
    client_class: type[LWAClient | AsyncLWAClient], api_base_url: str | None, region: str | None
) -> None:
    with pytest.raises(ConfigurationError):
        client_class(api_base_url, region=region)


# Tokens that never leave the process --------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", ["tokeninfo", "profile"])
@pytest.mark.parametrize(
    "bad",
    [
        TOKEN[:40] + "\r\nX-Injected: yes" + TOKEN[40:],
        TOKEN[:40] + "\n" + TOKEN[40:],
        TOKEN[:40] + "\r" + TOKEN[40:],
        TOKEN[:40] + " " + TOKEN[40:],
        TOKEN[:40] + "\t" + TOKEN[40:],
        TOKEN[:40] + "\x00" + TOKEN[40:],
        TOKEN[:40] + "é" + TOKEN[40:],
        "Atza%7C" + RANDOM_PART,
        TOKEN + '"',
        TOKEN + ",Bearer other",
        "",
        "   ",
        "Atza|" + "a" * 2044,
    ],
    ids=[
        "crlf",
        "lf",
        "cr",
        "space",
        "tab",
        "nul",
        "non-ascii",
        "percent",
        "quote",
        "comma",
        "empty",
        "blank",
        "too-long",
    ],
)
def test_bad_tokens_are_rejected_locally(mode: str, endpoint: str, bad: str) -> None:
    handler = Recorder(ok)
    error = failure(mode, handler, endpoint, token=bad)
    assert type(error) is InvalidRequest
    assert handler.count == 0, "a malformed token was sent to LWA"
    assert RANDOM_PART[:16] not in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_longest_allowed_token_is_sent(mode: str) -> None:
    token = "Atza|" + "a" * 2043
    assert len(token) == 2048
    handler = Recorder(ok)
    call(mode, handler, token=token)
    assert handler.count == 1


# Nothing shows the token --------------------------------------------------------


def test_reprs_hold_no_token() -> None:
    handler = Recorder(ok)
    transport = httpx.MockTransport(handler)
    with LWAClient(BASE, transport=transport, timeout=2.0) as client:
        client.tokeninfo(TOKEN)
        client.profile(TOKEN)
        texts = [repr(client), str(client)]

    async def main() -> list[str]:
        async with AsyncLWAClient(BASE, transport=transport) as client:
            await client.tokeninfo(TOKEN)
            return [repr(client), str(client)]

    texts += asyncio.run(main())
    texts += [repr(tokeninfo_request(BASE, TOKEN)), repr(profile_request(BASE, TOKEN))]
    texts += [str(tokeninfo_request(BASE, TOKEN)), str(profile_request(BASE, TOKEN))]
    assert handler.count == 3
    for text in texts:
        assert RANDOM_PART[:16] not in text
        assert "Atza" not in text
    assert texts[0].startswith("LWAClient(")
    assert BASE in texts[0]


@pytest.mark.parametrize("mode", MODES)
def test_errors_from_lwa_do_not_echo_the_token(mode: str) -> None:
    """Our own messages for transport failures and unusable answers are token-free."""
    for handler in (
        Recorder(httpx.ConnectError),
        Recorder(httpx.ReadTimeout),
        Recorder(status(500)),
        Recorder(raw(200, b"not json")),
    ):
        error = failure(mode, handler)
        assert RANDOM_PART[:16] not in error.description
