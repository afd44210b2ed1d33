"""Starlette's authentication types for a verified LWA identity.

The middlewares set ``scope["user"]`` to an :class:`LWAUser` and ``scope["auth"]`` to
``AuthCredentials(scopes)``, so ``request.user``, ``request.auth.scopes`` and
``@requires("profile")`` work as they do with Starlette's own ``AuthenticationMiddleware``.
"""

from __future__ import annotations

from typing import cast

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser

from lwa_middleware.models import Identity, Profile


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
        """The customer's :class:`~lwa_middleware.models.Profile`."""
        return self.lwa.profile

    def __repr__(self) -> str:
        return f"LWAUser({self.lwa.user_id!r})"


class LWACredentials(AuthCredentials):
    """``request.auth`` for an LWA identity; ``scopes`` is a sorted, read-only sequence, so
    one instance can safely serve every request of one token."""

    def __init__(self, scopes: frozenset[str]) -> None:
        super().__init__()
        self.scopes = cast(list[str], tuple(sorted(scopes)))  # read-only: no .append


def credentials(identity: Identity | None) -> tuple[BaseUser, AuthCredentials]:
    """``(scope["user"], scope["auth"])`` for an identity, or the anonymous pair."""
    if identity is None:
        return UnauthenticatedUser(), AuthCredentials()
    return LWAUser(identity), LWACredentials(identity.scopes)


class CredentialsMemo:
    """:func:`credentials`, built once per cached :class:`Identity` (bounded).

    Keyed by ``id(identity)``; the identity itself is kept in the entry, so its id cannot be
    reused by another object while the entry lives, and the ``is`` check confirms the hit.
    """

    __slots__ = ("_pairs", "limit")

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._pairs: dict[int, tuple[Identity, BaseUser, AuthCredentials]] = {}

    def __call__(self, identity: Identity | None) -> tuple[BaseUser, AuthCredentials]:
        if identity is None:
            return credentials(None)
        entry = self._pairs.get(id(identity))
        if entry is None or entry[0] is not identity:
            if len(self._pairs) >= self.limit:
                self._pairs.clear()
            user, auth = credentials(identity)
            entry = self._pairs[id(identity)] = (identity, user, auth)
        return entry[1], entry[2]
