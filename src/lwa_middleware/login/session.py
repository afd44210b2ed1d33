"""The signed-in session, without I/O: issuing, reading and clearing its cookies, and every
decision of the transparent refresh the middlewares run.

Layer: ``login`` (website sign-in; see ``ARCHITECTURE.md``).

A request's cookie session is refreshed when all of these hold (:meth:`SessionRules.plan`):

* the request carries no token of its own (``Authorization: Bearer``,
  ``x-amz-access-token``, a query token): a client's token failing is the client's problem;
* the session failed for a reason a refresh can cure: no access cookie at all
  (``MissingToken``; the browser drops it after ``expires_in``), LWA or the cache saying the
  token is expired or invalid (``InvalidToken``), or no token on an optional route;
* the access cookie, when there is one, carries *our* signature (a forged or tampered
  cookie is answered ``invalid_token``, never healed);
* the refresh cookie opens (sealed by us);
* the session has not ended: less than ``session_max_age`` since sign-in (else both cookies
  are cleared and the answer is ``invalid_token``), and not signed out (:mod:`sign-out's
  revocations <lwa_middleware.core.revocation>`, checked by the refresher: the same answer).

The refresh cookie seals a :class:`Session`: the refresh token, the time of sign-in and a
random session id, both carried unchanged across refreshes; its ``Max-Age`` (and the access
cookie's, when shorter than ``expires_in``) is what remains of the session, never a fresh
window. A cookie sealed before this format (the refresh token alone) counts as signed in
when it was sealed (conservative: never a longer session than it had), its id derived from
its refresh token.

The grant's answer then decides (:meth:`SessionRules.settle`): a new access token (verified
by the middleware's normal verifier, then set as cookies: :meth:`SessionRules.refreshed`);
``invalid_grant`` (revoked) signs the customer out (both cookies cleared, ``invalid_token``);
anything else is a ``ServerError`` with the cookies kept. :class:`RecentRefreshes` keeps
each outcome a minute, so requests that still carry the old cookies (sent before the new
ones arrived) reuse it instead of refreshing again (once the session is not revoked).

Sign-out (:meth:`SessionRules.revoke`) revokes the session's access token and the session
itself (by its id: every refresh token it had) in :class:`~lwa_middleware.core.revocation.
Revocations`, shared with the middlewares given ``login=``.

"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from itsdangerous import BadSignature

from lwa_middleware.core.errors import (
    ConfigurationError,
    InvalidRequest,
    InvalidToken,
    LWAError,
    LWAUnavailable,
    MissingToken,
    ServerError,
)
from lwa_middleware.core.grants import GrantError, GrantUnavailable, TokenGrant
from lwa_middleware.core.models import Identity
from lwa_middleware.core.revocation import Revocations, session_key
from lwa_middleware.core.settings import LWASettings
from lwa_middleware.core.tokens import cookie_signer, normalize_token, validate_token
from lwa_middleware.login.config import MAX_SESSION_MAX_AGE, LoginConfig
from lwa_middleware.login.cookies import (
    Header,
    Sealer,
    clear_cookie,
    login_cookie_name,
    read_cookie,
    refresh_cookie_name,
    set_cookie,
)

#: How long a refresh's outcome is reused for requests still carrying the old cookies.
RECENT_REFRESH_TTL = 60.0
#: The most outcomes :class:`RecentRefreshes` keeps.
RECENT_REFRESH_MAXSIZE = 1024
SIGNED_OUT = "The session has ended (Login with Amazon no longer accepts it); sign in again."
SESSION_REVOKED = "The session was signed out; sign in again."
SESSION_EXPIRED = "The session has expired; sign in again."
#: How far ahead of ``now`` a sealed sign-in time may be (a fleet's clocks differ a little).
CLOCK_SKEW = 300
#: What begins a sealed :class:`Session` (a refresh token never does: it is printable).
_SESSION_FORMAT = b"\x00"
_MAX_SESSION_ID = 64


@dataclass(frozen=True)
class Session:
    """What the refresh cookie holds: the refresh token, when the customer signed in (epoch
    seconds), and the session's id (random, made at sign-in; both kept across refreshes)."""

    refresh_token: str = field(repr=False)
    signed_in_at: int
    session_id: str = field(repr=False)

    @property
    def key(self) -> bytes:
        """Its revocation key (:func:`~lwa_middleware.core.revocation.session_key`)."""
        return session_key(self.session_id)

    def seal_data(self) -> bytes:
        fields_ = {"r": self.refresh_token, "s": self.signed_in_at, "i": self.session_id}
        return _SESSION_FORMAT + json.dumps(fields_, separators=(",", ":")).encode()

    @classmethod
    def from_sealed(cls, data: bytes, sealed_at: int) -> Session | None:
        """The session of a refresh cookie's data; ``None`` when it is not one. Data of the
        format before (the refresh token alone) was signed in when it was sealed."""
        if not data.startswith(_SESSION_FORMAT):
            token = data.decode("utf-8", "replace")
            if not token:
                return None
            return cls(token, sealed_at, legacy_session_id(token))
        try:
            fields_ = json.loads(data[1:])
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(fields_, dict):
            return None
        refresh, at, sid = fields_.get("r"), fields_.get("s"), fields_.get("i")
        if (
            not isinstance(refresh, str)
            or not refresh
            or isinstance(at, bool)
            or not isinstance(at, int)
            or not isinstance(sid, str)
            or not 0 < len(sid) <= _MAX_SESSION_ID
        ):
            return None
        return cls(refresh, at, sid)


