"""``LWAMiddleware``: pure ASGI middleware (Starlette's own style, never ``BaseHTTPMiddleware``).

Layer: the root (what a user imports or runs; see ``ARCHITECTURE.md``).

It only adapts an ASGI scope to the core: the path below ``root_path`` to
:class:`~lwa_middleware.core.gate.Gate`, the headers to the token finder, the token to
:class:`~lwa_middleware.upstream.verifier.AsyncVerifier`, and an error back as an HTTP response, a
WebSocket denial response, or close code 1008. Lifespan passes through; the middleware
only listens to it to open its HTTP client at startup and close it (and the Redis client
it built, if any) at shutdown. CORS preflights pass through unverified unless
``verify_preflight`` is set; a connection of any other ASGI type on a path that needs
verification never reaches the app. The access policy (``allow``, ``deny``,
``policy_file``, the environment, ``authorize``: :mod:`lwa_middleware.core.policy`) is judged
on every request with an identity, the warm path included, and for a sign-in joined
through ``login=``. A ``user_loader`` (:mod:`lwa_middleware.core.users`) is asked for the
app's user of every customer the policy admits (cached by user id), the warm path included.

"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from hashlib import sha256
from typing import Any

import httpx
from starlette.authentication import BaseUser
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lwa_middleware._shell import Shell
from lwa_middleware.core.credentials import CredentialsMemo
from lwa_middleware.core.csrf import SAFE_METHODS, WEBSOCKET, asgi_origin_headers
from lwa_middleware.core.errors import LWAError
from lwa_middleware.core.gate import is_cors_preflight
from lwa_middleware.core.metrics import outcome_of
from lwa_middleware.core.models import Identity
from lwa_middleware.core.rules import Route
from lwa_middleware.core.users import Entry
from lwa_middleware.login.asgi import LWALogin
from lwa_middleware.login.refresh import AsyncRefresher, Carried, send_with_headers
from lwa_middleware.login.wsgi import LWAWSGILogin
from lwa_middleware.upstream.steps import arun
from lwa_middleware.upstream.verifier import AsyncVerifier

#: ``on_error(conn, error)`` returns an ASGI app (e.g. a Starlette ``Response``) to answer
#: with, or ``None`` for the documented JSON error; it may be async.
ErrorHandler = Callable[[HTTPConnection, LWAError], "ASGIApp | Awaitable[ASGIApp | None] | None"]

_DENIAL = "websocket.http.response"
_TOKEN_HEADERS = frozenset({b"authorization", b"cookie", b"x-amz-access-token"})
_ORIGIN = b"origin"
_REQUEST_METHOD = b"access-control-request-method"
_POLICY_VIOLATION = 1008


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """Answer an ASGI lifespan connection for an app that has nothing to start or stop:
    startup and shutdown complete, at once (the gateway's answering app, ``/metrics``)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _route_path(scope: Scope) -> str:
    """The path below the mount point (``root_path`` removed at a segment boundary only,
    as Starlette's router does: ``/api`` is not a prefix of ``/apiary``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        if len(path) == len(root):
            return "/"
        if path[len(root)] == "/":
            return path[len(root) :]
    return path


class LWAMiddleware(Shell[ASGIApp, ErrorHandler, httpx.AsyncBaseTransport, LWALogin]):
    """Verify LWA access tokens in front of any ASGI app.

    ``LWAMiddleware(app, client_ids=[...], ...)`` or ``LWAMiddleware(app, settings=...)``;
    ``Starlette.add_middleware(LWAMiddleware, client_ids=[...])`` works too. The options
    are those of :class:`~lwa_middleware.core.settings.LWASettings` (typed as
    :class:`~lwa_middleware.core.settings.LWAOptions`); given together with ``settings``, they
    override its values. A bad option raises
    :class:`~lwa_middleware.core.errors.ConfigurationError` here, never at a request.

    On a verified request the app gets ``scope["lwa"]`` (an
    :class:`~lwa_middleware.core.models.Identity`), ``scope["user"]`` (an
    :class:`~lwa_middleware.core.credentials.LWAUser`) and ``scope["auth"]``; with a
    ``user_loader``, ``scope["lwa.user"]`` is the app's user (and ``scope["user"]`` too when
    it is a Starlette ``BaseUser``); a refused one never reaches it (LWA's JSON error, or
    close code 1008 for a WebSocket).

    The other arguments: ``on_error(conn, error)`` returns an ASGI app to answer a refusal
    with, or ``None`` for the documented error (it may be async); ``clock`` returns epoch
    seconds (tests); ``transport`` is an ``httpx.AsyncBaseTransport`` for the LWA calls
    (tests: ``httpx.MockTransport``); ``redis`` a ``redis.asyncio`` client for the shared
    cache, instead of ``redis_url``; ``recorder`` a
    :class:`~lwa_middleware.core.metrics.Recorder` that gets every event besides the built-in
    counters; ``tracer`` an :class:`~lwa_middleware.upstream.tracing.Tracer`; ``login``
    the :class:`~lwa_middleware.login.LWALogin` whose session cookies are read and
    refreshed, and which refuses a sign-in the access policy would refuse.
    """

    _verifier_type = AsyncVerifier
    _refresher_type = AsyncRefresher
    _other_login = LWAWSGILogin
    _login_name = "LWALogin"
    verifier: AsyncVerifier
    _refresh: AsyncRefresher | None

    @staticmethod
    def _user_view(user: Any) -> BaseUser | None:
        """A loaded user is Starlette's ``scope["user"]`` when it is a ``BaseUser``."""
        return user if isinstance(user, BaseUser) else None

    def _bind(self) -> None:
        # Bound once: the warm path runs these on every request.
        self._resolve = self.gate.resolve
        self._cached_raw = self.verifier.cached_raw
        self._credentials = CredentialsMemo()
        self._warm = self.gate.finder.warm
        #: A lone session cookie is looked at first too (the warm path).
        self._plain_cookie = None if self._query else self.gate.finder.plain_cookie
        #: A cookie token on a method that can change state skips the warm path: the
        #: forgery check (Gate.resolve) runs first.
        self._csrf = self.gate.csrf.enabled
        self._guards = self.gate.csrf.guards

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self._other(scope, receive, send, kind)
            return
        path = _route_path(scope) if scope.get("root_path") else scope["path"]
        route = self._memo(path) or self._route(path)
        if not route.verifies or (
            kind == "http"
            and scope["method"] == "OPTIONS"
            and self._preflights
            and self._preflight(scope)
        ):
            await self.app(scope, receive, send)
            return
        # Lists made only for headers present (most requests carry one of the three).
        authorization: list[bytes] | None = None
        amz: list[bytes] | None = None
        cookies: list[bytes] | None = None
        for name, value in scope["headers"]:
            if name in _TOKEN_HEADERS:
                if name == b"authorization":
                    if authorization is None:
                        authorization = [value]
                    else:
                        authorization.append(value)
                elif name == b"cookie":
                    if cookies is None:
                        cookies = [value]
                    else:
                        cookies.append(value)
                elif amz is None:
                    amz = [value]
                else:
                    amz.append(value)
        query = scope.get("query_string", b"").decode("latin-1") if self._query else ""
        # The warm path, in this frame (each call saved is ~60 ns on every request): the
        # token's bytes as carried (TokenFinder.warm says why they need no checks), cached,
        # live and holding the route's scopes. The same key and the same checks as
        # Gate.resolve + Authority.lookup_raw + authorize; anything else (a miss, a
        # rejection, an expiry, a missing scope) takes the full path below.
        if (
            self._bearer_first
            and authorization is not None
            and len(authorization) == 1
            and amz is None
            and authorization[0][:7] == b"Bearer "
        ):  # TokenFinder.warm's first case, inline
            plain: bytes | None = authorization[0][7:]
        elif (
            cookies is not None
            and authorization is None
            and amz is None
            and self._plain_cookie is not None
            and len(cookies) == 1
            and (not self._csrf or (kind == "http" and scope["method"] in SAFE_METHODS))
        ):  # TokenFinder.warm's cookie case, inline (a safe method, or no forgery check)
            plain = self._plain_cookie(cookies[0])
        else:
            plain = self._warm(authorization or (), amz or (), cookies or (), query)
            if (
                plain is not None
                and authorization is None
                and amz is None
                and self._guards(scope.get("method", WEBSOCKET))
            ):  # the cookie's token, on a method the forgery check guards: the full path
                plain = None
        if plain is not None:
            now = self._clock()
            hit = self._fresh(sha256(self._key_prefix + plain).digest(), now)
            if hit is not None and (
                not (required := route.required_scopes) or required <= hit.scopes
            ):
                if route.access is not None or self._policed:  # the access policy
                    method = scope.get("method", WEBSOCKET)
                    refusal: LWAError | None = self._refusal(route, hit, now)
                    if refusal is None and self._judge is not None:
                        refusal = await arun(self._judged(hit, method, path))
                    if refusal is not None:
                        await self._deny(scope, receive, send, refusal)
                        return
                users = self.users
                if users is not None:  # the app's user: cached by user id, else loaded
                    entry = users.peek(hit.user_id)
                    if entry is None or now >= entry[0]:
                        try:
                            entry = await arun(self._user(hit, path, now))
                        except LWAError as error:
                            await self._deny(scope, receive, send, error)
                            return
                    pair = hit._derived or self._credentials(hit)
                    scope["lwa"], scope["lwa.user"] = hit, entry[1]
                    scope["user"], scope["auth"] = entry[2] or pair[0], pair[1]
                    self._l1_hit()
                    await self.app(scope, receive, send)
                    return
                scope["lwa"] = hit
                self._l1_hit()
                # The (user, auth) pair kept on the identity (CredentialsMemo's slot).
                scope["user"], scope["auth"] = hit._derived or self._credentials(hit)
                await self.app(scope, receive, send)
                return
        if self._tick is not None:
            self._tick(self._clock())
        try:
            found = self._resolve(
                route,
                authorization or (),
                amz or (),
                cookies or (),
                query,
                self._cached_raw,
                method=scope.get("method", WEBSOCKET),
                origins=partial(asgi_origin_headers, scope),
            )
            identity = await self.verifier.verify(found) if isinstance(found, str) else found
            entry = None
            if identity is not None:
                method = scope.get("method", WEBSOCKET)
                entry = await arun(self._admit(identity, route, method, path))
        except LWAError as error:
            if self._refresh is not None and cookies is not None and kind == "http":
                tokens = (authorization or (), amz or (), cookies, query)
                await self._refreshed(scope, receive, send, route, error, tokens)
                return
            await self._deny(scope, receive, send, error)
            return
        if (
            identity is None
            and self._refresh is not None
            and cookies is not None
            and kind == "http"
        ):
            tokens = (authorization or (), amz or (), cookies, query)
            # Anonymous on an optional route: a session to refresh?
            await self._refreshed(scope, receive, send, route, None, tokens)
            return
        await self._pass(scope, receive, send, identity, entry)

    async def sign_in_check(self, access_token: str, path: str) -> LWAError | None:
        """The sign-in's question (``login=``): may the customer of a new access token enter
        ``path`` with a ``GET``? ``None`` when yes (or when no policy is set), else the
        error: ``AccessDenied``, or the verification's own. The token is verified (and so
        cached) by this middleware's verifier."""
        return await arun(self._sign_in_check(access_token, path))

    async def _refreshed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        error: LWAError | None,
        tokens: Carried,
    ) -> None:
        """A cookie session that failed with ``error`` (``None``: none on an optional route),
        refreshed through ``login=`` (``Shell._recovered``), the cookies added to whatever
        is answered."""
        csrf = self.gate.csrf
        method = scope["method"]

        def guard() -> None:
            if csrf.guards(method):
                csrf.check(asgi_origin_headers(scope))

        path = _route_path(scope) if scope.get("root_path") else scope["path"]
        identity, error, headers, entry = await arun(
            self._recovered(route, error, tokens, method, path, guard)
        )
        if headers:
            send = send_with_headers(send, headers)
        if error is not None:
            await self._deny(scope, receive, send, error)
            return
        await self._pass(scope, receive, send, identity, entry)

    async def _pass(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        identity: Identity | None,
        entry: Entry | None = None,
    ) -> None:
        """Hand the request to the app with ``identity`` (``None``: anonymous) and, with a
        ``user_loader``, the app's user (``None`` for an anonymous request)."""
        if identity is not None:
            self.recorder.verification("stale" if identity.stale else "ok")
        scope["lwa"] = identity
        scope["user"], scope["auth"] = self._credentials(identity)
        if self.users is not None:
            scope["lwa.user"] = None if entry is None else entry[1]
            if entry is not None and entry[2] is not None:
                scope["user"] = entry[2]
        await self.app(scope, receive, send)

    async def _other(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        """Lifespan (listened to), or a type the middleware cannot verify: it reaches the
        app only on a path that needs no verification."""
        if kind == "lifespan":
            send = self._lifespan_send(send)
        elif self._route(_route_path(scope) if "path" in scope else "/").verifies:
            raise RuntimeError(
                f"LWAMiddleware cannot verify an ASGI {kind!r} connection; "
                "it does not reach the app on a path that needs verification"
            )
        await self.app(scope, receive, send)

    @staticmethod
    def _preflight(scope: Scope) -> bool:
        """Whether an ``OPTIONS`` request is a CORS preflight."""
        origin = method = None
        for name, value in scope["headers"]:
            if name == _ORIGIN:
                origin = value
            elif name == _REQUEST_METHOD:
                method = value
        return is_cors_preflight("OPTIONS", origin, method)

    async def _deny(self, scope: Scope, receive: Receive, send: Send, error: LWAError) -> None:
        """Answer ``error``: the app's ``on_error`` response, else the documented one."""
        recorder = self.recorder
        recorder.verification(outcome_of(error))
        recorder.error(error.error)
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
        status, headers, body = self.gate.deny(error, incoming)
        raw_headers = [(k.encode(), v.encode("latin-1")) for k, v in headers]
        if scope["type"] == "websocket":
            await self._deny_websocket(scope, receive, send, status, raw_headers, body, error)
            return
        if self.on_error is not None:
            custom = self.on_error(HTTPConnection(scope, receive), error)
            if inspect.isawaitable(custom):
                custom = await custom
            if custom is not None:
                await custom(scope, receive, send)
                return
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _deny_websocket(
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        error: LWAError,
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if _DENIAL in scope.get("extensions", {}):
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": body})
            return
        await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": error.error})

    def _lifespan_send(self, send: Send) -> Send:
        """``send`` that opens the client on startup and closes it on shutdown."""
        verifier = self.verifier
        refresh = self._refresh

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await verifier.start()
            elif message["type"] == "lifespan.shutdown.complete":
                await verifier.aclose()
                if refresh is not None:
                    await refresh.aclose()
            await send(message)

        return lifespan_send
