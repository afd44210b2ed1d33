"""Thread-safe code pairs of the emulator's code-based linking (LWA for TVs and devices).

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

``CodePairState`` is a part of :class:`~lwa_middleware.emulator.state.EmulatorState` built
on its :class:`~lwa_middleware.emulator.accounts.Accounts` and
:class:`~lwa_middleware.emulator.oauth_state.OAuthState` (and importing nothing else of the
state): the tokens of an approved pair are minted through the OAuth state, so
``/auth/o2/tokeninfo`` and ``/user/profile`` answer for them (``aud`` = the pair's client,
the approved scopes and user) and the refresh token works with the ``refresh_token`` grant.
Time is the accounts' ``clock``.

Rules of the poll (``grant_type=device_code``), checked in this order:

1. ``device_code`` or ``user_code`` missing: ``invalid_request``. Client credentials are
   optional (Amazon's device token request has none); when given they must be right
   (``invalid_client``, 401, as for the other grants) and be the pair's client.
2. unknown ``device_code``, a ``user_code`` that is not its pair's, another client:
   ``invalid_grant``.
3. a pair already redeemed: ``invalid_grant`` (a pair yields tokens once; the tokens it
   gave stay valid); a denied pair: ``invalid_grant`` saying the user denied it.
4. a pair past ``expires_in``: ``invalid_code_pair``.
5. a poll less than the pair's ``interval`` seconds after the previous poll of that pair
   (too fast ones included): ``slow_down``.
6. not yet approved: ``authorization_pending``; approved: the tokens (access and refresh,
   ``expires_in`` 3600), and the pair is redeemed.

Lock order: this state's lock, then the OAuth state's, then the accounts'.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from lwa_middleware.emulator.accounts import Accounts
from lwa_middleware.emulator.codepair import (
    DEFAULT_CODE_PAIR_LIFETIME,
    DEFAULT_DEVICE_INTERVAL,
    MAX_CODE_PAIRS,
    CodePair,
    CodePairError,
    CodePairInfo,
    PairStatus,
    check_code_pair_lifetime,
    check_device_interval,
    new_device_code,
    new_user_code,
    normalize_user_code,
    parse_codepair_request,
)
from lwa_middleware.emulator.oauth import (
    OAuthClient,
    TokenError,
    client_credentials,
    required,
)
from lwa_middleware.emulator.oauth_state import OAuthState


def _invalid_grant(description: str) -> TokenError:
    return TokenError("invalid_grant", description)


def _has_credentials(form: Mapping[str, str], authorization: str | None) -> bool:
    basic = (authorization or "").strip().lower().startswith("basic ")
    return basic or "client_id" in form or "client_secret" in form


class CodePairState:
    """Code pairs of one emulator, their settings and the device grant (thread-safe)."""

    def __init__(
        self,
        accounts: Accounts,
        oauth: OAuthState,
        *,
        interval: int = DEFAULT_DEVICE_INTERVAL,
        lifetime: int = DEFAULT_CODE_PAIR_LIFETIME,
    ) -> None:
        self._accounts = accounts
        self._oauth = oauth
        self._default_interval = check_device_interval(interval)
        self._default_lifetime = check_code_pair_lifetime(lifetime)
        self._interval = self._default_interval
        self._lifetime = self._default_lifetime
        self._lock = threading.Lock()
        self._pairs: OrderedDict[str, CodePair] = OrderedDict()  # by device_code
        self._by_user_code: dict[str, str] = {}  # user_code -> device_code

    # Settings ---------------------------------------------------------------------

    @property
    def interval(self) -> int:
        """Seconds between two polls of a pair (new pairs; a pair keeps the one it was
        created with)."""
        return self._interval

    @interval.setter
    def interval(self, seconds: int) -> None:
        self._interval = check_device_interval(seconds)

    @property
    def lifetime(self) -> int:
        """Seconds a new pair lives (its ``expires_in``)."""
        return self._lifetime

    @lifetime.setter
    def lifetime(self, seconds: int) -> None:
        self._lifetime = check_code_pair_lifetime(seconds)

    # Pairs ------------------------------------------------------------------------

    def create(self, form: Mapping[str, str], verification_uri: str) -> dict[str, object]:
        """``POST /auth/o2/create/codepair``: the Device Authorization Response for a checked
        form, or raise ``TokenError``."""
        request = parse_codepair_request(form, self._oauth.client)
        with self._lock:
            user_code = new_user_code()
            while user_code in self._by_user_code:
                user_code = new_user_code()
            now = self._accounts.clock()
            pair = CodePair(
                new_device_code(), user_code, request, now, now + self._lifetime, self._interval
            )
            self._pairs[pair.device_code] = pair
            self._by_user_code[user_code] = pair.device_code
            while len(self._pairs) > MAX_CODE_PAIRS:
                _, oldest = self._pairs.popitem(last=False)
                self._by_user_code.pop(oldest.user_code, None)
        return pair.answer(verification_uri)

    def _live(self, user_code: str) -> CodePair:
        """The pending pair of a (typed) user code; raise ``KeyError`` or ``CodePairError``."""
        pair = self._pairs.get(self._by_user_code.get(normalize_user_code(user_code), ""))
        if pair is None:
            raise KeyError(f"unknown user code: {user_code!r}")
        status = pair.status_at(self._accounts.clock())
        if status is PairStatus.EXPIRED:
            raise CodePairError("expired_user_code", "This code has expired.")
        if status is not PairStatus.PENDING:
            raise CodePairError("used_user_code", f"This code was already {status.value}.")
        return pair

    def find(self, user_code: str) -> CodePairInfo | None:
        """The pair of a (typed) user code, or ``None``."""
        with self._lock:
            pair = self._pairs.get(self._by_user_code.get(normalize_user_code(user_code), ""))
            return None if pair is None else pair.info(self._accounts.clock())

    def approve(
        self, user_code: str, user_id: str, scopes: Sequence[str] | None = None
    ) -> CodePairInfo:
        """The user ``user_id`` approves the pending pair of ``user_code`` for ``scopes``
        (default: all requested). Raises ``KeyError`` for an unknown code or user,
        ``CodePairError`` for a pair no longer pending, ``ValueError`` for scopes that
        were not requested."""
        if self._accounts.get_user(user_id) is None:
            raise KeyError(f"unknown user id: {user_id!r}")
        with self._lock:
            pair = self._live(user_code)
            requested = pair.request.scopes
            approved = requested if scopes is None else tuple(dict.fromkeys(scopes))
            if not approved or not set(approved) <= set(requested):
                raise ValueError(f"approved scopes {approved!r} must be some of {requested!r}")
            pair.status, pair.user_id, pair.approved_scopes = PairStatus.APPROVED, user_id, approved
            return pair.info(self._accounts.clock())

    def deny(self, user_code: str) -> CodePairInfo:
        """The user denies the pending pair of ``user_code``. Raises ``KeyError`` for an
        unknown code, ``CodePairError`` for a pair no longer pending."""
        with self._lock:
            pair = self._live(user_code)
            pair.status = PairStatus.DENIED
            return pair.info(self._accounts.clock())

    @property
    def pairs(self) -> Mapping[str, CodePairInfo]:
        """A read-only snapshot of every remembered pair, by user code, oldest first."""
        with self._lock:
            now = self._accounts.clock()
            return MappingProxyType({p.user_code: p.info(now) for p in self._pairs.values()})

    # The device grant ---------------------------------------------------------------

    def poll(self, form: Mapping[str, str], authorization: str | None) -> dict[str, object]:
        """``grant_type=device_code``: the token answer, or raise ``TokenError`` (see the
        module's docstring for the order of the checks)."""
        device_code = required(form, "device_code")
        user_code = required(form, "user_code")
        client: OAuthClient | None = None
        if _has_credentials(form, authorization):
            client, _ = self._oauth.authenticate(client_credentials(form, authorization))
        with self._lock:
            pair = self._pairs.get(device_code)
            if pair is None:
                raise _invalid_grant("The device_code is invalid, expired or unknown")
            if not secrets.compare_digest(pair.user_code.encode(), user_code.encode()):
                raise _invalid_grant("The user_code does not match the device_code")
            if client is not None and client.client_id != pair.request.client_id:
                raise _invalid_grant("The code pair was issued to another client")
            if pair.status is PairStatus.REDEEMED:
                raise _invalid_grant("The code pair was already redeemed")
            if pair.status is PairStatus.DENIED:
                raise _invalid_grant("The user denied the authorization request")
            now = self._accounts.clock()
            if now >= pair.expires_at:
                raise TokenError(
                    "invalid_code_pair", "The code pair has expired. Request a new code pair."
                )
            previous, pair.last_poll = pair.last_poll, now
            pair.polls += 1
            if previous is not None and now - previous < pair.interval:
                raise TokenError(
                    "slow_down",
                    f"Polling too fast: wait at least {pair.interval} seconds between requests",
                )
            if pair.status is PairStatus.PENDING:
                raise TokenError(
                    "authorization_pending", "The user has not yet entered and approved the code"
                )
            return self._redeem(pair)

    def _redeem(self, pair: CodePair) -> dict[str, object]:
        owner = self._oauth.client(pair.request.client_id)
        if pair.user_id is None or self._accounts.get_user(pair.user_id) is None:
            raise _invalid_grant("The user of this grant no longer exists")
        if owner is None:
            raise _invalid_grant("The client of this code pair is no longer registered")
        answer = self._oauth.issue_device_tokens(owner, pair.user_id, pair.approved_scopes)
        pair.status = PairStatus.REDEEMED
        return answer

    def reset(self) -> None:
        """Forget every pair; the interval and lifetime are back to the constructor's."""
        with self._lock:
            self._pairs.clear()
            self._by_user_code.clear()
            self._interval = self._default_interval
            self._lifetime = self._default_lifetime
