"""The gateway's own decisions, without I/O: which request a proxy asks about, whether to
believe it, what to answer, and where a browser may be sent after signing in.

Everything the *middleware* decides (the token, the path rules, the scopes, the access
policy, the cross-site rule, the cache) is not here: :class:`~lwa_middleware.gateway.asgi.
LWAGateway` hands the request described by the proxy to ``LWAMiddleware`` itself. This
module only turns a proxy's question into that request, and the verdict into an answer a
proxy understands:

* :func:`read_original`: the original request from one family of headers (``nginx``:
  ``X-Original-URI``/``-Method``, and ``X-Original-URL`` when sent; ``forwarded``:
  ``X-Forwarded-Uri``/``-Method``/``-Host``/``-Proto``; ``envoy``: the path after
  ``/auth`` and the check's own method). Headers of another family are never read; a
  missing, repeated or malformed header of the family is :class:`UntrustedRequest`,
  never a default path. :class:`TrustedPeers` says whether the transport peer may ask.
* :func:`identity_headers`: the four ``X-Auth-Request-*`` headers, always all four (empty
  when there is nothing to say), UTF-8 percent-encoded, control characters removed.
* :func:`gateway_status`: 401 for token problems, 403 for scopes, the access policy and
  cross-site requests, 5xx only when LWA fails (``error_style`` shapes the body only).
* :class:`AllowedHosts`, :func:`redirect_param`, :func:`safe_target`: the ``rd`` a browser
  is sent back to after signing in: a local path, or a URL on an allow-listed host.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from lwa_middleware.core.csrf import WEBSOCKET
from lwa_middleware.core.errors import (
    AccessDenied,
    ConfigurationError,
    CrossSiteRequest,
    InsufficientScope,
    LWAError,
    ServerError,
)
from lwa_middleware.core.models import Identity
from lwa_middleware.login.redirects import safe_next

ProxyMode = Literal["nginx", "forwarded", "envoy"]
#: The header families, by ``--proxy``.
PROXY_MODES: tuple[ProxyMode, ...] = ("nginx", "forwarded", "envoy")
#: Where the proxy asks (``nginx``, ``forwarded``); ``envoy`` appends the original path.
CHECK_PATH = "/auth"
#: The peers trusted by default: this machine.
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")
#: Where the sign-in is served by default (``/_lwa/login``, ``/_lwa/callback``, ...).
DEFAULT_SIGN_IN_PREFIX = "/_lwa"
#: The identity headers of a 2xx answer: oauth2-proxy's names, so proxy configs carry over.
USER_HEADER = "x-auth-request-user"
EMAIL_HEADER = "x-auth-request-email"
NAME_HEADER = "x-auth-request-name"
SCOPES_HEADER = "x-auth-request-scopes"
IDENTITY_HEADERS = (USER_HEADER, EMAIL_HEADER, NAME_HEADER, SCOPES_HEADER)
#: The longest original request-target judged (longer ones are refused, never cut).
MAX_TARGET_CHARS = 8192
#: RFC 9110's ``token``: what a method may be made of.
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")
_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)", re.DOTALL)
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~]+)(?::[0-9]{1,5})?")
_LABEL = r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
#: Visible ASCII and space stay as they are in an identity header; anything else (and
#: ``%`` itself) is percent-encoded as UTF-8.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UntrustedRequest(LWAError):
    """The gateway cannot tell which request it is asked about, or may not believe who asks:
    a peer outside ``trusted_proxies``, or the configured headers missing, repeated or
    malformed. 403 in both styles, no challenge (the token is not the problem); never a
    guess at the path."""

    error = "invalid_request"
    lwa_status = 403
    rfc6750_status = 403
    challenge = False
    default_description = "The gateway cannot tell which request it is asked to judge."


@dataclass(frozen=True, slots=True)
class Original:
    """The request a proxy asks about, as the client sent it."""

    #: Its method (:data:`~lwa_middleware.core.csrf.WEBSOCKET` for a WebSocket handshake).
    method: str
    #: Its path, percent-encoding kept (``b"/app/%2e%2e/health"``).
    raw_path: bytes
    #: Its query string, without ``?``.
    query_string: bytes = b""
    #: ``http`` or ``https``, when the proxy says (``None``: unknown).
    scheme: str | None = None
    #: ``host[:port]`` the client asked for, when the proxy says (``None``: unknown).
    host: str | None = None

    @property
    def path(self) -> str:
        """The path decoded once, as an ASGI server hands it to an app."""
        return unquote(self.raw_path.decode("ascii"))


# Who may ask -------------------------------------------------------------------------------


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedPeers:
    """The proxies whose questions are answered: addresses or CIDR networks."""

    __slots__ = ("networks",)

    def __init__(self, networks: Iterable[str] = DEFAULT_TRUSTED_PROXIES) -> None:
        if isinstance(networks, str):
            networks = [networks]
        parsed: list[Network] = []
        for item in networks:
            try:
                parsed.append(ipaddress.ip_network(str(item).strip(), strict=False))
            except ValueError:
                raise ConfigurationError(
                    f"trusted_proxies must hold IP addresses or networks like 10.0.0.0/8, "
                    f"got {item!r}"
                ) from None
        if not parsed:
            raise ConfigurationError("trusted_proxies must name at least one proxy")
        self.networks = tuple(parsed)

    def trusts(self, client: Sequence[object] | None) -> bool:
        """Whether the transport peer (ASGI ``client``: ``(host, port)``) is trusted; an
        unknown peer (a Unix socket, no ``client``) is not."""
        if not client or not isinstance(client[0], str):
            return False
        try:
            address = ipaddress.ip_address(client[0].partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __repr__(self) -> str:
        return f"TrustedPeers({[str(n) for n in self.networks]!r})"


# Which request -----------------------------------------------------------------------------


def _one(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The one value of header ``name`` (latin-1), ``None`` when absent;
    :class:`UntrustedRequest` when repeated (a client's copy beside the proxy's)."""
    found: str | None = None
    for key, value in headers:
        if key == name:
            if found is not None:
                raise UntrustedRequest(f"The {name.decode()} header is repeated.")
            found = value.decode("latin-1").strip()
    return found


