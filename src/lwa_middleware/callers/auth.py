"""``LWAAuth``: an ``httpx.Auth`` that calls LWA-protected routes with a fresh access token.

Layer: ``callers`` (for those who call protected routes; see ``ARCHITECTURE.md``).

::

    # a script, with the tokens of `lwa-middleware login`
    with httpx.Client(auth=LWAAuth.from_store()) as http:
        http.get("https://internal.example.com/reports")

    # a service, with a refresh token from its secret store
    auth = LWAAuth(refresh_token=secret, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    async with httpx.AsyncClient(auth=auth) as http:
        await http.get("https://internal.example.com/reports")

    # a service calling Amazon's APIs with a token of its own (no customer)
    auth = LWAAuth(client_id=CLIENT_ID, client_secret=SECRET, scope="alexa:skill_messaging")

Each request gets ``Authorization: Bearer <access token>``. The token is refreshed (the
refresh grant; a new refresh token comes back only with the client secret, else the old
one is kept) before a request when it expires within ``refresh_margin`` seconds (or none is
known yet), and after an answer that says the token is invalid (a 400 or 401 whose
``WWW-Authenticate`` has ``error="invalid_token"`` or whose JSON body's ``error`` is
``invalid_token``, as ``LWAMiddleware`` answers in either error style): that request is then
sent again, **once**. Given a ``scope`` and no refresh token, a service's token is obtained
and renewed the same way with the ``client_credentials`` grant (a refresh token in LWA's
answer is ignored: the next renewal is a ``client_credentials`` grant again); such a token
carries no customer (``Atc|…``), it is for Amazon's APIs, and ``LWAMiddleware`` refuses it.
One grant at a time (a ``threading.Lock`` for the sync flow, an ``asyncio.Lock`` per event
loop for the async flow): requests that wait for it use its new token. A grant that fails
raises its :class:`~lwa_middleware.core.grants.GrantError` from the request (``InvalidGrant``:
the refresh token was revoked, sign in again; ``InvalidClient``, ``InvalidScope``: the
service's credentials or scope are wrong).

:meth:`LWAAuth.from_store` reads the tokens ``lwa-middleware login`` stored
(:mod:`lwa_middleware.callers.token_store`) and writes refreshed ones back (under the store's lock,
re-reading it first: a token another process refreshed is used as it is). Otherwise the
tokens live in memory only.

A bearer token is never sent over plain ``http://`` to a host that is not loopback unless
``allow_insecure_http=True``. No token is ever logged, put in a message or in ``repr``.

"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypedDict

import anyio
import anyio.to_thread
import httpx

from lwa_middleware.callers.token_store import NotLoggedIn, TokenStore, TokenStoreError
from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.grants import (
    GrantRequest,
    InvalidGrant,
    TokenGrant,
    client_credentials_grant,
    refresh_grant,
)
from lwa_middleware.core.settings import is_insecure_http, resolve_api_base_url
from lwa_middleware.upstream.token_client import AsyncTokenClient, TokenClient

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["AuthOptions", "LWAAuth", "is_invalid_token_answer", "names_invalid_token"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
#: Refresh a token that expires within this many seconds.
DEFAULT_REFRESH_MARGIN = 60.0
#: The largest error body read to look for ``invalid_token``.
MAX_ERROR_BODY = 16 * 1024

_CHALLENGE_ERROR = re.compile(r"""\berror\s*=\s*"?invalid_token\b""", re.IGNORECASE)
_REVOKED = "Login with Amazon refused the refresh token (revoked, expired or another client's)"


# The core: when a token is stale, and when an answer says so --------------------------------


def names_invalid_token(status: int, headers: Mapping[str, str]) -> bool | None:
    """Whether a 400/401 answer says the token is invalid from its ``WWW-Authenticate``
    alone: ``True``, ``False`` (not a 400 or 401), or ``None`` (read the JSON body)."""
    if status not in (400, 401):
        return False
    challenge = headers.get("www-authenticate", "")
    if _CHALLENGE_ERROR.search(challenge):
        return True
    media = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        return False
    return None


