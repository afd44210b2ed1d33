"""lwa-middleware: trust Login with Amazon access tokens in any ASGI or WSGI app.

Layer: the root (what a user imports or runs; see ``ARCHITECTURE.md``).

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
    from lwa_middleware.callers.auth import LWAAuth
    from lwa_middleware.callers.device_flow import AsyncDeviceFlow, DeviceFlow
    from lwa_middleware.callers.token_store import TokenStore
    from lwa_middleware.core.breaker import CircuitBreaker, CircuitOpen
    from lwa_middleware.core.cache import MemoryCache
    from lwa_middleware.core.credentials import LWAUser
    from lwa_middleware.core.device import CodePair
    from lwa_middleware.core.errors import (
        AccessDenied,
        ConfigurationError,
        CrossSiteRequest,
        InsufficientScope,
        InvalidRequest,
        InvalidToken,
        LWAError,
        LWAUnavailable,
        MissingToken,
        NoAccount,
        ServerError,
    )
    from lwa_middleware.core.grants import (
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
    from lwa_middleware.core.metrics import FanOut, NullRecorder, Recorder, Stats
    from lwa_middleware.core.models import Identity, Profile, TokenInfo
    from lwa_middleware.core.settings import LWAOptions, LWASettings
    from lwa_middleware.core.stale import StaleIdentity
    from lwa_middleware.gateway import LWAGateway
    from lwa_middleware.login import LoginConfig, LoginCore, LWALogin, LWAWSGILogin
    from lwa_middleware.upstream.client import AsyncLWAClient, LWAClient
    from lwa_middleware.upstream.token_client import AsyncTokenClient, TokenClient
    from lwa_middleware.upstream.verifier import AsyncVerifier, Verifier
    from lwa_middleware.wsgi import LWAWSGIMiddleware

#: Each public name and the module it comes from.
_EXPORTS: dict[str, str] = {
    "AccessDenied": "lwa_middleware.core.errors",
    "AsyncDeviceFlow": "lwa_middleware.callers.device_flow",
    "AsyncLWAClient": "lwa_middleware.upstream.client",
    "AsyncTokenClient": "lwa_middleware.upstream.token_client",
    "AsyncVerifier": "lwa_middleware.upstream.verifier",
    "AuthorizationPending": "lwa_middleware.core.grants",
    "CircuitBreaker": "lwa_middleware.core.breaker",
    "CircuitOpen": "lwa_middleware.core.breaker",
    "CodePair": "lwa_middleware.core.device",
    "ConfigurationError": "lwa_middleware.core.errors",
    "CrossSiteRequest": "lwa_middleware.core.errors",
    "DeviceFlow": "lwa_middleware.callers.device_flow",
    "FanOut": "lwa_middleware.core.metrics",
    "GrantError": "lwa_middleware.core.grants",
    "GrantUnavailable": "lwa_middleware.core.grants",
    "Identity": "lwa_middleware.core.models",
    "InsufficientScope": "lwa_middleware.core.errors",
    "InvalidClient": "lwa_middleware.core.grants",
    "InvalidCodePair": "lwa_middleware.core.grants",
    "InvalidGrant": "lwa_middleware.core.grants",
    "InvalidGrantRequest": "lwa_middleware.core.grants",
    "InvalidRequest": "lwa_middleware.core.errors",
    "InvalidScope": "lwa_middleware.core.grants",
    "InvalidToken": "lwa_middleware.core.errors",
    "LWAAuth": "lwa_middleware.callers.auth",
    "LWAClient": "lwa_middleware.upstream.client",
    "LWAError": "lwa_middleware.core.errors",
    "LWAGateway": "lwa_middleware.gateway",
    "LWALogin": "lwa_middleware.login",
    "LWAMiddleware": "lwa_middleware.asgi",
    "LWAOptions": "lwa_middleware.core.settings",
    "LWASettings": "lwa_middleware.core.settings",
    "LWAUnavailable": "lwa_middleware.core.errors",
    "LWAUser": "lwa_middleware.core.credentials",
    "LWAWSGILogin": "lwa_middleware.login",
    "LWAWSGIMiddleware": "lwa_middleware.wsgi",
    "LoginConfig": "lwa_middleware.login",
    "LoginCore": "lwa_middleware.login",
    "MemoryCache": "lwa_middleware.core.cache",
    "MissingToken": "lwa_middleware.core.errors",
    "NoAccount": "lwa_middleware.core.errors",
    "NullRecorder": "lwa_middleware.core.metrics",
    "Profile": "lwa_middleware.core.models",
    "Recorder": "lwa_middleware.core.metrics",
    "ServerError": "lwa_middleware.core.errors",
    "SlowDown": "lwa_middleware.core.grants",
    "StaleIdentity": "lwa_middleware.core.stale",
    "Stats": "lwa_middleware.core.metrics",
    "TokenClient": "lwa_middleware.upstream.token_client",
    "TokenGrant": "lwa_middleware.core.grants",
    "TokenInfo": "lwa_middleware.core.models",
    "TokenStore": "lwa_middleware.callers.token_store",
    "UnauthorizedClient": "lwa_middleware.core.grants",
    "UnsupportedGrantType": "lwa_middleware.core.grants",
    "Verifier": "lwa_middleware.upstream.verifier",
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
    "NoAccount",
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
