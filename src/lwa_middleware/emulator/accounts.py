"""The emulator's accounts: its users and the access tokens issued, thread-safe, no I/O.

:class:`Accounts` is the part of :class:`~lwa_middleware.emulator.state.EmulatorState` every
other part builds on (it imports none of them): the users, the customer access tokens
(``Atza|…``: ``/auth/o2/tokeninfo`` and ``/user/profile`` answer for them) and the service
tokens of the ``client_credentials`` grant (``Atc|…``, Amazon's examples' prefix: they
carry no customer, so the emulator's token-info and profile call them ``invalid_token``).
It also holds the emulator's own ``client_id`` and ``app_id`` and its ``clock``: time comes
from that injectable clock, so tests move it forward, and a ``threading.Lock`` guards every
access because tests drive the state from another thread than the server's.
"""

from __future__ import annotations

import math
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

DEFAULT_CLIENT_ID = "amzn1.application-oa2-client.emulator"
DEFAULT_APP_ID = "amzn1.application.emulator"

TOKEN_PREFIX = "Atza|"
SERVICE_TOKEN_PREFIX = "Atc|"
"""The prefix of a ``client_credentials`` token (``Atc|``, as in Amazon's examples)."""
USER_ID_PREFIX = "amzn1.account."
_USER_ID_ALPHABET = string.ascii_uppercase + string.digits
_USER_ID_LENGTH = 28
_TOKEN_RANDOM_BYTES = 300  # token_urlsafe(300) gives 400 characters.


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
    """An access token the emulator minted, with what it grants (the token is not in
    ``repr``)."""

    token: str = field(repr=False)
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
class ServiceToken:
    """A ``client_credentials`` access token (``Atc|…``): a client's, with no customer (the
    token is not in ``repr``)."""

    token: str = field(repr=False)
    client_id: str
    app_id: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float


def new_user_id() -> str:
    """Return a random user id shaped like Amazon's (``amzn1.account.`` + 28 chars)."""
    suffix = "".join(secrets.choice(_USER_ID_ALPHABET) for _ in range(_USER_ID_LENGTH))
    return USER_ID_PREFIX + suffix


def new_access_token(prefix: str = TOKEN_PREFIX) -> str:
    """Return a random access token shaped like Amazon's (``Atza|`` + ~400 URL-safe chars)."""
    return prefix + secrets.token_urlsafe(_TOKEN_RANDOM_BYTES)


def normalize_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """Return scopes as a tuple; a single string is split on whitespace (OAuth style)."""
    if isinstance(scopes, str):
        return tuple(scopes.split())
    result = tuple(scopes)
    for scope in result:
        if not isinstance(scope, str) or not scope or scope != scope.strip():
            raise ValueError(f"invalid scope: {scope!r}")
    return result


class Accounts:
    """Users, customer tokens and service tokens of one emulator (thread-safe).

    ``clock`` returns epoch seconds and decides token expiry and ``iat``.
    """

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        app_id: str = DEFAULT_APP_ID,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.app_id = app_id
        self.clock = clock
        self._lock = threading.Lock()
        self._users: dict[str, EmulatorUser] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._service_tokens: dict[str, ServiceToken] = {}

    # Users ------------------------------------------------------------------------

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

    # Customer tokens ----------------------------------------------------------------

    def mint(
        self,
        user_id: str,
        scopes: str | Iterable[str] = ("profile",),
        lifetime: float = 3600,
        client_id: str | None = None,
        app_id: str | None = None,
    ) -> str:
        """Issue an access token for a known user; return the token string (see
        ``EmulatorState.mint``). Raises ``KeyError`` for an unknown ``user_id``."""
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

    # Service tokens (the client_credentials grant) -----------------------------------

    def mint_service_token(
        self, client_id: str, app_id: str, scopes: Iterable[str], lifetime: float
    ) -> str:
        """Issue a ``client_credentials`` token (``Atc|…``) to a client for ``scopes``."""
        token = new_access_token(SERVICE_TOKEN_PREFIX)
        with self._lock:
            now = self.clock()
            self._service_tokens[token] = ServiceToken(
                token, client_id, app_id, tuple(scopes), now, now + lifetime
            )
        return token

    def service_token(self, token: str) -> ServiceToken | None:
        """The ``client_credentials`` token's grant if known, unrevoked and unexpired."""
        with self._lock:
            issued = self._service_tokens.get(token)
            if issued is None or self.clock() >= issued.expires_at:
                return None
            return issued

    # Either kind --------------------------------------------------------------------

    def revoke(self, token: str) -> bool:
        """Revoke an access token (customer or service); return whether it was known."""
        with self._lock:
            found = self._tokens.pop(token, None) or self._service_tokens.pop(token, None)
            return found is not None

    def expire(self, token: str) -> bool:
        """Make an access token (customer or service) expire now; return whether it was
        known."""
        with self._lock:
            now = self.clock()
            issued = self._tokens.get(token)
            if issued is not None:
                self._tokens[token] = replace(issued, expires_at=min(issued.expires_at, now))
                return True
            service = self._service_tokens.get(token)
            if service is not None:
                expires_at = min(service.expires_at, now)
                self._service_tokens[token] = replace(service, expires_at=expires_at)
                return True
            return False

    def reset(self) -> None:
        """Forget every user and token (``client_id``, ``app_id`` and ``clock`` are kept)."""
        with self._lock:
            self._users.clear()
            self._tokens.clear()
            self._service_tokens.clear()
