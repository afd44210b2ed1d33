"""The demo's views: ``/me`` needs a token, ``/health`` is excluded from the middleware."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse


@login_required
def me(request: HttpRequest) -> JsonResponse:
    """The Django user of the verified customer (``LWABackend``) and the LWA profile."""
    identity = request.lwa  # set by LWAUserMiddleware: the Identity
    return JsonResponse(
        {
            "username": request.user.get_username(),
            "is_authenticated": request.user.is_authenticated,
            "full_name": request.user.get_full_name(),  # kept in step with the profile
            "user_id": identity.user_id,
            "name": identity.profile.name,
            "email": identity.profile.email,
            "scopes": sorted(identity.scopes),
        }
    )


def health(request: HttpRequest) -> JsonResponse:
    """Never verified: ``exclude=["/health"]``."""
    return JsonResponse({"status": "ok", "is_authenticated": request.user.is_authenticated})
