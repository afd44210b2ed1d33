"""Cross-site request forgery protection for cookie sessions, without I/O.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

A browser sends the session cookie with a request another site's page makes (a form
posted cross-site), but it cannot add an ``Authorization`` header cross-site without CORS.
So only a request whose token came from the **cookie** and whose method changes state
(anything but ``GET``, ``HEAD``, ``OPTIONS``, ``TRACE``) is checked: its ``Origin`` must be
the request's own origin or a trusted one; without ``Origin``, the origin of its
``Referer`` must be. No ``Origin`` and no ``Referer``, ``Origin: null``, an unreadable or
repeated header: refused with :class:`~lwa_middleware.core.errors.CrossSiteRequest` (403).

The request's own origin is its scheme and ``Host`` (ASGI: ``scope["scheme"]`` and the
``Host`` header, else ``scope["server"]``; WSGI: ``wsgi.url_scheme`` and ``HTTP_HOST``,
else ``SERVER_NAME`` and ``SERVER_PORT``), as :func:`request_origin` normalizes it:
lower-cased, default ports (80 for http, 443 for https) dropped. :class:`CSRFPolicy` holds
the rule for one settings object; the shells hand it a :class:`OriginHeaders`, read by
the one function :func:`origin_headers` (through :func:`asgi_origin_headers` or
:func:`wsgi_origin_headers`): every ``Host``, ``Origin`` and ``Referer`` value, never
only the first, for both middlewares and both sign-in apps alike.

"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lwa_middleware.core.errors import ConfigurationError, CrossSiteRequest

logger = logging.getLogger("lwa_middleware")

__all__ = [
    "SAFE_METHODS",
    "WEBSOCKET",
    "CSRFPolicy",
    "OriginHeaders",
    "asgi_origin_headers",
    "normalize_origin",
    "origin_headers",
    "referer_origin",
    "request_origin",
    "wsgi_origin_headers",
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


_JOINED_URL = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.\-]*://)")


def _values(value: bytes) -> list[str]:
    """The values of one ``Host`` or ``Origin`` header line: neither ever holds a comma, so
    a line a server (or a client) joined with commas is as many values."""
    return value.decode("latin-1").split(",")


def _referers(value: bytes) -> list[str]:
    """The values of one ``Referer`` line: a URL may hold commas, but one followed by
    ``scheme://`` starts another URL (WSGI servers join a repeated header with commas)."""
    return _JOINED_URL.split(value.decode("latin-1"))


def origin_headers(
    scheme: str,
    headers: Iterable[tuple[bytes, bytes]],
    server: Sequence[object] | None = None,
) -> OriginHeaders:
    """What the forgery check reads of a request: every ``Host``, ``Origin`` and
    ``Referer`` value among ``headers`` (``(name, value)`` pairs, names lower case, as in an
    ASGI scope), the request's own origin from ``scheme``, its ``Host`` and else ``server``
    (:func:`request_origin`). A repeated header, a ``Host``/``Origin`` line holding a
    comma, or a ``Referer`` line holding ``,scheme://``, gives several values, which the
    check refuses: never only the first one read.
    """
    hosts: list[str] = []
    origins: list[str] = []
    referers: list[str] = []
    for name, value in headers:
        if name == b"host":
            hosts += _values(value)
        elif name == b"origin":
            origins += _values(value)
        elif name == b"referer":
            referers += _referers(value)
    return OriginHeaders(request_origin(scheme, hosts, server), origins, referers)


def asgi_origin_headers(scope: Mapping[str, Any]) -> OriginHeaders:
    """:func:`origin_headers` of an ASGI scope (``scheme``, ``headers``, ``server``)."""
    return origin_headers(scope.get("scheme", "http"), scope["headers"], scope.get("server"))


_WSGI_HEADERS = (("HTTP_HOST", b"host"), ("HTTP_ORIGIN", b"origin"), ("HTTP_REFERER", b"referer"))


def wsgi_origin_headers(environ: Mapping[str, Any]) -> OriginHeaders:
    """:func:`origin_headers` of a WSGI environ: ``HTTP_HOST``, ``HTTP_ORIGIN`` and
    ``HTTP_REFERER`` (a WSGI server joins a repeated header's values with commas), the
    server from ``SERVER_NAME`` and ``SERVER_PORT`` when there is no ``Host``."""
    get = environ.get
    pairs = [
        (name, value.encode("latin-1"))
        for key, name in _WSGI_HEADERS
        if isinstance(value := get(key), str)
    ]
    server = None
    if get("HTTP_HOST") is None and get("SERVER_NAME"):
        port = str(get("SERVER_PORT") or "")
        server = (get("SERVER_NAME"), int(port) if port.isdigit() else None)
    return origin_headers(get("wsgi.url_scheme", "http"), pairs, server)


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
        # Why, for whoever debugs a refusal behind a proxy (an origin is no secret): the
        # origin the server computed (scheme and Host as the app server saw them) and the
        # one the browser sent.
        logger.debug(
            "cross-site request refused: this site's origin as the server sees it is %r, "
            "the request's %s is %r (behind a TLS-terminating proxy, let the server trust "
            "its forwarded headers, or set csrf_trusted_origins)",
            request.target,
            where,
            origin if origin is not None else "unreadable",
        )
        raise CrossSiteRequest(
            f"Cross-site request refused: the {where} is not this site's origin nor a trusted one."
        )
