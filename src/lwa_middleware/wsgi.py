"""``LWAWSGIMiddleware``: the native WSGI shell (Flask, Django, any WSGI server).

Layer: the root (what a user imports or runs; see ``ARCHITECTURE.md``).

Same options, rules and error table as :class:`~lwa_middleware.asgi.LWAMiddleware`, on the
same sans-IO core and the blocking :class:`~lwa_middleware.upstream.verifier.Verifier`: no event
loop, no thread hop. It sets ``environ["lwa"]`` (the :class:`Identity`) and
``environ["REMOTE_USER"]`` (the user id) so Django's ``RemoteUserMiddleware`` can sign the
customer in. The access policy is judged as in the ASGI shell; ``authorize`` must be a
plain (sync) callable here, refused at construction otherwise, and so must the
``user_loader`` (:mod:`lwa_middleware.core.users`), whose answer is ``environ["lwa.user"]``.

"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from hashlib import sha256
from http import HTTPStatus
from typing import TYPE_CHECKING

import httpx

from lwa_middleware._shell import Shell
from lwa_middleware.core.csrf import wsgi_origin_headers
from lwa_middleware.core.errors import ConfigurationError, LWAError
from lwa_middleware.core.gate import is_cors_preflight
from lwa_middleware.core.metrics import outcome_of
from lwa_middleware.core.models import Identity
from lwa_middleware.core.policy import is_async_callable
from lwa_middleware.core.rules import Route
from lwa_middleware.core.settings import LWASettings
from lwa_middleware.core.users import Entry
from lwa_middleware.login.asgi import LWALogin
from lwa_middleware.login.refresh import Refresher, start_response_with_headers
from lwa_middleware.login.wsgi import LWAWSGILogin
from lwa_middleware.upstream.steps import run
from lwa_middleware.upstream.verifier import Verifier

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: ``on_error(environ, error)`` returns a WSGI app to answer with (e.g. a Werkzeug
#: ``Response``), or ``None`` for the documented JSON error.
WSGIErrorHandler = Callable[["WSGIEnvironment", LWAError], "WSGIApplication | None"]


def _raw(value: str | None) -> tuple[bytes, ...]:
    """A WSGI header (a latin-1 ``str``, PEP 3333) as the raw bytes the core reads."""
    return () if value is None else (value.encode("latin-1"),)


class LWAWSGIMiddleware(
    Shell["WSGIApplication", WSGIErrorHandler, httpx.BaseTransport, LWAWSGILogin]
):
    """Verify LWA access tokens in front of any WSGI app.

    ``LWAWSGIMiddleware(flask_app.wsgi_app, client_ids=[...])`` or ``settings=...``: the
    same options, path rules and errors as :class:`~lwa_middleware.asgi.LWAMiddleware`,
    with blocking I/O and no event loop. One instance serves every thread of a process
    (one cache, one pooled ``httpx.Client``); :meth:`close` closes the pool.

    On a verified request the app gets ``environ["lwa"]`` (an
    :class:`~lwa_middleware.core.models.Identity`) and ``REMOTE_USER`` (its user id); on an
    optional path without a token, ``environ["lwa"]`` is ``None`` and ``REMOTE_USER`` is
    removed. With a ``user_loader``, ``environ["lwa.user"]`` is the app's user (``None``
    without a token). The other arguments are the ASGI middleware's, for WSGI: ``on_error(environ,
    error)`` returns a WSGI app or ``None``; ``transport`` is an ``httpx.BaseTransport``;
    ``redis`` a blocking redis-py client; ``login`` an
    :class:`~lwa_middleware.login.LWAWSGILogin`.
    """

    _verifier_type = Verifier
    _refresher_type = Refresher
    _other_login = LWALogin
    _login_name = "LWAWSGILogin"
    verifier: Verifier
    _refresh: Refresher | None

    def _check(self, settings: LWASettings) -> None:
        if is_async_callable(settings.authorize):
            raise ConfigurationError(
                "authorize is async: LWAWSGIMiddleware has no event loop to await it; give "
                "it a plain function (identity, method, path) -> bool"
            )
        if is_async_callable(settings.user_loader):
            raise ConfigurationError(
                "user_loader is async: LWAWSGIMiddleware has no event loop to await it; give "
                "it a plain function (identity) -> user | None"
            )

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
            now = self._clock()
            hit = self._fresh(
                sha256(self._key_prefix + authorization[7:].encode("latin-1")).digest(), now
            )
            if hit is not None and (
                not (required := route.required_scopes) or required <= hit.scopes
            ):
                if route.access is not None or self._policed:  # the access policy
                    refusal: LWAError | None = self._refusal(route, hit, now)
                    if refusal is None and self._judge is not None:
                        refusal = run(self._judged(hit, get("REQUEST_METHOD", ""), path))
                    if refusal is not None:
                        return self._deny(environ, start_response, refusal)
                users = self.users
                if users is not None:  # the app's user: cached by user id, else loaded
                    entry = users.peek(hit.user_id)
                    if entry is None or now >= entry[0]:
                        try:
                            entry = run(self._user(hit, path, now))
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
                entry = run(self._admit(identity, route, get("REQUEST_METHOD", ""), path))
        except LWAError as error:
            if self._refresh is not None and "HTTP_COOKIE" in environ:
                return self._refreshed(environ, start_response, route, error)
            return self._deny(environ, start_response, error)
        if identity is None and self._refresh is not None and "HTTP_COOKIE" in environ:
            return self._refreshed(environ, start_response, route, None)
        return self._pass(environ, start_response, identity, entry)

    def sign_in_check(self, access_token: str, path: str) -> LWAError | None:
        """The sign-in's question (``login=``): see ``LWAMiddleware.sign_in_check``."""
        return run(self._sign_in_check(access_token, path))

    def _pass(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        identity: Identity | None,
        entry: Entry | None = None,
    ) -> Iterable[bytes]:
        if self.users is not None:  # the app's user (None for an anonymous request)
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
        get = environ.get
        method = get("REQUEST_METHOD", "")
        csrf = self.gate.csrf

        def guard() -> None:
            if csrf.guards(method):
                csrf.check(wsgi_origin_headers(environ))

        tokens = (
            _raw(get("HTTP_AUTHORIZATION")),
            _raw(get("HTTP_X_AMZ_ACCESS_TOKEN")),
            _raw(get("HTTP_COOKIE")),
            get("QUERY_STRING", "") if self._query else "",
        )
        recovery = self._recovered(route, error, tokens, method, get("PATH_INFO") or "/", guard)
        identity, error, headers, entry = run(recovery)
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

    def close(self) -> None:
        """Close the HTTP client's connection pool (and the Redis client, if it built one:
        a client passed as ``redis=`` is the caller's), and ``login=``'s token client."""
        self.verifier.close()
        if self._refresh is not None:
            self._refresh.close()
