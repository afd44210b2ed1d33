"""lwa-middleware: trust Login with Amazon access tokens in any ASGI or WSGI app.

``LWAMiddleware`` (ASGI) and ``LWAWSGIMiddleware`` (WSGI) pull the token from a request,
prove it was issued to this app (token-info's ``aud``), fetch the customer's profile,
cache both, attach an :class:`Identity` to the request and answer bad or missing tokens
with LWA's documented errors. ``LWALogin`` (ASGI) and ``LWAWSGILogin`` (WSGI) sign a
website's customers in and set the session cookie the middlewares read. ``LWAAuth`` (an
``httpx.Auth``) calls protected routes with the tokens of ``lwa-middleware login`` or a
service's refresh token; ``DeviceFlow`` signs a person in with a code pair. ``LWAGateway``
answers a proxy's forward-authentication checks (nginx, Caddy, Traefik, Envoy), so any
app in any language can sit behind it.

Importing the package loads none of it: each public name is imported from its module the
first time it is used (PEP 562 ``__getattr__``), so ``import lwa_middleware`` (and the
pytest plugin, :mod:`lwa_middleware.testing`) costs less than importing httpx, and aiohttp,
the emulator and the integrations are imported only by what uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwa_middleware._version import __version__

if TYPE_CHECKING:  # the names, for type checkers and editors; at run time see __getattr__
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
    from lwa_middleware.gateway import LWAGateway
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

#: Each public name and the module it comes from.
_EXPORTS: dict[str, str] = {
    "AccessDenied": "lwa_middleware.errors",
    "AsyncDeviceFlow": "lwa_middleware.device_flow",
    "AsyncLWAClient": "lwa_middleware.client",
    "AsyncTokenClient": "lwa_middleware.token_client",
    "AsyncVerifier": "lwa_middleware.verifier",
    "AuthorizationPending": "lwa_middleware.grants",
    "CircuitBreaker": "lwa_middleware.breaker",
    "CircuitOpen": "lwa_middleware.breaker",
    "CodePair": "lwa_middleware.device",
    "ConfigurationError": "lwa_middleware.errors",
    "CrossSiteRequest": "lwa_middleware.errors",
    "DeviceFlow": "lwa_middleware.device_flow",
    "FanOut": "lwa_middleware.metrics",
    "GrantError": "lwa_middleware.grants",
    "GrantUnavailable": "lwa_middleware.grants",
    "Identity": "lwa_middleware.models",
    "InsufficientScope": "lwa_middleware.errors",
    "InvalidClient": "lwa_middleware.grants",
    "InvalidCodePair": "lwa_middleware.grants",
    "InvalidGrant": "lwa_middleware.grants",
    "InvalidGrantRequest": "lwa_middleware.grants",
    "InvalidRequest": "lwa_middleware.errors",
    "InvalidScope": "lwa_middleware.grants",
    "InvalidToken": "lwa_middleware.errors",
    "LWAAuth": "lwa_middleware.auth",
    "LWAClient": "lwa_middleware.client",
    "LWAError": "lwa_middleware.errors",
    "LWAGateway": "lwa_middleware.gateway",
    "LWALogin": "lwa_middleware.login",
    "LWAMiddleware": "lwa_middleware.asgi",
    "LWAOptions": "lwa_middleware.settings",
    "LWASettings": "lwa_middleware.settings",
    "LWAUnavailable": "lwa_middleware.errors",
    "LWAUser": "lwa_middleware.integrations.starlette",
    "LWAWSGILogin": "lwa_middleware.login",
    "LWAWSGIMiddleware": "lwa_middleware.wsgi",
    "LoginConfig": "lwa_middleware.login",
    "LoginCore": "lwa_middleware.login",
    "MemoryCache": "lwa_middleware.cache",
    "MissingToken": "lwa_middleware.errors",
    "NullRecorder": "lwa_middleware.metrics",
    "Profile": "lwa_middleware.models",
    "Recorder": "lwa_middleware.metrics",
    "ServerError": "lwa_middleware.errors",
    "SlowDown": "lwa_middleware.grants",
    "StaleIdentity": "lwa_middleware.stale",
    "Stats": "lwa_middleware.metrics",
    "TokenClient": "lwa_middleware.token_client",
    "TokenGrant": "lwa_middleware.grants",
    "TokenInfo": "lwa_middleware.models",
    "TokenStore": "lwa_middleware.token_store",
    "UnauthorizedClient": "lwa_middleware.grants",
    "UnsupportedGrantType": "lwa_middleware.grants",
    "Verifier": "lwa_middleware.verifier",
}

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
    "LWAGateway",
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

if not TYPE_CHECKING:  # hidden from type checkers, which would take any name for a valid one

    def __getattr__(name: str) -> object:
        """A public name, imported from its module on first use (then a global here)."""
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
