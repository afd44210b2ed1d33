"""The emulator's injected faults, latency and call counters: thread-safe, no I/O.

:class:`Faults` is the part of :class:`~lwa_middleware.emulator.state.EmulatorState` that
decides, for each request to an emulated endpoint, how long to wait and which failure to
answer instead of the normal one (:meth:`Faults.begin_request`), and counts the requests.
It imports no other part of the state.
"""

from __future__ import annotations

import enum
import math
import threading
from dataclasses import dataclass

from lwa_middleware.emulator.codepair import DEVICE_GRANT
from lwa_middleware.emulator.oauth import CLIENT_CREDENTIALS_GRANT, GRANT_TYPES

DEFAULT_HANG_SECONDS = 30.0
DEFAULT_TRICKLE_INTERVAL = 0.4

ENDPOINTS = ("tokeninfo", "profile")
"""The emulated LWA endpoints counted in ``calls`` (and named in ``fault`` and ``latency``)."""
TOKEN_ENDPOINT = "oauth_token"
"""``POST /auth/o2/token`` in ``fault`` and ``latency`` (its calls are in ``token_calls``)."""
CODEPAIR_ENDPOINT = "codepair"
"""``POST /auth/o2/create/codepair`` in ``fault``, ``latency`` and ``calls``."""
FAULT_ENDPOINTS = (*ENDPOINTS, TOKEN_ENDPOINT, CODEPAIR_ENDPOINT)
ANY_ENDPOINT = "*"
OTHER_GRANT = "other"
"""``token_calls`` key of token requests without a supported ``grant_type``."""
LATE_KEYS = frozenset({CODEPAIR_ENDPOINT, DEVICE_GRANT, CLIENT_CREDENTIALS_GRANT})
"""Counter keys that appear in ``calls`` (``codepair``) and ``token_calls``
(``device_code``, ``client_credentials``) only once counted, so the counters keep the
shapes they had before code-based linking; reading one that is not there gives 0."""
_COUNTED_GRANTS = frozenset({*GRANT_TYPES, DEVICE_GRANT, CLIENT_CREDENTIALS_GRANT})


class FaultKind(str, enum.Enum):
    """A failure the emulator can inject instead of a normal answer."""

    SERVER_ERROR = "500"
    """500 with Amazon's documented ``ServerError`` body."""
    UNAVAILABLE = "503"
    """503 with a small JSON body."""
    THROTTLED = "429"
    """429 with ``Retry-After: 1`` and a ``TooManyRequests`` JSON body."""
    HANG = "hang"
    """Wait ``hang_seconds`` (or until the client goes away), then answer normally."""
    NON_JSON = "non_json"
    """200 ``text/html`` body ``<html>oops</html>``."""
    MISSING_FIELDS = "missing_fields"
    """200 JSON ``{}``."""
    RESET = "reset"
    """Close the connection without any response (see ``emulator.app``)."""
    TRICKLE = "trickle"
    """The normal answer, one byte every ``trickle_interval`` seconds: status line and
    headers too under uvicorn, else the body only (see ``emulator.app``)."""
    TRICKLE_BODY = "trickle_body"
    """The normal answer's status and headers at once, then its body one byte every
    ``trickle_interval`` seconds."""


class CallCounts(dict[str, int]):
    """Call counts by endpoint or grant type: a plain ``dict`` (it compares, copies and
    serializes as one) whose :data:`LATE_KEYS` read 0 until counted."""

    def __missing__(self, key: str) -> int:
        if key in LATE_KEYS:
            return 0
        raise KeyError(key)


@dataclass(frozen=True)
class RequestPlan:
    """What the app must do for one request to an emulated endpoint."""

    latency: float
    fault: FaultKind | None
    hang_seconds: float
    trickle_interval: float = DEFAULT_TRICKLE_INTERVAL


@dataclass
class _Fault:
    kind: FaultKind
    endpoint: str
    remaining: int | None  # None: until clear_faults()


