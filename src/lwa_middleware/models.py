"""The models: what LWA said about a token (``TokenInfo``), who it belongs to (``Profile``),
and the verified result attached to a request (``Identity``).

Frozen, slotted dataclasses. None of them holds the access token itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: ``profile`` (name, email) includes ``profile:user_id``.
SCOPE_PROFILE = "profile"
SCOPE_USER_ID = "profile:user_id"
SCOPE_POSTAL_CODE = "postal_code"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """LWA's token-info answer; ``exp`` (seconds remaining) is turned into ``expires_at``."""

    user_id: str
    aud: str
    app_id: str | None
    iss: str | None
    expires_at: float
    issued_at: float | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (for a shared cache)."""
        return {
            "user_id": self.user_id,
            "aud": self.aud,
            "app_id": self.app_id,
            "iss": self.iss,
            "expires_at": self.expires_at,
            "issued_at": self.issued_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokenInfo:
        """The inverse of :meth:`to_json`."""
        return cls(
            user_id=str(data["user_id"]),
            aud=str(data["aud"]),
            app_id=data.get("app_id"),
            iss=data.get("iss"),
            expires_at=float(data["expires_at"]),
            issued_at=data.get("issued_at"),
        )


@dataclass(frozen=True, slots=True)
class Profile:
    """The customer profile; fields LWA did not return are ``None``, all fields stay in ``raw``."""

    user_id: str
    name: str | None = None
    email: str | None = None
    postal_code: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes these fields prove: user_id → profile:user_id, name/email → profile, ..."""
        scopes = {SCOPE_USER_ID}
        if self.name is not None or self.email is not None:
            scopes.add(SCOPE_PROFILE)
        if self.postal_code is not None:
            scopes.add(SCOPE_POSTAL_CODE)
        return frozenset(scopes)


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified LWA token: its token-info, its profile and the scopes the profile proves."""

    token_info: TokenInfo
    profile: Profile
    scopes: frozenset[str]

    @classmethod
    def build(cls, token_info: TokenInfo, profile: Profile) -> Identity:
        """An identity whose scopes come from the profile's fields."""
        return cls(token_info=token_info, profile=profile, scopes=profile.scopes)

    @property
    def user_id(self) -> str:
        """The customer's LWA user id (``amzn1.account.…``)."""
        return self.profile.user_id

    @property
    def display_name(self) -> str:
        """The name when LWA gave one, else the email, else the user id."""
        return self.profile.name or self.profile.email or self.profile.user_id

    def has_scopes(self, required: frozenset[str]) -> bool:
        """Whether every required scope is granted (``profile`` satisfies ``profile:user_id``)."""
        return required <= self.scopes

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (for a shared cache)."""
        return {"token_info": self.token_info.to_json(), "profile": dict(self.profile.raw)}
