"""Django: the verified LWA customer as Django's ``request.user``, for the request only.

The middleware in front of Django (``LWAWSGIMiddleware`` under WSGI, ``LWAMiddleware``
under ASGI) verifies the token and puts the :class:`~lwa_middleware.core.models.Identity` on
the request (``environ["lwa"]``, ``scope["lwa"]``). Two pieces turn it into a Django user:

* :class:`LWABackend`, an authentication backend (a ``RemoteUserBackend``) that finds the
  user by the LWA ``user_id`` (never by the email: an email can change hands), creates it
  on first sight unless ``create_unknown_user`` is ``False``, keeps its email and name in
  step with the Amazon profile (a clash with a unique email column is logged and skipped,
  never an error) and refuses an inactive user;
* :class:`LWAUserMiddleware`, placed after Django's ``AuthenticationMiddleware``: on every
  request with a verified identity it asks the backend again (so ``is_active`` is
  re-checked every time) and sets ``request.user`` for this request only. It never writes
  a Django session, so nothing outlives the LWA session; it never reads the
  ``Remote-User`` header (and removes it from ``request.META``: Django 5's
  ``RemoteUserMiddleware`` under ASGI would believe it). A verified customer without an
  active account gets 403 ``access_denied``, except on a view marked
  :func:`lwa_account_optional` (the page that links an existing account), where
  ``request.user`` stays what ``AuthenticationMiddleware`` made of the Django session.
  It runs under WSGI and ASGI, sync or async.

``login_required``, ``request.user`` and ``request.auser()`` then just work::

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "lwa_middleware.integrations.django.LWAUserMiddleware", ...]
    AUTHENTICATION_BACKENDS = ["lwa_middleware.integrations.django.LWABackend"]

This module imports Django; no other module of the package does.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import authenticate, get_backends, get_user_model
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.hashers import make_password
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, get_resolver

from lwa_middleware.core.errors import NoAccount, render_error
from lwa_middleware.core.gate import request_id
from lwa_middleware.core.models import Identity

__all__ = ["LWABackend", "LWAUserMiddleware", "lwa_account_optional"]

logger = logging.getLogger("lwa_middleware")

MIDDLEWARE_PATH = "lwa_middleware.integrations.django.LWAUserMiddleware"
AUTHENTICATION_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
#: Django's own remote-user middlewares: they trust ``REMOTE_USER`` (and, under ASGI, the
#: client's ``Remote-User`` header) and would log out the user set here.
REMOTE_USER_MIDDLEWARES = (
    "django.contrib.auth.middleware.RemoteUserMiddleware",
    "django.contrib.auth.middleware.PersistentRemoteUserMiddleware",
)


def _field(model: Any, name: str | None) -> Any:
    """The model's field called ``name``, or ``None``."""
    if not name:
        return None
    try:
        return model._meta.get_field(name)
    except FieldDoesNotExist:
        return None


