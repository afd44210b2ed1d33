"""Thread-safe OAuth state of the emulator: clients, pending consents, codes, refresh tokens.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

``OAuthState`` is a part of :class:`~lwa_middleware.emulator.state.EmulatorState` built on
its :class:`~lwa_middleware.emulator.accounts.Accounts` (and importing nothing else of the
state): access tokens are minted there, so ``/auth/o2/tokeninfo`` and ``/user/profile``
answer for them like for any other token, and expiry follows the accounts' ``clock``.

Rules (see :mod:`.oauth` for the request checks): a code is redeemable once, for
``CODE_LIFETIME`` seconds, by the client it was issued to, with the ``redirect_uri`` of
its request and, when the request carried a ``code_challenge``, the matching
``code_verifier`` (a verifier for a code issued without a challenge is refused too).
Replaying a redeemed code is ``invalid_grant`` **and revokes every token issued from
it** (access and refresh tokens, those from later refreshes included; RFC 6749 §4.1.2).
A failed redemption does not use the code up. Refresh tokens do not expire and stay valid
after use; a refresh with the client secret also returns a new refresh token, one without
it returns none. An approved code pair (code-based linking, :mod:`.codepair_state`) gets
its tokens here too (:meth:`OAuthState.issue_device_tokens`): they refresh like the code
grant's, and so do the refresh tokens a test mints (:meth:`OAuthState.mint_tokens`).

The ``client_credentials`` grant (:meth:`OAuthState.client_credentials`) gives a client a
token of its own (``Atc|…``, no customer, no refresh token), checked in this order: the
client's credentials (``invalid_client``, 401), its secret (required: ``invalid_request``),
``scope`` (required: ``invalid_request``), a client registered without service scopes
(``unauthorized_client``), a scope it may not have (``invalid_scope``).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from lwa_middleware.emulator.accounts import Accounts, normalize_scopes
from lwa_middleware.emulator.oauth import (
    ACCESS_TOKEN_LIFETIME,
    CODE_LIFETIME,
    DEFAULT_CLIENT_SECRET,
    REFRESH_TOKEN_PREFIX,
    AuthorizationCode,
    AuthorizationRequest,
    ClientCredentials,
    OAuthClient,
    RefreshGrant,
    TokenError,
    check_redirect_uri,
    check_service_scopes,
    invalid_client,
    new_authorization_code,
    new_refresh_token,
    parse_authorization_request,
    parse_scopes,
    pkce_matches,
    required,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

PENDING_LIFETIME = 600.0
"""Seconds a consent page can be answered."""
MAX_PENDING = 1000
"""Consent pages remembered at once (the oldest is forgotten first)."""

_INVALID_SCOPE = "The request has an invalid parameter : scope"
_GRANT = "The authorization grant is invalid, expired, revoked, or was issued to another client"


def _invalid_grant(description: str = _GRANT) -> TokenError:
    return TokenError("invalid_grant", description)


class OAuthState:
    """Clients, consents, codes and refresh tokens of one emulator (thread-safe)."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._lock = threading.RLock()  # held while minting: always before the accounts'
        self._clients: dict[str, OAuthClient] = {}
        self._pending: OrderedDict[str, tuple[AuthorizationRequest, float]] = OrderedDict()
        self._codes: dict[str, AuthorizationCode] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._device_grants: dict[str, AuthorizationCode] = {}
        """The origins (revocation families) of code-pair and minted refresh tokens, never
        redeemable codes."""

    # Clients ----------------------------------------------------------------------

    def _default_client(self) -> OAuthClient:
        return OAuthClient(self._accounts.client_id, self._accounts.app_id, DEFAULT_CLIENT_SECRET)

    def _find(self, client_id: str) -> OAuthClient | None:
        found = self._clients.get(client_id)
        if found is None and client_id == self._accounts.client_id:
            return self._default_client()
        return found

    def client(self, client_id: str) -> OAuthClient | None:
        """The registered client with this id (the emulator's own is always there)."""
        with self._lock:
            return self._find(client_id)

    @property
    def clients(self) -> list[OAuthClient]:
        """Every registered client, the emulator's own first."""
        with self._lock:
            own = self._find(self._accounts.client_id)
            others = [c for c in self._clients.values() if c.client_id != self._accounts.client_id]
        return [own, *others] if own is not None else others

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
        """Register a client, or change the given fields of a known one; return it.

        ``client_id`` defaults to the emulator's. A new client gets the emulator's
        ``app_id``, ``DEFAULT_CLIENT_SECRET``, no redirect URI, ``allow_loopback=True`` and
        the documented ``SERVICE_SCOPES``. ``redirect_uris`` and ``service_scopes`` replace
        the lists (``service_scopes=()``: the client may not use ``client_credentials``).
        Raises ``ValueError`` for an empty id or secret, a URI that cannot be registered or
        a scope that cannot be a service scope.
        """
        if client_id == "" or client_secret == "" or app_id == "":
            raise ValueError("client_id, client_secret and app_id cannot be empty")
        if isinstance(redirect_uris, str):
            redirect_uris = [redirect_uris]
        uris = None if redirect_uris is None else tuple(map(check_redirect_uri, redirect_uris))
        scopes = None if service_scopes is None else check_service_scopes(service_scopes)
        with self._lock:
            key = client_id or self._accounts.client_id
            current = self._find(key) or OAuthClient(
                key, self._accounts.app_id, DEFAULT_CLIENT_SECRET
            )
            client = replace(
                current,
                client_secret=current.client_secret if client_secret is None else client_secret,
                app_id=current.app_id if app_id is None else app_id,
                redirect_uris=current.redirect_uris if uris is None else uris,
                allow_loopback=current.allow_loopback
                if allow_loopback is None
                else bool(allow_loopback),
                service_scopes=current.service_scopes if scopes is None else scopes,
            )
            self._clients[key] = client
        return client

    def authenticate(self, credentials: ClientCredentials) -> tuple[OAuthClient, bool]:
        """The client, and whether it proved its secret; raise ``invalid_client`` for an
        unknown client or a wrong secret."""
        client = self.client(credentials.client_id)
        failure = invalid_client(basic=credentials.basic)
        if client is None:
            raise failure
        secret = credentials.client_secret
        if secret is None:
            return client, False
        if not secrets.compare_digest(secret.encode(), client.client_secret.encode()):
            raise failure
        return client, True

    # Authorization ----------------------------------------------------------------

    def check(self, params: Sequence[tuple[str, str]]) -> AuthorizationRequest:
        """Check ``/ap/oa`` parameters (see ``oauth.parse_authorization_request``)."""
        return parse_authorization_request(params, self.client)

    def begin(self, request: AuthorizationRequest) -> str:
        """Remember a request shown on a consent page; return its one-time id."""
        pending_id = secrets.token_urlsafe(24)
        with self._lock:
            self._pending[pending_id] = (request, self._accounts.clock() + PENDING_LIFETIME)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
        return pending_id

    def take(self, pending_id: str) -> AuthorizationRequest | None:
        """The request behind a consent page (once), or ``None`` if unknown or expired."""
        with self._lock:
            pending = self._pending.pop(pending_id, None)
            if pending is None or self._accounts.clock() >= pending[1]:
                return None
            return pending[0]

    def issue_code(
        self, request: AuthorizationRequest, user_id: str, scopes: Sequence[str] | None = None
    ) -> str:
        """Issue a code for ``request``, approved by ``user_id`` for ``scopes`` (default: all
        requested). Raises ``KeyError`` for an unknown user, ``ValueError`` for scopes that
        were not requested."""
        approved = request.scopes if scopes is None else tuple(dict.fromkeys(scopes))
        if not approved or not set(approved) <= set(request.scopes):
            raise ValueError(f"approved scopes {approved!r} must be some of {request.scopes!r}")
        if self._accounts.get_user(user_id) is None:
            raise KeyError(f"unknown user id: {user_id!r}")
        code = new_authorization_code()
        with self._lock:
            expires_at = self._accounts.clock() + CODE_LIFETIME
            self._codes[code] = AuthorizationCode(code, request, user_id, approved, expires_at)
        return code

    # Token endpoint ---------------------------------------------------------------

    def exchange_code(
        self, credentials: ClientCredentials, form: Mapping[str, str]
    ) -> dict[str, object]:
        """``grant_type=authorization_code``: the token answer, or raise ``TokenError``."""
        code = required(form, "code")
        redirect_uri = required(form, "redirect_uri")
        verifier = form.get("code_verifier")
        client, with_secret = self.authenticate(credentials)
        if not with_secret and verifier is None:
            raise TokenError(
                "invalid_request",
                "The request is missing a required parameter : client_secret or code_verifier",
            )
        with self._lock:
            issued = self._codes.get(code)
            if issued is not None and issued.used:
                self._revoke_family(issued)
                raise _invalid_grant("The authorization code was already used")
            if issued is None or issued.request.client_id != client.client_id:
                raise _invalid_grant()
            if self._accounts.clock() >= issued.expires_at:
                raise _invalid_grant("The authorization code has expired")
            if issued.request.redirect_uri != redirect_uri:
                raise _invalid_grant("The redirect_uri does not match the authorization request")
            self._check_verifier(issued.request, verifier)
            if self._accounts.get_user(issued.user_id) is None:
                raise _invalid_grant("The user of this grant no longer exists")
            issued.used = True
            return self._issue(client, issued, issued.scopes, refresh=True)

    @staticmethod
    def _check_verifier(request: AuthorizationRequest, verifier: str | None) -> None:
        challenge, method = request.code_challenge, request.code_challenge_method
        if challenge is None or method is None:
            if verifier is not None:
                raise _invalid_grant("A code_verifier was sent for a code without code_challenge")
            return
        if verifier is None:
            raise _invalid_grant("This code requires the code_verifier of its code_challenge")
        if not pkce_matches(challenge, method, verifier):
            raise _invalid_grant("The code_verifier does not match the code_challenge")

    def refresh(self, credentials: ClientCredentials, form: Mapping[str, str]) -> dict[str, object]:
        """``grant_type=refresh_token``: the token answer, or raise ``TokenError``."""
        token = required(form, "refresh_token")
        client, with_secret = self.authenticate(credentials)
        with self._lock:
            grant = self._refresh.get(token)
            if grant is None or grant.client_id != client.client_id:
                raise _invalid_grant(
                    "The refresh token is invalid, revoked, or was issued to another client"
                )
            scopes = grant.scopes
            if "scope" in form:
                try:
                    scopes = parse_scopes(form["scope"])
                except ValueError as exc:
                    raise TokenError("invalid_scope", str(exc)) from exc
                if not set(scopes) <= set(grant.scopes):
                    raise TokenError(
                        "invalid_scope", "The scope exceeds the one originally granted"
                    )
            if self._accounts.get_user(grant.user_id) is None:
                raise _invalid_grant("The user of this grant no longer exists")
            return self._issue(client, self._origin(grant.code), scopes, refresh=with_secret)

    def _origin(self, key: str) -> AuthorizationCode:
        found = self._codes.get(key)
        return self._device_grants[key] if found is None else found

    def issue_device_tokens(
        self, client: OAuthClient, user_id: str, scopes: Sequence[str]
    ) -> dict[str, object]:
        """The token answer of an approved code pair: an access and a refresh token for
        ``user_id`` and ``scopes``, issued to ``client`` (the refresh token works with the
        ``refresh_token`` grant, without or with the secret, like the code grant's)."""
        return self._issue_granted("CBL", client, user_id, tuple(scopes), access=True)

    def mint_tokens(
        self,
        user_id: str,
        scopes: str | Iterable[str] = ("profile",),
        client_id: str | None = None,
        *,
        access: bool = True,
    ) -> dict[str, object]:
        """Issue a refresh token (and, with ``access``, an access token) for a known user and
        registered client (default: the emulator's), as a sign-in would, without one; return
        the token answer. The refresh token works with the ``refresh_token`` grant, without
        or with the secret. Raises ``KeyError`` for an unknown user or client, ``ValueError``
        for a malformed scope."""
        granted = normalize_scopes(scopes)
        key = client_id or self._accounts.client_id
        client = self.client(key)
        if client is None:
            raise KeyError(f"unknown client id: {key!r}")
        if self._accounts.get_user(user_id) is None:
            raise KeyError(f"unknown user id: {user_id!r}")
        return self._issue_granted("MNT", client, user_id, granted, access=access)

    def _issue_granted(
        self,
        prefix: str,
        client: OAuthClient,
        user_id: str,
        scopes: tuple[str, ...],
        *,
        access: bool,
    ) -> dict[str, object]:
        key = prefix + secrets.token_urlsafe(24)  # never an "AN…" authorization code
        request = AuthorizationRequest(client.client_id, "", scopes)
        origin = AuthorizationCode(key, request, user_id, scopes, expires_at=0.0, used=True)
        with self._lock:
            self._device_grants[key] = origin
            return self._issue(client, origin, scopes, refresh=True, access=access)

    def client_credentials(
        self, credentials: ClientCredentials, form: Mapping[str, str]
    ) -> dict[str, object]:
        """``grant_type=client_credentials``: a token of the client's own (``Atc|…``, no
        customer, no refresh token) for ``scope``, or raise ``TokenError`` (see the module's
        docstring for the order of the checks)."""
        client, with_secret = self.authenticate(credentials)
        if not with_secret:
            raise TokenError(
                "invalid_request", "The request is missing a required parameter : client_secret"
            )
        scope = required(form, "scope")
        if not client.service_scopes:
            raise TokenError(
                "unauthorized_client",
                "The client is not authorized to use this authorization grant type",
            )
        requested = tuple(dict.fromkeys(scope.split()))
        if not requested or not set(requested) <= set(client.service_scopes):
            raise TokenError("invalid_scope", _INVALID_SCOPE)
        token = self._accounts.mint_service_token(
            client.client_id, client.app_id, requested, ACCESS_TOKEN_LIFETIME
        )
        return {
            "access_token": token,
            "scope": " ".join(requested),
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
        }

    def _issue(
        self,
        client: OAuthClient,
        origin: AuthorizationCode,
        scopes: tuple[str, ...],
        *,
        refresh: bool,
        access: bool = True,
    ) -> dict[str, object]:
        answer: dict[str, object] = {}
        if access:
            token = self._accounts.mint(
                origin.user_id, scopes, ACCESS_TOKEN_LIFETIME, client.client_id, client.app_id
            )
            origin.family.add(token)
            answer.update(access_token=token, token_type="bearer", expires_in=ACCESS_TOKEN_LIFETIME)
        if refresh:
            token = new_refresh_token()
            self._refresh[token] = RefreshGrant(
                client.client_id, origin.user_id, origin.scopes, origin.code
            )
            origin.family.add(token)
            answer["refresh_token"] = token
        return answer

    def _revoke_family(self, origin: AuthorizationCode) -> None:
        for token in origin.family:
            if token.startswith(REFRESH_TOKEN_PREFIX):
                self._refresh.pop(token, None)
            else:
                self._accounts.revoke(token)
        origin.family.clear()

    def revoke_refresh_token(self, token: str) -> bool:
        """Revoke a refresh token; return whether it was known."""
        with self._lock:
            return self._refresh.pop(token, None) is not None

    def reset(self) -> None:
        """Forget clients (the emulator's own is back to its defaults), consents, codes,
        code-pair grants and refresh tokens."""
        with self._lock:
            self._clients.clear()
            self._pending.clear()
            self._codes.clear()
            self._refresh.clear()
            self._device_grants.clear()