def parse_target(target: str, where: str) -> tuple[bytes, bytes]:
    """``(raw path, query)`` of a request-target: origin-form (``/p?q``) or absolute-form
    (``https://host/p?q``); anything else, a control character, a space, a non-ASCII
    character or a fragment is :class:`UntrustedRequest`."""
    if not target or len(target) > MAX_TARGET_CHARS:
        raise UntrustedRequest(f"The {where} is missing or too long.")
    if any(not "\x21" <= char <= "\x7e" for char in target) or "#" in target:
        raise UntrustedRequest(f"The {where} holds characters no request-target has.")
    if not target.startswith("/"):
        absolute = _ABSOLUTE.fullmatch(target)
        if absolute is None or absolute.group(1).lower() not in _DEFAULT_PORTS:
            raise UntrustedRequest(f"The {where} is not a request-target.")
        target = absolute.group(3) or "/"
        if not target.startswith("/"):
            target = "/" + target if target.startswith("?") else ""
        if not target:
            raise UntrustedRequest(f"The {where} is not a request-target.")
    path, _, query = target.partition("?")
    return path.encode("ascii"), query.encode("ascii")


def _origin_parts(scheme: str | None, host: str | None) -> tuple[str | None, str | None]:
    """``(scheme, host)`` when both are readable (``http``/``https`` and one host), else
    ``(None, None)``: the cross-site rule then knows no origin of the site and refuses
    every cookie-authenticated unsafe request (fail closed)."""
    if scheme is None or host is None:
        return None, None
    scheme = scheme.strip().lower()
    host = host.strip()
    if scheme not in _DEFAULT_PORTS or not _HOST.fullmatch(host):
        return None, None
    return scheme, host