class LWABackend(RemoteUserBackend):  # type: ignore[misc]
    """A ``RemoteUserBackend`` for verified LWA identities, keyed by the LWA ``user_id``.

    ``authenticate(request, lwa_identity=identity)`` returns the user whose
    ``user_id_field`` (by default the model's ``USERNAME_FIELD``) holds the identity's user
    id, created on first sight (``create_unknown_user``, with an unusable password and the
    profile's email and name), with email and name kept in step (:meth:`profile_fields`);
    ``None`` for an inactive user or, with ``create_unknown_user = False``, an unknown one.
    A bare ``remote_user`` (what Django's ``RemoteUserMiddleware`` passes) is never enough:
    only an ``Identity`` the LWA middleware verified is.

    Subclass to change it: ``create_unknown_user = False`` to admit only existing users,
    ``user_id_field = "amazon_user_id"`` for a model whose ``USERNAME_FIELD`` is the email,
    :meth:`profile_fields` for a model with other name fields.
    """

    create_unknown_user = True
    #: The field holding the LWA user id (``None``: the model's ``USERNAME_FIELD``).
    user_id_field: str | None = None

    def authenticate(
        self, request: HttpRequest | None, lwa_identity: Identity | None = None
    ) -> Any:
        """The active user of a verified ``lwa_identity``, else ``None``."""
        if not isinstance(lwa_identity, Identity):
            return None
        user = self.user_for(request, lwa_identity)
        if user is None or not self.user_can_authenticate(user):
            return None
        self.keep_in_step(user, lwa_identity)
        return user

    async def aauthenticate(
        self, request: HttpRequest | None, lwa_identity: Identity | None = None
    ) -> Any:
        """:meth:`authenticate`, from async code (Django's ORM runs in its sync thread)."""
        return await sync_to_async(self.authenticate)(request, lwa_identity=lwa_identity)

    def key_field(self, model: Any) -> str:
        """The name of the field that holds the LWA user id; never the email field."""
        name: str = self.user_id_field or model.USERNAME_FIELD
        email_field = (
            model.get_email_field_name() if hasattr(model, "get_email_field_name") else None
        )
        if name == email_field:
            raise ImproperlyConfigured(
                f"LWABackend keys users by their LWA user id, never by email, but "
                f"{model.__name__}.{name} is the email field: set user_id_field on a "
                "subclass of LWABackend to a field that holds the LWA user id"
            )
        return name

    def user_for(self, request: HttpRequest | None, identity: Identity) -> Any:
        """The user of ``identity.user_id`` (created when ``create_unknown_user``)."""
        model = get_user_model()
        key = {self.key_field(model): self.clean_username(identity.user_id)}
        manager = model._default_manager
        try:
            return manager.get(**key)
        except model.DoesNotExist:
            if not self.create_unknown_user:
                return None
        user, created = self._create(model, key, identity)
        if created:
            user = self.configure_user(request, user, created=True)
        return user

    def _create(self, model: Any, key: dict[str, str], identity: Identity) -> tuple[Any, bool]:
        """``get_or_create`` with the profile's fields, or (a unique constraint refusing
        one: an email another user has) without them, logged."""
        base = {"password": make_password(None)} if _field(model, "password") else {}
        fields = self.profile_fields(model(), identity)
        manager = model._default_manager
        try:
            with transaction.atomic(using=manager.db):
                created: tuple[Any, bool] = manager.get_or_create(
                    **key, defaults={**base, **fields}
                )
                return created
        except IntegrityError:
            if not fields:
                raise
        logger.warning(
            "LWABackend: a new user was created without the Amazon profile's %s: a unique "
            "constraint refused them (another user has one of those values)",
            ", ".join(sorted(fields)),
        )
        return manager.get_or_create(**key, defaults=base)  # type: ignore[no-any-return]

    def profile_fields(self, user: Any, identity: Identity) -> dict[str, str]:
        """The user's fields as the Amazon profile has them: the email (when the profile
        has one) and ``first_name``/``last_name`` (the name split at its last space), for
        the fields the model has. Only a field whose value differs is written."""
        model = type(user)
        profile = identity.profile
        fields: dict[str, str] = {}
        key = self.key_field(model)
        email_name = (
            model.get_email_field_name() if hasattr(model, "get_email_field_name") else None
        )
        email_field = _field(model, email_name)
        if profile.email and email_field is not None and email_name != key:
            email = (
                model._default_manager.normalize_email(profile.email)
                if hasattr(model._default_manager, "normalize_email")
                else profile.email
            )
            if len(email) <= (email_field.max_length or len(email)):
                fields[email_field.name] = email
        first, last = _field(model, "first_name"), _field(model, "last_name")
        if profile.name and first is not None and last is not None:
            full = " ".join(filter(None, (user.first_name, user.last_name)))
            if full != profile.name:
                head, _, tail = profile.name.rpartition(" ")
                given, family = (head, tail) if head else (tail, "")
                fields["first_name"] = given[: first.max_length or None]
                fields["last_name"] = family[: last.max_length or None]
        return fields

    def keep_in_step(self, user: Any, identity: Identity) -> None:
        """Write the profile's fields that changed, each in a savepoint of its own: one a
        unique constraint refuses (an email another user has) is logged and skipped."""
        changed = {
            name: value
            for name, value in self.profile_fields(user, identity).items()
            if getattr(user, name) != value
        }
        for name, value in changed.items():
            old = getattr(user, name)
            setattr(user, name, value)
            try:
                with transaction.atomic(using=user._state.db):
                    user.save(update_fields=[name])
            except IntegrityError:
                setattr(user, name, old)
                logger.warning(
                    "LWABackend: %s of user %s not updated from the Amazon profile: another "
                    "user has that value (a unique constraint refused it)",
                    name,
                    user.pk,
                )


#: The attribute :func:`lwa_account_optional` sets on a view.
ACCOUNT_OPTIONAL = "lwa_account_optional"

