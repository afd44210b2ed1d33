"""lwa-middleware: trust Login with Amazon access tokens in any ASGI or WSGI app.

``LWAMiddleware`` (ASGI) and ``LWAWSGIMiddleware`` (WSGI) pull the token from a request,
prove it was issued to this app (token-info's ``aud``), fetch the customer's profile,
cache both, attach an :class:`Identity` to the request and answer bad or missing tokens
with LWA's documented errors.
"""

from lwa_middleware._version import __version__
from lwa_middleware.asgi import LWAMiddleware
from lwa_middleware.cache import MemoryCache
from lwa_middleware.client import AsyncLWAClient, LWAClient
from lwa_middleware.errors import (
    ConfigurationError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAError,
    LWAUnavailable,
    MissingToken,
    ServerError,
)
from lwa_middleware.integrations.starlette import LWAUser
from lwa_middleware.models import Identity, Profile, TokenInfo
from lwa_middleware.settings import LWAOptions, LWASettings
from lwa_middleware.verifier import AsyncVerifier, Verifier
from lwa_middleware.wsgi import LWAWSGIMiddleware

__all__ = [
    "AsyncLWAClient",
    "AsyncVerifier",
    "ConfigurationError",
    "Identity",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "LWAClient",
    "LWAError",
    "LWAMiddleware",
    "LWAOptions",
    "LWASettings",
    "LWAUnavailable",
    "LWAUser",
    "LWAWSGIMiddleware",
    "MemoryCache",
    "MissingToken",
    "Profile",
    "ServerError",
    "TokenInfo",
    "Verifier",
    "__version__",
]
