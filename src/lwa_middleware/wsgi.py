"""``LWAWSGIMiddleware``: the native WSGI shell (Flask, Django, any WSGI server).

Same options, rules and error table as :class:`~lwa_middleware.asgi.LWAMiddleware`, on the
same sans-IO core and the blocking :class:`~lwa_middleware.verifier.Verifier`: no event
loop, no thread hop. It sets ``environ["lwa"]`` (the :class:`Identity`) and
``environ["REMOTE_USER"]`` (the user id) so Django's ``RemoteUserMiddleware`` can sign the
customer in. The access policy is judged as in the ASGI shell; ``authorize`` must be a
plain (sync) callable here, refused at construction otherwise, and so must the
``user_loader`` (:mod:`lwa_middleware.users`), whose answer is ``environ["lwa.user"]``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from hashlib import sha256
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httpx

from lwa_middleware.csrf import wsgi_origin_headers
from lwa_middleware.errors import AccessDenied, ConfigurationError, LWAError
from lwa_middleware.gate import Gate, check_on_error, is_cors_preflight
from lwa_middleware.integrations.otel import Tracer
from lwa_middleware.login.asgi import LWALogin
from lwa_middleware.login.refresh import Refresher, login_core, start_response_with_headers
from lwa_middleware.metrics import Recorder, outcome_of
from lwa_middleware.models import Identity
from lwa_middleware.policy import (
    DENIED,
    callable_failed,
    callable_verdict,
    is_async_callable,
)
from lwa_middleware.policy_watch import build_policy
from lwa_middleware.rules import Route
from lwa_middleware.settings import LWAOptions, LWASettings
from lwa_middleware.users import Entry, UserCache, loader_failed
from lwa_middleware.verification import authorize
from lwa_middleware.verifier import Clock, Verifier

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from typing_extensions import Unpack

    from lwa_middleware.login import LoginCore, LWAWSGILogin

#: ``on_error(environ, error)`` returns a WSGI app to answer with (e.g. a Werkzeug
#: ``Response``), or ``None`` for the documented JSON error.
WSGIErrorHandler = Callable[["WSGIEnvironment", LWAError], "WSGIApplication | None"]


def _raw(value: str | None) -> tuple[bytes, ...]:
    """A WSGI header (a latin-1 ``str``, PEP 3333) as the raw bytes the core reads."""
    return () if value is None else (value.encode("latin-1"),)


class LWAWSGIMiddleware:
    """Verify LWA access tokens in front of any WSGI app.

    ``LWAWSGIMiddleware(flask_app.wsgi_app, client_ids=[...])`` or ``settings=...``: the
    same options, path rules and errors as :class:`~lwa_middleware.asgi.LWAMiddleware`,
    with blocking I/O and no event loop. One instance serves every thread of a process
    (one cache, one pooled ``httpx.Client``); :meth:`close` closes the pool.

    On a verified request the app gets ``environ["lwa"]`` (an
    :class:`~lwa_middleware.models.Identity`) and ``REMOTE_USER`` (its user id); on an
    optional path without a token, ``environ["lwa"]`` is ``None`` and ``REMOTE_USER`` is
    removed. With a ``user_loader``, ``environ["lwa.user"]`` is the app's user (``None``
    without a token). The other arguments are the ASGI middleware's, for WSGI: ``on_error(environ,
    error)`` returns a WSGI app or ``None``; ``transport`` is an ``httpx.BaseTransport``;
    ``redis`` a blocking redis-py client; ``login`` an
    :class:`~lwa_middleware.login.LWAWSGILogin`.
    """

    def __init__(
        self,
        app: WSGIApplication,
        settings: LWASettings | None = None,
        *,
        on_error: WSGIErrorHandler | None = None,
        clock: Clock = time.time,
        transport: httpx.BaseTransport | None = None,
        redis: Any = None,
        recorder: Recorder | None = None,
        tracer: Tracer | None = None,
        login: LWAWSGILogin | LoginCore | None = None,
        **options: Unpack[LWAOptions],
    ) -> None:
        check_on_error(on_error)
        self.app = app
        self.settings = LWASettings.build(settings, dict(options))
        #: ``login=``: expired cookie sessions are refreshed (see LWAMiddleware).
        self._refresh = None if login is None else Refresher.of(login, clock)
        if self._refresh is not None:
            self.settings = self._refresh.join(self.settings)
        if is_async_callable(self.settings.authorize):
            raise ConfigurationError(
                "authorize is async: LWAWSGIMiddleware has no event loop to await it; give "
                "it a plain function (identity, method, path) -> bool"
            )
        if is_async_callable(self.settings.user_loader):
            raise ConfigurationError(
                "user_loader is async: LWAWSGIMiddleware has no event loop to await it; give "
                "it a plain function (identity) -> user | None"
            )
        #: The access policy's sources, read now (see LWAMiddleware).
        self.policy = build_policy(self.settings)
        self.gate = Gate(self.settings, self.policy.policy)
        self.policy.on_change = self.gate.rules.set_policy
        self._tick = self.policy.tick if self.policy.watching else None
        self._judge = self.settings.authorize
        #: Whether the warm path has more to do than a route's rules (a file, a callable).
        self._policed = self._tick is not None or self._judge is not None
        self.verifier = Verifier(
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
        # Bound once: the warm path runs these on every request (see LWAMiddleware).
        self._memo = self.gate.rules.memo.get
        self._route = self.gate.rules.route
        self._bearer_first = self.gate.finder.reads_headers and not self._query
        self._key_prefix = self.verifier.authority.key.prefix
        self._peek = self.verifier.authority.cache.peek
        self._clock = self.verifier.clock
        #: ``user_loader``: the app's users, cached by user id (None: no loader).
        self._loader = self.settings.user_loader
        self.users: UserCache | None = None
        if self._loader is not None:
            self.users = UserCache(
                self.settings.user_cache_ttl,
                self.settings.cache_maxsize,
                user_optional=self.settings.user_optional,
            )
        if login is not None and (
            self.policy.configured or self._judge is not None or self.users is not None
        ):
            if isinstance(login, LWALogin):
                raise ConfigurationError(
                    "login= must be an LWAWSGILogin (or its LoginCore) for LWAWSGIMiddleware "
                    "when an access policy or a user_loader is set: the sign-in checks them "
                    "with this middleware"
                )
            login_core(login).access_checks.append(self.sign_in_check)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        get = environ.get
        path = get("PATH_INFO") or "/"
        route = self._memo(path) or self._route(path)
        if not route.verifies or (
            get("REQUEST_METHOD") == "OPTIONS"
            and self._preflights
            and is_cors_preflight(
                "OPTIONS", get("HTTP_ORIGIN"), get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
            )
        ):
            return self.app(environ, start_response)
        authorization = get("HTTP_AUTHORIZATION")
        if (
            self._bearer_first
            and authorization is not None
            and authorization[:7] == "Bearer "
            and "HTTP_X_AMZ_ACCESS_TOKEN" not in environ
        ):  # the warm path, as in LWAMiddleware.__call__ (TokenFinder.warm says why no checks)
            item = self._peek(
                sha256(self._key_prefix + authorization[7:].encode("latin-1")).digest()
            )
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
                            return self._deny(environ, start_response, AccessDenied(DENIED))
                        if self._judge is not None:
                            try:
                                self._authorized(hit, get("REQUEST_METHOD", ""), path)
                            except LWAError as error:
                                return self._deny(environ, start_response, error)
                    users = self.users
                    if users is not None:  # the app's user: cached by user id, else loaded
                        entry = users.peek(hit.user_id)
                        if entry is None or now >= entry[0]:
                            try:
                                entry = self._load(hit, path, now)
                            except LWAError as error:
                                return self._deny(environ, start_response, error)
                        environ["lwa.user"] = entry[1]
                    environ["lwa"] = hit
                    environ["REMOTE_USER"] = hit.user_id
                    self._l1_hit()
                    return self.app(environ, start_response)
        if self._tick is not None:
            self._tick(self._clock())
        try:
            found = self.gate.resolve(
                route,
                _raw(authorization),
                _raw(get("HTTP_X_AMZ_ACCESS_TOKEN")),
                _raw(get("HTTP_COOKIE")),
                get("QUERY_STRING", "") if self._query else "",
                self.verifier.cached_raw,
                method=get("REQUEST_METHOD", ""),
                origins=partial(wsgi_origin_headers, environ),
            )
            identity = self.verifier.verify(found) if isinstance(found, str) else found
            entry = None
            if identity is not None:
                entry = self._admit(identity, route, get("REQUEST_METHOD", ""), path)
        except LWAError as error:
            if self._refresh is not None and "HTTP_COOKIE" in environ:
                return self._refreshed(environ, start_response, route, error)
            return self._deny(environ, start_response, error)
        if identity is None and self._refresh is not None and "HTTP_COOKIE" in environ:
            return self._refreshed(environ, start_response, route, None)
        return self._pass(environ, start_response, identity, entry)

    def _admit(self, identity: Identity, route: Route, method: str, path: str) -> Entry | None:
        """The route's scopes, the access policy's rules, ``authorize``, then the
        ``user_loader`` (see ``LWAMiddleware._admit``)."""
        authorize(identity, route.required_scopes)
        self.gate.admit(route, identity)
        if self._judge is not None:
            self._authorized(identity, method, path)
        if self.users is None:
            return None
        now = self._clock()
        entry = self.users.get(identity.user_id, now)
        return entry if entry is not None else self._load(identity, path, now)

    def _load(self, identity: Identity, path: str, now: float) -> Entry:
        """Ask the ``user_loader`` and settle its answer (see ``LWAMiddleware._load``); an
        awaitable it hands back is a ``ServerError`` (closed, never awaited)."""
        assert self.users is not None
        assert self._loader is not None
        try:
            user = self._loader(identity)
            if inspect.isawaitable(user):
                close = getattr(user, "close", None)
                if close is not None:
                    close()  # never awaited: no "coroutine was never awaited" warning
                raise TypeError("user_loader returned an awaitable under LWAWSGIMiddleware")
        except Exception as error:
            raise loader_failed(error) from None
        return self.users.settle(identity.user_id, user, path, now)

    def forget_user(self, user_id: str) -> None:
        """Drop the app's user of ``user_id`` from this process's cache (see
        ``LWAMiddleware.forget_user``)."""
        if self.users is not None:
            self.users.forget(user_id)

    def _authorized(self, identity: Identity, method: str, path: str) -> None:
        """Ask ``authorize``: ``AccessDenied`` on ``False``; a ``ServerError`` when it
        raises, answers something else, or hands back an awaitable (logged)."""
        assert self._judge is not None
        try:
            result = self._judge(identity, method, path)
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()  # never awaited: no "coroutine was never awaited" warning
                raise TypeError("authorize returned an awaitable under LWAWSGIMiddleware")
        except Exception as error:
            raise callable_failed(error) from None
        callable_verdict(result)

    def sign_in_check(self, access_token: str, path: str) -> LWAError | None:
        """The sign-in's question (``login=``): see ``LWAMiddleware.sign_in_check``."""
        if self._tick is not None:
            self._tick(self._clock())
        if self.gate.judges_nothing and self.users is None:
            return None
        try:
            identity = self.verifier.verify(access_token)
            self.gate.admit_path(path, identity)
            if self._judge is not None:
                self._authorized(identity, "GET", path)
            if self.users is not None:
                now = self._clock()
                if self.users.get(identity.user_id, now) is None:
                    self._load(identity, path, now)
        except LWAError as error:
            return error
        return None

    def _pass(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        identity: Identity | None,
        entry: Entry | None = None,
    ) -> Iterable[bytes]:
        if self.users is not None:
            environ["lwa.user"] = None if entry is None else entry[1]
        environ["lwa"] = identity
        if identity is None:
            environ.pop("REMOTE_USER", None)
        else:
            self.recorder.verification("stale" if identity.stale else "ok")
            environ["REMOTE_USER"] = identity.user_id
        return self.app(environ, start_response)

    def _refreshed(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        route: Route,
        error: LWAError | None,
    ) -> Iterable[bytes]:
        """A cookie session that failed with ``error`` (``None``: none on an optional route),
        refreshed through ``login=`` (see ``LWAMiddleware._refreshed``)."""
        assert self._refresh is not None
        get = environ.get
        headers: Sequence[tuple[str, str]] = ()
        method = get("REQUEST_METHOD", "")
        csrf = self.gate.csrf
        entry = None

        def guard() -> None:
            if csrf.guards(method):
                csrf.check(wsgi_origin_headers(environ))

        try:
            identity, error, headers = self._refresh.recover(
                error,
                _raw(get("HTTP_AUTHORIZATION")),
                _raw(get("HTTP_X_AMZ_ACCESS_TOKEN")),
                _raw(get("HTTP_COOKIE")),
                get("QUERY_STRING", "") if self._query else "",
                self.verifier.verify,
                guard,
                self.verifier.revocations_ready,
            )
            if identity is not None:
                entry = self._admit(identity, route, method, get("PATH_INFO") or "/")
        except LWAError as failure:
            error = failure
        if headers:
            start_response = start_response_with_headers(start_response, headers)
        if error is not None:
            return self._deny(environ, start_response, error)
        return self._pass(environ, start_response, identity, entry)

    def _deny(
        self, environ: WSGIEnvironment, start_response: StartResponse, error: LWAError
    ) -> Iterable[bytes]:
        recorder = self.recorder
        recorder.verification(outcome_of(error))
        recorder.error(error.error)
        if self.on_error is not None:
            custom = self.on_error(environ, error)
            if custom is not None:
                return custom(environ, start_response)
        status, headers, body = self.gate.deny(error, environ.get("HTTP_X_REQUEST_ID"))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    def stats(self) -> dict[str, Any]:
        """What the middleware counted, as a JSON-safe ``dict`` (see ``LWAMiddleware.stats``)."""
        return self.verifier.stats()

    def close(self) -> None:
        """Close the HTTP client's connection pool (and the Redis client, if it built one:
        a client passed as ``redis=`` is the caller's), and ``login=``'s token client."""
        self.verifier.close()
        if self._refresh is not None:
            self._refresh.close()
