"""Hand the verified LWA customer to Django's ``RemoteUserMiddleware``, under WSGI and ASGI.

Under WSGI, ``LWAWSGIMiddleware`` sets ``environ["REMOTE_USER"]`` and ``environ["lwa"]``,
and ``request.META`` *is* that environ. Under ASGI, ``LWAMiddleware`` puts the identity in
``scope["lwa"]``, but Django builds ``request.META`` from the headers only, and its
``RemoteUserMiddleware`` reads ``META["HTTP_REMOTE_USER"]`` there (Django 5.x): the
``Remote-User`` *request header*, which any client can send. So, under ASGI, this
middleware removes that header and sets both keys from the verified identity; under both
it sets ``request.lwa``, the :class:`~lwa_middleware.Identity` (``None`` where the token
is optional or not verified). It must come before ``RemoteUserMiddleware``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from lwa_middleware import Identity

#: Where ``RemoteUserMiddleware`` looks: ``REMOTE_USER`` under WSGI, the ``Remote-User``
#: header (``HTTP_REMOTE_USER``) under ASGI in Django 5.x.
REMOTE_USER_KEYS = ("REMOTE_USER", "HTTP_REMOTE_USER")


def lwa_remote_user(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Django middleware: ``request.lwa``, and the remote user from the LWA identity only."""

    def middleware(request: HttpRequest) -> HttpResponse:
        meta = request.META
        meta.pop("HTTP_REMOTE_USER", None)  # a client's Remote-User header is never trusted
        scope = getattr(request, "scope", None)  # set on ASGI requests only
        if scope is None:
            identity: Identity | None = meta.get("lwa")
        else:
            identity = scope.get("lwa")
            meta.pop("REMOTE_USER", None)
            if identity is not None:
                for key in REMOTE_USER_KEYS:
                    meta[key] = identity.user_id
        request.lwa = identity
        return get_response(request)

    return middleware
