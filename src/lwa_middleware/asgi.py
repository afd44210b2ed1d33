"""``LWAMiddleware``: pure ASGI middleware (Starlette's own style, never ``BaseHTTPMiddleware``).

It only adapts an ASGI scope to the core: the path below ``root_path`` to
:class:`~lwa_middleware.gate.Gate`, the headers to the token finder, the token to
:class:`~lwa_middleware.verifier.AsyncVerifier`, and an error back as an HTTP response, a
WebSocket denial response, or close code 1008. Lifespan passes through; the middleware
only listens to it to open its HTTP client at startup and close it (and the Redis client
it built, if any) at shutdown. CORS preflights pass through unverified unless
``verify_preflight`` is set; a connection of any other ASGI type on a path that needs
verification never reaches the app. The access policy (``allow``, ``deny``,
``policy_file``, the environment, ``authorize``: :mod:`lwa_middleware.policy`) is judged
on every request with an identity, the warm path included, and for a sign-in joined
through ``login=``. A ``user_loader`` (:mod:`lwa_middleware.users`) is asked for the app's
user of every customer the policy admits (cached by user id), the warm path included.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from hashlib import sha256
from typing import TYPE_CHECKING, Any

import httpx
from starlette.authentication import BaseUser
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lwa_middleware.csrf import (
    SAFE_METHODS,
    WEBSOCKET,
    asgi_origin_headers,
)
from lwa_middleware.errors import AccessDenied, ConfigurationError, LWAError
from lwa_middleware.gate import Gate, check_on_error, is_cors_preflight
from lwa_middleware.integrations.otel import Tracer
from lwa_middleware.integrations.starlette import CredentialsMemo
from lwa_middleware.login.refresh import AsyncRefresher, login_core, send_with_headers
from lwa_middleware.login.wsgi import LWAWSGILogin
from lwa_middleware.metrics import Recorder, outcome_of
from lwa_middleware.models import Identity
from lwa_middleware.policy import DENIED, callable_failed, callable_verdict, is_async_callable
from lwa_middleware.policy_watch import build_policy
from lwa_middleware.rules import Route
from lwa_middleware.settings import LWAOptions, LWASettings
from lwa_middleware.users import Entry, UserCache, loader_failed
from lwa_middleware.verification import authorize
from lwa_middleware.verifier import AsyncVerifier, Clock

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from lwa_middleware.login import LoginCore, LWALogin

#: ``on_error(conn, error)`` returns an ASGI app (e.g. a Starlette ``Response``) to answer
#: with, or ``None`` for the documented JSON error; it may be async.
ErrorHandler = Callable[[HTTPConnection, LWAError], "ASGIApp | Awaitable[ASGIApp | None] | None"]

_DENIAL = "websocket.http.response"
_TOKEN_HEADERS = frozenset({b"authorization", b"cookie", b"x-amz-access-token"})
_ORIGIN = b"origin"
_REQUEST_METHOD = b"access-control-request-method"
_POLICY_VIOLATION = 1008


def _starlette_user(user: Any) -> BaseUser | None:
    """The loaded user as Starlette's ``scope["user"]`` when it is a ``BaseUser``."""
    return user if isinstance(user, BaseUser) else None


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


