"""In-process emulator of Amazon's Login with Amazon (LWA) API, for tests and demos.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

``Emulator`` holds users, tokens and injected faults and exposes a Starlette
app answering ``/auth/o2/tokeninfo`` and ``/user/profile`` as Amazon documents, and
the authorization-code grant of Login with Amazon for websites (``/ap/oa`` with its
consent page, ``/auth/o2/token``: see :mod:`.oauth` and :mod:`.oauth_state`), a
service's ``client_credentials`` grant (``Atc|`` tokens, no customer), and
code-based linking of Login with Amazon for TVs and other devices
(``/auth/o2/create/codepair``, the ``/activate`` page, the ``device_code`` grant: see
:mod:`.codepair` and :mod:`.codepair_state`). Paths under ``/auth/o2/`` match in any case,
as LWA serves them (``/auth/O2/token``). Its state (:mod:`.state`) is composed of parts
that never import it: :mod:`.accounts`, :mod:`.faults`, :mod:`.oauth_state`,
:mod:`.codepair_state`.
``serve``/``serve_wsgi`` run any ASGI/WSGI app on a local port in a thread
(``serve`` needs uvicorn: ``pip install 'lwa-middleware[emulator]'``).

"""

from lwa_middleware.emulator.accounts import EmulatorUser, IssuedToken, ServiceToken, ValidToken
from lwa_middleware.emulator.app import EmulatedConnectionReset, Emulator, build_app
from lwa_middleware.emulator.codepair import CodePairError, CodePairInfo, PairStatus
from lwa_middleware.emulator.faults import FaultKind
from lwa_middleware.emulator.local import LOCAL_EMULATOR_URL, local_settings
from lwa_middleware.emulator.oauth import (
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REDIRECT_URI,
    AuthorizationError,
    OAuthClient,
    TokenError,
)
from lwa_middleware.emulator.server import ServerHandle, ServerStartError, serve, serve_wsgi
from lwa_middleware.emulator.state import EmulatorState

__all__ = [
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_REDIRECT_URI",
    "LOCAL_EMULATOR_URL",
    "AuthorizationError",
    "CodePairError",
    "CodePairInfo",
    "EmulatedConnectionReset",
    "Emulator",
    "EmulatorState",
    "EmulatorUser",
    "FaultKind",
    "IssuedToken",
    "OAuthClient",
    "PairStatus",
    "ServerHandle",
    "ServerStartError",
    "ServiceToken",
    "TokenError",
    "ValidToken",
    "build_app",
    "local_settings",
    "serve",
    "serve_wsgi",
]
