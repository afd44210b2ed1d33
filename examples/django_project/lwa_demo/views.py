"""The demo's views: ``/me`` needs a token, ``/health`` is excluded from the middleware."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


def me(request: HttpRequest) -> JsonResponse:
    """The signed-in Django user (``RemoteUserBackend``) and the LWA profile behind it."""
    identity = request.lwa  # set by lwa_demo.middleware.lwa_remote_user
    return JsonResponse(
        {
            "username": request.user.get_username(),
            "is_authenticated": request.user.is_authenticated,
            "user_id": identity.user_id,
            "name": identity.profile.name,
            "email": identity.profile.email,
            "scopes": sorted(identity.scopes),
        }
    )


def health(request: HttpRequest) -> JsonResponse:
    """Never verified: ``exclude=["/health"]``."""
    return JsonResponse({"status": "ok", "is_authenticated": request.user.is_authenticated})