View = Callable[..., Any]


def lwa_account_optional(view: View) -> View:
    """Mark a view that a verified customer without an active account may reach (their
    ``request.user`` is then the Django session's, ``request.lwa`` their identity): the
    page where a signed-in local user links their Amazon account. The view is wrapped (as
    ``csrf_exempt`` does), so only this route is marked."""
    if iscoroutinefunction(view):

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await view(*args, **kwargs)

        wrapper: View = async_wrapper
    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

    setattr(wrapper, ACCOUNT_OPTIONAL, True)
    return functools.wraps(view)(wrapper)


def _account_optional(request: HttpRequest) -> bool:
    """Whether the view of ``request``'s path is marked :func:`lwa_account_optional`
    (asked only for a customer without an account; a path no view serves is not)."""
    try:
        match = get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info)
    except Resolver404:
        return False
    return bool(getattr(match.func, ACCOUNT_OPTIONAL, False))


def _refusal(request: HttpRequest) -> HttpResponse:
    """403 ``access_denied`` (no challenge): the customer has no active account here."""
    status, headers, body = render_error(
        NoAccount(), "lwa", "lwa", request_id(request.headers.get("x-request-id"))
    )
    kept = dict(headers)
    response = HttpResponse(body, status=status, content_type=kept.pop("content-type"))
    for name, value in kept.items():
        response[name] = value
    return response


class LWAUserMiddleware:
    """Django middleware: ``request.user`` is the verified LWA customer's account, for
    this request only (see the module's docstring). Put it after
    ``AuthenticationMiddleware``, with :class:`LWABackend` in ``AUTHENTICATION_BACKENDS``.

    ``request.lwa`` is the :class:`~lwa_middleware.core.models.Identity` (``None`` where the LWA
    middleware verified nothing: an excluded path, an optional one without a token). On
    such a request ``request.user`` is left as ``AuthenticationMiddleware`` set it.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        _check_configuration()

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        identity = _identity(request)
        if identity is not None:
            user = authenticate(request, lwa_identity=identity)
            if user is not None:
                _set_user(request, user)
            elif not _account_optional(request):
                return _refusal(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        identity = _identity(request)
        if identity is not None:
            user = await sync_to_async(authenticate)(request, lwa_identity=identity)
            if user is not None:
                _set_user(request, user)
            elif not _account_optional(request):
                return _refusal(request)
        response: Awaitable[Any] = self.get_response(request)
        return await response


def _identity(request: HttpRequest) -> Identity | None:
    """The identity the LWA middleware verified (``None``: none), as ``request.lwa``; the
    client's ``Remote-User`` header is removed from ``request.META``."""
    meta = request.META
    meta.pop("HTTP_REMOTE_USER", None)
    scope = getattr(request, "scope", None)  # ASGI requests only
    found = meta.get("lwa") if scope is None else scope.get("lwa")
    identity = found if isinstance(found, Identity) else None
    request.lwa = identity
    return identity


def _set_user(request: HttpRequest, user: Any) -> None:
    """``request.user`` (and ``request.auser()``) for this request; no session is written."""

    async def auser() -> Any:
        return user

    request.user = user
    request._cached_user = user
    request.auser = auser


def _check_configuration() -> None:
    """The settings :class:`LWAUserMiddleware` needs, checked when Django builds it."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    if (
        MIDDLEWARE_PATH in middleware
        and AUTHENTICATION_MIDDLEWARE in middleware
        and middleware.index(AUTHENTICATION_MIDDLEWARE) > middleware.index(MIDDLEWARE_PATH)
    ):
        raise ImproperlyConfigured(
            f"{MIDDLEWARE_PATH} must come after {AUTHENTICATION_MIDDLEWARE} in "
            "MIDDLEWARE (which would otherwise replace the user it sets)"
        )
    for remote in REMOTE_USER_MIDDLEWARES:
        if remote in middleware:
            raise ImproperlyConfigured(
                f"remove {remote} from MIDDLEWARE: {MIDDLEWARE_PATH} replaces it (it trusts "
                "the Remote-User header under ASGI, and would sign out the LWA user)"
            )
    if not any(isinstance(backend, LWABackend) for backend in get_backends()):
        raise ImproperlyConfigured(
            "add 'lwa_middleware.integrations.django.LWABackend' (or a subclass) to "
            f"AUTHENTICATION_BACKENDS: {MIDDLEWARE_PATH} signs customers in with it"
        )
