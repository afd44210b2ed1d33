"""Cross-site request forgery protection for cookie sessions, without I/O.

A browser sends the session cookie with a request another site's page makes (a form
posted cross-site), but it cannot add an ``Authorization`` header cross-site without CORS.
So only a request whose token came from the **cookie** and whose method changes state
(anything but ``GET``, ``HEAD``, ``OPTIONS``, ``TRACE``) is checked: its ``Origin`` must be
the request's own origin or a trusted one; without ``Origin``, the origin of its
``Referer`` must be. No ``Origin`` and no ``Referer``, ``Origin: null``, an unreadable or
repeated header: refused with :class:`~lwa_middleware.errors.CrossSiteRequest` (403).

The request's own origin is its scheme and ``Host`` (ASGI: ``scope["scheme"]`` and the
``Host`` header, else ``scope["server"]``; WSGI: ``wsgi.url_scheme`` and ``HTTP_HOST``,
else ``SERVER_NAME`` and ``SERVER_PORT``), as :func:`request_origin` normalizes it:
lower-cased, default ports (80 for http, 443 for https) dropped. :class:`CSRFPolicy` holds
the rule for one settings object; the shells hand it a :class:`OriginHeaders`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from lwa_middleware.errors import ConfigurationError, CrossSiteRequest

__all__ = [
    "SAFE_METHODS",
    "WEBSOCKET",
    "CSRFPolicy",
    "OriginHeaders",
    "normalize_origin",
    "referer_origin",
    "request_origin",
]

#: Methods that never change state (RFC 9110 §9.2.1): never checked.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: The method the ASGI shell gives a WebSocket handshake: guarded like an unsafe method, since
#: a cookie-authenticated WebSocket opened by another site's page is cross-site WebSocket
#: hijacking (browsers always send ``Origin`` on a handshake).
WEBSOCKET = "WEBSOCKET"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(?::([0-9]{1,5}))?")
_ORIGIN = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://(.+)")


def _origin(scheme: str, host: str) -> str | None:
    """``scheme://host[:port]`` for a scheme and a ``host[:port]``, normalized; ``None`` when
    either is not one an origin can have."""
    scheme = _SCHEMES.get(scheme.lower(), "")
    match = _HOST.fullmatch(host)
    if not scheme or match is None:
        return None
    name, port = match.group(1).lower(), match.group(2)
    if port is None or int(port) == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{name}"
    if int(port) > 65535:
        return None
    return f"{scheme}://{name}:{int(port)}"


def normalize_origin(value: str) -> str | None:
    """An ``Origin`` header's value (or a trusted origin), normalized; ``None`` for ``null``
    or anything that is not ``http(s)://host[:port]``."""
    match = _ORIGIN.fullmatch(value.strip())
    if match is None or match.group(1).lower() not in ("http", "https"):
        return None
    return _origin(match.group(1), match.group(2))


def referer_origin(value: str) -> str | None:
    """The origin of a ``Referer`` URL, normalized; ``None`` when it has none."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or "@" in parts.netloc:
        return None
    return _origin(parts.scheme, parts.netloc)


def request_origin(
    scheme: str, hosts: Sequence[str], server: Sequence[object] | None = None
) -> str | None:
    """The request's own origin: its scheme and its one ``Host`` header, else the server's
    address (``(host, port)``, port ``None`` for a Unix socket); ``None`` when unreadable
    or when the request carries more than one ``Host``."""
    if hosts:
        return _origin(scheme, hosts[0].strip()) if len(hosts) == 1 else None
    if server is None or len(server) != 2 or not isinstance(server[0], str):
        return None
    name, port = server[0], server[1]
    if port is not None and not isinstance(port, int):
        return None
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"  # an IPv6 address
    return _origin(scheme, name if port is None else f"{name}:{port}")


@dataclass(frozen=True, slots=True)
class OriginHeaders:
    """What a shell read from a request for the check: its own origin (``None`` when
    unknown) and every ``Origin`` and ``Referer`` value (latin-1 text)."""

    target: str | None
    origin: Sequence[str] = ()
    referer: Sequence[str] = ()


class CSRFPolicy:
    """The forgery rule for one settings object (``csrf_protection``,
    ``csrf_trusted_origins``)."""

    __slots__ = ("enabled", "trusted")

    def __init__(self, enabled: bool, trusted_origins: Iterable[str] = ()) -> None:
        self.enabled = enabled
        trusted = set()
        for item in trusted_origins:
            origin = normalize_origin(item)
            if origin is None:
                raise ConfigurationError(
                    f"csrf_trusted_origins must hold origins like https://app.example.com, "
                    f"got {item!r}"
                )
            trusted.add(origin)
        self.trusted = frozenset(trusted)

    def guards(self, method: str | None) -> bool:
        """Whether a cookie-authenticated request with this method is checked (a WebSocket
        handshake is :data:`WEBSOCKET`, checked; ``None`` is not)."""
        return self.enabled and method is not None and method not in SAFE_METHODS

    def check(self, request: OriginHeaders) -> None:
        """Pass a same-origin (or trusted-origin) request; raise :class:`CrossSiteRequest`."""
        if len(request.origin) > 1 or (not request.origin and len(request.referer) > 1):
            raise CrossSiteRequest(
                "Cross-site request refused: the request carries more than one Origin or "
                "Referer header."
            )
        if request.origin:
            where, origin = "Origin", normalize_origin(request.origin[0])
        elif request.referer:
            where, origin = "Referer", referer_origin(request.referer[0])
        else:
            raise CrossSiteRequest(
                "Cross-site request refused: a request authenticated by the session cookie "
                "that can change state must carry an Origin or a Referer header."
            )
        if origin is not None and (origin == request.target or origin in self.trusted):
            return
        raise CrossSiteRequest(
            f"Cross-site request refused: the {where} is not this site's origin nor a trusted one."
        )
