"""lwa-middleware: trust Login with Amazon access tokens in any ASGI or WSGI app.

``LWAMiddleware`` (ASGI) and ``LWAWSGIMiddleware`` (WSGI) pull the token from a request,
prove it was issued to this app (token-info's ``aud``), fetch the customer's profile,
cache both, attach an :class:`Identity` to the request and answer bad or missing tokens
with LWA's documented errors. ``LWALogin`` (ASGI) and ``LWAWSGILogin`` (WSGI) sign a
website's customers in and set the session cookie the middlewares read. ``LWAAuth`` (an
``httpx.Auth``) calls protected routes with the tokens of ``lwa-middleware login`` or a
service's refresh token; ``DeviceFlow`` signs a person in with a code pair.
"""

from lwa_middleware._version import __version__
from lwa_middleware.asgi import LWAMiddleware
from lwa_middleware.auth import LWAAuth
from lwa_middleware.breaker import CircuitBreaker, CircuitOpen
from lwa_middleware.cache import MemoryCache
from lwa_middleware.client import AsyncLWAClient, LWAClient
from lwa_middleware.device import CodePair
from lwa_middleware.device_flow import AsyncDeviceFlow, DeviceFlow
from lwa_middleware.errors import (
    AccessDenied,
    ConfigurationError,
    CrossSiteRequest,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAError,
    LWAUnavailable,
    MissingToken,
    ServerError,
)
from lwa_middleware.grants import (
    AuthorizationPending,
    GrantError,
    GrantUnavailable,
    InvalidClient,
    InvalidCodePair,
    InvalidGrant,
    InvalidGrantRequest,
    InvalidScope,
    SlowDown,
    TokenGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from lwa_middleware.integrations.starlette import LWAUser
from lwa_middleware.login import LoginConfig, LoginCore, LWALogin, LWAWSGILogin
from lwa_middleware.metrics import FanOut, NullRecorder, Recorder, Stats
from lwa_middleware.models import Identity, Profile, TokenInfo
from lwa_middleware.settings import LWAOptions, LWASettings
from lwa_middleware.stale import StaleIdentity
from lwa_middleware.token_client import AsyncTokenClient, TokenClient
from lwa_middleware.token_store import TokenStore
from lwa_middleware.verifier import AsyncVerifier, Verifier
from lwa_middleware.wsgi import LWAWSGIMiddleware

__all__ = [
    "AccessDenied",
    "AsyncDeviceFlow",
    "AsyncLWAClient",
    "AsyncTokenClient",
    "AsyncVerifier",
    "AuthorizationPending",
    "CircuitBreaker",
    "CircuitOpen",
    "CodePair",
    "ConfigurationError",
    "CrossSiteRequest",
    "DeviceFlow",
    "FanOut",
    "GrantError",
    "GrantUnavailable",
    "Identity",
    "InsufficientScope",
    "InvalidClient",
    "InvalidCodePair",
    "InvalidGrant",
    "InvalidGrantRequest",
    "InvalidRequest",
    "InvalidScope",
    "InvalidToken",
    "LWAAuth",
    "LWAClient",
    "LWAError",
    "LWALogin",
    "LWAMiddleware",
    "LWAOptions",
    "LWASettings",
    "LWAUnavailable",
    "LWAUser",
    "LWAWSGILogin",
    "LWAWSGIMiddleware",
    "LoginConfig",
    "LoginCore",
    "MemoryCache",
    "MissingToken",
    "NullRecorder",
    "Profile",
    "Recorder",
    "ServerError",
    "SlowDown",
    "StaleIdentity",
    "Stats",
    "TokenClient",
    "TokenGrant",
    "TokenInfo",
    "TokenStore",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "Verifier",
    "__version__",
]