def new_session_id() -> str:
    """A new session's id: 128 random bits."""
    return secrets.token_urlsafe(16)


def legacy_session_id(refresh_token: str) -> str:
    """The id of a session whose cookie predates session ids (from its refresh token, so
    that every copy of that cookie, and what its refreshes seal, share it)."""
    return "r." + hashlib.sha256(refresh_token.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RefreshPlan:
    """A refresh to run: the refresh token, the key its single flight goes by (a SHA-256
    of the token, never the token itself), and the session it belongs to."""

    key: bytes
    refresh_token: str = field(repr=False)
    session: Session = field(repr=False)


@dataclass(frozen=True)
class Refreshed:
    """A refresh that worked: the new identity and the cookies that carry it."""

    identity: Identity
    headers: tuple[Header, ...] = field(repr=False)
    until: float = 0.0


@dataclass(frozen=True)
class SignedOut:
    """A session that ended (LWA refused the refresh with ``invalid_grant``, it was signed
    out, or ``session_max_age`` passed): clear the cookies, answer ``invalid_token``."""

    headers: tuple[Header, ...]
    until: float = 0.0
    description: str = SIGNED_OUT

    def error(self) -> InvalidToken:
        """A fresh error for each request (one exception object is never raised twice)."""
        return InvalidToken(self.description)


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

    def __init__(self, config: LoginConfig, revocations: Revocations | None = None) -> None:
        self.config = config
        #: Sign-out's revoked keys (the middlewares given ``login=`` share them).
        self.revocations = (
            revocations
            if revocations is not None
            else Revocations(api_base_url=config.api_base_url)
        )
        self.cookie_name = config.cookie_name
        self.refresh_cookie_name = refresh_cookie_name(config.cookie_name)
        self.login_cookie_name = login_cookie_name(config.cookie_name)
        self.secure = config.secure
        self._signer = cookie_signer(config.secret_key)
        self._sealer = Sealer(config.secrets, "refresh-cookie")
        self.recent = RecentRefreshes()

    # The cookies -------------------------------------------------------------------------

    def issue(self, grant: TokenGrant, now: float, session: Session | None = None) -> list[Header]:
        """``Set-Cookie`` for a grant: the signed access token and, when one came back, the
        sealed refresh token of ``session`` (``None``: a sign-in, now). ``Max-Age``: what
        remains of the session (at most ``expires_in`` for the access cookie).

        Raises ``LWAUnavailable`` for an access token no LWA token looks like (it would go
        into a header)."""
        try:
            token = validate_token(normalize_token(grant.access_token, decode=False))
        except InvalidRequest:
            raise LWAUnavailable(
                "Login with Amazon granted an access token that cannot be used."
            ) from None
        signed_in_at = int(now) if session is None else session.signed_in_at
        remaining = max(1, signed_in_at + self.config.session_max_age - int(now))
        secure = self.secure
        headers = [
            set_cookie(
                self.cookie_name,
                self._signer.sign(token).decode("ascii"),
                path="/",
                max_age=min(grant.expires_in, remaining),
                secure=secure,
                domain=self.config.cookie_domain,
            )
        ]
        session_id = new_session_id() if session is None else session.session_id
        if session is not None or grant.refresh_token is not None:
            # Every access token of a session is revoked with it (a copy of the refresh
            # cookie refreshed by someone else leaves them nothing either).
            self.revocations.link(session_key(session_id), token, grant.expires_at(now), now)
        if grant.refresh_token is not None:
            sealed = Session(grant.refresh_token, signed_in_at, session_id)
            headers.append(
                set_cookie(
                    self.refresh_cookie_name,
                    self._sealer.seal(sealed.seal_data(), now),
                    path="/",
                    max_age=remaining,
                    secure=secure,
                    domain=self.config.cookie_domain,
                )
            )
        return headers

    def cleared(self) -> list[Header]:
        """``Set-Cookie`` headers that drop the access and refresh cookies."""
        domain = self.config.cookie_domain
        return [
            clear_cookie(self.cookie_name, path="/", secure=self.secure, domain=domain),
            clear_cookie(self.refresh_cookie_name, path="/", secure=self.secure, domain=domain),
        ]

    def session_of(self, cookies: Sequence[str], now: float) -> Session | None:
        """The session a request's refresh cookie holds, when it opens (ended or not: see
        :meth:`ends_at`)."""
        sealed = read_cookie(cookies, self.refresh_cookie_name)
        if sealed is None:
            return None
        opened = self._sealer.open_stamped(sealed, MAX_SESSION_MAX_AGE, now)
        if opened is None:
            return None
        session = Session.from_sealed(*opened)
        if session is None or session.signed_in_at > now + CLOCK_SKEW:
            return None
        return session

    def ends_at(self, session: Session) -> float:
        """When ``session`` ends: ``session_max_age`` after sign-in."""
        return session.signed_in_at + self.config.session_max_age

    def refresh_token(self, cookies: Sequence[str], now: float) -> str | None:
        """The refresh token of a request's refresh cookie, when it opens and its session
        has not ended."""
        session = self.session_of(cookies, now)
        if session is None or now >= self.ends_at(session):
            return None
        return session.refresh_token

    def access_token(self, cookies: Sequence[str]) -> str | None:
        """The access token of a request's access cookie, when it carries our signature."""
        value = read_cookie(cookies, self.cookie_name)
        if value is None:
            return None
        try:
            token = self._signer.unsign(normalize_token(value)).decode("ascii")
            return validate_token(normalize_token(token, decode=False))
        except (InvalidRequest, BadSignature, UnicodeDecodeError):
            return None

    def revoke(self, cookies: Sequence[str], now: float) -> None:
        """Sign-out: revoke the request's access token (until it expires) and its session
        (until it would have ended), as the cookies carry them."""
        token = self.access_token(cookies)
        session = self.session_of(cookies, now)
        revoked = None
        if session is not None and now < self.ends_at(session):
            revoked = (session.key, self.ends_at(session))
        if token is not None or revoked is not None:
            self.revocations.revoke(now, access_token=token, session=revoked)

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
    ) -> RefreshPlan | SignedOut | None:
        """The refresh to run for a request whose cookie session failed with ``error``
        (``None``: no token on an optional route), :class:`SignedOut` for a session past
        ``session_max_age``, or ``None`` for none (see the module)."""
        if error is not None and not isinstance(error, (MissingToken, InvalidToken)):
            return None
        if query_token or amz_token or any(_bearer(value) for value in authorization):
            return None
        if not cookies or not self._access_cookie_is_ours(cookies):
            return None
        session = self.session_of(cookies, now)
        if session is None:
            return None
        if now >= self.ends_at(session):
            return self.signed_out(SESSION_EXPIRED, now)
        token = session.refresh_token
        key = hashlib.sha256(b"lwa-middleware.refresh\0" + token.encode()).digest()
        return RefreshPlan(key=key, refresh_token=token, session=session)

    def signed_out(self, description: str, now: float) -> SignedOut:
        """The outcome of a session that ended: cookies cleared, ``invalid_token``."""
        return SignedOut(
            tuple(self.cleared()), until=now + RECENT_REFRESH_TTL, description=description
        )

    def ended(self, plan: RefreshPlan, now: float) -> SignedOut | None:
        """:class:`SignedOut` when the plan's session was signed out (or ended meanwhile);
        asked before a refresh is run or reused, and once more before its cookies go out."""
        session = plan.session
        if self.revocations.holds(session.key, now):
            return self.signed_out(SESSION_REVOKED, now)
        if now >= self.ends_at(session):
            return self.signed_out(SESSION_EXPIRED, now)
        return None

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

    def refreshed(
        self, grant: TokenGrant, identity: Identity, now: float, session: Session
    ) -> Refreshed:
        """The outcome of a refresh (of ``session``) whose new access token verified as
        ``identity``: its cookies carry the session's sign-in time and id."""
        until = min(now + RECENT_REFRESH_TTL, identity.token_info.expires_at)
        return Refreshed(identity, tuple(self.issue(grant, now, session)), until=until)

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