class LWAMiddleware:
    """Verify LWA access tokens in front of any ASGI app.

    ``LWAMiddleware(app, client_ids=[...], ...)`` or ``LWAMiddleware(app, settings=...)``;
    ``Starlette.add_middleware(LWAMiddleware, client_ids=[...])`` works too. The options
    are those of :class:`~lwa_middleware.settings.LWASettings` (typed as
    :class:`~lwa_middleware.settings.LWAOptions`); given together with ``settings``, they
    override its values. A bad option raises
    :class:`~lwa_middleware.errors.ConfigurationError` here, never at a request.

    On a verified request the app gets ``scope["lwa"]`` (an
    :class:`~lwa_middleware.models.Identity`), ``scope["user"]`` (an
    :class:`~lwa_middleware.integrations.starlette.LWAUser`) and ``scope["auth"]``; with a
    ``user_loader``, ``scope["lwa.user"]`` is the app's user (and ``scope["user"]`` too when
    it is a Starlette ``BaseUser``); a refused one never reaches it (LWA's JSON error, or
    close code 1008 for a WebSocket).

    The other arguments: ``on_error(conn, error)`` returns an ASGI app to answer a refusal
    with, or ``None`` for the documented error (it may be async); ``clock`` returns epoch
    seconds (tests); ``transport`` is an ``httpx.AsyncBaseTransport`` for the LWA calls
    (tests: ``httpx.MockTransport``); ``redis`` a ``redis.asyncio`` client for the shared
    cache, instead of ``redis_url``; ``recorder`` a
    :class:`~lwa_middleware.metrics.Recorder` that gets every event besides the built-in
    counters; ``tracer`` an :class:`~lwa_middleware.integrations.otel.Tracer`; ``login``
    the :class:`~lwa_middleware.login.LWALogin` whose session cookies are read and
    refreshed, and which refuses a sign-in the access policy would refuse.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: LWASettings | None = None,
        *,
        on_error: ErrorHandler | None = None,
        clock: Clock = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        redis: Any = None,
        recorder: Recorder | None = None,
        tracer: Tracer | None = None,
        login: LWALogin | LoginCore | None = None,
        **options: Unpack[LWAOptions],
    ) -> None:
        check_on_error(on_error)
        self.app = app
        self.settings = LWASettings.build(settings, dict(options))
        #: ``login=``: expired cookie sessions are refreshed through the sign-in's refresh
        #: cookie (its ``secret_key`` is taken when none is given).
        self._refresh = None if login is None else AsyncRefresher.of(login, clock)
        if self._refresh is not None:
            self.settings = self._refresh.join(self.settings)
        #: The access policy's sources (options, policy_file, environment), read now: a
        #: file missing or broken is a ConfigurationError.
        self.policy = build_policy(self.settings)
        self.gate = Gate(self.settings, self.policy.policy)
        self.policy.on_change = self.gate.rules.set_policy
        #: Looks at the policy files at most once a second (None: no file to watch).
        self._tick = self.policy.tick if self.policy.watching else None
        #: ``authorize``: called when the rules admit, on every request with an identity.
        self._judge = self.settings.authorize
        #: Whether the warm path has more to do than a route's rules (a file, a callable).
        self._policed = self._tick is not None or self._judge is not None
        self.verifier = AsyncVerifier(
            self.settings,
            clock=clock,
            transport=transport,
            redis=redis,
            recorder=recorder,
            tracer=tracer,
            # Sign-out's revocations: the sign-in's (it revokes, this refuses).
            revocations=None if self._refresh is None else self._refresh.session.revocations,
        )
        #: Every event counted: the verifier's ``Stats`` and the ``recorder`` given, if any.
        self.recorder = self.verifier.recorder
        self._l1_hit = self.verifier.count_l1_hit  # bound once: the warm path counts hits
        if self._refresh is not None:
            self._refresh.count_with(self.recorder)
            # The sign-in's token calls share the verifier's breaker (one per LWA host).
            self._refresh.client.guard_with(self.verifier.breaker, self.verifier.clock)
        self.on_error = on_error
        self._query = self.gate.finder.reads_query
        self._preflights = self.gate.passes_preflights
        # Bound once: the warm path runs these on every request.
        self._route = self.gate.rules.route
        self._resolve = self.gate.resolve
        self._cached_raw = self.verifier.cached_raw
        self._credentials = CredentialsMemo()
        self._warm = self.gate.finder.warm
        self._memo = self.gate.rules.memo.get
        #: A lone ``Authorization`` header, or a lone session cookie, is looked at here first.
        self._bearer_first = self.gate.finder.reads_headers and not self._query
        self._plain_cookie = None if self._query else self.gate.finder.plain_cookie
        #: A cookie token on a method that can change state skips the warm path: the
        #: forgery check (Gate.resolve) runs first.
        self._csrf = self.gate.csrf.enabled
        self._guards = self.gate.csrf.guards
        self._key_prefix = self.verifier.authority.key.prefix
        self._peek = self.verifier.authority.cache.peek
        self._clock = self.verifier.clock
        #: ``user_loader``: the app's users, cached by user id (None: no loader).
        self._loader = self.settings.user_loader
        self._async_loader = is_async_callable(self._loader)
        self.users: UserCache | None = None
        if self._loader is not None:
            self.users = UserCache(
                self.settings.user_cache_ttl,
                self.settings.cache_maxsize,
                _starlette_user,
                self.settings.user_optional,
            )
        if login is not None and (
            self.policy.configured or self._judge is not None or self.users is not None
        ):
            if isinstance(login, LWAWSGILogin):
                raise ConfigurationError(
                    "login= must be an LWALogin (or its LoginCore) for LWAMiddleware when an "
                    "access policy or a user_loader is set: the sign-in checks them with this "
                    "middleware"
                )
            login_core(login).access_checks.append(self.sign_in_check)

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
            item = self._peek(sha256(self._key_prefix + plain).digest())
            if item is not None:
                now = self._clock()
                hit = item[1]
                required = route.required_scopes
                if (
                    now < item[0]
                    and now < hit.token_info.expires_at
                    and (not required or required <= hit.scopes)
                ):
                    access = route.access
                    if access is not None or self._policed:  # the access policy
                        if self._tick is not None:
                            self._tick(now)
                        if access is not None and not access.admits(hit):
                            await self._deny(scope, receive, send, AccessDenied(DENIED))
                            return
                        if self._judge is not None:
                            try:
                                await self._authorized(hit, scope.get("method", WEBSOCKET), path)
                            except LWAError as error:
                                await self._deny(scope, receive, send, error)
                                return
                    users = self.users
                    if users is not None:  # the app's user: cached by user id, else loaded
                        entry = users.peek(hit.user_id)
                        if entry is None or now >= entry[0]:
                            try:
                                entry = await self._load(hit, path, now)
                            except LWAError as error:
                                await self._deny(scope, receive, send, error)
                                return
                        scope["lwa.user"] = entry[1]
                        pair = hit._derived or self._credentials(hit)
                        scope["user"] = entry[2] or pair[0]
                        scope["auth"] = pair[1]
                        scope["lwa"] = hit
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
                entry = await self._admit(identity, route, scope, path)
        except LWAError as error:
            if self._refresh is not None and cookies is not None and kind == "http":
                await self._refreshed(
                    scope, receive, send, route, error, authorization, amz, cookies, query
                )
                return
            await self._deny(scope, receive, send, error)
            return
        if (
            identity is None
            and self._refresh is not None
            and cookies is not None
            and kind == "http"
        ):
            await self._refreshed(  # anonymous on an optional route: a session to refresh?
                scope, receive, send, route, None, authorization, amz, cookies, query
            )
            return
        if identity is not None:
            self.recorder.verification("stale" if identity.stale else "ok")
        self._attach(scope, identity, entry)
        await self.app(scope, receive, send)

    def _attach(self, scope: Scope, identity: Identity | None, entry: Entry | None) -> None:
        """Put what the app gets on the scope: the identity, Starlette's pair and, with a
        ``user_loader``, the app's user (``None`` for an anonymous request)."""
        scope["lwa"] = identity
        scope["user"], scope["auth"] = self._credentials(identity)
        if self.users is not None:
            if entry is None:
                scope["lwa.user"] = None
            else:
                scope["lwa.user"] = entry[1]
                if entry[2] is not None:
                    scope["user"] = entry[2]

    async def _admit(
        self, identity: Identity, route: Route, scope: Scope, path: str
    ) -> Entry | None:
        """Whether a verified identity may enter: the route's scopes, then the access
        policy's rules, then ``authorize``, then the ``user_loader`` (its cache entry, or
        ``None`` without a loader); raises the ``LWAError`` to answer."""
        authorize(identity, route.required_scopes)
        self.gate.admit(route, identity)
        if self._judge is not None:
            await self._authorized(identity, scope.get("method", WEBSOCKET), path)
        if self.users is None:
            return None
        now = self._clock()
        entry = self.users.get(identity.user_id, now)
        return entry if entry is not None else await self._load(identity, path, now)

    async def _load(self, identity: Identity, path: str, now: float) -> Entry:
        """Ask the ``user_loader`` (a sync one in the thread pool: it may wait on a
        database) and settle its answer (:meth:`UserCache.settle`): ``NoAccount`` for
        ``None`` outside ``user_optional``, a ``ServerError`` when it raises."""
        assert self.users is not None
        assert self._loader is not None
        try:
            if self._async_loader:
                user = await self._loader(identity)
            else:
                user = await run_in_threadpool(self._loader, identity)
                if inspect.isawaitable(user):
                    user = await user
        except Exception as error:
            raise loader_failed(error) from None
        return self.users.settle(identity.user_id, user, path, now)

    def forget_user(self, user_id: str) -> None:
        """Drop the app's user of ``user_id`` from this worker's cache: their next request
        asks the ``user_loader`` again (other workers: within ``user_cache_ttl``)."""
        if self.users is not None:
            self.users.forget(user_id)

    async def _authorized(self, identity: Identity, method: str, path: str) -> None:
        """Ask ``authorize`` (sync or async): ``AccessDenied`` on ``False``; a
        ``ServerError`` when it raises or answers something else (logged)."""
        assert self._judge is not None
        try:
            result = self._judge(identity, method, path)
            if inspect.isawaitable(result):
                result = await result
        except Exception as error:
            raise callable_failed(error) from None
        callable_verdict(result)

    async def sign_in_check(self, access_token: str, path: str) -> LWAError | None:
        """The sign-in's question (``login=``): may the customer of a new access token enter
        ``path`` with a ``GET``? ``None`` when yes (or when no policy is set), else the
        error: ``AccessDenied``, or the verification's own. The token is verified (and so
        cached) by this middleware's verifier."""
        if self._tick is not None:
            self._tick(self._clock())
        if self.gate.judges_nothing and self.users is None:
            return None
        try:
            identity = await self.verifier.verify(access_token)
            self.gate.admit_path(path, identity)
            if self._judge is not None:
                await self._authorized(identity, "GET", path)
            if self.users is not None:
                now = self._clock()
                if self.users.get(identity.user_id, now) is None:
                    await self._load(identity, path, now)
        except LWAError as error:
            return error
        return None

    async def _refreshed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        error: LWAError | None,
        authorization: Sequence[bytes] | None,
        amz: Sequence[bytes] | None,
        cookies: Sequence[bytes],
        query: str,
    ) -> None:
        """A cookie session that failed with ``error`` (``None``: none on an optional route),
        refreshed through ``login=`` when :mod:`lwa_middleware.login.session` says so: the
        new identity, or the sign-out (``error``, cookies cleared), with the cookies added
        to whatever is answered; else the request as it was."""
        assert self._refresh is not None
        headers: Sequence[tuple[str, str]] = ()
        method = scope["method"]
        csrf = self.gate.csrf

        def guard() -> None:
            if csrf.guards(method):
                csrf.check(asgi_origin_headers(scope))

        entry = None
        try:
            identity, error, headers = await self._refresh.recover(
                error,
                authorization or (),
                amz or (),
                cookies,
                query,
                self.verifier.verify,
                guard,
                self.verifier.revocations_ready,
            )
            if identity is not None:
                path = _route_path(scope) if scope.get("root_path") else scope["path"]
                entry = await self._admit(identity, route, scope, path)
        except LWAError as failure:
            error = failure
        if headers:
            send = send_with_headers(send, headers)
        if error is not None:
            await self._deny(scope, receive, send, error)
            return
        if identity is not None:
            self.recorder.verification("stale" if identity.stale else "ok")
        self._attach(scope, identity, entry)
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

    def stats(self) -> dict[str, Any]:
        """What the middleware counted, as a JSON-safe ``dict``: verifications by outcome,
        L1/L2 hits and misses, LWA calls by endpoint and status with their latency, errors
        answered, the circuit breaker, stale answers, ... (``AsyncVerifier.stats``)."""
        return self.verifier.stats()

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
