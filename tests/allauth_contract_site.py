"""The Django site ``tests/test_contract_clients.py`` runs in a process of its own (Django is
configured once per process, and other test files configure it otherwise): django-allauth
with its Amazon provider (PKCE on), its endpoint constants pointed at the LWA emulator
(``CONTRACT_EMULATOR_URL``; the token endpoint spelled ``/auth/O2/token``, as Amazon's SDKs
do), a SQLite file (``CONTRACT_DB``), the app's ``CONTRACT_CLIENT_ID`` and
``CONTRACT_CLIENT_SECRET``. Served by a threaded WSGI server on 127.0.0.1; prints
``READY <url>`` once it answers, and serves until its standard input closes.

Two small views let the test read what allauth did: ``GET /whoami`` (the signed-in user,
its Amazon account's uid and the last authentication error allauth reported: its code, the
exception's class and message) and ``POST /token`` (``token=…``: the provider's own
``complete_login`` for a token, as a client that received one would run it).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import django
from django.conf import settings

EMULATOR = os.environ["CONTRACT_EMULATOR_URL"]

settings.configure(
    DEBUG=False,
    SECRET_KEY="allauth-contract-tests-only",
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "allauth",
        "allauth.account",
        "allauth.socialaccount",
        "allauth.socialaccount.providers.amazon",
    ],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "allauth.account.middleware.AccountMiddleware",
    ],
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    DATABASES={
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["CONTRACT_DB"]}
    },
    AUTHENTICATION_BACKENDS=["allauth.account.auth_backends.AuthenticationBackend"],
    SOCIALACCOUNT_PROVIDERS={
        "amazon": {
            "APPS": [
                {
                    "client_id": os.environ["CONTRACT_CLIENT_ID"],
                    "secret": os.environ["CONTRACT_CLIENT_SECRET"],
                }
            ],
            "OAUTH_PKCE_ENABLED": True,
        }
    },
    SOCIALACCOUNT_ADAPTER=f"{__name__}.RecordingAdapter",
    SOCIALACCOUNT_LOGIN_ON_GET=True,
    SOCIALACCOUNT_STORE_TOKENS=True,
    ACCOUNT_EMAIL_VERIFICATION="none",
    LOGIN_REDIRECT_URL="/whoami",
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    LOGGING_CONFIG=None,
)
django.setup()

from allauth.socialaccount.adapter import DefaultSocialAccountAdapter, get_adapter  # noqa: E402
from allauth.socialaccount.models import SocialAccount, SocialToken  # noqa: E402
from allauth.socialaccount.providers.amazon.views import AmazonOAuth2Adapter  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

from lwa_middleware.emulator import serve_wsgi  # noqa: E402

# The provider's endpoint constants (Amazon's hosts), pointed at the emulator.
AmazonOAuth2Adapter.authorize_url = f"{EMULATOR}/ap/oa"
AmazonOAuth2Adapter.access_token_url = f"{EMULATOR}/auth/O2/token"
AmazonOAuth2Adapter.profile_url = f"{EMULATOR}/user/profile"

LAST_ERROR: dict[str, Any] = {}


class RecordingAdapter(DefaultSocialAccountAdapter):  # type: ignore[misc]
    """Keeps the last authentication error allauth reports, for ``/whoami``."""

    def on_authentication_error(
        self,
        request: HttpRequest,
        provider: Any,
        error: Any = None,
        exception: BaseException | None = None,
        extra_context: Any = None,
    ) -> None:
        LAST_ERROR.clear()
        LAST_ERROR.update(
            error=str(error),
            exception=None if exception is None else type(exception).__name__,
            message=None if exception is None else str(exception),
        )


def whoami(request: HttpRequest) -> HttpResponse:
    user = request.user
    account = (
        SocialAccount.objects.filter(user_id=user.pk).first() if user.is_authenticated else None
    )
    return JsonResponse(
        {
            "authenticated": user.is_authenticated,
            "email": getattr(user, "email", None),
            "uid": None if account is None else account.uid,
            "last_error": dict(LAST_ERROR),
        }
    )


@csrf_exempt  # type: ignore[untyped-decorator]
def token(request: HttpRequest) -> HttpResponse:
    adapter = AmazonOAuth2Adapter(request)
    app = get_adapter().get_provider(request, "amazon").app
    try:
        login = adapter.complete_login(request, app, SocialToken(token=request.POST["token"]))
    except Exception as exc:  # what the provider raises is what the test reads
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return JsonResponse({"exception": type(exc).__name__, "status": status})
    return JsonResponse({"uid": login.account.uid, "extra_data": login.account.extra_data})


urlpatterns = [
    path("accounts/", include("allauth.urls")),
    path("whoami", whoami),
    path("token", token),
]


def main() -> None:
    call_command("migrate", verbosity=0)
    with serve_wsgi(get_wsgi_application()) as server:
        print(f"READY {server.url}", flush=True)
        sys.stdin.read()  # until the test closes it


if __name__ == "__main__":
    main()
