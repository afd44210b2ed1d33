"""``LWAGateway``: forward authentication for nginx, Caddy, Traefik, Envoy and ingress-nginx.

A proxy asks the gateway about each request (nginx ``auth_request``, Caddy
``forward_auth``, Traefik ``ForwardAuth``, Envoy ``ext_authz``, ingress-nginx
``auth-url``); the gateway answers 2xx with the customer's identity headers, or the
documented error. It decides nothing itself: the original request, read from the
configured family of headers (:func:`~lwa_middleware.gateway.core.read_original`) and only
when the transport peer is a trusted proxy, becomes an ASGI request that ``LWAMiddleware``
judges exactly as it judges its own (token finding, the warm path, path rules with the
strictest-of-raw-and-normal rule, scopes, the access policy, the cross-site rule,
WebSocket handshakes, sessions refreshed through ``login=``); the app under it is the
answer: 200 with every ``X-Auth-Request-*`` header.

With a sign-in (``login=``, an :class:`~lwa_middleware.login.LWALogin` whose
``redirect_uri`` is below ``sign_in_prefix``), the gateway also serves
``{prefix}/login?rd=``, ``{prefix}/callback`` and ``{prefix}/logout``, and
``{prefix}/return/...``, which sends the browser back to where it was going: a local
path, or a URL on an ``allowed_hosts`` host.

Run it without the ASGI server's proxy-header rewriting (``uvicorn --no-proxy-headers``):
the peer it trusts is the transport peer, ``scope["client"]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

import httpx
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lwa_middleware.asgi import LWAMiddleware, answer_lifespan
from lwa_middleware.core.errors import ConfigurationError, LWAError, render_error
from lwa_middleware.core.gate import request_id
from lwa_middleware.core.metrics import Recorder
from lwa_middleware.core.settings import LWAOptions, LWASettings
from lwa_middleware.core.verification import Throttle
from lwa_middleware.gateway.core import (
    CHECK_PATH,
    DEFAULT_SIGN_IN_PREFIX,
    DEFAULT_TRUSTED_PROXIES,
    AllowedHosts,
    Original,
    ProxyMode,
    TrustedPeers,
    UntrustedRequest,
    check_mode,
    decode_target,
    encode_target,
    gateway_status,
    identity_headers,
    read_original,
    redirect_param,
    safe_target,
)
from lwa_middleware.login.refresh import login_core
from lwa_middleware.upstream.verifier import Clock

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from lwa_middleware.login import LWALogin
    from lwa_middleware.upstream.tracing import Tracer

logger = logging.getLogger("lwa_middleware")

#: At most one WARNING about refused questions (untrusted peer, missing headers) per this
#: many seconds; the others are counted.
REFUSAL_LOG_INTERVAL = 60.0
_RETURN = "/return/"
_NO_STORE = (b"cache-control", b"no-store")


def _send_answer(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> ASGIApp:
    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return answer


def _cookie_name(set_cookie: bytes) -> bytes:
    return set_cookie.partition(b"=")[0].strip()


class LWAGateway:
    """Forward authentication with Login with Amazon, as an ASGI app.

    ``LWAGateway(proxy="nginx", client_ids=[...], ...)`` or ``LWAGateway(settings=...)``:
    the options are the middleware's (:class:`~lwa_middleware.core.settings.LWASettings`), plus
    ``proxy`` (``"nginx"``, ``"forwarded"`` or ``"envoy"``: the one family of headers the
    original request is read from), ``trusted_proxies`` (addresses or CIDR networks of the
    proxies allowed to ask; default loopback), ``login`` (an
    :class:`~lwa_middleware.login.LWALogin` to serve under ``sign_in_prefix``) and
    ``allowed_hosts`` (where a browser may be sent back to after signing in, beside local
    paths). ``clock``, ``transport``, ``redis``, ``recorder`` and ``tracer`` are
    ``LWAMiddleware``'s.
    """

    def __init__(
        self,
        settings: LWASettings | None = None,
        *,
        proxy: ProxyMode = "nginx",
        trusted_proxies: Iterable[str] = DEFAULT_TRUSTED_PROXIES,
        login: LWALogin | None = None,
        sign_in_prefix: str = DEFAULT_SIGN_IN_PREFIX,
        allowed_hosts: Iterable[str] = (),
        clock: Clock = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        redis: Any = None,
        recorder: Recorder | None = None,
        tracer: Tracer | None = None,
        **options: Unpack[LWAOptions],
    ) -> None:
        self.mode = check_mode(proxy)
        self.peers = TrustedPeers(trusted_proxies)
        self.allowed_hosts = AllowedHosts(allowed_hosts)
        if not sign_in_prefix.startswith("/") or sign_in_prefix.endswith("/"):
            raise ConfigurationError("sign_in_prefix must start with / and not end with one")
        if sign_in_prefix == CHECK_PATH or sign_in_prefix.startswith(CHECK_PATH + "/"):
            raise ConfigurationError(f"sign_in_prefix cannot be below {CHECK_PATH}")
        self.prefix = sign_in_prefix
        self.login = login
        if login is not None:
            callback = login_core(login).config.callback_path
            if not callback.startswith(sign_in_prefix + "/"):
                raise ConfigurationError(
                    f"the sign-in's redirect_uri must be below {sign_in_prefix}/ "
                    f"(e.g. https://app.example.com{sign_in_prefix}/callback), got {callback!r}"
                )
        #: The middleware that judges every original request (its app is the 2xx answer).
        self.middleware = LWAMiddleware(
            self._admitted,
            settings,
            on_error=self._refused,
            clock=clock,
            transport=transport,
            redis=redis,
            recorder=recorder,
            tracer=tracer,
            login=login,
            **options,
        )
        self.settings = self.middleware.settings
        self._session_cookie = self.settings.cookie_name.encode("latin-1")
        self._throttle = Throttle(REFUSAL_LOG_INTERVAL)
        self._clock = clock
        if login is not None:
            # The sign-in asks the middleware whether the customer may enter ``next``; a
            # ``{prefix}/return/...`` next is judged on the path it leads to.
            checks = login_core(login).access_checks
            for index, check in enumerate(checks):
                if check == self.middleware.sign_in_check:
                    checks[index] = self._sign_in_check

    def __repr__(self) -> str:
        return f"LWAGateway(proxy={self.mode!r}, trusted_proxies={self.peers!r})"

    def stats(self) -> dict[str, Any]:
        """The middleware's counts (:meth:`LWAMiddleware.stats`)."""
        return self.middleware.stats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.middleware(scope, receive, send)
            return
        if kind != "http":  # a WebSocket to the gateway itself: never accepted
            await send({"type": "websocket.close", "code": 1008})
            return
        path: str = scope["path"]
        if self.login is not None and (path == self.prefix or path.startswith(self.prefix + "/")):
            await self._sign_in(scope, receive, send, path[len(self.prefix) :])
            return
        if path == CHECK_PATH or (self.mode == "envoy" and path.startswith(CHECK_PATH + "/")):
            await self._check(scope, receive, send)
            return
        await _send_answer(404, [(b"content-type", b"text/plain"), _NO_STORE], b"Not Found\n")(
            scope, receive, send
        )

    # The check -----------------------------------------------------------------------------

    async def _check(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        try:
            if not self.peers.trusts(client):
                raise UntrustedRequest("The gateway answers only its trusted proxies.")
            target: bytes = scope.get("raw_path") or scope["path"].encode("latin-1")
            query: bytes = scope.get("query_string", b"")
            original = read_original(
                self.mode,
                scope["headers"],
                method=scope["method"],
                target=target + b"?" + query if query else target,
            )
        except UntrustedRequest as error:
            self._log_refusal(client, error)
            await self._refused(HTTPConnection(scope, receive), error)(scope, receive, send)
            return
        await self.middleware(self._original_scope(scope, original), receive, self._filter(send))

    def _original_scope(self, scope: Scope, original: Original) -> Scope:
        """The ASGI scope of the original request: its method, path and query, the check's
        headers (the client's, copied by the proxy) with the original ``Host``."""
        headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
        if original.host is not None:
            headers.append((b"host", original.host.encode("latin-1")))
        return {
            "type": "http",
            "asgi": scope.get("asgi", {"version": "3.0"}),
            "http_version": scope.get("http_version", "1.1"),
            "method": original.method,
            "scheme": original.scheme or "http",
            "path": original.path,
            "raw_path": original.raw_path,
            "query_string": original.query_string,
            "root_path": "",
            "headers": headers,
            "client": scope.get("client"),
            "server": None,  # the site's origin is the original Host's, or unknown
            "extensions": {},
        }

    def _filter(self, send: Send) -> Send:
        """A 2xx carries at most one ``Set-Cookie``: the session's (a refreshed access
        cookie). nginx reads one ``$upstream_http_set_cookie`` (the first before 1.23,
        all of them joined with commas after, which no browser splits)."""
        if self.login is None:
            return send
        session = self._session_cookie

        async def filtered(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 300:
                message = {
                    **message,
                    "headers": [
                        (k, v)
                        for k, v in message.get("headers", ())
                        if k.lower() != b"set-cookie" or _cookie_name(v) == session
                    ],
                }
            await send(message)

        return filtered

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app under the middleware: 200 with every identity header (empty when the
        request is anonymous or its path needs no token)."""
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        headers = identity_headers(scope.get("lwa"))
        headers += [(b"content-length", b"0"), _NO_STORE]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def _refused(self, conn: HTTPConnection, error: LWAError) -> ASGIApp:
        """The documented error with the status a proxy understands (``on_error``)."""
        settings = self.settings
        _, headers, body = render_error(
            error,
            settings.error_style,
            settings.realm,
            request_id(conn.headers.get("x-request-id")),
        )
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return _send_answer(gateway_status(error, settings.error_style), raw, body)

    def _log_refusal(self, client: object, error: LWAError) -> None:
        held = self._throttle.due(self._clock())
        if held is None:
            return
        peer = client[0] if isinstance(client, (tuple, list)) and client else "unknown"
        more = f" ({held} more since the last such line)" if held else ""
        logger.warning(
            "gateway: refused a check from %s: %s Is the proxy trusted (--trusted-proxy) "
            "and does it send the %s headers?%s",
            peer,
            error.description,
            self.mode,
            more,
        )

    # The sign-in ---------------------------------------------------------------------------

    async def _sign_in(self, scope: Scope, receive: Receive, send: Send, rest: str) -> None:
        assert self.login is not None
        if rest.startswith(_RETURN):
            await self._return(scope, receive, send, rest[len(_RETURN) :])
            return
        if rest in ("/login", "/logout"):
            query = scope.get("query_string", b"").decode("latin-1")
            rd = redirect_param(query)
            if rd is not None:
                scope = {**scope, "query_string": urlencode({"next": self._next(rd)}).encode()}
        await self.login({**scope, "root_path": self.prefix}, receive, send)

    def _next(self, rd: str) -> str:
        """The sign-in's ``next`` for an ``rd``: a local path as it is, an allowed URL
        through ``{prefix}/return/``, anything else home."""
        target = safe_target(rd, self.allowed_hosts)
        if target is None:
            return "/"
        if target.startswith("/"):
            return target
        return f"{self.prefix}{_RETURN}{encode_target(target)}"

    async def _return(self, scope: Scope, receive: Receive, send: Send, segment: str) -> None:
        """Send the browser on to an allowed URL (anyone can open this link: the target is
        checked again, never trusted because it was sealed in a sign-in)."""
        target = safe_target(decode_target(segment), self.allowed_hosts)
        if target is None or target.startswith("/"):
            await _send_answer(
                400,
                [(b"content-type", b"text/plain; charset=utf-8"), _NO_STORE],
                b"This link leads to a host this site does not send browsers to.\n",
            )(scope, receive, send)
            return
        headers = [(b"location", target.encode("ascii")), (b"content-length", b"0"), _NO_STORE]
        await _send_answer(302, headers, b"")(scope, receive, send)

    async def _sign_in_check(self, access_token: str, path: str) -> LWAError | None:
        """The middleware's sign-in check, on the path a ``{prefix}/return/`` next leads to."""
        start = self.prefix + _RETURN
        if path.startswith(start):
            target = decode_target(path[len(start) :])
            path = (unquote(urlsplit(target).path) or "/") if target else "/"
        return await self.middleware.sign_in_check(access_token, path)
