"""Pure rules of the emulator's code-based linking (Login with Amazon for TVs and other
devices): no I/O, no clock, no locks.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

What Amazon documents, and the emulator follows: the device asks for a code pair with
``POST /auth/o2/create/codepair`` (a form: ``response_type=device_code``, ``client_id``,
``scope``: ``profile``, ``profile:user_id``, ``postal_code``, space-separated; optionally
``scope_data``, a JSON object) and gets ``{"user_code", "device_code", "verification_uri",
"expires_in", "interval"}``. It shows the user code and the URL; the user enters the code
there and approves. Meanwhile the device polls ``POST /auth/o2/token`` with
``grant_type=device_code`` (Amazon's literal, not RFC 8628's URN), ``device_code`` and
``user_code``, at most once per ``interval`` seconds, until it gets the tokens (or an
error that ends the pair). Amazon's error codes for the poll: ``authorization_pending``,
``slow_down``, ``invalid_code_pair`` (the pair expired), ``invalid_grant``,
``invalid_client``, ``invalid_request``, ``unauthorized_client``,
``unsupported_grant_type``, ``ServerError``.

"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lwa_middleware.emulator.oauth import SCOPES, OAuthClient, TokenError, parse_scopes, required

CODEPAIR_PATH = "/auth/o2/create/codepair"
ACTIVATE_PATH = "/activate"
"""Where the user enters the code (the ``verification_uri``, below the emulator's URL)."""
RESPONSE_TYPE = "device_code"
DEVICE_GRANT = "device_code"
"""The ``grant_type`` of the poll (Amazon's literal)."""
DEFAULT_DEVICE_INTERVAL = 5
"""Seconds a device must wait between two polls of one pair."""
DEFAULT_CODE_PAIR_LIFETIME = 600
"""Seconds a code pair can be approved and redeemed (Amazon: ``expires_in`` 600)."""
MAX_CODE_PAIRS = 1000
"""Code pairs remembered at once (the oldest is forgotten first)."""
USER_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""Upper-case letters and digits without the ambiguous ``0 O 1 I L``."""
USER_CODE_LENGTH = 6
_DEVICE_CODE_BYTES = 48  # token_urlsafe(48): 64 characters


class PairStatus(str, enum.Enum):
    """Where a code pair is in its life."""

    PENDING = "pending"
    """Waiting for the user (polls answer ``authorization_pending``)."""
    APPROVED = "approved"
    """Approved; the next poll (not too fast) gets the tokens."""
    DENIED = "denied"
    """The user said no (polls answer ``invalid_grant``)."""
    REDEEMED = "redeemed"
    """The tokens were issued; the pair gives none again (``invalid_grant``)."""
    EXPIRED = "expired"
    """``expires_in`` passed before the tokens were issued (``invalid_code_pair``)."""


class CodePairError(ValueError):
    """A user code that cannot be approved or denied: ``error`` is ``expired_user_code``
    (its pair expired) or ``used_user_code`` (already approved, denied or redeemed)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


@dataclass(frozen=True)
class CodePairRequest:
    """A valid ``/auth/o2/create/codepair`` request."""

    client_id: str
    scopes: tuple[str, ...]
    scope_data: str | None = None
    """The ``scope_data`` JSON object as sent (kept, not interpreted)."""


@dataclass(frozen=True)
class CodePairInfo:
    """What tests may read about a code pair (its ``device_code``, a secret, is not here)."""

    user_code: str
    client_id: str
    scopes: tuple[str, ...]
    """The requested scopes."""
    status: PairStatus
    user_id: str | None
    """Who approved (``None`` until then, and for a denied pair)."""
    approved_scopes: tuple[str, ...]
    interval: int
    created_at: float
    expires_at: float
    polls: int
    """Polls of this live pair (codes matching, not redeemed, denied or expired), too fast
    ones included."""
    last_poll: float | None
    scope_data: str | None

    def to_json(self) -> dict[str, object]:
        """The pair as a JSON-ready dict."""
        return {
            "user_code": self.user_code,
            "client_id": self.client_id,
            "scopes": list(self.scopes),
            "status": self.status.value,
            "user_id": self.user_id,
            "approved_scopes": list(self.approved_scopes),
            "interval": self.interval,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "polls": self.polls,
            "last_poll": self.last_poll,
            "scope_data": self.scope_data,
        }


@dataclass
class CodePair:
    """A code pair and its progress (mutable; guarded by its state's lock)."""

    device_code: str
    user_code: str
    request: CodePairRequest
    created_at: float
    expires_at: float
    interval: int
    status: PairStatus = PairStatus.PENDING
    """``PENDING``, ``APPROVED``, ``DENIED`` or ``REDEEMED`` (expiry is read off the clock)."""
    user_id: str | None = None
    approved_scopes: tuple[str, ...] = ()
    polls: int = 0
    last_poll: float | None = None

    def status_at(self, now: float) -> PairStatus:
        """The status at instant ``now``: a pending or approved pair past its end is expired."""
        live = self.status in (PairStatus.PENDING, PairStatus.APPROVED)
        return PairStatus.EXPIRED if live and now >= self.expires_at else self.status

    def info(self, now: float) -> CodePairInfo:
        """The test-facing view of the pair at instant ``now``."""
        return CodePairInfo(
            user_code=self.user_code,
            client_id=self.request.client_id,
            scopes=self.request.scopes,
            status=self.status_at(now),
            user_id=self.user_id,
            approved_scopes=self.approved_scopes,
            interval=self.interval,
            created_at=self.created_at,
            expires_at=self.expires_at,
            polls=self.polls,
            last_poll=self.last_poll,
            scope_data=self.request.scope_data,
        )

    def answer(self, verification_uri: str) -> dict[str, object]:
        """The Device Authorization Response Amazon documents."""
        return {
            "user_code": self.user_code,
            "device_code": self.device_code,
            "verification_uri": verification_uri,
            "expires_in": round(self.expires_at - self.created_at),
            "interval": self.interval,
        }


def new_user_code() -> str:
    """A random user code: 6 characters of :data:`USER_CODE_ALPHABET` (easy to type)."""
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def new_device_code() -> str:
    """A random, opaque device code (64 URL-safe characters)."""
    return secrets.token_urlsafe(_DEVICE_CODE_BYTES)


def normalize_user_code(text: str) -> str:
    """A user code as a person may type it (any case, spaces or hyphens), made canonical."""
    return "".join(text.split()).replace("-", "").upper()


def check_device_interval(seconds: int) -> int:
    """Return ``seconds`` if it is a whole, non-negative number of seconds, else raise
    ``ValueError`` (0 turns ``slow_down`` off)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"the device interval must be an int >= 0 (seconds), not {seconds!r}")
    return seconds


def check_code_pair_lifetime(seconds: int) -> int:
    """Return ``seconds`` if it is a whole, positive number of seconds, else raise
    ``ValueError``."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise ValueError(f"the code pair lifetime must be an int >= 1 (seconds), not {seconds!r}")
    return seconds


def parse_codepair_request(
    form: Mapping[str, str], find_client: Callable[[str], OAuthClient | None]
) -> CodePairRequest:
    """Check a ``/auth/o2/create/codepair`` form (see :func:`.oauth.parse_form`); raise
    ``TokenError`` for a bad one.

    A missing parameter or a malformed ``scope_data`` is ``invalid_request``; an unknown
    ``client_id`` is ``invalid_client`` (400: no credentials were presented, so nothing
    to challenge); a ``response_type`` other than ``device_code`` is
    ``unsupported_response_type``; a scope outside ``profile``, ``profile:user_id``,
    ``postal_code`` is ``invalid_scope``.
    """
    client_id = required(form, "client_id")
    if find_client(client_id) is None:
        raise TokenError("invalid_client", f"The client_id is unknown : {client_id}")
    response_type = required(form, "response_type")
    if response_type != RESPONSE_TYPE:
        raise TokenError("unsupported_response_type", f"The response_type must be {RESPONSE_TYPE}.")
    scope = required(form, "scope")
    unknown = [item for item in scope.split() if item not in SCOPES]
    if unknown or not scope.split():
        raise TokenError(
            "invalid_scope",
            f"The requested scope is invalid or unknown : {unknown[0] if unknown else scope}",
        )
    scope_data = form.get("scope_data")
    if scope_data is not None:
        try:
            parsed = json.loads(scope_data)
        except ValueError as exc:
            raise TokenError("invalid_request", "The scope_data is not valid JSON") from exc
        if not isinstance(parsed, dict):
            raise TokenError("invalid_request", "The scope_data must be a JSON object")
    return CodePairRequest(client_id, parse_scopes(scope), scope_data)
