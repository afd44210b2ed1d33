"""WSGI entry point: Django wrapped in ``LWAWSGIMiddleware``.

The middleware verifies the token before Django runs and sets ``environ["lwa"]``, which
``LWAUserMiddleware`` turns into ``request.user``.
Serve it with any WSGI server: ``gunicorn lwa_demo.wsgi`` or ``python manage.py runserver``.
"""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from lwa_middleware import LWAWSGIMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lwa_demo.settings")

application = LWAWSGIMiddleware(get_wsgi_application(), settings.LWA_SETTINGS)
