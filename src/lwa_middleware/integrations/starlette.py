"""Starlette's authentication types for a verified LWA identity.

The middlewares set ``scope["user"]`` to an :class:`LWAUser` and ``scope["auth"]`` to
``AuthCredentials(scopes)``, so ``request.user``, ``request.auth.scopes`` and
``@requires("profile")`` work as they do with Starlette's own ``AuthenticationMiddleware``.
"""

from __future__ import annotations

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


def credentials(identity: Identity | None) -> tuple[BaseUser, AuthCredentials]:
    """``(scope["user"], scope["auth"])`` for an identity, or the anonymous pair."""
    if identity is None:
        return UnauthenticatedUser(), AuthCredentials()
    return LWAUser(identity), AuthCredentials(sorted(identity.scopes))
