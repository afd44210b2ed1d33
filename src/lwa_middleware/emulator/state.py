"""Pure, thread-safe state of the Login with Amazon (LWA) emulator.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

It holds users, issued access tokens, injected faults, per-endpoint latency
and call counters, (in ``oauth``, see :mod:`.oauth_state`) the OAuth clients,
authorization codes and refresh tokens, and (in ``device``, see :mod:`.codepair_state`) the
code pairs of code-based linking. Nothing here does I/O: time comes from an injectable
``clock`` so tests can move it forward, and a ``threading.Lock`` guards every
access because tests drive the state from another thread than the server's.

"""

from __future__ import annotations

import enum
import math
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from lwa_middleware.emulator.codepair import (
    ACTIVATE_PATH,
    DEFAULT_CODE_PAIR_LIFETIME,
    DEFAULT_DEVICE_INTERVAL,
    DEVICE_GRANT,
    RESPONSE_TYPE,
    CodePairInfo,
)
from lwa_middleware.emulator.codepair_state import CodePairState
from lwa_middleware.emulator.oauth import (
    DEFAULT_REDIRECT_URI,
    GRANT_TYPES,
    REFRESH_TOKEN_PREFIX,
    AuthorizationRequest,
    OAuthClient,
    parse_scopes,
)
from lwa_middleware.emulator.oauth_state import OAuthState

DEFAULT_CLIENT_ID = "amzn1.application-oa2-client.emulator"
DEFAULT_APP_ID = "amzn1.application.emulator"
DEFAULT_HANG_SECONDS = 30.0
DEFAULT_TRICKLE_INTERVAL = 0.4

TOKEN_PREFIX = "Atza|"
USER_ID_PREFIX = "amzn1.account."
_USER_ID_ALPHABET = string.ascii_uppercase + string.digits
_USER_ID_LENGTH = 28
_TOKEN_RANDOM_BYTES = 300  # token_urlsafe(300) gives 400 characters.

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
LATE_KEYS = frozenset({CODEPAIR_ENDPOINT, DEVICE_GRANT})
"""Counter keys that appear in ``calls`` (``codepair``) and ``token_calls``
(``device_code``) only once counted, so the counters keep the shapes they had before
code-based linking; reading one that is not there gives 0."""


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
class EmulatorUser:
    """An Amazon customer known to the emulator."""

    user_id: str
    name: str
    email: str
    postal_code: str

    def to_json(self) -> dict[str, str]:
        """Return the user as a JSON-ready dict."""
        return {
            "user_id": self.user_id,
            "name": self.name,
            "email": self.email,
            "postal_code": self.postal_code,
        }


@dataclass(frozen=True)
class IssuedToken:
    """An access token the emulator minted, with what it grants."""

    token: str
    user_id: str
    scopes: tuple[str, ...]
    client_id: str
    app_id: str
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class ValidToken:
    """A token found valid at instant ``now``, with its user."""

    token: IssuedToken
    user: EmulatorUser
    now: float

    @property
    def expires_in(self) -> int:
        """Whole seconds the token remains valid (rounded up, at least 1)."""
        return max(1, math.ceil(self.token.expires_at - self.now))


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


def new_user_id() -> str:
    """Return a random user id shaped like Amazon's (``amzn1.account.`` + 28 chars)."""
    suffix = "".join(secrets.choice(_USER_ID_ALPHABET) for _ in range(_USER_ID_LENGTH))
    return USER_ID_PREFIX + suffix


