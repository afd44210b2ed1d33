"""The gateway: Login with Amazon in front of any app, behind nginx, Caddy, Traefik or Envoy.

* :class:`LWAGateway` (:mod:`.asgi`): the ASGI app a proxy asks about each request
  (``/auth``), with the website sign-in under ``/_lwa`` when configured.
* :func:`from_env`: one built from the ``LWA_*`` environment (what ``lwa-middleware
  gateway`` runs, and a factory for ``uvicorn --factory`` with several workers).
* :mod:`.core`: its own decisions without I/O (the original request, trusted peers, the
  identity headers, statuses, where a browser may be sent after signing in).

See ``docs/gateway.md``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.settings import LWASettings, split_items
from lwa_middleware.gateway.asgi import LWAGateway
from lwa_middleware.gateway.core import (
    DEFAULT_SIGN_IN_PREFIX,
    DEFAULT_TRUSTED_PROXIES,
    IDENTITY_HEADERS,
    PROXY_MODES,
    AllowedHosts,
    Original,
    ProxyMode,
    TrustedPeers,
    UntrustedRequest,
    check_mode,
    identity_headers,
    read_original,
)

__all__ = [
    "DEFAULT_SIGN_IN_PREFIX",
    "DEFAULT_TRUSTED_PROXIES",
    "ENV_VARIABLES",
    "IDENTITY_HEADERS",
    "PROXY_MODES",
    "AllowedHosts",
    "LWAGateway",
    "Original",
    "ProxyMode",
    "TrustedPeers",
    "UntrustedRequest",
    "from_env",
    "identity_headers",
    "read_original",
]

#: The gateway's own variables (beside the middleware's ``LWA_*`` options), each with the
#: ``from_env`` argument it sets.
ENV_VARIABLES = {
    "LWA_GATEWAY_PROXY": "proxy",
    "LWA_GATEWAY_TRUSTED_PROXIES": "trusted_proxies",
    "LWA_GATEWAY_ALLOWED_HOSTS": "allowed_hosts",
    "LWA_GATEWAY_SIGN_IN_PREFIX": "sign_in_prefix",
    "LWA_GATEWAY_COOKIE_DOMAIN": "cookie_domain",
    "LWA_GATEWAY_AUTHORIZE_URL": "authorize_url",
    "LWA_GATEWAY_SCOPES": "scopes",
    "LWA_REDIRECT_URI": "redirect_uri",
}
_LISTS = {"trusted_proxies", "allowed_hosts", "scopes"}


def from_env(
    environ: Mapping[str, str] | None = None,
    *,
    proxy: str | None = None,
    trusted_proxies: Iterable[str] | None = None,
    allowed_hosts: Iterable[str] | None = None,
    sign_in_prefix: str | None = None,
    redirect_uri: str | None = None,
    cookie_domain: str | None = None,
    authorize_url: str | None = None,
    scopes: Iterable[str] | None = None,
    **extra: Any,
) -> LWAGateway:
    """An :class:`LWAGateway` from the environment; arguments given win over variables.

    The middleware's options come from ``LWA_*`` (:meth:`LWASettings.from_env`:
    ``LWA_CLIENT_IDS``, ``LWA_EXCLUDE``, ``LWA_REDIS_URL``, ... and the policy's
    ``LWA_ALLOW``/``LWA_DENY``/``LWA_POLICY_FILE``); the gateway's from
    :data:`ENV_VARIABLES`. A redirect URI (``LWA_REDIRECT_URI``) turns the sign-in on: its
    client is the first of ``LWA_CLIENT_IDS``, its secret ``LWA_CLIENT_SECRET`` (if any),
    its cookies signed with ``LWA_SECRET_KEY`` (required then). ``extra`` goes to
    :class:`LWAGateway` (``clock``, ``transport``, ...)."""
    env = os.environ if environ is None else environ
    given: dict[str, Any] = {
        "proxy": proxy,
        "trusted_proxies": trusted_proxies,
        "allowed_hosts": allowed_hosts,
        "sign_in_prefix": sign_in_prefix,
        "redirect_uri": redirect_uri,
        "cookie_domain": cookie_domain,
        "authorize_url": authorize_url,
        "scopes": scopes,
    }
    for variable, name in ENV_VARIABLES.items():
        raw = (env.get(variable) or "").strip()
        if given[name] is None and raw:
            given[name] = split_items(variable, raw) if name in _LISTS else raw
    settings = LWASettings.from_env(environ)
    login = None
    if given["redirect_uri"]:
        login = _sign_in(settings, env, given)
    elif any(given[name] for name in ("cookie_domain", "authorize_url", "scopes")):
        raise ConfigurationError(
            "the sign-in options need LWA_REDIRECT_URI (--redirect-uri): the URL of "
            f"{given['sign_in_prefix'] or DEFAULT_SIGN_IN_PREFIX}/callback on your site"
        )
    return LWAGateway(
        settings,
        proxy=check_mode(given["proxy"] or "nginx"),
        trusted_proxies=given["trusted_proxies"] or DEFAULT_TRUSTED_PROXIES,
        allowed_hosts=given["allowed_hosts"] or (),
        sign_in_prefix=given["sign_in_prefix"] or DEFAULT_SIGN_IN_PREFIX,
        login=login,
        **extra,
    )


def _sign_in(settings: LWASettings, env: Mapping[str, str], given: Mapping[str, Any]) -> Any:
    from lwa_middleware.login import LWALogin

    if settings.secret_key is None:
        raise ConfigurationError(
            "the sign-in (LWA_REDIRECT_URI) needs LWA_SECRET_KEY: it signs the session cookie"
        )
    options: dict[str, Any] = {
        "redirect_uri": given["redirect_uri"],
        "secret_key": settings.secret_key,
        "api_base_url": settings.api_base_url,
        "cookie_name": settings.cookie_name,
        "cookie_domain": given["cookie_domain"] or None,
        "timeout": settings.timeout,
        "allow_insecure_http": settings.allow_insecure_http,
    }
    if given["authorize_url"]:
        options["authorize_url"] = given["authorize_url"]
    if given["scopes"]:
        options["scopes"] = tuple(given["scopes"])
    secret = (env.get("LWA_CLIENT_SECRET") or "").strip() or None
    return LWALogin(settings.client_ids[0], secret, **options)