def _websocket(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether the original request is a WebSocket handshake: ``Upgrade: websocket``, or a
    ``Sec-WebSocket-Key`` (end to end: proxies forward it where they drop ``Upgrade``)."""
    for key, value in headers:
        if key == b"sec-websocket-key" or (key == b"upgrade" and b"websocket" in value.lower()):
            return True
    return False


def _method(value: str | None, where: str) -> str:
    if value is None or not _METHOD.fullmatch(value):
        raise UntrustedRequest(f"The {where} header is missing or is not a method.")
    return value


def read_original(
    mode: ProxyMode,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    method: str,
    target: bytes,
) -> Original:
    """The original request of a check, from ``mode``'s headers only (names lower case,
    as in an ASGI scope); ``method`` and ``target`` (raw path and query) are the check's
    own (``envoy`` reads them: what follows :data:`CHECK_PATH`). Raises
    :class:`UntrustedRequest` when the family's headers cannot say."""
    if mode == "nginx":
        uri = _one(headers, b"x-original-uri")
        url = _one(headers, b"x-original-url")
        original_method = _method(_one(headers, b"x-original-method"), "X-Original-Method")
        scheme = host = None
        if url is not None:
            absolute = _ABSOLUTE.fullmatch(url)
            if absolute is None or not absolute.group(3).startswith("/"):
                raise UntrustedRequest("The X-Original-URL header is not an absolute URL.")
            scheme, host = absolute.group(1), absolute.group(2)
            from_url = absolute.group(3)
            if uri is not None and uri != from_url:
                # A client's own X-Original-URI beside the proxy's X-Original-URL (or the
                # other way round): which one the proxy set cannot be told.
                raise UntrustedRequest("X-Original-URI and X-Original-URL disagree.")
            uri = from_url
        if uri is None:
            raise UntrustedRequest("The X-Original-URI header is missing.")
        path, query = parse_target(uri, "X-Original-URI")
    elif mode == "forwarded":
        uri = _one(headers, b"x-forwarded-uri")
        original_method = _method(_one(headers, b"x-forwarded-method"), "X-Forwarded-Method")
        if uri is None:
            raise UntrustedRequest("The X-Forwarded-Uri header is missing.")
        path, query = parse_target(uri, "X-Forwarded-Uri")
        scheme = _one(headers, b"x-forwarded-proto")
        host = _one(headers, b"x-forwarded-host")
    elif mode == "envoy":
        prefix = CHECK_PATH.encode()
        if not target.startswith(prefix + b"/"):
            raise UntrustedRequest("The check's path does not start with /auth/.")
        original_method = _method(method, "check's method")
        path, query = parse_target(target[len(prefix) :].decode("latin-1"), "path after /auth")
        scheme = _one(headers, b"x-forwarded-proto")
        host = _one(headers, b"host")
    else:  # pragma: no cover - checked at construction
        raise ConfigurationError(f"unknown proxy mode {mode!r}")
    if original_method == "GET" and _websocket(headers):
        original_method = WEBSOCKET
    scheme, host = _origin_parts(scheme, host)
    return Original(original_method, path, query, scheme, host)


def check_mode(mode: object) -> ProxyMode:
    """``mode`` when it is one of :data:`PROXY_MODES`, else ``ConfigurationError``."""
    for known in PROXY_MODES:
        if mode == known:
            return known
    raise ConfigurationError(f"proxy must be one of {', '.join(PROXY_MODES)}, got {mode!r}")


# What to answer ----------------------------------------------------------------------------


def header_value(text: str | None) -> bytes:
    """An identity header's value: control characters removed, then UTF-8 percent-encoded
    except visible ASCII and space (``%`` itself is encoded), outer spaces dropped."""
    if not text:
        return b""
    kept = "".join(char for char in text if unicodedata.category(char) != "Cc")
    return quote(kept.strip(), safe=_HEADER_SAFE).encode("ascii")


def identity_headers(identity: Identity | None) -> list[tuple[bytes, bytes]]:
    """Every identity header, empty when there is nothing to say (anonymous, excluded, no
    email), so a client's own copy can never survive a proxy that copies them."""
    if identity is None:
        return [(name.encode(), b"") for name in IDENTITY_HEADERS]
    profile = identity.profile
    return [
        (USER_HEADER.encode(), header_value(identity.user_id)),
        (EMAIL_HEADER.encode(), header_value(profile.email)),
        (NAME_HEADER.encode(), header_value(profile.name)),
        (SCOPES_HEADER.encode(), header_value(" ".join(sorted(identity.scopes)))),
    ]


def gateway_status(error: LWAError, style: Literal["lwa", "rfc6750"]) -> int:
    """The status a proxy understands: 401 for a missing or refused token (nginx turns any
    status but 401 and 403 into a 500), 403 for a scope, the access policy, a cross-site
    request or an untrusted question, the error's own 5xx when LWA (or the gateway)
    fails."""
    if isinstance(error, ServerError):
        return error.status(style)
    if isinstance(error, (InsufficientScope, AccessDenied, CrossSiteRequest, UntrustedRequest)):
        return 403
    return 401