def is_invalid_token_answer(status: int, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether an answer says the bearer token is invalid (expired, revoked): a 400 or 401
    whose ``WWW-Authenticate`` has ``error="invalid_token"`` or whose JSON body's ``error``
    is ``invalid_token``."""
    verdict = names_invalid_token(status, headers)
    if verdict is not None:
        return verdict
    if len(body) > MAX_ERROR_BODY:
        return False
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("error") == "invalid_token"


@dataclass(frozen=True, slots=True)
class _Tokens:
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str = field(default="", repr=False)
    expires_at: float = -math.inf

    def usable(self, now: float, margin: float) -> str | None:
        """The access token, if it lives more than ``margin`` seconds after ``now``."""
        if self.access_token is None or self.expires_at - now <= margin:
            return None
        return self.access_token


def _reusable(tokens: _Tokens, stale: str | None, now: float, margin: float) -> str | None:
    """The token a request may use instead of refreshing: a fresh one that is not ``stale``
    (the one an answer just called invalid)."""
    token = tokens.usable(now, margin)
    return token if token is not None and token != stale else None


# The shell ---------------------------------------------------------------------------------


class AuthOptions(TypedDict, total=False):
    """:class:`LWAAuth`'s options besides the credentials (what
    :meth:`LWAAuth.from_store` passes on)."""

    refresh_margin: float
    timeout: float
    allow_insecure_http: bool
    clock: Clock
    transport: httpx.BaseTransport | None
    async_transport: httpx.AsyncBaseTransport | None


class LWAAuth(httpx.Auth):
    """Bearer authentication with LWA access tokens, refreshed as needed (sync and async).

    ``refresh_token``, ``client_id`` and (optionally) ``client_secret`` are a service's
    credentials for a customer's tokens (the ``refresh_token`` grant); without a refresh
    token, ``client_id``, ``client_secret`` and ``scope`` get the service a token of its own
    (the ``client_credentials`` grant: Alexa skill messaging, Selling Partner API grantless
    operations). ``access_token`` and ``expires_at`` (epoch seconds) save the first grant.
    ``api_base_url`` or ``region`` name LWA (default NA). ``clock`` is for tests. The
    request body is read before sending (``requires_request_body``), so that a request can
    be sent again after a refresh.
    """

    requires_request_body = True

    def __init__(
        self,
        refresh_token: str | None = None,
        *,
        client_id: str,
        client_secret: str | None = None,
        scope: str | None = None,
        api_base_url: str | None = None,
        region: str | None = None,
        access_token: str | None = None,
        expires_at: float | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        timeout: float = 5.0,
        allow_insecure_http: bool = False,
        clock: Clock = time.time,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if refresh_token is None:
            if not isinstance(client_secret, str) or not client_secret.strip():
                raise ConfigurationError(
                    "LWAAuth needs a refresh_token, or client_secret and scope for the "
                    "client_credentials grant"
                )
            if not isinstance(scope, str) or not scope.split() or not scope.isprintable():
                raise ConfigurationError(
                    "scope must name the client_credentials grant's scopes (for example "
                    "alexa:skill_messaging) when there is no refresh_token"
                )
            scope = " ".join(scope.split())
        elif not isinstance(refresh_token, str) or not refresh_token.strip():
            raise ConfigurationError("refresh_token must be a non-empty string")
        elif scope is not None:
            raise ConfigurationError(
                "scope is for the client_credentials grant (no refresh_token); a refresh "
                "token keeps the scopes it was granted"
            )
        if not isinstance(client_id, str) or not client_id.strip():
            raise ConfigurationError("client_id must be a non-empty string")
        if (
            isinstance(refresh_margin, bool)
            or not isinstance(refresh_margin, (int, float))
            or not math.isfinite(refresh_margin)
            or refresh_margin < 0
        ):
            raise ConfigurationError("refresh_margin must be a non-negative number of seconds")
        self.client_id = client_id.strip()
        self.api_base_url = resolve_api_base_url(api_base_url, region)
        self.refresh_margin = float(refresh_margin)
        self.allow_insecure_http = allow_insecure_http
        self.clock = clock
        #: The ``client_credentials`` grant's scopes, or ``None``: the refresh grant.
        self.scope = scope
        self._client_secret = client_secret
        self._tokens = _Tokens(
            access_token,
            "" if refresh_token is None else refresh_token.strip(),
            -math.inf if access_token is None or expires_at is None else float(expires_at),
        )
        self._store: TokenStore | None = None
        # Built now: a bad api_base_url (plain http beyond loopback) fails here, not later.
        self._token_client = TokenClient(
            self.api_base_url,
            timeout=timeout,
            transport=transport,
            allow_insecure_http=allow_insecure_http,
        )
        self._async_token_client = AsyncTokenClient(
            self.api_base_url,
            timeout=timeout,
            transport=async_transport,
            allow_insecure_http=allow_insecure_http,
        )
        self._lock = threading.Lock()
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._other_lock: anyio.Lock | None = None  # not asyncio (trio): one lock
        #: Token grants sent so far (refresh or ``client_credentials``, successful or not).
        self.refreshes = 0

    @classmethod
    def from_store(
        cls,
        client_id: str | None = None,
        api_base_url: str | None = None,
        *,
        store: TokenStore | None = None,
        **options: Unpack[AuthOptions],
    ) -> LWAAuth:
        """The login ``lwa-middleware login`` stored for ``client_id`` at ``api_base_url``
        (either may be left out when only one login matches); refreshed tokens are written
        back. The other options are :class:`LWAAuth`'s (:class:`AuthOptions`);
        ``allow_insecure_http`` is also on when the login was made with
        ``--allow-insecure-http``. Raises
        :class:`~lwa_middleware.callers.token_store.NotLoggedIn` or
        :class:`~lwa_middleware.callers.token_store.AmbiguousLogin`."""
        store = store or TokenStore()
        found = store.find(client_id, api_base_url)
        if found.allow_insecure_http:
            options["allow_insecure_http"] = True
        auth = cls(
            found.refresh_token,
            client_id=found.client_id,
            api_base_url=found.api_base_url,
            access_token=found.access_token,
            expires_at=found.expires_at,
            **options,
        )
        auth._store = store
        return auth

    # httpx.Auth -------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        self._check_url(request)
        request.read()  # requires_request_body: a streamed body can be sent again
        token = self._sync_token(None)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        verdict = names_invalid_token(response.status_code, response.headers)
        if verdict is None:
            response.read()
            verdict = is_invalid_token_answer(
                response.status_code, response.headers, response.content
            )
        if verdict:
            request.headers["Authorization"] = f"Bearer {self._sync_token(token)}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._check_url(request)
        await request.aread()
        token = await self._async_token(None)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        verdict = names_invalid_token(response.status_code, response.headers)
        if verdict is None:
            await response.aread()
            verdict = is_invalid_token_answer(
                response.status_code, response.headers, response.content
            )
        if verdict:
            request.headers["Authorization"] = f"Bearer {await self._async_token(token)}"
            yield request

    def _check_url(self, request: httpx.Request) -> None:
        if not self.allow_insecure_http and is_insecure_http(str(request.url)):
            raise ConfigurationError(
                "refusing to send a bearer token over plain http to a host that is not "
                "loopback; use https, or LWAAuth(..., allow_insecure_http=True)"
            )

    # One refresh at a time ------------------------------------------------------

    def _sync_token(self, stale: str | None) -> str:
        """A usable access token (not ``stale``), refreshing it under the lock if needed."""
        if stale is None and (token := self._tokens.usable(self.clock(), self.refresh_margin)):
            return token
        with self._lock:
            token = _reusable(self._tokens, stale, self.clock(), self.refresh_margin)
            if token is not None:
                return token
            store = self._store
            if store is None:
                return self._sync_refresh()
            with store.lock():
                adopted = self._adopt(store, stale)
                if adopted is not None:
                    return adopted
                token = self._sync_refresh()
                self._write_back(store)
                return token

    def _grant_request(self) -> GrantRequest:
        """The grant that renews the access token (decided here for both shells): the
        ``client_credentials`` grant when a ``scope`` was given, else the refresh grant."""
        if self.scope is not None:
            assert self._client_secret is not None  # checked by __init__
            return client_credentials_grant(
                self.api_base_url,
                client_id=self.client_id,
                client_secret=self._client_secret,
                scope=self.scope,
            )
        return refresh_grant(
            self.api_base_url,
            refresh_token=self._tokens.refresh_token,
            client_id=self.client_id,
            client_secret=self._client_secret,
        )

    def _sync_refresh(self) -> str:
        self.refreshes += 1
        try:
            grant = self._token_client.grant(self._grant_request())
        except InvalidGrant as error:
            raise self._revoked(error) from None
        return self._settle(grant)

    def _revoked(self, error: InvalidGrant) -> InvalidGrant:
        if self.scope is not None:
            return error  # not a refresh token: LWA's own answer, as it came
        hint = "; run `lwa-middleware login` again" if self._store is not None else ""
        return InvalidGrant(f"{_REVOKED}{hint}.", status=error.status)

    async def _async_token(self, stale: str | None) -> str:
        if stale is None and (token := self._tokens.usable(self.clock(), self.refresh_margin)):
            return token
        async with self._async_lock():
            token = _reusable(self._tokens, stale, self.clock(), self.refresh_margin)
            if token is not None:
                return token
            store = self._store
            if store is not None:
                adopted = await anyio.to_thread.run_sync(self._adopt, store, stale)
                if adopted is not None:
                    return adopted
            self.refreshes += 1
            try:
                grant = await self._async_token_client.grant(self._grant_request())
            except InvalidGrant as error:
                raise self._revoked(error) from None
            token = self._settle(grant)
            if store is not None:
                await anyio.to_thread.run_sync(self._locked_write_back, store)
            return token

    def _async_lock(self) -> asyncio.Lock | anyio.Lock:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._other_lock is None:
                self._other_lock = anyio.Lock()
            return self._other_lock
        lock = self._loop_locks.get(loop)
        if lock is None:
            lock = self._loop_locks[loop] = asyncio.Lock()
        return lock

    def _settle(self, grant: TokenGrant) -> str:
        now = self.clock()
        kept = self._tokens.refresh_token
        self._tokens = _Tokens(
            grant.access_token,
            # A client_credentials answer's refresh token (one of Amazon's pages shows one)
            # is not used: the next renewal is a client_credentials grant again.
            kept if self.scope is not None else grant.refresh_token or kept,
            grant.expires_at(now),
        )
        logger.debug(
            "refreshed the LWA credentials of client %s (valid %d s)",
            self.client_id,
            grant.expires_in,
        )
        return grant.access_token

    # The store --------------------------------------------------------------------

    def _adopt(self, store: TokenStore, stale: str | None) -> str | None:
        """Take the stored tokens (as new as ours, or newer: another process may have
        refreshed them); their access token, if usable and not ``stale``."""
        stored = store.load(self.api_base_url, self.client_id)
        if stored is None:
            raise NotLoggedIn(
                f"the login of {self.client_id} was removed from the token store (logout): "
                "run `lwa-middleware login` again"
            )
        self._tokens = _Tokens(stored.access_token, stored.refresh_token, stored.expires_at)
        return _reusable(self._tokens, stale, self.clock(), self.refresh_margin)

    def _write_back(self, store: TokenStore) -> None:
        """Store the refreshed tokens (a store that cannot be written is logged, not
        raised: the request goes on with the new token in memory)."""
        tokens = self._tokens
        try:
            stored = store.load(self.api_base_url, self.client_id)
            if stored is None or tokens.access_token is None:
                return  # logged out meanwhile: not written back
            store.save(
                replace(
                    stored,
                    access_token=tokens.access_token,
                    refresh_token=tokens.refresh_token,
                    expires_at=tokens.expires_at,
                    updated_at=self.clock(),
                )
            )
        except TokenStoreError as exc:
            # The class only: the store's message is not ours to vouch for in a log line.
            logger.warning(
                "could not save the refreshed LWA credentials to the store (%s); "
                "they are kept in memory only",
                type(exc).__name__,
            )

    def _locked_write_back(self, store: TokenStore) -> None:
        with store.lock():
            self._write_back(store)

    # Closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync token client's connection pool."""
        self._token_client.close()

    async def aclose(self) -> None:
        """Close the async token client's pool of the running loop."""
        await self._async_token_client.aclose()

    def __repr__(self) -> str:
        source = "store" if self._store is not None else "memory"
        if self.scope is not None:
            source = f"client_credentials scope={self.scope!r}"
        return (
            f"LWAAuth(client_id={self.client_id!r}, api_base_url={self.api_base_url!r}, {source})"
        )
