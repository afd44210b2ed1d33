"""ASGI entry point: Django wrapped in ``LWAMiddleware``.

The middleware verifies the token before Django runs and sets ``scope["lwa"]``, which
``LWAUserMiddleware`` turns into ``request.user`` (never trusting a ``Remote-User``
header). Django does not speak the lifespan protocol:
``uvicorn lwa_demo.asgi:application --lifespan off``.
"""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

from lwa_middleware import LWAMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lwa_demo.settings")

application = LWAMiddleware(get_asgi_application(), settings.LWA_SETTINGS)