# Where a browser goes after signing in ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Allowed:
    host: str
    subdomains: bool  # ".example.com": the host and any subdomain of it
    apex: bool
    port: int | None  # None: the scheme's default port only
    any_port: bool


class AllowedHosts:
    """Hosts a browser may be sent back to after signing in (oauth2-proxy's
    ``--whitelist-domain``): ``app.example.com`` (that host, default port),
    ``app.example.com:8443``, ``app.example.com:*`` (any port), ``.example.com`` (the
    domain and every subdomain), ``*.example.com`` (subdomains only)."""

    __slots__ = ("entries",)

    def __init__(self, hosts: Iterable[str] = ()) -> None:
        if isinstance(hosts, str):
            hosts = [hosts]
        self.entries = tuple(self._parse(str(item)) for item in hosts)

    @staticmethod
    def _parse(item: str) -> _Allowed:
        text = item.strip().lower()
        host, sep, port_text = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        if not sep:
            host, port_text = text, ""
        subdomains = apex = False
        if host.startswith("*."):
            host, subdomains = host[2:], True
        elif host.startswith("."):
            host, subdomains, apex = host[1:], True, True
        else:
            apex = True
        port: int | None = None
        any_port = port_text == "*"
        if port_text and not any_port:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ConfigurationError(f"allowed_hosts: bad port in {item!r}")
            port = int(port_text)
        if not _HOST_NAME.fullmatch(host):
            raise ConfigurationError(
                f"allowed_hosts must hold host names like app.example.com, .example.com or "
                f"app.example.com:8443, got {item!r}"
            )
        return _Allowed(host, subdomains, apex, port, any_port)

    def allows(self, scheme: str, host: str, port: int | None) -> bool:
        """Whether ``scheme://host[:port]`` is on the list (``host`` lower case)."""
        effective = port if port is not None else _DEFAULT_PORTS[scheme]
        for entry in self.entries:
            if host == entry.host:
                matched = entry.apex
            else:
                matched = entry.subdomains and host.endswith("." + entry.host)
            if not matched:
                continue
            if entry.any_port:
                return True
            if entry.port is None and effective == _DEFAULT_PORTS[scheme]:
                return True
            if entry.port is not None and effective == entry.port:
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self.entries)


def redirect_param(query_string: str) -> str | None:
    """The ``rd`` of a sign-in link (``/_lwa/login?rd=...``), or ``None``.

    A proxy builds the link from a variable it cannot encode (nginx: ``rd=$request_uri``),
    so a value that starts as a URL or a path as written (``http://``, ``https://``, ``/``)
    is the rest of the query string, ``&`` and all; an encoded one (``rd=%2Fapp``) is read
    as one parameter and decoded once."""
    if query_string.startswith("rd="):
        start = 3
    else:
        at = query_string.find("&rd=")
        if at < 0:
            return None
        start = at + 4
    raw = query_string[start:]
    if raw.lower().startswith(("http://", "https://", "/")):
        return raw
    return unquote(raw.partition("&")[0])


def safe_target(value: str | None, allowed: AllowedHosts) -> str | None:
    """``value`` when a browser may be sent there: a local path (every decoded form local:
    :func:`~lwa_middleware.login.redirects.safe_next`), or an absolute ``http(s)`` URL
    whose host (and port) :class:`AllowedHosts` holds, without user info, backslashes,
    spaces or control characters; else ``None``."""
    if not value or len(value) > MAX_TARGET_CHARS:
        return None
    if value.startswith("/"):
        return value if safe_next(value) == value else None
    if any(not "\x21" <= char <= "\x7e" for char in value) or "\\" in value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or "@" in parts.netloc
        or not _HOST.fullmatch(parts.netloc)
    ):
        return None
    if not allowed.allows(parts.scheme, parts.hostname.lower(), port):
        return None
    return value


def encode_target(url: str) -> str:
    """A target as one path segment (URL-safe base64, no padding): no ``%`` for a later
    decoding to play with."""
    return base64.urlsafe_b64encode(url.encode("ascii")).rstrip(b"=").decode("ascii")


def decode_target(segment: str) -> str | None:
    """The target of :func:`encode_target`'s segment, ``None`` when it is not one."""
    if not segment or len(segment) > 2 * MAX_TARGET_CHARS or not segment.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        text = raw.decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not text.isprintable() or encode_target(text) != segment:
        return None
    return text
