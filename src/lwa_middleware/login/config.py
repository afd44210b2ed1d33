"""``LoginConfig``: the options of the sign-in app, frozen and validated once (no I/O).

Layer: ``login`` (website sign-in; see ``ARCHITECTURE.md``).

Both shells (:class:`~lwa_middleware.login.asgi.LWALogin`,
:class:`~lwa_middleware.login.wsgi.LWAWSGILogin`) take the same keyword options and build
one of these; a bad option is a :class:`~lwa_middleware.core.errors.ConfigurationError` at
construction. Secrets (``client_secret``, ``secret_key``) never appear in a ``repr`` or
an error message.

"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.keys import SecretKey, secret_keys
from lwa_middleware.core.settings import is_insecure_http, resolve_api_base_url

#: Where Amazon asks the customer for consent (NA; EU and FE use the same host).
DEFAULT_AUTHORIZE_URL = "https://www.amazon.com/ap/oa"
#: How long a session lasts after sign-in, whatever the refreshes: 30 days (LWA's refresh
#: tokens live until revoked, so this is what ends a session nobody signs out of).
DEFAULT_SESSION_MAX_AGE = 30 * 24 * 3600
#: The longest ``session_max_age`` (browsers cap a cookie's ``Max-Age`` at 400 days).
MAX_SESSION_MAX_AGE = 400 * 24 * 3600
#: The sign-in's token calls in flight at once, and waiting (the middleware's defaults for
#: its own calls: ``max_concurrent_verifications``, ``max_queued_verifications``).
MAX_CONCURRENT_CALLS = 32
MAX_QUEUED_CALLS = 256
#: RFC 6265's cookie-name characters (an HTTP token).
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
_SCOPE = re.compile(r"[\x21-\x7e]{1,128}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


def _scopes(value: str | Iterable[str]) -> tuple[str, ...]:
    items = value.split() if isinstance(value, str) else list(value)
    if not items or not all(isinstance(item, str) and _SCOPE.fullmatch(item) for item in items):
        raise ConfigurationError(
            "scopes must be one or more LWA scopes such as 'profile' or 'postal_code'"
        )
    return tuple(dict.fromkeys(items))


def _cookie_domain(value: object, cookie_name: str) -> str:
    """A ``Domain`` for the session cookies: a host name (lower case, a leading dot dropped,
    as browsers drop it); refused for a ``__Host-`` cookie (which must have none)."""
    if not isinstance(value, str) or not _DOMAIN.fullmatch(value.strip().lstrip(".")):
        raise ConfigurationError("cookie_domain must be a host name such as example.com")
    if cookie_name.lower().startswith("__host-"):
        raise ConfigurationError("a __Host- cookie_name cannot have a cookie_domain")
    return value.strip().lstrip(".").lower()


def _url(name: str, value: object, *, allow_insecure_http: bool) -> str:
    """An absolute ``http(s)`` URL without a fragment; ``http`` only to loopback unless
    ``allow_insecure_http``."""
    if not isinstance(value, str) or not value or not value.isprintable() or " " in value:
        raise ConfigurationError(f"{name} must be an absolute https URL")
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigurationError(
            f"{name} must be an absolute https URL without a fragment or user info"
        )
    if is_insecure_http(value) and not allow_insecure_http:
        raise ConfigurationError(
            f"{name} is plain http to a host that is not loopback: codes and cookies would "
            "cross the network unencrypted; use https, or set allow_insecure_http=True"
        )
    return value


@dataclass(frozen=True)
class LoginConfig:
    """Every option of the sign-in app (see ``docs/login.md``)."""

    client_id: str
    redirect_uri: str
    secret_key: SecretKey = field(repr=False)
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ("profile",)
    authorize_url: str = DEFAULT_AUTHORIZE_URL
    api_base_url: str = ""
    region: str | None = None
    cookie_name: str = "lwa_token"
    #: The session cookies' ``Domain`` (``None``: host-only): set it to share the session
    #: with sibling hosts (``example.com`` for ``app.example.com`` and ``auth.example.com``).
    cookie_domain: str | None = None
    session_max_age: int = DEFAULT_SESSION_MAX_AGE
    timeout: float = 5.0
    allow_insecure_http: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.client_id, str) or not _SCOPE.fullmatch(self.client_id):
            raise ConfigurationError("client_id must be your LWA client ID")
        if self.client_secret is not None and (
            not isinstance(self.client_secret, str) or not self.client_secret.strip()
        ):
            raise ConfigurationError("client_secret must be a non-empty string (or None)")
        secret_keys(self.secret_key)  # one secret, or a list (newest first); refuses short
        if not isinstance(self.secret_key, (str, bytes)):
            set_(self, "secret_key", tuple(self.secret_key))
        if not isinstance(self.allow_insecure_http, bool):
            raise ConfigurationError("allow_insecure_http must be True or False")
        insecure = self.allow_insecure_http
        _url("redirect_uri", self.redirect_uri, allow_insecure_http=insecure)
        if urlsplit(self.redirect_uri).query:
            raise ConfigurationError("redirect_uri must not have a query string")
        _url("authorize_url", self.authorize_url, allow_insecure_http=insecure)
        set_(self, "scopes", _scopes(self.scopes))
        set_(self, "api_base_url", resolve_api_base_url(self.api_base_url or None, self.region))
        _url("api_base_url", self.api_base_url, allow_insecure_http=insecure)
        if not isinstance(self.cookie_name, str) or not _COOKIE_NAME.fullmatch(self.cookie_name):
            raise ConfigurationError("cookie_name must be 1-64 characters of an HTTP token")
        # Browsers match the prefixes in any case (RFC 6265bis): so do we.
        if self.cookie_name.lower().startswith(("__secure-", "__host-")) and not self.secure:
            raise ConfigurationError(
                "a __Secure- or __Host- cookie_name needs an https redirect_uri"
            )
        if self.cookie_domain is not None:
            set_(self, "cookie_domain", _cookie_domain(self.cookie_domain, self.cookie_name))
        if (
            isinstance(self.session_max_age, bool)
            or not isinstance(self.session_max_age, int)
            or not 60 <= self.session_max_age <= MAX_SESSION_MAX_AGE
        ):
            raise ConfigurationError(
                "session_max_age must be a whole number of seconds from 60 to "
                f"{MAX_SESSION_MAX_AGE} (400 days)"
            )
        if (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, (int, float))
            or not math.isfinite(self.timeout)
            or self.timeout <= 0
        ):
            raise ConfigurationError("timeout must be a positive number of seconds")

    @property
    def secure(self) -> bool:
        """Whether the cookies carry ``Secure`` (the site is served over https)."""
        return urlsplit(self.redirect_uri).scheme == "https"

    @property
    def host_prefixed(self) -> bool:
        """Whether ``cookie_name`` is a ``__Host-`` one (in any case, as browsers read it):
        every cookie of the sign-in is then ``Path=/`` (and ``Secure``, no ``Domain``)."""
        return self.cookie_name.lower().startswith("__host-")

    @property
    def callback_path(self) -> str:
        """The path the callback answers at: ``redirect_uri``'s, whatever the mount point."""
        return urlsplit(self.redirect_uri).path or "/"

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of ``redirect_uri``: the site's own origin."""
        parts = urlsplit(self.redirect_uri)
        return f"{parts.scheme}://{parts.netloc}".lower()

    def client_options(self) -> dict[str, Any]:
        """The options (beside ``api_base_url`` and a transport) of the token client a shell
        opens for this sign-in: one place for the sign-in apps and the refreshers. Its
        calls are bounded as the middleware bounds its own (anyone can start a sign-in and
        make ``/callback`` call LWA): :data:`MAX_CONCURRENT_CALLS` at once, at most
        :data:`MAX_QUEUED_CALLS` waiting."""
        return {
            "timeout": self.timeout,
            "allow_insecure_http": self.allow_insecure_http,
            "max_concurrent_calls": MAX_CONCURRENT_CALLS,
            "max_queued_calls": MAX_QUEUED_CALLS,
        }

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """``secret_key`` as bytes, newest first."""
        return secret_keys(self.secret_key)
