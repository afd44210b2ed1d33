"""WSGI entry point: Django wrapped in ``LWAWSGIMiddleware``.

The middleware verifies the token before Django runs and sets ``environ["REMOTE_USER"]``
to the LWA user id, which ``RemoteUserMiddleware`` turns into the signed-in ``User``.
Serve it with any WSGI server: ``gunicorn lwa_demo.wsgi`` or ``python manage.py runserver``.
"""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from lwa_middleware import LWAWSGIMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lwa_demo.settings")

application = LWAWSGIMiddleware(get_wsgi_application(), settings.LWA_SETTINGS)
