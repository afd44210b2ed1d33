"""``LWABackend`` and ``LWAUserMiddleware`` under Django's own test clients, in the project
``test_django.py`` builds from docs/django.md (run there, in a process of its own, with
``DJANGO_SETTINGS_MODULE=mysite.settings`` and the project as the working directory).

Django's test client skips the LWA middleware, so each request carries the identity it
would have set (``Client(lwa=...)``: ``environ["lwa"]``); Django's ASGI handler gets it at
``scope["lwa"]`` from a stand-in for ``LWAMiddleware``. Every check is an ``assert``; the
last line printed says all passed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.getcwd())

import django
from django.test.utils import setup_test_environment

django.setup()
setup_test_environment()  # the test client's host name is allowed

from django.contrib.auth import authenticate, get_user_model  # noqa: E402
from django.contrib.auth.decorators import login_required  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from lwa_middleware.core.models import Identity, Profile, TokenInfo  # noqa: E402
from lwa_middleware.integrations.django import (  # noqa: E402
    LWABackend,
    LWAUserMiddleware,
    lwa_account_optional,
)

User = get_user_model()
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
OURS = "lwa_middleware.integrations.django.LWAUserMiddleware"


def identity(user_id: str, name: str = "Check User", email: str | None = None) -> Identity:
    now = time.time()
    info = TokenInfo(
        user_id=user_id,
        aud="amzn1.application-oa2-client.checks",
        app_id=None,
        iss=None,
        expires_at=now + 3600,
        issued_at=now,
    )
    return Identity.build(info, Profile(user_id, name=name, email=email))


class ExistingOnly(LWABackend):
    create_unknown_user = False


class KeyedByEmail(LWABackend):
    user_id_field = "email"


def whoami(request: HttpRequest) -> JsonResponse:
    lwa = request.lwa
    return JsonResponse(
        {
            "user": request.user.get_username() or None,
            "authenticated": request.user.is_authenticated,
            "lwa": None if lwa is None else lwa.user_id,
            "remote_user_header": request.META.get("HTTP_REMOTE_USER"),
        }
    )


async def awhoami(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    return JsonResponse({"user": user.get_username() or None, "same": user is request.user})


@lwa_account_optional
@login_required  # type: ignore[untyped-decorator]
def link(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"link": request.lwa.user_id, "to": request.user.get_username()})


urlpatterns = [
    path("who", whoami),
    path("awho", awhoami),
    path("link", lwa_account_optional(whoami)),
    path("link-login", link),
]
ROUTES = {"ROOT_URLCONF": __name__}
EXISTING_ONLY = {"AUTHENTICATION_BACKENDS": [f"{__name__}.ExistingOnly"], **ROUTES}


def check_the_sync_client() -> None:
    client = Client()
    ada = identity("amzn1.account.CHECKADA", "Ada Lovelace", "ada@example.com")
    seen = client.get("/who", lwa=ada, HTTP_REMOTE_USER="admin").json()
    assert seen == {
        "user": "amzn1.account.CHECKADA",
        "authenticated": True,
        "lwa": "amzn1.account.CHECKADA",
        "remote_user_header": None,  # removed: never believed
    }, seen
    created = User.objects.get(username="amzn1.account.CHECKADA")
    assert (created.email, created.first_name, created.last_name) == (
        "ada@example.com",
        "Ada",
        "Lovelace",
    )
    assert not created.has_usable_password()
    # no identity (an excluded path): the session's user, here nobody; no Remote-User
    seen = client.get("/who", HTTP_REMOTE_USER="amzn1.account.CHECKADA").json()
    assert seen["authenticated"] is False and seen["lwa"] is None, seen
    # something that is not an Identity in environ["lwa"] is no identity
    assert client.get("/who", lwa="amzn1.account.CHECKADA").json()["authenticated"] is False
    # nothing is kept in a session
    assert "sessionid" not in client.cookies
    # a profile without an email (profile:user_id) leaves the email as it was
    bare = identity("amzn1.account.CHECKADA", "Ada Lovelace", None)
    assert client.get("/who", lwa=bare).status_code == 200
    assert User.objects.get(username="amzn1.account.CHECKADA").email == "ada@example.com"
    # inactive: refused, 403 access_denied
    User.objects.filter(pk=created.pk).update(is_active=False)
    refused = client.get("/who", lwa=ada)
    assert refused.status_code == 403 and refused.json()["error"] == "access_denied", (
        refused.status_code,
        refused.content,
    )
    User.objects.filter(pk=created.pk).update(is_active=True)


def check_remote_user_alone_signs_nobody_in() -> None:
    assert authenticate(None, remote_user="amzn1.account.CHECKADA") is None
    assert authenticate(None, lwa_identity="amzn1.account.CHECKADA") is None
    assert LWABackend().authenticate(None, lwa_identity=None) is None


def check_existing_users_only_and_the_linking_view() -> None:
    with override_settings(**EXISTING_ONLY):
        client = Client()
        stranger = identity("amzn1.account.CHECKSTRANGER", "Sam Stranger")
        for route in ("/who", "/nowhere"):
            refused = client.get(route, lwa=stranger)
            assert refused.status_code == 403, (route, refused.status_code)
            assert refused.json()["error"] == "access_denied"
        assert not User.objects.filter(username="amzn1.account.CHECKSTRANGER").exists()
        # a view marked lwa_account_optional takes them, as the session's user (nobody)
        seen = client.get("/link", lwa=stranger).json()
        assert seen["authenticated"] is False and seen["lwa"] == stranger.user_id, seen
        # ... and the local user signed in by the session is the account to link
        local = User.objects.create_user("local-alice", password="s3cret-enough-0123")
        client.force_login(local)
        seen = client.get("/link-login", lwa=stranger).json()
        assert seen == {"link": stranger.user_id, "to": "local-alice"}, seen
        assert client.get("/who", lwa=stranger).status_code == 403  # elsewhere: refused
        # an existing user is found
        seen = client.get("/who", lwa=identity("amzn1.account.CHECKADA")).json()
        assert seen["user"] == "amzn1.account.CHECKADA", seen


def check_the_asgi_handler() -> None:
    """Django's own ASGI handler (middleware chain async), behind a stand-in for
    ``LWAMiddleware`` that puts the identity named by a test header at ``scope["lwa"]``."""
    import httpx
    from django.core.asgi import get_asgi_application

    django_app = get_asgi_application()
    grace = identity("amzn1.account.CHECKGRACE", "Grace Hopper", "grace@example.com")
    nobody = identity("amzn1.account.CHECKNOBODY")
    known = {b"grace": grace, b"nobody": nobody}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        name = dict(scope.get("headers", [])).get(b"x-test-identity")
        if name is not None:
            scope["lwa"] = known[name]
        await django_app(scope, receive, send)

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            as_grace = {"x-test-identity": "grace", "remote-user": "admin"}
            response = await client.get("/awho", headers=as_grace)
            assert response.json() == {"user": "amzn1.account.CHECKGRACE", "same": True}
            seen = (await client.get("/who", headers=as_grace)).json()
            assert seen["user"] == "amzn1.account.CHECKGRACE", seen
            assert seen["remote_user_header"] is None, seen
            spoof = (await client.get("/who", headers={"remote-user": "admin"})).json()
            assert spoof["authenticated"] is False and spoof["remote_user_header"] is None
            with override_settings(**EXISTING_ONLY):
                as_nobody = {"x-test-identity": "nobody"}
                refused = await client.get("/who", headers=as_nobody)
                assert refused.status_code == 403, refused.status_code
                assert refused.json()["error"] == "access_denied"
                optional = await client.get("/link", headers=as_nobody)
                assert optional.json()["authenticated"] is False

    asyncio.run(run())
    assert User.objects.filter(username="amzn1.account.CHECKGRACE").count() == 1


def check_configuration_errors() -> None:
    def build(**settings: Any) -> str:
        with override_settings(**settings):
            try:
                LWAUserMiddleware(lambda request: None)
            except ImproperlyConfigured as error:
                return str(error)
        return "built"

    from django.conf import settings

    middleware = list(settings.MIDDLEWARE)
    assert build() == "built"
    swapped = [m for m in middleware if m != OURS]
    swapped.insert(swapped.index(AUTH), OURS)
    assert "must come after" in build(MIDDLEWARE=swapped)
    remote = [*middleware, "django.contrib.auth.middleware.RemoteUserMiddleware"]
    assert "remove django.contrib.auth.middleware.RemoteUserMiddleware" in build(MIDDLEWARE=remote)
    model_only = ["django.contrib.auth.backends.ModelBackend"]
    assert "AUTHENTICATION_BACKENDS" in build(AUTHENTICATION_BACKENDS=model_only)
    message = ""
    try:
        KeyedByEmail().authenticate(None, lwa_identity=identity("amzn1.account.CHECKMAIL"))
    except ImproperlyConfigured as error:
        message = str(error)
    assert "never by email" in message, "a backend keyed by the email field was accepted"


def main() -> None:
    User.objects.filter(username__startswith="amzn1.account.CHECK").delete()  # a rerun
    User.objects.filter(username="local-alice").delete()
    for check in (
        check_the_sync_client,
        check_remote_user_alone_signs_nobody_in,
        check_existing_users_only_and_the_linking_view,
        check_the_asgi_handler,
        check_configuration_errors,
    ):
        with override_settings(**ROUTES):
            check()
        print(f"ok {check.__name__}")
    print("all django checks passed")


if __name__ == "__main__":
    main()
