"""Starlette's authentication types for a verified LWA identity.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

The middlewares set ``scope["user"]`` to an :class:`LWAUser` and ``scope["auth"]`` to
``AuthCredentials(scopes)``, so ``request.user``, ``request.auth.scopes`` and
``@requires("profile")`` work as they do with Starlette's own ``AuthenticationMiddleware``.

"""

from __future__ import annotations

from typing import cast

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser

from lwa_middleware.core.models import Identity, Profile, share


class LWAUser(BaseUser):
    """An authenticated LWA customer: ``request.user``; ``.lwa`` is the full :class:`Identity`."""

    def __init__(self, identity: Identity) -> None:
        self.lwa = identity

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.lwa.display_name

    @property
    def identity(self) -> str:
        """Starlette's user identity: the LWA user id."""
        return self.lwa.user_id

    @property
    def user_id(self) -> str:
        """The LWA user id (``amzn1.account.…``)."""
        return self.lwa.user_id

    @property
    def profile(self) -> Profile:
        """The customer's :class:`~lwa_middleware.core.models.Profile`."""
        return self.lwa.profile

    def __repr__(self) -> str:
        return f"LWAUser({self.lwa.user_id!r})"


class LWACredentials(AuthCredentials):
    """``request.auth`` for an LWA identity; ``scopes`` is a sorted, read-only sequence, so
    one instance can safely serve every request of one token (and of every identity with
    the same scopes: :func:`credentials` shares one instance per scope set)."""

    def __init__(self, scopes: frozenset[str]) -> None:
        super().__init__()
        self.scopes = cast(list[str], tuple(sorted(scopes)))  # read-only: no .append


#: At most this many distinct scope sets get a shared :class:`LWACredentials`.
SHARED_CREDENTIALS_LIMIT = 64
_shared_credentials: dict[frozenset[str], LWACredentials] = {}


def _credentials_for(scopes: frozenset[str]) -> LWACredentials:
    """The shared read-only credentials of a scope set (a new one past the table's bound)."""
    return share(_shared_credentials, scopes, LWACredentials, SHARED_CREDENTIALS_LIMIT)


def credentials(identity: Identity | None) -> tuple[BaseUser, AuthCredentials]:
    """``(scope["user"], scope["auth"])`` for an identity, or the anonymous pair."""
    if identity is None:
        return UnauthenticatedUser(), AuthCredentials()
    return LWAUser(identity), _credentials_for(identity.scopes)


class CredentialsMemo:
    """:func:`credentials`, built once per :class:`Identity` and kept with it.

    The pair lives in the identity itself (``Identity._derived``), so it is freed with it:
    bounded by the identity cache, with no table of its own to look up, fill or clear.
    ``limit`` is accepted for compatibility and no longer used.
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit

    def __call__(self, identity: Identity | None) -> tuple[BaseUser, AuthCredentials]:
        if identity is None:
            return credentials(None)
        pair: tuple[BaseUser, AuthCredentials] | None = identity._derived
        if pair is None:
            pair = credentials(identity)
            object.__setattr__(identity, "_derived", pair)
        return pair
