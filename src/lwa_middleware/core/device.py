"""Amazon's code-pair (device) flow, without I/O: the requests to build, the answers to
parse, and when to poll.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

A device or a command line without a browser signs a person in like this (Amazon's
"code-based linking"):

1. ``POST {api}/auth/o2/create/codepair`` with ``response_type=device_code``,
   ``client_id`` and ``scope`` (:func:`code_pair_request`) answers a :class:`CodePair`:
   ``user_code``, ``device_code``, ``verification_uri``, ``expires_in`` (e.g. 600 s) and
   ``interval`` (e.g. 5 or 30 s) (:func:`parse_code_pair`).
2. The person opens ``verification_uri`` in any browser, signs in and enters ``user_code``.
3. Meanwhile the device polls ``POST {api}/auth/o2/token`` with ``grant_type=device_code``,
   ``device_code`` and ``user_code``
   (:func:`~lwa_middleware.core.grants.device_grant`): ``authorization_pending`` until the
   person approves, then the tokens (``access_token``, ``refresh_token``, ``expires_in``).

:class:`DevicePoll` decides what to do next from ``now`` and the last answer
(:meth:`DevicePoll.polling` is the whole polling as one generator; the shells,
:mod:`lwa_middleware.callers.device_flow`, only sleep and send what it yields):

* :class:`Wait` ``interval`` seconds between two polls (the first poll too);
* ``authorization_pending``: poll again after the interval;
* ``slow_down``, or a 429: the interval grows by :data:`SLOW_DOWN_STEP` (5 s, as RFC 8628
  §3.5 says), up to :data:`MAX_INTERVAL`, for this and every later poll;
* ``ServerError`` (a 5xx, LWA unreachable or an unusable answer): poll again after the
  interval, at most :data:`MAX_UNAVAILABLE` times in a row, then stop with that error;
* :class:`Granted` on success; :class:`Stop` on ``invalid_code_pair`` (expired: start
  again), ``invalid_grant`` (denied), ``invalid_client``, ``invalid_request``,
  ``unauthorized_client``, ``unsupported_grant_type`` or any other code;
* :class:`Stop` with :class:`~lwa_middleware.core.grants.InvalidCodePair` when the code pair
  expires before an answer came back (no poll is sent after ``expires_in``).

No ``repr``, message or log line holds the device code or a token.

"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lwa_middleware.core.grants import (
    GRANT_ERRORS,
    MAX_EXPIRES_IN,
    MAX_GRANT_BODY,
    MAX_GRANT_TOKEN_BYTES,
    AuthorizationPending,
    FormPost,
    GrantError,
    GrantRequest,
    GrantUnavailable,
    InvalidCodePair,
    SlowDown,
    TokenGrant,
    device_grant,
    form_fields,
    grant_error,
)
from lwa_middleware.core.protocol import json_object
from lwa_middleware.core.settings import is_insecure_http

__all__ = [
    "CODE_PAIR_PATH",
    "DEFAULT_INTERVAL",
    "MAX_INTERVAL",
    "MAX_UNAVAILABLE",
    "SLOW_DOWN_STEP",
    "CodePair",
    "CodePairRequest",
    "Decision",
    "DevicePoll",
    "Granted",
    "Poll",
    "Stop",
    "Wait",
    "code_pair_request",
    "parse_code_pair",
]

CODE_PAIR_PATH = "/auth/o2/create/codepair"
#: The interval when an answer names none (RFC 8628 §3.2).
DEFAULT_INTERVAL = 5
#: How much ``slow_down`` (or a 429) lengthens the interval, in seconds (RFC 8628 §3.5).
SLOW_DOWN_STEP = 5.0
#: The longest interval ``slow_down`` leads to.
MAX_INTERVAL = 120.0
#: ``ServerError`` answers in a row after which polling stops.
MAX_UNAVAILABLE = 3
#: The longest user code accepted (Amazon's are six to eight characters).
MAX_USER_CODE = 64
#: The longest ``verification_uri`` accepted.
MAX_URI = 2048

_VISIBLE = re.compile(r"[\x21-\x7e]+")


# The request -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodePairRequest(FormPost):
    """``POST {api}/auth/o2/create/codepair`` (form-encoded). Nothing in it is secret, but
    the form is kept out of ``repr`` like a :class:`~lwa_middleware.core.grants.GrantRequest`'s."""


def code_pair_request(
    api_base_url: str, *, client_id: str, scope: str = "profile"
) -> CodePairRequest:
    """The code-pair request of ``client_id`` for ``scope`` (space-separated scopes).

    Raises ``ConfigurationError`` for a bad base URL, ``TypeError``/``ValueError`` for a
    bad field (:func:`~lwa_middleware.core.grants.form_fields`).
    """
    form = form_fields({"response_type": "device_code", "client_id": client_id, "scope": scope})
    return CodePairRequest.to(api_base_url, CODE_PAIR_PATH, form)


