"""The LWA wire protocol, without I/O: requests to build, responses to parse, retries.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

``tokeninfo_request``/``profile_request`` build what to send (the token only ever in a
header, never in a URL: httpx logs every URL at INFO). ``parse_tokeninfo``/``parse_profile``
turn a response into a model or raise one of :mod:`lwa_middleware.core.errors`. :func:`exchange`
is a generator that owns the retry policy (at most one quick retry on connection errors
and 5xx); the sync and async clients only drive it with real HTTP.

"""

from __future__ import annotations

import json
import math
import socket
import ssl
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from lwa_middleware.core.errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAError,
    LWAUnavailable,
)
from lwa_middleware.core.models import Profile, TokenInfo, shared_text

T = TypeVar("T")

#: An upstream description holding any run this long of the token is never relayed.
ECHO_RUN = 8

TOKENINFO_PATH = "/auth/o2/tokeninfo"
PROFILE_PATH = "/user/profile"
USER_AGENT = "lwa-middleware"
_MAX_DESCRIPTION = 300


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """A request to send. ``repr`` hides the headers, which carry the token."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:
        return f"HTTPRequest({self.method} {self.url})"

    @property
    def host(self) -> str:
        """``host[:port]`` of the URL (for log lines: the URL's path and query are not)."""
        return urlsplit(self.url).netloc


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """What came back: status, headers (lower-case names) and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """No usable response: ``kind`` is ``"timeout"``, ``"connect"`` or ``"protocol"``;
    ``detail`` says why in words (:func:`cause_of`), never a URL or a token."""

    kind: str
    detail: str = ""

    @property
    def retryable(self) -> bool:
        """A timeout used the whole budget; other failures get one quick retry."""
        return self.kind != "timeout"


Outcome = HTTPResponse | TransportFailure


def failure_of(
    error: BaseException,
    *,
    timeouts: tuple[type[BaseException], ...],
    connects: tuple[type[BaseException], ...],
) -> TransportFailure:
    """The failure for an HTTP library's exception: a timeout or a failed connection by
    the library's own classes (``timeouts``, ``connects``), else a protocol failure; the
    detail is its cause in words (:func:`cause_of`), never its message."""
    if isinstance(error, timeouts):
        kind = "timeout"
    elif isinstance(error, connects):
        kind = "connect"
    else:
        kind = "protocol"
    return TransportFailure(kind, cause_of(error, kind))


def cause_of(error: BaseException, kind: str) -> str:
    """Why a request failed, in words for a log line: ``connection refused``, ``name not
    resolved``, ``TLS failure: <the TLS library's reason>``, ``timed out``, else the
    kind and the exception's class. Walks the exception's causes (HTTP libraries wrap the
    socket's error); never reads an exception's message, which may hold the URL."""
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (ssl.SSLError, ssl.CertificateError)):
            # aiohttp's certificate error is one too, without the attributes: keep looking
            reason = getattr(current, "verify_message", None) or getattr(current, "reason", None)
            if isinstance(reason, str) and reason:
                return f"TLS failure: {reason}"
            linked = getattr(current, "certificate_error", None)
            if not isinstance(linked, BaseException):
                return "TLS failure"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "name not resolved"
        if isinstance(current, (TimeoutError, socket.timeout)):
            return "timed out"
        stack += [
            linked
            for linked in (
                current.__cause__,
                current.__context__,
                getattr(current, "os_error", None),  # aiohttp's connector errors
                getattr(current, "certificate_error", None),
            )
            if isinstance(linked, BaseException)
        ]
    if kind == "timeout":
        return "timed out"
    return (
        f"{'connection failed' if kind == 'connect' else 'protocol error'} ({type(error).__name__})"
    )


Steps = Generator[HTTPRequest, Outcome, T]


def tokeninfo_request(base_url: str, token: str) -> HTTPRequest:
    """``GET /auth/o2/tokeninfo`` with the token in ``x-amz-access-token`` (Amazon's SDK way)."""
    return HTTPRequest(
        "GET",
        base_url + TOKENINFO_PATH,
        (("x-amz-access-token", token), ("accept", "application/json"), ("user-agent", USER_AGENT)),
    )


def profile_request(base_url: str, token: str) -> HTTPRequest:
    """``GET /user/profile`` with ``Authorization: Bearer``; LWA serves JSON in en-US only."""
    return HTTPRequest(
        "GET",
        base_url + PROFILE_PATH,
        (
            ("authorization", f"Bearer {token}"),
            ("accept", "application/json"),
            ("accept-language", "en-US"),
            ("user-agent", USER_AGENT),
        ),
    )


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object, or ``None`` (not JSON, not an object, or nested too deep
    to parse)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _description(data: Mapping[str, Any]) -> str | None:
    """LWA's description, short and printable; dropped if it could echo a token."""
    text = data.get("error_description")
    if not isinstance(text, str) or not text.strip() or not text.isprintable():
        return None
    if "Atza" in text or "Atzr" in text or "Atc|" in text:
        return None
    return text.strip()[:_MAX_DESCRIPTION]


def echoes(text: str, secret: str, run: int = ECHO_RUN) -> bool:
    """Whether ``text`` holds any ``run`` consecutive characters of ``secret`` (all of it,
    when shorter)."""
    if len(secret) <= run:
        return bool(secret) and secret in text
    return any(text[i : i + run] in secret for i in range(len(text) - run + 1))


def scrubbed(error: LWAError, secret: str) -> LWAError:
    """``error`` with its description replaced by our default when it echoes ``secret``."""
    if echoes(error.description, secret):
        error.description = error.default_description
        error.args = (error.description,)
    return error


def lwa_error(response: HTTPResponse) -> LWAError:
    """The error for a non-200 answer: LWA's documented codes map to ours, the rest is 500."""
    status = response.status
    if status == 429:
        return LWAUnavailable("Login with Amazon is rate limiting requests (429).")
    if status >= 500:
        return LWAUnavailable(f"Login with Amazon answered {status}.")
    data = json_object(response.body) or {}
    code = data.get("error")
    description = _description(data)
    if code == "invalid_token":
        return InvalidToken(description)
    if code == "insufficient_scope":
        return InsufficientScope(description)
    if code == "invalid_request":
        return InvalidRequest(description)
    return LWAUnavailable(f"Login with Amazon answered {status} with no documented error.")


def _success_body(response: HTTPResponse, what: str) -> dict[str, Any]:
    if response.status != 200:
        raise lwa_error(response)
    data = json_object(response.body)
    if data is None:
        raise LWAUnavailable(f"Login with Amazon's {what} answer is not a JSON object.")
    return data


def _number(value: Any) -> float | None:
    """A finite number from a JSON number or numeric string (``NaN``/``Infinity`` refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def parse_tokeninfo(response: HTTPResponse, now: float) -> TokenInfo:
    """A :class:`TokenInfo`; ``exp`` is seconds remaining, so ``expires_at = now + exp``."""
    data = _success_body(response, "token-info")
    user_id, aud = _text(data, "user_id"), _text(data, "aud")
    exp = _number(data.get("exp"))
    if user_id is None or aud is None or exp is None:
        raise LWAUnavailable("Login with Amazon's token-info answer lacks user_id, aud or exp.")
    if exp <= 0:
        raise InvalidToken("The access token has expired.")
    # aud, app_id and iss are the same few values in every answer: one shared copy each.
    return TokenInfo(
        user_id=user_id,
        aud=shared_text(aud),
        app_id=shared_text(_text(data, "app_id")),
        iss=shared_text(_text(data, "iss")),
        expires_at=now + exp,
        issued_at=_number(data.get("iat")),
    )


#: Profile field names: the current shape, and the legacy ``{"Profile": {...}}`` one.
_CURRENT_FIELDS = ("user_id", "name", "email", "postal_code")
_LEGACY_FIELDS = ("CustomerId", "Name", "PrimaryEmail", "PostalCode")


def profile_from_data(data: Mapping[str, Any]) -> Profile | None:
    """A :class:`Profile` from a profile JSON object (current or legacy shape), else ``None``."""
    legacy = data.get("Profile")
    source, names = (
        (legacy, _LEGACY_FIELDS)
        if isinstance(legacy, Mapping) and "user_id" not in data
        else (data, _CURRENT_FIELDS)
    )
    user_id, name, email, postal_code = (_text(source, key) for key in names)
    if user_id is None:
        return None
    return Profile(user_id, name, email, postal_code, raw=data)


def parse_profile(response: HTTPResponse) -> Profile:
    """A :class:`Profile`; unknown fields stay in ``raw``, the legacy shape is read too."""
    profile = profile_from_data(_success_body(response, "profile"))
    if profile is None:
        raise LWAUnavailable("Login with Amazon's profile answer lacks user_id.")
    return profile


def exchange(
    request: HTTPRequest,
    parse: Callable[[HTTPResponse], T],
    retries: int = 1,
    secret: str = "",
) -> Steps[T]:
    """Send ``request`` (yielded to the driver), retrying once on connect errors and 5xx.

    The driver sends back an :data:`Outcome` for each yielded request; the generator
    returns the parsed value or raises an :class:`~lwa_middleware.core.errors.LWAError`, whose
    description never echoes ``secret`` (the token the request carries).
    """
    attempt = 0
    while True:
        outcome = yield request
        again = attempt < retries
        attempt += 1
        if isinstance(outcome, TransportFailure):
            if again and outcome.retryable:
                continue
            what = "timed out" if outcome.kind == "timeout" else "could not be reached"
            raise LWAUnavailable(
                f"Login with Amazon {what}.", cause=f"{request.host}: {outcome.detail}"
            )
        if outcome.status >= 500 and again:
            continue
        try:
            return parse(outcome)
        except LWAError as error:
            if isinstance(error, LWAUnavailable) and error.cause is None:
                error.cause = request.host
                if outcome.status in (404, 405):  # no such endpoint there: not passing
                    error.cause = (
                        f"{request.url} answered {outcome.status}: the URL is wrong "
                        "(api_base_url must be the API's base URL, such as "
                        "https://api.amazon.com)"
                    )
                    error.retryable = False
            raise scrubbed(error, secret) from None


def drive(steps: Steps[T], send: Callable[[HTTPRequest], Outcome]) -> T:
    """Run an :func:`exchange` with a blocking ``send`` (the sync client's driver)."""
    try:
        request = next(steps)
        while True:
            request = steps.send(send(request))
    except StopIteration as done:
        return cast(T, done.value)
