"""The signed-in session, without I/O: issuing, reading and clearing its cookies, and every
decision of the transparent refresh the middlewares run.

A request's cookie session is refreshed when all of these hold (:meth:`SessionRules.plan`):

* the request carries no token of its own (``Authorization: Bearer``,
  ``x-amz-access-token``, a query token): a client's token failing is the client's problem;
* the session failed for a reason a refresh can cure: no access cookie at all
  (``MissingToken``; the browser drops it after ``expires_in``), LWA or the cache saying the
  token is expired or invalid (``InvalidToken``), or no token on an optional route;
* the access cookie, when there is one, carries *our* signature (a forged or tampered
  cookie is answered ``invalid_token``, never healed);
* the refresh cookie opens (sealed by us, at most ``refresh_max_age`` old).

The grant's answer then decides (:meth:`SessionRules.settle`): a new access token (verified
by the middleware's normal verifier, then set as cookies: :meth:`SessionRules.refreshed`);
``invalid_grant`` (revoked) signs the customer out (both cookies cleared, ``invalid_token``);
anything else is a ``ServerError`` with the cookies kept. :class:`RecentRefreshes` keeps
each outcome a minute, so requests that still carry the old cookies (sent before the new
ones arrived) reuse it instead of refreshing again.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from lwa_middleware.errors import (
    ConfigurationError,
    InvalidRequest,
    InvalidToken,
    LWAError,
    LWAUnavailable,
    MissingToken,
    ServerError,
)
from lwa_middleware.grants import GrantError, GrantUnavailable, TokenGrant
from lwa_middleware.login.config import LoginConfig
from lwa_middleware.login.cookies import (
    Header,
    Sealer,
    clear_cookie,
    login_cookie_name,
    read_cookie,
    refresh_cookie_name,
    set_cookie,
)
from lwa_middleware.models import Identity
from lwa_middleware.settings import LWASettings
from lwa_middleware.tokens import cookie_signer, normalize_token, validate_token

#: How long a refresh's outcome is reused for requests still carrying the old cookies.
RECENT_REFRESH_TTL = 60.0
#: The most outcomes :class:`RecentRefreshes` keeps.
RECENT_REFRESH_MAXSIZE = 1024
SIGNED_OUT = "The session has ended (Login with Amazon no longer accepts it); sign in again."


@dataclass(frozen=True)
class RefreshPlan:
    """A refresh to run: the refresh token, and the key its single flight goes by (a
    SHA-256 of the token, never the token itself)."""

    key: bytes
    refresh_token: str = field(repr=False)


@dataclass(frozen=True)
class Refreshed:
    """A refresh that worked: the new identity and the cookies that carry it."""

    identity: Identity
    headers: tuple[Header, ...] = field(repr=False)
    until: float = 0.0


@dataclass(frozen=True)
class SignedOut:
    """A refresh LWA refused (``invalid_grant``): clear the cookies, answer ``invalid_token``."""

    headers: tuple[Header, ...]
    until: float = 0.0

    @staticmethod
    def error() -> InvalidToken:
        """A fresh error for each request (one exception object is never raised twice)."""
        return InvalidToken(SIGNED_OUT)


Outcome = Refreshed | SignedOut


class RecentRefreshes:
    """Outcomes of recent refreshes by plan key, each until its ``until``; bounded and
    thread-safe (the sync shell's threads share it)."""

    __slots__ = ("_items", "_lock", "_maxsize")

    def __init__(self, maxsize: int = RECENT_REFRESH_MAXSIZE) -> None:
        self._items: OrderedDict[bytes, Outcome] = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()

    def get(self, key: bytes, now: float) -> Outcome | None:
        with self._lock:
            outcome = self._items.get(key)
            if outcome is not None and outcome.until <= now:
                del self._items[key]
                return None
            return outcome

    def put(self, key: bytes, outcome: Outcome) -> None:
        with self._lock:
            self._items[key] = outcome
            self._items.move_to_end(key)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _bearer(value: str) -> bool:
    return value.strip().partition(" ")[0].lower() == "bearer"


class SessionRules:
    """The session's cookies and refresh decisions for one :class:`LoginConfig`."""

    def __init__(self, config: LoginConfig) -> None:
        self.config = config
        self.cookie_name = config.cookie_name
        self.refresh_cookie_name = refresh_cookie_name(config.cookie_name)
        self.login_cookie_name = login_cookie_name(config.cookie_name)
        self.secure = config.secure
        self._signer = cookie_signer(config.secret_key)
        self._sealer = Sealer(config.secrets, "refresh-cookie")
        self.recent = RecentRefreshes()

    # The cookies -------------------------------------------------------------------------

    def issue(self, grant: TokenGrant, now: float) -> list[Header]:
        """``Set-Cookie`` for a grant: the signed access token (``Max-Age=expires_in``) and,
        when one came back, the sealed refresh token (``Max-Age=refresh_max_age``).

        Raises ``LWAUnavailable`` for an access token no LWA token looks like (it would go
        into a header)."""
        try:
            token = validate_token(normalize_token(grant.access_token, decode=False))
        except InvalidRequest:
            raise LWAUnavailable(
                "Login with Amazon granted an access token that cannot be used."
            ) from None
        secure = self.secure
        headers = [
            set_cookie(
                self.cookie_name,
                self._signer.sign(token).decode("ascii"),
                path="/",
                max_age=grant.expires_in,
                secure=secure,
            )
        ]
        if grant.refresh_token is not None:
            headers.append(
                set_cookie(
                    self.refresh_cookie_name,
                    self._sealer.seal(grant.refresh_token.encode(), now),
                    path="/",
                    max_age=self.config.refresh_max_age,
                    secure=secure,
                )
            )
        return headers

    def cleared(self) -> list[Header]:
        """``Set-Cookie`` headers that drop the access and refresh cookies."""
        return [
            clear_cookie(self.cookie_name, path="/", secure=self.secure),
            clear_cookie(self.refresh_cookie_name, path="/", secure=self.secure),
        ]

    def refresh_token(self, cookies: Sequence[str], now: float) -> str | None:
        """The refresh token of a request's refresh cookie, when it opens."""
        sealed = read_cookie(cookies, self.refresh_cookie_name)
        if sealed is None:
            return None
        data = self._sealer.open(sealed, self.config.refresh_max_age, now)
        return None if data is None else data.decode("utf-8", "replace")

    def _access_cookie_is_ours(self, cookies: Sequence[str]) -> bool:
        """No access cookie, or one with our signature (read as the middlewares read it)."""
        value = read_cookie(cookies, self.cookie_name)
        if value is None:
            return True
        try:
            return self._signer.validate(normalize_token(value))
        except InvalidRequest:
            return False

    # Refresh decisions -------------------------------------------------------------------

    def plan(
        self,
        error: LWAError | None,
        authorization: Sequence[str],
        amz_token: Sequence[str],
        cookies: Sequence[str],
        query_token: bool,
        now: float,
    ) -> RefreshPlan | None:
        """The refresh to run for a request whose cookie session failed with ``error``
        (``None``: no token on an optional route), or ``None`` for none (see the module)."""
        if error is not None and not isinstance(error, (MissingToken, InvalidToken)):
            return None
        if query_token or amz_token or any(_bearer(value) for value in authorization):
            return None
        if not cookies or not self._access_cookie_is_ours(cookies):
            return None
        token = self.refresh_token(cookies, now)
        if not token:
            return None
        key = hashlib.sha256(b"lwa-middleware.refresh\0" + token.encode()).digest()
        return RefreshPlan(key=key, refresh_token=token)

    def settle(self, answer: TokenGrant | GrantError, now: float) -> TokenGrant | SignedOut:
        """The grant to verify, or :class:`SignedOut`; raises ``ServerError`` when LWA
        could not answer (cookies kept: the session may still be good)."""
        if isinstance(answer, TokenGrant):
            return answer
        if answer.error == "invalid_grant":
            return SignedOut(tuple(self.cleared()), until=now + RECENT_REFRESH_TTL)
        if isinstance(answer, GrantUnavailable):
            raise LWAUnavailable("Login with Amazon could not refresh the session right now.")
        raise ServerError(
            f"Login with Amazon refused to refresh the session ({answer.error}): "
            "check the sign-in's client ID and secret."
        )

    def refreshed(self, grant: TokenGrant, identity: Identity, now: float) -> Refreshed:
        """The outcome of a refresh whose new access token verified as ``identity``."""
        until = min(now + RECENT_REFRESH_TTL, identity.token_info.expires_at)
        return Refreshed(identity, tuple(self.issue(grant, now)), until=until)

    @staticmethod
    def resolve(
        error: LWAError | None, outcome: Outcome | None
    ) -> tuple[Identity | None, LWAError | None, tuple[Header, ...]]:
        """What a shell does after a refresh attempt: ``(identity, error, Set-Cookie
        headers)``; no plan keeps the request as it was (``error``, or anonymous)."""
        if outcome is None:
            return None, error, ()
        if isinstance(outcome, SignedOut):
            return None, None if error is None else outcome.error(), outcome.headers
        return outcome.identity, None, outcome.headers

    # The middleware's settings -----------------------------------------------------------

    def adopt(self, settings: LWASettings) -> LWASettings:
        """The middleware's settings, checked against (and completed from) the sign-in's:
        the same ``secret_key`` (taken when unset) and ``cookie_name``, the cookie as a
        token source, the sign-in's client ID among ``client_ids``."""
        config = self.config
        if settings.secret_key is None:
            settings = LWASettings.build(settings, {"secret_key": config.secret_key})
        else:
            if not _same_secrets(settings.secret_keys, config.secrets):
                raise ConfigurationError(
                    "secret_key must be the sign-in's (login=): the middleware reads the "
                    "cookies it signs"
                )
        if settings.cookie_name != config.cookie_name:
            raise ConfigurationError(
                f"cookie_name must be the sign-in's ({config.cookie_name!r}), "
                f"got {settings.cookie_name!r}"
            )
        if "cookie" not in settings.token_sources:
            raise ConfigurationError("token_sources must include 'cookie' to use login=")
        if config.client_id not in settings.client_ids:
            raise ConfigurationError("client_ids must include the sign-in's client_id")
        return settings


def _same_secrets(mine: tuple[bytes, ...], theirs: tuple[bytes, ...]) -> bool:
    """Whether two lists of secrets are the same (constant time for each secret)."""
    return len(mine) == len(theirs) and all(
        hmac.compare_digest(a, b) for a, b in zip(mine, theirs, strict=True)
    )