# The answer ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodePair:
    """What ``create/codepair`` answered: show ``verification_uri`` and ``user_code`` to the
    person; ``device_code`` (hidden from ``repr``) is only ever sent back to LWA."""

    user_code: str
    device_code: str = field(repr=False)
    verification_uri: str
    #: Seconds the pair can be approved, counted from ``received_at``.
    expires_in: int
    #: Seconds to wait between two polls.
    interval: int
    #: When the answer arrived (epoch seconds).
    received_at: float = 0.0

    @property
    def expires_at(self) -> float:
        """When the pair can no longer be approved (epoch seconds)."""
        return self.received_at + self.expires_in


def _whole(data: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise GrantUnavailable(f"Login with Amazon's code pair has no usable {key}.")
    return value


def _visible(data: Mapping[str, Any], key: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or len(value) > limit or _VISIBLE.fullmatch(value) is None:
        raise GrantUnavailable(f"Login with Amazon's code pair has no usable {key}.")
    return value


def _verification_uri(data: Mapping[str, Any]) -> str:
    uri = _visible(data, "verification_uri", MAX_URI)
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise GrantUnavailable("Login with Amazon's code pair has no usable verification_uri.")
    if is_insecure_http(uri):  # a person would sign in over it: https, or loopback (emulator)
        raise GrantUnavailable("Login with Amazon's verification_uri is plain http.")
    return uri


def parse_code_pair(
    status: int,
    content_type: str | None,
    body: bytes,
    *,
    now: float,
    errors: Mapping[str, type[GrantError]] = GRANT_ERRORS,
    sensitive: Collection[str] = (),
) -> CodePair:
    """The :class:`CodePair` of a 200 JSON answer received at ``now``; else raise the
    :class:`~lwa_middleware.core.grants.GrantError` for it (as
    :func:`~lwa_middleware.core.grants.parse_grant` does: ``invalid_client``, ``invalid_scope``,
    ``ServerError`` …).

    A 200 must be a JSON object with a visible-ASCII ``user_code`` (at most
    :data:`MAX_USER_CODE` characters) and ``device_code``, an http(s) ``verification_uri``
    (plain http only to loopback), a whole ``expires_in`` in 1..86400 and optionally a
    whole ``interval`` in 0..3600 (default :data:`DEFAULT_INTERVAL`); anything less is
    :class:`~lwa_middleware.core.grants.GrantUnavailable`.
    """
    if status != 200:
        raise grant_error(status, body, sensitive=sensitive, errors=errors)
    if len(body) > MAX_GRANT_BODY:
        raise GrantUnavailable("Login with Amazon's code pair answer is too large.")
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != "application/json":
        raise GrantUnavailable("Login with Amazon's code pair answer is not JSON.")
    data = json_object(body)
    if data is None:
        raise GrantUnavailable("Login with Amazon's code pair answer is not a JSON object.")
    interval = (
        DEFAULT_INTERVAL if data.get("interval") is None else _whole(data, "interval", 0, 3600)
    )
    return CodePair(
        user_code=_visible(data, "user_code", MAX_USER_CODE),
        device_code=_visible(data, "device_code", MAX_GRANT_TOKEN_BYTES),
        verification_uri=_verification_uri(data),
        expires_in=_whole(data, "expires_in", 1, MAX_EXPIRES_IN),
        interval=interval,
        received_at=now,
    )


# When to poll ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wait:
    """Sleep ``seconds``, then ask again (``decide(now)``)."""

    seconds: float
    #: The interval between polls now (it grows on ``slow_down``).
    interval: float
    #: Seconds until the code pair expires.
    expires_in: float
    #: Polls sent so far.
    polls: int


@dataclass(frozen=True, slots=True)
class Poll:
    """Send ``request`` (parse its answer with ``errors=DEVICE_GRANT_ERRORS``), then pass the
    :class:`~lwa_middleware.core.grants.TokenGrant` or the ``GrantError`` to ``decide``."""

    request: GrantRequest


@dataclass(frozen=True, slots=True)
class Granted:
    """The person approved: here are the tokens."""

    grant: TokenGrant


@dataclass(frozen=True, slots=True)
class Stop:
    """Polling is over without tokens: raise ``error``."""

    error: GrantError


Decision = Wait | Poll | Granted | Stop
#: What goes back into :meth:`DevicePoll.polling`: the time, and a poll's answer (``None``
#: after a wait).
Feedback = tuple[float, "TokenGrant | GrantError | None"]


class DevicePoll:
    """The polling of one :class:`CodePair` (see the module's docstring for the rules).

    ``min_interval`` is the least wait between two polls whatever the pair's ``interval``
    (0: the pair's, even 0; the command line uses 1 s).

    Call :meth:`decide` with the time and, after a :class:`Poll`, its answer; do what it
    says. Not thread-safe: one poller per login.
    """

    def __init__(
        self,
        pair: CodePair,
        api_base_url: str,
        *,
        slow_down_step: float = SLOW_DOWN_STEP,
        max_interval: float = MAX_INTERVAL,
        max_unavailable: int = MAX_UNAVAILABLE,
        min_interval: float = 0.0,
    ) -> None:
        numbers = (
            ("slow_down_step", slow_down_step),
            ("max_interval", max_interval),
            ("min_interval", min_interval),
        )
        for name, value in numbers:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite, non-negative number of seconds")
        if isinstance(max_unavailable, bool) or not isinstance(max_unavailable, int):
            raise TypeError("max_unavailable must be a whole number")
        self.pair = pair
        self._request = device_grant(
            api_base_url, device_code=pair.device_code, user_code=pair.user_code
        )
        self.slow_down_step = float(slow_down_step)
        #: The seconds between two polls now (never less than ``min_interval``).
        self.interval = max(float(pair.interval), float(min_interval))
        self.max_interval = max(float(max_interval), self.interval)
        self.max_unavailable = max_unavailable
        #: Polls sent so far.
        self.polls = 0
        #: ``slow_down`` (and 429) answers so far.
        self.slowed = 0
        self._unavailable = 0
        self._next_at = pair.received_at + self.interval
        self._in_flight = False
        self._done: Granted | Stop | None = None

    @property
    def done(self) -> bool:
        """Whether polling is over (a :class:`Granted` or a :class:`Stop` was decided)."""
        return self._done is not None

    def decide(self, now: float, answer: TokenGrant | GrantError | None = None) -> Decision:
        """What to do at ``now``, given ``answer``: the outcome of the :class:`Poll` decided
        last (``None`` when no poll was sent since)."""
        if self._done is not None:
            return self._done
        if answer is not None:
            if not self._in_flight:
                raise RuntimeError("an answer was given, but no poll was sent")
            self._in_flight = False
            done = self._settle(now, answer)
            if done is not None:
                self._done = done
                return done
        elif self._in_flight:
            raise RuntimeError("a poll was sent: pass its answer (the grant or the error)")
        expires_at = self.pair.expires_at
        if now >= expires_at or self._next_at >= expires_at:
            self._done = Stop(
                InvalidCodePair("The code pair expired before it was approved; start again.")
            )
            return self._done
        if now < self._next_at:
            return Wait(self._next_at - now, self.interval, expires_at - now, self.polls)
        self._in_flight = True
        self.polls += 1
        return Poll(self._request)

    def polling(self, now: float) -> Generator[Wait | Poll, Feedback, TokenGrant]:
        """The whole polling as one generator, without I/O: it yields a :class:`Wait` (sleep
        that long, then send back ``(now, None)``) or a :class:`Poll` (send its request,
        then send back ``(now, the TokenGrant or the GrantError)``), and returns the tokens
        or raises the ``GrantError`` that ended the polling. The sync and the async shells
        drive it alike."""
        decision = self.decide(now)
        while not isinstance(decision, (Granted, Stop)):
            now, answer = yield decision
            decision = self.decide(now, answer)
        if isinstance(decision, Stop):
            raise decision.error
        return decision.grant

    def _settle(self, now: float, answer: TokenGrant | GrantError) -> Granted | Stop | None:
        if isinstance(answer, TokenGrant):
            return Granted(answer)
        if isinstance(answer, SlowDown) or (
            isinstance(answer, GrantUnavailable) and answer.status == 429
        ):
            self.slowed += 1
            self.interval = min(self.interval + self.slow_down_step, self.max_interval)
            self._unavailable = 0
        elif isinstance(answer, GrantUnavailable):
            self._unavailable += 1
            if self._unavailable >= self.max_unavailable:
                return Stop(answer)
        elif isinstance(answer, AuthorizationPending):
            self._unavailable = 0
        else:  # invalid_code_pair, invalid_grant, invalid_client, … or an unknown code
            return Stop(answer)
        self._next_at = now + self.interval
        return None

    def __repr__(self) -> str:
        state = "done" if self.done else "polling"
        return (
            f"DevicePoll({self.pair.user_code!r}, {state}, interval={self.interval}, "
            f"polls={self.polls})"
        )