def new_access_token() -> str:
    """Return a random access token shaped like Amazon's (``Atza|`` + ~400 URL-safe chars)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_RANDOM_BYTES)


def normalize_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """Return scopes as a tuple; a single string is split on whitespace (OAuth style)."""
    if isinstance(scopes, str):
        return tuple(scopes.split())
    result = tuple(scopes)
    for scope in result:
        if not isinstance(scope, str) or not scope or scope != scope.strip():
            raise ValueError(f"invalid scope: {scope!r}")
    return result


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


class EmulatorState:
    """Users, tokens, faults, latency and counters of one emulator.

    All public methods are thread-safe. ``clock`` returns epoch seconds and
    decides token expiry and ``iat``; it is never used for delays.
    """

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        app_id: str = DEFAULT_APP_ID,
        clock: Callable[[], float] = time.time,
        *,
        hang_seconds: float = DEFAULT_HANG_SECONDS,
        trickle_interval: float = DEFAULT_TRICKLE_INTERVAL,
        device_interval: int = DEFAULT_DEVICE_INTERVAL,
        code_pair_lifetime: int = DEFAULT_CODE_PAIR_LIFETIME,
    ) -> None:
        self.client_id = client_id
        self.app_id = app_id
        self.clock = clock
        self.hang_seconds = hang_seconds
        """How long a ``hang`` fault waits before answering (kept by ``reset``)."""
        self.trickle_interval = check_interval(trickle_interval)
        """Seconds between two bytes of a ``trickle`` answer (kept by ``reset``)."""
        self._lock = threading.Lock()
        self._users: dict[str, EmulatorUser] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._faults: list[_Fault] = []
        self._latency: dict[str, float] = {}
        self._calls: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self._token_calls = _no_token_calls()
        self.oauth = OAuthState(self)
        """OAuth clients, consents, codes and refresh tokens (``/ap/oa``, ``/auth/o2/token``)."""
        self.device = CodePairState(self, interval=device_interval, lifetime=code_pair_lifetime)
        """Code pairs (``/auth/o2/create/codepair``, ``/activate``, the device grant)."""

    # Users and tokens -----------------------------------------------------

    def add_user(
        self,
        name: str = "Ada Lovelace",
        email: str = "ada@example.com",
        postal_code: str = "98101",
        user_id: str | None = None,
    ) -> EmulatorUser:
        """Create (or replace, when ``user_id`` is known) a user and return it."""
        user = EmulatorUser(user_id or new_user_id(), name, email, postal_code)
        with self._lock:
            self._users[user.user_id] = user
        return user

    def get_user(self, user_id: str) -> EmulatorUser | None:
        """Return the user with this id, or None."""
        with self._lock:
            return self._users.get(user_id)

    @property
    def users(self) -> list[EmulatorUser]:
        """Every user, in the order they were added."""
        with self._lock:
            return list(self._users.values())

    def mint(
        self,
        user_id: str,
        scopes: str | Iterable[str] = ("profile",),
        lifetime: float = 3600,
        client_id: str | None = None,
        app_id: str | None = None,
    ) -> str:
        """Issue an access token for a known user; return the token string.

        ``lifetime`` is in seconds from ``clock()`` (zero or less gives an
        already expired token). ``client_id``/``app_id`` default to the
        emulator's and become the token's ``aud``/``app_id``.
        Raises ``KeyError`` for an unknown ``user_id``.
        """
        scope_tuple = normalize_scopes(scopes)
        token = new_access_token()
        with self._lock:
            if user_id not in self._users:
                raise KeyError(f"unknown user id: {user_id!r}")
            now = self.clock()
            self._tokens[token] = IssuedToken(
                token=token,
                user_id=user_id,
                scopes=scope_tuple,
                client_id=client_id or self.client_id,
                app_id=app_id or self.app_id,
                issued_at=now,
                expires_at=now + lifetime,
            )
        return token

    def mint_for(
        self,
        *,
        name: str = "Ada Lovelace",
        email: str = "ada@example.com",
        postal_code: str = "98101",
        user_id: str | None = None,
        scopes: str | Iterable[str] = ("profile",),
        lifetime: float = 3600,
        client_id: str | None = None,
        app_id: str | None = None,
    ) -> tuple[EmulatorUser, str]:
        """Add a user and mint a token for it in one call; return ``(user, token)``."""
        user = self.add_user(name=name, email=email, postal_code=postal_code, user_id=user_id)
        token = self.mint(user.user_id, scopes, lifetime, client_id, app_id)
        return user, token

    def revoke(self, token: str) -> bool:
        """Revoke an access (or refresh) token; return whether it was known. Unknown tokens
        are ignored."""
        if token.startswith(REFRESH_TOKEN_PREFIX):
            return self.oauth.revoke_refresh_token(token)
        with self._lock:
            return self._tokens.pop(token, None) is not None

    def expire(self, token: str) -> bool:
        """Make an access token expire now (LWA then calls it ``invalid_token``); return
        whether it was known."""
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None:
                return False
            now = self.clock()
            self._tokens[token] = replace(issued, expires_at=min(issued.expires_at, now))
            return True

    def validate(self, token: str) -> ValidToken | None:
        """Return the token's grant if known, unrevoked and unexpired, else None."""
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None:
                return None
            now = self.clock()
            if now >= issued.expires_at:
                return None
            return ValidToken(issued, self._users[issued.user_id], now)

    # Faults and latency ---------------------------------------------------

    def fault(
        self,
        kind: FaultKind | str,
        endpoint: str = ANY_ENDPOINT,
        times: int | None = None,
    ) -> None:
        """Inject a fault on ``endpoint`` ("tokeninfo", "profile", "oauth_token", "codepair"
        or "*").

        ``times=None`` keeps it until ``clear_faults()``; otherwise it hits the
        next ``times`` requests to that endpoint. Faults queue in the order
        they were added: the first one matching a request is used.
        """
        fault_kind = FaultKind(kind)
        _check_endpoint(endpoint)
        if times is not None and (isinstance(times, bool) or times < 1):
            raise ValueError(f"times must be None or a positive int, not {times!r}")
        with self._lock:
            self._faults.append(_Fault(fault_kind, endpoint, times))

    def latency(self, seconds: float, endpoint: str = ANY_ENDPOINT) -> None:
        """Delay every request to ``endpoint`` by ``seconds`` (0 removes the delay).

        A delay set for a named endpoint takes precedence over the "*" one.
        """
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

    # Counters and lifecycle -----------------------------------------------

    @property
    def calls(self) -> dict[str, int]:
        """Snapshot of requests that reached each endpoint (faults and errors included):
        ``{"tokeninfo": n, "profile": n}``, plus ``"codepair"`` once
        ``/auth/o2/create/codepair`` was called (``calls["codepair"]`` reads 0 before)."""
        with self._lock:
            return CallCounts(self._calls)

    @property
    def token_calls(self) -> dict[str, int]:
        """Requests that reached ``/auth/o2/token``, by ``grant_type`` (faults and errors
        included): ``{"authorization_code": n, "refresh_token": n, "other": n}``, plus
        ``"device_code"`` once a device polled (``token_calls["device_code"]`` reads 0
        before)."""
        with self._lock:
            return CallCounts(self._token_calls)

    def reset_counts(self) -> None:
        """Set every endpoint's call count (``calls`` and ``token_calls``) back to zero."""
        with self._lock:
            self._calls = dict.fromkeys(ENDPOINTS, 0)
            self._token_calls = _no_token_calls()

    def reset(self) -> None:
        """Forget users, tokens, faults, latency and counters, the OAuth state
        (registered clients, codes, refresh tokens; the emulator's client is back to its
        defaults) and the code pairs (``device_interval`` and ``code_pair_lifetime`` are
        back to the constructor's).

        ``client_id``, ``app_id``, ``clock``, ``hang_seconds`` and ``trickle_interval``
        are kept.
        """
        with self._lock:
            self._users.clear()
            self._tokens.clear()
            self._faults.clear()
            self._latency.clear()
            self._calls = dict.fromkeys(ENDPOINTS, 0)
            self._token_calls = _no_token_calls()
        self.oauth.reset()
        self.device.reset()

    def begin_request(self, endpoint: str, grant_type: str | None = None) -> RequestPlan:
        """Count a request to ``endpoint`` and decide its latency and fault.

        An ``"oauth_token"`` request is counted in ``token_calls`` under its ``grant_type``.
        """
        if endpoint not in FAULT_ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self._lock:
            if endpoint == TOKEN_ENDPOINT:
                known = grant_type in GRANT_TYPES or grant_type == DEVICE_GRANT
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

    # OAuth (the authorization-code grant) -----------------------------------------

    def register_client(
        self,
        client_id: str | None = None,
        *,
        client_secret: str | None = None,
        app_id: str | None = None,
        redirect_uris: str | Iterable[str] | None = None,
        allow_loopback: bool | None = None,
    ) -> OAuthClient:
        """Register an OAuth client or change a known one (see ``OAuthState.register_client``).

        The emulator's own client (``client_id``) is always registered, with secret
        ``DEFAULT_CLIENT_SECRET`` and any loopback redirect URI allowed.
        """
        return self.oauth.register_client(
            client_id,
            client_secret=client_secret,
            app_id=app_id,
            redirect_uris=redirect_uris,
            allow_loopback=allow_loopback,
        )

    def get_client(self, client_id: str | None = None) -> OAuthClient | None:
        """The registered OAuth client (default: the emulator's own), or None."""
        return self.oauth.client(client_id or self.client_id)

    def authorization_request(
        self,
        client_id: str | None = None,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        scope: str | Iterable[str] = "profile",
        state: str | None = None,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> AuthorizationRequest:
        """Check an ``/ap/oa`` request as the page would; raise ``AuthorizationError``
        (``.error``, ``.description``, ``.redirect()``) for a bad one."""
        scope_text = scope if isinstance(scope, str) else " ".join(scope)
        values = {
            "client_id": client_id or self.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope_text,
            "response_type": "code",
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": code_challenge_method,
        }
        return self.oauth.check([(key, value) for key, value in values.items() if value])

    def authorize(
        self,
        client_id: str | None = None,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        scope: str | Iterable[str] = "profile",
        state: str | None = None,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
        *,
        user: EmulatorUser | str | None = None,
    ) -> str:
        """Approve an authorization request as the consent page would; return the code.

        ``user`` (an ``EmulatorUser`` or a user id) approves every requested scope; by
        default the first user, or a new default user when there is none. Raises
        ``AuthorizationError`` for a bad request, ``KeyError`` for an unknown user.
        """
        request = self.authorization_request(
            client_id, redirect_uri, scope, state, code_challenge, code_challenge_method
        )
        return self.oauth.issue_code(request, self.consenting_user(user).user_id)

    def deny(
        self,
        client_id: str | None = None,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        scope: str | Iterable[str] = "profile",
        state: str | None = None,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> str:
        """Deny an authorization request as the consent page would; return the redirect
        URL (``error=access_denied``, ``state``). Raises ``AuthorizationError`` for a bad
        request."""
        request = self.authorization_request(
            client_id, redirect_uri, scope, state, code_challenge, code_challenge_method
        )
        return request.denied()

    def consenting_user(self, user: EmulatorUser | str | None = None) -> EmulatorUser:
        """The user who approves: ``user`` (must be known), else the first user, else a new
        default user."""
        if user is None:
            return next(iter(self.users), None) or self.add_user()
        user_id = user if isinstance(user, str) else user.user_id
        found = self.get_user(user_id)
        if found is None:
            raise KeyError(f"unknown user id: {user_id!r}")
        return found

    def revoke_refresh_token(self, token: str) -> bool:
        """Revoke a refresh token (the refresh grant then answers ``invalid_grant``);
        return whether it was known."""
        return self.oauth.revoke_refresh_token(token)

    # Code-based linking (LWA for TVs and other devices) ----------------------------

    @property
    def device_interval(self) -> int:
        """Seconds a device must wait between two polls of a pair (default 5; 0 turns
        ``slow_down`` off). A pair keeps the interval it was created with."""
        return self.device.interval

    @device_interval.setter
    def device_interval(self, seconds: int) -> None:
        self.device.interval = seconds

    @property
    def code_pair_lifetime(self) -> int:
        """Seconds a new code pair lives, its ``expires_in`` (default 600)."""
        return self.device.lifetime

    @code_pair_lifetime.setter
    def code_pair_lifetime(self, seconds: int) -> None:
        self.device.lifetime = seconds

    def public_url(self) -> str:
        """The emulator's base URL when known (``Emulator`` serving itself), else ``""``:
        the ``verification_uri`` of ``create_code_pair`` is then the bare path."""
        return ""

    def create_code_pair(
        self,
        client_id: str | None = None,
        scope: str | Iterable[str] = "profile",
        *,
        scope_data: str | None = None,
        base_url: str | None = None,
    ) -> dict[str, object]:
        """Create a code pair as ``POST /auth/o2/create/codepair`` would; return its answer
        ``{"user_code", "device_code", "verification_uri", "expires_in", "interval"}``.

        ``verification_uri`` is ``base_url`` (default: ``public_url()``) + ``/activate``.
        Raises ``TokenError`` (``.error``, ``.description``) for a bad request.
        """
        form = {
            "response_type": RESPONSE_TYPE,
            "client_id": client_id or self.client_id,
            "scope": scope if isinstance(scope, str) else " ".join(scope),
            "scope_data": scope_data,
        }
        base = (self.public_url() if base_url is None else base_url).rstrip("/")
        checked = {key: value for key, value in form.items() if value}
        return self.device.create(checked, base + ACTIVATE_PATH)

    def approve_code_pair(
        self,
        user_code: str,
        user: EmulatorUser | str | None = None,
        scope: str | Iterable[str] | None = None,
    ) -> None:
        """Approve a pending code pair as the ``/activate`` page would.

        ``user`` (an ``EmulatorUser`` or a user id; default: the first user, or a new
        default user) approves ``scope`` (default: every requested scope; a narrower
        set is allowed). Raises ``KeyError`` for an unknown user code or user,
        ``CodePairError`` (``.error``) for a pair that expired or was already answered,
        ``ValueError`` for scopes that were not requested.
        """
        if self.device.find(user_code) is None:
            raise KeyError(f"unknown user code: {user_code!r}")
        scopes = None if scope is None else parse_scopes(scope)
        self.device.approve(user_code, self.consenting_user(user).user_id, scopes)

    def deny_code_pair(self, user_code: str) -> None:
        """Deny a pending code pair as the ``/activate`` page would (its polls then answer
        ``invalid_grant``). Raises ``KeyError`` for an unknown user code, ``CodePairError``
        for a pair that expired or was already answered."""
        self.device.deny(user_code)

    @property
    def code_pairs(self) -> Mapping[str, CodePairInfo]:
        """Read-only snapshot of the code pairs by user code, oldest first (status, client,
        scopes, approver, polls; no ``device_code``)."""
        return self.device.pairs