def check_interval(seconds: float) -> float:
    """Return ``seconds`` as a float if it is a finite, non-negative delay, else raise."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"an interval must be a number of seconds, not {seconds!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"an interval must be finite and non-negative, not {seconds!r}")
    return float(seconds)


def _no_token_calls() -> dict[str, int]:
    return dict.fromkeys((*GRANT_TYPES, OTHER_GRANT), 0)


def _check_endpoint(endpoint: str) -> str:
    if endpoint != ANY_ENDPOINT and endpoint not in FAULT_ENDPOINTS:
        allowed = ", ".join(repr(e) for e in (*FAULT_ENDPOINTS, ANY_ENDPOINT))
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {allowed}")
    return endpoint


class Faults:
    """Faults, latency and call counters of one emulator (thread-safe)."""

    def __init__(
        self,
        *,
        hang_seconds: float = DEFAULT_HANG_SECONDS,
        trickle_interval: float = DEFAULT_TRICKLE_INTERVAL,
    ) -> None:
        self.hang_seconds = hang_seconds
        """How long a ``hang`` fault waits before answering (kept by ``reset``)."""
        self.trickle_interval = check_interval(trickle_interval)
        """Seconds between two bytes of a ``trickle`` answer (kept by ``reset``)."""
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._latency: dict[str, float] = {}
        self._calls: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self._token_calls = _no_token_calls()

    def fault(
        self,
        kind: FaultKind | str,
        endpoint: str = ANY_ENDPOINT,
        times: int | None = None,
    ) -> None:
        """Inject a fault on ``endpoint`` (see ``EmulatorState.fault``)."""
        fault_kind = FaultKind(kind)
        _check_endpoint(endpoint)
        if times is not None and (isinstance(times, bool) or times < 1):
            raise ValueError(f"times must be None or a positive int, not {times!r}")
        with self._lock:
            self._faults.append(_Fault(fault_kind, endpoint, times))

    def latency(self, seconds: float, endpoint: str = ANY_ENDPOINT) -> None:
        """Delay every request to ``endpoint`` by ``seconds`` (0 removes the delay)."""
        _check_endpoint(endpoint)
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        with self._lock:
            if seconds:
                self._latency[endpoint] = float(seconds)
            else:
                self._latency.pop(endpoint, None)

    def clear_faults(self) -> None:
        """Remove every injected fault and latency."""
        with self._lock:
            self._faults.clear()
            self._latency.clear()

    @property
    def calls(self) -> dict[str, int]:
        """Snapshot of requests that reached each endpoint (see ``EmulatorState.calls``)."""
        with self._lock:
            return CallCounts(self._calls)

    @property
    def token_calls(self) -> dict[str, int]:
        """Requests that reached ``/auth/o2/token``, by ``grant_type`` (see
        ``EmulatorState.token_calls``)."""
        with self._lock:
            return CallCounts(self._token_calls)

    def reset_counts(self) -> None:
        """Set every call count (``calls`` and ``token_calls``) back to zero."""
        with self._lock:
            self._calls = dict.fromkeys(ENDPOINTS, 0)
            self._token_calls = _no_token_calls()

    def reset(self) -> None:
        """Forget faults, latency and counters (``hang_seconds`` and ``trickle_interval``
        are kept)."""
        with self._lock:
            self._faults.clear()
            self._latency.clear()
        self.reset_counts()

    def begin_request(self, endpoint: str, grant_type: str | None = None) -> RequestPlan:
        """Count a request to ``endpoint`` and decide its latency and fault.

        An ``"oauth_token"`` request is counted in ``token_calls`` under its ``grant_type``.
        """
        if endpoint not in FAULT_ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self._lock:
            if endpoint == TOKEN_ENDPOINT:
                known = grant_type is not None and grant_type in _COUNTED_GRANTS
                grant = grant_type if grant_type is not None and known else OTHER_GRANT
                self._token_calls[grant] = self._token_calls.get(grant, 0) + 1
            else:
                self._calls[endpoint] = self._calls.get(endpoint, 0) + 1
            latency = self._latency.get(endpoint, self._latency.get(ANY_ENDPOINT, 0.0))
            kind: FaultKind | None = None
            for fault in self._faults:
                if fault.endpoint in (endpoint, ANY_ENDPOINT):
                    kind = fault.kind
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    break
            return RequestPlan(latency, kind, self.hang_seconds, self.trickle_interval)
