"""In-process emulator of Amazon's Login with Amazon (LWA) API, for tests and demos.

``Emulator`` holds users, tokens and injected faults and exposes a Starlette
app answering ``/auth/o2/tokeninfo`` and ``/user/profile`` as Amazon documents.
``serve``/``serve_wsgi`` run any ASGI/WSGI app on a local port in a thread
(``serve`` needs uvicorn: ``pip install 'lwa-middleware[emulator]'``).
"""

from lwa_middleware.emulator.app import EmulatedConnectionReset, Emulator, build_app
from lwa_middleware.emulator.local import LOCAL_EMULATOR_URL, local_settings
from lwa_middleware.emulator.server import ServerHandle, ServerStartError, serve, serve_wsgi
from lwa_middleware.emulator.state import (
    EmulatorState,
    EmulatorUser,
    FaultKind,
    IssuedToken,
    ValidToken,
)

__all__ = [
    "LOCAL_EMULATOR_URL",
    "EmulatedConnectionReset",
    "Emulator",
    "EmulatorState",
    "EmulatorUser",
    "FaultKind",
    "IssuedToken",
    "ServerHandle",
    "ServerStartError",
    "ValidToken",
    "build_app",
    "local_settings",
    "serve",
    "serve_wsgi",
]
