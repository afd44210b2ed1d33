"""``LWAWSGILogin``: the website sign-in as a WSGI app (Flask, Django, any WSGI server).

The same core and options as :class:`~lwa_middleware.login.asgi.LWALogin`, on the
blocking :class:`~lwa_middleware.token_client.TokenClient`. Mount it with Werkzeug's
``DispatcherMiddleware`` (``{"/auth": login}``): ``/login`` and ``/logout`` are matched
against ``PATH_INFO``, the callback against ``SCRIPT_NAME + PATH_INFO`` (``redirect_uri``'s
path). Give it to ``LWAWSGIMiddleware(..., login=...)`` as well, for the refresh.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

import httpx

from lwa_middleware.csrf import wsgi_origin_headers
from lwa_middleware.errors import LWAError, ServerError
from lwa_middleware.grants import GrantError, TokenGrant
from lwa_middleware.login.config import DEFAULT_AUTHORIZE_URL, DEFAULT_SESSION_MAX_AGE, LoginConfig
from lwa_middleware.login.core import Exchange, LoginCore, LoginRequest, policy_path
from lwa_middleware.login.refresh import Clock, Refresher
from lwa_middleware.token_client import TokenClient

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger("lwa_middleware")


def wsgi_request(environ: WSGIEnvironment) -> LoginRequest:
    """The core's view of a WSGI environ (``Host``, ``Origin`` and ``Referer`` read as the
    middleware reads them: :func:`~lwa_middleware.csrf.wsgi_origin_headers`)."""
    get = environ.get
    cookie = get("HTTP_COOKIE")
    return LoginRequest(
        method=get("REQUEST_METHOD", "GET"),
        path=get("PATH_INFO") or "/",
        root_path=get("SCRIPT_NAME", ""),
        query_string=get("QUERY_STRING", ""),
        cookies=() if cookie is None else (cookie,),
        accept=get("HTTP_ACCEPT"),
        origins=wsgi_origin_headers(environ),
    )


class LWAWSGILogin:
    """The WSGI twin of :class:`~lwa_middleware.login.asgi.LWALogin` (same arguments;
    ``transport`` is a sync ``httpx.BaseTransport``)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        redirect_uri: str,
        secret_key: str | bytes,
        scopes: str | Iterable[str] = ("profile",),
        authorize_url: str = DEFAULT_AUTHORIZE_URL,
        api_base_url: str = "",
        region: str | None = None,
        cookie_name: str = "lwa_token",
        cookie_domain: str | None = None,
        session_max_age: int = DEFAULT_SESSION_MAX_AGE,
        timeout: float = 5.0,
        allow_insecure_http: bool = False,
        clock: Clock = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        config = LoginConfig(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
            secret_key=secret_key,
            scopes=tuple(scopes.split()) if isinstance(scopes, str) else tuple(scopes),
            authorize_url=authorize_url,
            api_base_url=api_base_url,
            region=region,
            cookie_name=cookie_name,
            cookie_domain=cookie_domain,
            session_max_age=session_max_age,
            timeout=timeout,
            allow_insecure_http=allow_insecure_http,
        )
        self.core = LoginCore(config)
        self.clock = clock
        self.client = TokenClient(
            config.api_base_url, transport=transport, **config.client_options()
        )
        #: What ``LWAWSGIMiddleware(login=self)`` refreshes sessions with (the same client).
        self.refresher = Refresher(self.core.session, self.client, clock)

    def __repr__(self) -> str:
        config = self.core.config
        return f"LWAWSGILogin({config.client_id!r}, redirect_uri={config.redirect_uri!r})"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        step = self.core.handle(wsgi_request(environ), self.clock())
        if isinstance(step, Exchange):
            answer = self._exchange(step)
            refusal = None
            if isinstance(answer, TokenGrant) and self.core.access_checks:
                refusal = self._refusal(answer.access_token, policy_path(step.next))
            step = self.core.exchanged(step, answer, self.clock(), refusal)
        status, headers, body = step
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    def _exchange(self, step: Exchange) -> TokenGrant | GrantError | ServerError:
        try:
            return self.client.exchange_code(
                step.code,
                redirect_uri=step.redirect_uri,
                client_id=step.client_id,
                client_secret=step.client_secret,
                code_verifier=step.code_verifier,
            )
        except (GrantError, ServerError) as error:  # ServerError: refused, LWA not asked
            return error

    def _refusal(self, access_token: str, path: str) -> LWAError | None:
        """The first error of the joined middlewares' access checks (``None``: every one
        lets the customer in); a check that fails, or that is async (an ``LWAMiddleware``'s:
        it cannot be awaited here), refuses."""
        for check in self.core.access_checks:
            try:
                result = check(access_token, path)
                if inspect.isawaitable(result):
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
                    raise TypeError("an async access check cannot run in LWAWSGILogin")
            except Exception as error:
                logger.error(
                    "sign-in: the access check raised %s", type(error).__name__, exc_info=error
                )
                return ServerError()
            if result is not None:
                return result
        return None

    def close(self) -> None:
        """Close the token client's connection pool."""
        self.client.close()
