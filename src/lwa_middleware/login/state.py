"""The sign-in state: what ties Amazon's redirect back to the browser that started it.

Layer: ``login`` (website sign-in; see ``ARCHITECTURE.md``).

``/login`` makes a nonce and a PKCE code verifier. The ``state`` sent to Amazon is
``[nonce, issued_at]`` signed with itsdangerous (its own salt); the login cookie holds
``{nonce, verifier, next}``, sealed (:class:`~lwa_middleware.login.cookies.Sealer`). The
callback accepts a state only when

1. its signature is ours (else :attr:`StateProblem.INVALID`),
2. it is at most :data:`STATE_MAX_AGE` seconds old (:attr:`StateProblem.EXPIRED`),
3. this browser's login cookie is there, opens (also at most that old) and holds the same
   nonce (:attr:`StateProblem.UNBOUND`: another browser, or the cookie was consumed), and
4. the nonce was not claimed before in this process (:attr:`StateProblem.USED`).

The callback clears the login cookie whatever the outcome: a state is good for one
callback. Across workers without shared storage, binding to that cookie and clearing it
*is* the single-use rule; :class:`UsedNonces` is the second line, within one process.
The residual case: someone who captured both the login cookie and the state of a sign-in
in progress, within its ten minutes, can replay them to another worker once.

Nothing here reads a clock: ``now`` is passed in.

"""

from __future__ import annotations

import enum
import hmac
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from itsdangerous import BadData, URLSafeSerializer

from lwa_middleware.core.grants import code_challenge_s256, new_code_verifier
from lwa_middleware.login.cookies import Sealer

#: How long a sign-in may take from ``/login`` to ``/callback`` (the issue's 10 minutes).
STATE_MAX_AGE = 600
#: Accepted clock difference for a state issued "in the future" (another worker's clock).
CLOCK_SKEW = 60
STATE_SALT = "lwa-middleware.state"
#: The longest state looked at.
MAX_STATE_CHARS = 512
#: The most nonces :class:`UsedNonces` remembers (oldest forgotten first).
USED_NONCES_MAXSIZE = 10_000


class StateProblem(str, enum.Enum):
    """Why a callback's state was refused (the value is the sentence shown)."""

    INVALID = "The sign-in link is not valid."
    EXPIRED = "The sign-in took longer than ten minutes."
    UNBOUND = "The sign-in was not started in this browser, or it was already completed."
    USED = "The sign-in was already completed."


@dataclass(frozen=True)
class LoginTicket:
    """What the login cookie carries: the nonce, the PKCE verifier, where to go next."""

    nonce: str
    verifier: str = field(repr=False)
    next: str = "/"


@dataclass(frozen=True)
class LoginStart:
    """What ``/login`` sends: the state and code challenge for Amazon, the login cookie."""

    state: str
    code_challenge: str
    cookie_value: str = field(repr=False)


class UsedNonces:
    """Nonces already claimed, each remembered for :data:`STATE_MAX_AGE` (plus skew) and at
    most ``maxsize`` of them: a bounded, thread-safe second line behind the login cookie."""

    __slots__ = ("_lock", "_maxsize", "_seen", "_ttl")

    def __init__(self, maxsize: int = USED_NONCES_MAXSIZE, ttl: float = STATE_MAX_AGE + CLOCK_SKEW):
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._maxsize = maxsize
        self._ttl = ttl
        self._lock = threading.Lock()

    def claim(self, nonce: str, now: float) -> bool:
        """Whether ``nonce`` was not claimed before (and is now)."""
        with self._lock:
            seen = self._seen
            while seen:  # forget the expired (oldest first: claims come in time order)
                oldest, until = next(iter(seen.items()))
                if until > now:
                    break
                del seen[oldest]
            if nonce in seen:
                return False
            while len(seen) >= self._maxsize:
                seen.popitem(last=False)
            seen[nonce] = now + self._ttl
            return True

    def __len__(self) -> int:
        return len(self._seen)


class StateKeeper:
    """Issues and checks states and login cookies for one ``secret_key``."""

    __slots__ = ("_sealer", "_serializer", "used")

    def __init__(
        self, keys: Sequence[bytes], sealer: Sealer, used: UsedNonces | None = None
    ) -> None:
        # itsdangerous signs with the last of its list: oldest first.
        self._serializer = URLSafeSerializer(list(reversed(keys)), salt=STATE_SALT)
        self._sealer = sealer
        self.used = UsedNonces() if used is None else used

    def start(self, next_path: str, now: float) -> LoginStart:
        """A new nonce and verifier: the signed state, the S256 challenge, the sealed cookie."""
        nonce = secrets.token_urlsafe(16)
        verifier = new_code_verifier()
        state = self._serializer.dumps([nonce, int(now)])
        ticket = json.dumps({"n": nonce, "v": verifier, "x": next_path}, separators=(",", ":"))
        return LoginStart(
            state=state,
            code_challenge=code_challenge_s256(verifier),
            cookie_value=self._sealer.seal(ticket.encode(), now),
        )

    def check(
        self, state: str | None, cookie: str | None, now: float
    ) -> LoginTicket | StateProblem:
        """The login ticket when ``state`` passes every rule above, else the first it breaks.

        A state that passes is claimed: checking it again fails with ``USED``."""
        nonce = self._nonce(state, now)
        if isinstance(nonce, StateProblem):
            return nonce
        ticket = self._ticket(cookie, now)
        if ticket is None or not hmac.compare_digest(ticket.nonce, nonce):
            return StateProblem.UNBOUND
        if not self.used.claim(nonce, now):
            return StateProblem.USED
        return ticket

    def _nonce(self, state: str | None, now: float) -> str | StateProblem:
        if not state or len(state) > MAX_STATE_CHARS:
            return StateProblem.INVALID
        try:
            payload = self._serializer.loads(state)
        except BadData:
            return StateProblem.INVALID
        if (
            not isinstance(payload, list)
            or len(payload) != 2
            or not isinstance(payload[0], str)
            or not payload[0]
            or isinstance(payload[1], bool)
            or not isinstance(payload[1], int)
        ):
            return StateProblem.INVALID
        nonce: str = payload[0]
        if not -CLOCK_SKEW <= now - payload[1] <= STATE_MAX_AGE:
            return StateProblem.EXPIRED
        return nonce

    def _ticket(self, cookie: str | None, now: float) -> LoginTicket | None:
        data = None if cookie is None else self._sealer.open(cookie, STATE_MAX_AGE, now)
        if data is None:
            return None
        try:
            fields = json.loads(data)
            return LoginTicket(nonce=fields["n"], verifier=fields["v"], next=fields["x"])
        except (ValueError, KeyError, TypeError):
            return None
