"""The models: what LWA said about a token (``TokenInfo``), who it belongs to (``Profile``),
and the verified result attached to a request (``Identity``).

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

Frozen, slotted dataclasses. None of them holds the access token itself.

Every cached identity keeps these, so what LWA repeats in every answer is held once: the
``aud``/``app_id``/``iss`` strings (:func:`shared_text`), the scope sets
(:func:`shared_scopes`), the profile's key names; an identity holds its user id once, and a
profile keeps of ``raw`` only what its typed fields do not already hold. The sharing tables
are bounded: a value past their bound is kept as it is, only not shared.

"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

#: ``profile`` (name, email) includes ``profile:user_id``.
SCOPE_PROFILE = "profile"
SCOPE_USER_ID = "profile:user_id"
SCOPE_POSTAL_CODE = "postal_code"

#: At most this many distinct strings are shared by :func:`shared_text`.
TEXT_TABLE_LIMIT = 256
#: At most this many distinct scope sets are shared by :func:`shared_scopes`.
SCOPE_TABLE_LIMIT = 64

_texts: dict[str, str] = {}
_scope_sets: dict[frozenset[str], frozenset[str]] = {}


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def share(table: dict[K, V], key: K, make: Callable[[K], V], limit: int) -> V:
    """The value ``table`` shares for ``key``, made by ``make(key)`` the first time; once
    ``limit`` keys are held, a new key gets a fresh value (correct, just not shared), so a
    sharing table stays bounded whatever answers come in."""
    value = table.get(key)
    if value is None:
        value = make(key)
        if len(table) < limit:
            value = table.setdefault(key, value)
    return value


def _same(value: V) -> V:
    return value


@overload
def shared_text(value: str) -> str: ...
@overload
def shared_text(value: None) -> None: ...
@overload
def shared_text(value: str | None) -> str | None: ...
def shared_text(value: str | None) -> str | None:
    """One shared copy of a string LWA repeats in every answer (``aud``, ``app_id``, ``iss``),
    for at most :data:`TEXT_TABLE_LIMIT` distinct values (:func:`share`)."""
    if type(value) is not str:
        return value
    return share(_texts, value, _same, TEXT_TABLE_LIMIT)


def shared_scopes(scopes: frozenset[str]) -> frozenset[str]:
    """One shared frozenset per distinct scope set, for at most :data:`SCOPE_TABLE_LIMIT`."""
    if type(scopes) is not frozenset:
        return scopes
    return share(_scope_sets, scopes, _same, SCOPE_TABLE_LIMIT)


#: Key names of the profile answers (both shapes), interned; other keys are kept as they come.
_FIELD_NAMES = {
    sys.intern(name): sys.intern(name)
    for name in (
        *("user_id", "name", "email", "postal_code"),
        *("Profile", "RequestId", "CustomerId", "Name", "PrimaryEmail", "PostalCode"),
    )
}

_USER_ID_SCOPES = shared_scopes(frozenset({SCOPE_USER_ID}))
_PROFILE_SCOPES = shared_scopes(frozenset({SCOPE_USER_ID, SCOPE_PROFILE}))
_POSTAL_SCOPES = shared_scopes(frozenset({SCOPE_USER_ID, SCOPE_POSTAL_CODE}))
_ALL_SCOPES = shared_scopes(frozenset({SCOPE_USER_ID, SCOPE_PROFILE, SCOPE_POSTAL_CODE}))


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
            aud=shared_text(str(data["aud"])),
            app_id=shared_text(data.get("app_id")),
            iss=shared_text(data.get("iss")),
            expires_at=float(data["expires_at"]),
            issued_at=data.get("issued_at"),
        )


#: The field names of LWA's profile answer, interned (every profile's ``raw`` shares them).
PROFILE_FIELDS: tuple[str, str, str, str] = (
    sys.intern("user_id"),
    sys.intern("name"),
    sys.intern("email"),
    sys.intern("postal_code"),
)
_FIELD_INDEX = {name: i for i, name in enumerate(PROFILE_FIELDS)}
#: Where a profile's typed fields stood in ``raw``: one shared tuple per order (at most 65).
_LAYOUTS: dict[tuple[int, ...], tuple[int, ...]] = {}


def _layout(order: list[int]) -> tuple[int, ...]:
    key = tuple(order)
    return _LAYOUTS.setdefault(key, key)


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Profile:
    """The customer profile; fields LWA did not return are ``None``, all fields stay in ``raw``.

    ``raw`` (the whole JSON object) is stored compactly: the entries its typed fields already
    hold are kept only as their order (a shared tuple), the other entries as a dict (``None``
    when there are none); ``raw`` rebuilds an equal dict, in the same order, on each read.
    """

    user_id: str
    name: str | None
    email: str | None
    postal_code: str | None
    _layout: tuple[int, ...] = field(init=False, compare=False)
    _extra: dict[str, Any] | None = field(init=False, compare=False)

    def __init__(
        self,
        user_id: str,
        name: str | None = None,
        email: str | None = None,
        postal_code: str | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "user_id", user_id)
        setattr_(self, "name", name)
        setattr_(self, "email", email)
        setattr_(self, "postal_code", postal_code)
        values = (user_id, name, email, postal_code)
        order: list[int] = []
        extra: dict[str, Any] | None = None
        for key, value in (raw or {}).items():
            if extra is None:
                index = _FIELD_INDEX.get(key)
                if index is not None and type(value) is str and value == values[index]:
                    order.append(index)  # the typed field holds it
                    continue
                extra = {}
            extra[_FIELD_NAMES.get(key, key)] = value
        setattr_(self, "_layout", _layout(order))
        setattr_(self, "_extra", extra)

    @property
    def raw(self) -> Mapping[str, Any]:
        """The whole JSON object LWA answered (a new dict on each read)."""
        values = (self.user_id, self.name, self.email, self.postal_code)
        data: dict[str, Any] = {PROFILE_FIELDS[i]: values[i] for i in self._layout}
        if self._extra is not None:
            data.update(self._extra)
        return data

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes these fields prove: user_id → profile:user_id, name/email → profile, ..."""
        if self.name is not None or self.email is not None:
            return _ALL_SCOPES if self.postal_code is not None else _PROFILE_SCOPES
        return _POSTAL_SCOPES if self.postal_code is not None else _USER_ID_SCOPES

    def __repr__(self) -> str:
        return (
            f"Profile(user_id={self.user_id!r}, name={self.name!r}, email={self.email!r}, "
            f"postal_code={self.postal_code!r}, raw={self.raw!r})"
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified LWA token: its token-info, its profile and the scopes the profile proves."""

    token_info: TokenInfo
    profile: Profile
    scopes: frozenset[str]
    #: What an integration derives from this identity, built once and kept with it (the
    #: Starlette integration's ``(user, credentials)`` pair); not part of the value.
    _derived: Any = field(default=None, init=False, repr=False, compare=False)
    #: ``True`` only for an identity answered stale while LWA fails (stale-if-error: a
    #: :class:`~lwa_middleware.core.stale.StaleIdentity`); not a field.
    stale: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", shared_scopes(self.scopes))

    def __getstate__(self) -> tuple[TokenInfo, Profile, frozenset[str]]:
        return (self.token_info, self.profile, self.scopes)  # copies derive their own

    def __setstate__(self, state: tuple[TokenInfo, Profile, frozenset[str]]) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "token_info", state[0])
        setattr_(self, "profile", state[1])
        setattr_(self, "scopes", state[2])
        setattr_(self, "_derived", None)

    @classmethod
    def build(cls, token_info: TokenInfo, profile: Profile) -> Identity:
        """An identity whose scopes come from the profile's fields.

        When both answers name the customer with equal strings, the profile is given the
        token-info's string (each cached identity holds its user id once)."""
        if profile.user_id is not token_info.user_id and profile.user_id == token_info.user_id:
            # Equal immutable strings: no reader can tell, and the duplicate is freed.
            object.__setattr__(profile, "user_id", token_info.user_id)
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
