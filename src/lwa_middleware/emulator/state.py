"""The state of the Login with Amazon (LWA) emulator: one object composed of parts.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

:class:`EmulatorState` is what tests drive and the app serves. It is composed of parts that
never import it (nor each other upwards), each thread-safe and without I/O:

* ``accounts`` (:class:`~.accounts.Accounts`): users, the customer access tokens (``Atza|``)
  and the service tokens of the ``client_credentials`` grant (``Atc|``), the emulator's
  ``client_id``, ``app_id`` and ``clock``;
* ``faults`` (:class:`~.faults.Faults`): injected faults, per-endpoint latency and the call
  counters;
* ``oauth`` (:class:`~.oauth_state.OAuthState`, on ``accounts``): OAuth clients, consents,
  authorization codes, refresh tokens and the token endpoint's grants;
* ``device`` (:class:`~.codepair_state.CodePairState`, on ``accounts`` and ``oauth``): the
  code pairs of code-based linking.

Time comes from the injectable ``clock`` so tests can move it forward; tests drive the state
from another thread than the server's, so every part guards its data with a lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from lwa_middleware.emulator.accounts import (
    DEFAULT_APP_ID,
    DEFAULT_CLIENT_ID,
    SERVICE_TOKEN_PREFIX,
    TOKEN_PREFIX,
    USER_ID_PREFIX,
    Accounts,
    EmulatorUser,
    IssuedToken,
    ServiceToken,
    ValidToken,
    new_access_token,
    new_user_id,
    normalize_scopes,
)
from lwa_middleware.emulator.codepair import (
    ACTIVATE_PATH,
    DEFAULT_CODE_PAIR_LIFETIME,
    DEFAULT_DEVICE_INTERVAL,
    RESPONSE_TYPE,
    CodePairInfo,
)
from lwa_middleware.emulator.codepair_state import CodePairState
from lwa_middleware.emulator.faults import (
    ANY_ENDPOINT,
    CODEPAIR_ENDPOINT,
    DEFAULT_HANG_SECONDS,
    DEFAULT_TRICKLE_INTERVAL,
    ENDPOINTS,
    FAULT_ENDPOINTS,
    LATE_KEYS,
    OTHER_GRANT,
    TOKEN_ENDPOINT,
    CallCounts,
    FaultKind,
    Faults,
    RequestPlan,
    check_interval,
)
from lwa_middleware.emulator.oauth import (
    DEFAULT_REDIRECT_URI,
    REFRESH_TOKEN_PREFIX,
    AuthorizationRequest,
    OAuthClient,
    parse_scopes,
)
from lwa_middleware.emulator.oauth_state import OAuthState

__all__ = [
    "ANY_ENDPOINT",
    "CODEPAIR_ENDPOINT",
    "DEFAULT_APP_ID",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_HANG_SECONDS",
    "DEFAULT_TRICKLE_INTERVAL",
    "ENDPOINTS",
    "FAULT_ENDPOINTS",
    "LATE_KEYS",
    "OTHER_GRANT",
    "SERVICE_TOKEN_PREFIX",
    "TOKEN_ENDPOINT",
    "TOKEN_PREFIX",
    "USER_ID_PREFIX",
    "CallCounts",
    "EmulatorState",
    "EmulatorUser",
    "FaultKind",
    "IssuedToken",
    "RequestPlan",
    "ServiceToken",
    "ValidToken",
    "check_interval",
    "new_access_token",
    "new_user_id",
    "normalize_scopes",
]


class EmulatorState:
    """Users, tokens, faults, latency and counters of one emulator, and its OAuth and
    code-pair state (see the module's docstring for its parts).

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
        self.accounts = Accounts(client_id, app_id, clock)
        """Users and access tokens (customer and service), ``client_id``, ``app_id``, ``clock``."""
        self.faults = Faults(hang_seconds=hang_seconds, trickle_interval=trickle_interval)
        """Injected faults, latency and call counters."""
        self.oauth = OAuthState(self.accounts)
        """OAuth clients, consents, codes and refresh tokens (``/ap/oa``, ``/auth/o2/token``)."""
        self.device = CodePairState(
            self.accounts, self.oauth, interval=device_interval, lifetime=code_pair_lifetime
        )
        """Code pairs (``/auth/o2/create/codepair``, ``/activate``, the device grant)."""

    @property
    def client_id(self) -> str:
        """The emulator's own client: what minted tokens are issued to by default."""
        return self.accounts.client_id

    @property
    def app_id(self) -> str:
        """The ``app_id`` of the emulator's own client."""
        return self.accounts.app_id

    @property
    def clock(self) -> Callable[[], float]:
        """The clock (epoch seconds) of token expiry and ``iat``."""
        return self.accounts.clock

    @property
    def hang_seconds(self) -> float:
        """How long a ``hang`` fault waits before answering (kept by ``reset``)."""
        return self.faults.hang_seconds

    @hang_seconds.setter
    def hang_seconds(self, seconds: float) -> None:
        self.faults.hang_seconds = seconds

    @property
    def trickle_interval(self) -> float:
        """Seconds between two bytes of a ``trickle`` answer (kept by ``reset``)."""
        return self.faults.trickle_interval

    @trickle_interval.setter
    def trickle_interval(self, seconds: float) -> None:
        self.faults.trickle_interval = check_interval(seconds)

    # Users and tokens -----------------------------------------------------

    def add_user(
        self,
        name: str = "Ada Lovelace",
        email: str = "ada@example.com",
        postal_code: str = "98101",
        user_id: str | None = None,
    ) -> EmulatorUser:
        """Create (or replace, when ``user_id`` is known) a user and return it."""
        return self.accounts.add_user(name, email, postal_code, user_id)

    def get_user(self, user_id: str) -> EmulatorUser | None:
        """Return the user with this id, or None."""
        return self.accounts.get_user(user_id)

    @property
    def users(self) -> list[EmulatorUser]:
        """Every user, in the order they were added."""
        return self.accounts.users

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
        return self.accounts.mint(user_id, scopes, lifetime, client_id, app_id)

    def mint_refresh_token(
        self,
        user_id: str,
        scopes: str | Iterable[str] = ("profile",),
        client_id: str | None = None,
    ) -> str:
        """Issue a refresh token (``Atzr|…``) for a known user and a registered client
        (default: the emulator's own), as a sign-in would, without one: the
        ``refresh_token`` grant then gives access tokens for ``scopes`` (issued to the
        client, its ``app_id``), with or without the client secret. Raises ``KeyError`` for
        an unknown user or client (register it first with ``register_client``)."""
        answer = self.oauth.mint_tokens(user_id, scopes, client_id, access=False)
        return str(answer["refresh_token"])

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
        """Revoke an access (customer or service) or refresh token; return whether it was
        known. Unknown tokens are ignored."""
        if token.startswith(REFRESH_TOKEN_PREFIX):
            return self.oauth.revoke_refresh_token(token)
        return self.accounts.revoke(token)

    def expire(self, token: str) -> bool:
        """Make an access token (customer or service) expire now (LWA then calls it
        ``invalid_token``); return whether it was known."""
        return self.accounts.expire(token)

    def validate(self, token: str) -> ValidToken | None:
        """Return the token's grant if known, unrevoked and unexpired, else None."""
        return self.accounts.validate(token)

    def service_token(self, token: str) -> ServiceToken | None:
        """The grant of a ``client_credentials`` token (``Atc|…``: client, ``app_id``,
        scopes) if known, unrevoked and unexpired, else None: what an API standing in for
        Amazon's (Alexa, the Selling Partner API) checks in a test. Token-info and profile
        call such a token ``invalid_token``."""
        return self.accounts.service_token(token)

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
        self.faults.fault(kind, endpoint, times)

    def latency(self, seconds: float, endpoint: str = ANY_ENDPOINT) -> None:
        """Delay every request to ``endpoint`` by ``seconds`` (0 removes the delay).

        A delay set for a named endpoint takes precedence over the "*" one.
        """
        self.faults.latency(seconds, endpoint)

    def clear_faults(self) -> None:
        """Remove every injected fault and latency."""
        self.faults.clear_faults()

    # Counters and lifecycle -----------------------------------------------

    @property
    def calls(self) -> dict[str, int]:
        """Snapshot of requests that reached each endpoint (faults and errors included):
        ``{"tokeninfo": n, "profile": n}``, plus ``"codepair"`` once
        ``/auth/o2/create/codepair`` was called (``calls["codepair"]`` reads 0 before)."""
        return self.faults.calls

    @property
    def token_calls(self) -> dict[str, int]:
        """Requests that reached ``/auth/o2/token``, by ``grant_type`` (faults and errors
        included): ``{"authorization_code": n, "refresh_token": n, "other": n}``, plus
        ``"device_code"`` once a device polled and ``"client_credentials"`` once a service
        asked (either reads 0 before)."""
        return self.faults.token_calls

    def reset_counts(self) -> None:
        """Set every endpoint's call count (``calls`` and ``token_calls``) back to zero."""
        self.faults.reset_counts()

    def reset(self) -> None:
        """Forget users, tokens, faults, latency and counters, the OAuth state
        (registered clients, codes, refresh tokens; the emulator's client is back to its
        defaults) and the code pairs (``device_interval`` and ``code_pair_lifetime`` are
        back to the constructor's).

        ``client_id``, ``app_id``, ``clock``, ``hang_seconds`` and ``trickle_interval``
        are kept.
        """
        self.accounts.reset()
        self.faults.reset()
        self.oauth.reset()
        self.device.reset()

    def begin_request(self, endpoint: str, grant_type: str | None = None) -> RequestPlan:
        """Count a request to ``endpoint`` and decide its latency and fault.

        An ``"oauth_token"`` request is counted in ``token_calls`` under its ``grant_type``.
        """
        return self.faults.begin_request(endpoint, grant_type)

    # OAuth (the authorization-code grant) -----------------------------------------

    def register_client(
        self,
        client_id: str | None = None,
        *,
        client_secret: str | None = None,
        app_id: str | None = None,
        redirect_uris: str | Iterable[str] | None = None,
        allow_loopback: bool | None = None,
        service_scopes: str | Iterable[str] | None = None,
    ) -> OAuthClient:
        """Register an OAuth client or change a known one (see ``OAuthState.register_client``).

        The emulator's own client (``client_id``) is always registered, with secret
        ``DEFAULT_CLIENT_SECRET``, any loopback redirect URI allowed and the documented
        ``client_credentials`` scopes (``oauth.SERVICE_SCOPES``).
        """
        return self.oauth.register_client(
            client_id,
            client_secret=client_secret,
            app_id=app_id,
            redirect_uris=redirect_uris,
            allow_loopback=allow_loopback,
            service_scopes=service_scopes,
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
