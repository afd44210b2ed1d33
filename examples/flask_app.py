"""A Flask app whose routes need a Login with Amazon access token (``LWAWSGIMiddleware``).

Run it against the local LWA emulator, from the repository root, in two terminals::

    lwa-middleware emulator        # prints a test token: export TOKEN='Atza|…'
    flask --app examples/flask_app run --port 5000

    curl http://127.0.0.1:5000/health                                  # no token needed
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/me
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/zip
    curl http://127.0.0.1:5000/hello                                   # token optional
    curl http://127.0.0.1:5000/me        # 400 {"error": "invalid_request", ...}

``LWAWSGIMiddleware`` wraps ``app.wsgi_app``: it verifies the token before Flask runs and
puts the :class:`~lwa_middleware.Identity` in ``request.environ["lwa"]`` (and the user id
in ``REMOTE_USER``). Settings come from ``LWA_*`` environment variables
(``LWASettings.from_env()``); without them the app trusts the emulator at
http://127.0.0.1:8765 and its default client ID. For Amazon itself, set ``LWA_CLIENT_IDS``
to your security profile's client ID and ``LWA_REGION`` (``NA``, ``EU`` or ``FE``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask, request

from lwa_middleware import Identity, LWASettings, LWAWSGIMiddleware
from lwa_middleware.emulator import local_settings


def settings_from_env(environ: Mapping[str, str] = os.environ) -> LWASettings:
    """``LWASettings.from_env()``, defaulting to the local ``lwa-middleware emulator``."""
    return local_settings(environ)


def identity() -> Identity:
    """The verified identity of a protected route (the middleware answered otherwise)."""
    found = request.environ["lwa"]
    assert isinstance(found, Identity)
    return found


def create_app(settings: LWASettings | None = None) -> Flask:
    """The Flask app, wrapped in ``LWAWSGIMiddleware``."""
    app = Flask(__name__)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Excluded from the middleware: never verified, even with a token."""
        return {"status": "ok"}

    @app.get("/me")
    def me() -> dict[str, object]:
        """Any verified token: the customer's profile and the token's scopes."""
        verified = identity()
        return {
            "user_id": verified.user_id,
            "name": verified.profile.name,
            "email": verified.profile.email,
            "scopes": sorted(verified.scopes),
            "remote_user": request.environ["REMOTE_USER"],
        }

    @app.get("/zip")
    def zip_code() -> dict[str, str | None]:
        """Needs ``postal_code`` (``require_scopes``): 401 ``insufficient_scope`` otherwise."""
        return {"postal_code": identity().profile.postal_code}

    @app.get("/hello")
    def hello() -> dict[str, str]:
        """An optional route: ``environ["lwa"]`` is ``None`` without a token."""
        found: Identity | None = request.environ["lwa"]
        name = found.display_name if found is not None else "anonymous"
        return {"message": f"Hello, {name}!"}

    app.wsgi_app = LWAWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        settings or settings_from_env(),
        exclude=["/health"],
        optional=["/hello"],
        require_scopes={"/zip": "postal_code"},
    )
    return app


app = create_app()

if __name__ == "__main__":
    app.run(port=5000)
