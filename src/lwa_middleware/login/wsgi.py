"""``LWAWSGILogin``: the website sign-in as a WSGI app (Flask, Django, any WSGI server).

Layer: ``login`` (website sign-in; see ``ARCHITECTURE.md``).

The same core and options as :class:`~lwa_middleware.login.asgi.LWALogin`, on the
blocking :class:`~lwa_middleware.upstream.token_client.TokenClient`. Mount it with Werkzeug's
``DispatcherMiddleware`` (``{"/auth": login}``): ``/login`` and ``/logout`` are matched
against ``PATH_INFO``, the callback against ``SCRIPT_NAME + PATH_INFO`` (``redirect_uri``'s
path). Give it to ``LWAWSGIMiddleware(..., login=...)`` as well, for the refresh.

"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

import httpx

from lwa_middleware.core.csrf import wsgi_origin_headers
from lwa_middleware.login.config import LoginConfig
from lwa_middleware.login.core import LoginRequest
from lwa_middleware.login.refresh import Refresher
from lwa_middleware.login.shell import LoginShell
from lwa_middleware.upstream.steps import run
from lwa_middleware.upstream.token_client import TokenClient

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def wsgi_request(environ: WSGIEnvironment) -> LoginRequest:
    """The core's view of a WSGI environ (``Host``, ``Origin`` and ``Referer`` read as the
    middleware reads them: :func:`~lwa_middleware.core.csrf.wsgi_origin_headers`)."""
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


class LWAWSGILogin(LoginShell[httpx.BaseTransport, TokenClient, Refresher]):
    """The WSGI twin of :class:`~lwa_middleware.login.asgi.LWALogin` (same arguments;
    ``transport`` is a sync ``httpx.BaseTransport``). An async access check (an
    ``LWAMiddleware``'s, joined by mistake) cannot be awaited here: it refuses."""

    def _connect(self, config: LoginConfig, transport: httpx.BaseTransport | None) -> None:
        self.client = TokenClient(
            config.api_base_url, transport=transport, **config.client_options()
        )
        self.refresher = Refresher(self.core.session, self.client, self.clock)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        status, headers, body = run(self._answer(wsgi_request(environ)))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    def close(self) -> None:
        """Close the token client's connection pool."""
        self.client.close()
