"""Settings of the LWA demo project: the LWA customer is Django's ``request.user``.

Run it against the local LWA emulator, from ``examples/django_project/``::

    lwa-middleware emulator        # in another terminal; prints: export TOKEN='Atza|…'
    python manage.py migrate
    python manage.py runserver 8000                                # WSGI (lwa_demo/wsgi.py)
    uvicorn lwa_demo.asgi:application --port 8000 --lifespan off   # or ASGI (lwa_demo/asgi.py)

(``--lifespan off``: Django does not speak the ASGI lifespan protocol.)

    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/me
    curl http://127.0.0.1:8000/me        # 400 {"error": "invalid_request", ...}
    curl http://127.0.0.1:8000/health    # excluded: no token needed

``LWAWSGIMiddleware`` (``wsgi.py``) or ``LWAMiddleware`` (``asgi.py``) verifies the token
before Django runs; ``LWAUserMiddleware`` sets ``request.user`` for the request only, to
the ``User`` that ``LWABackend`` finds by the LWA user id (created on first sight, email
and name kept in step with the Amazon profile, refused when inactive). No session is
written: every request carries its token.

The LWA options come from ``LWA_*`` environment variables; without them the project trusts
the emulator at http://127.0.0.1:8765 and its default client ID.
"""

from __future__ import annotations

import os
import tempfile

from lwa_middleware import LWASettings
from lwa_middleware.emulator import local_settings

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "lwa-demo-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "lwa_middleware.integrations.django.LWAUserMiddleware",  # after AuthenticationMiddleware
]
AUTHENTICATION_BACKENDS = ["lwa_middleware.integrations.django.LWABackend"]
# LWAUserMiddleware writes no session: no session table is needed.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

ROOT_URLCONF = "lwa_demo.urls"
WSGI_APPLICATION = "lwa_demo.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("LWA_DEMO_DB", os.path.join(tempfile.gettempdir(), "lwa_demo.db")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True


def lwa_settings(environ: dict[str, str]) -> LWASettings:
    """``LWASettings.from_env()``, defaulting to the local emulator; ``/health`` is open."""
    return local_settings(environ, exclude=["/health"])


#: Read by ``wsgi.py`` and ``asgi.py``.
LWA_SETTINGS = lwa_settings(dict(os.environ))
