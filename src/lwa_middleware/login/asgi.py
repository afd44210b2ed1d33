"""``LWALogin``: the website sign-in as an ASGI app to mount (e.g. at ``/auth``).

It adapts a scope to a :class:`~lwa_middleware.login.core.LoginRequest`, writes the core's
answer back, and runs the one I/O step, the code exchange, on an
:class:`~lwa_middleware.token_client.AsyncTokenClient`. Give it to
``LWAMiddleware(..., login=...)`` as well: the middleware then refreshes expired sessions
through the same client (:attr:`LWALogin.refresher`).

Mounted (Starlette ``Mount("/auth", app=login)``), ``/login`` and ``/logout`` are matched
below ``root_path``; the callback by its full path, ``redirect_uri``'s.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Iterable

import httpx
from starlette.types import Receive, Scope, Send

from lwa_middleware.csrf import asgi_origin_headers
from lwa_middleware.errors import LWAError, ServerError
from lwa_middleware.grants import GrantError, TokenGrant
from lwa_middleware.login.config import DEFAULT_AUTHORIZE_URL, DEFAULT_SESSION_MAX_AGE, LoginConfig
from lwa_middleware.login.core import Exchange, LoginCore, LoginRequest, policy_path
from lwa_middleware.login.refresh import AsyncRefresher, Clock
from lwa_middleware.token_client import AsyncTokenClient

logger = logging.getLogger("lwa_middleware")


def split_root(scope: Scope) -> tuple[str, str]:
    """``(root_path, path below it)``: Starlette's ``Mount`` keeps the full path in
    ``path`` and the mount in ``root_path``; other servers give the path below it."""
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path", "") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return root, path[len(root) :] or "/"
    return root, path


def asgi_request(scope: Scope) -> LoginRequest:
    """The core's view of an HTTP scope (every ``Host``, ``Origin`` and ``Referer`` value
    read as the middleware reads them: :func:`~lwa_middleware.csrf.asgi_origin_headers`)."""
    root, path = split_root(scope)
    cookies: list[str] = []
    accept: str | None = None
    for name, value in scope["headers"]:
        if name == b"cookie":
            cookies.append(value.decode("latin-1"))
        elif name == b"accept" and accept is None:
            accept = value.decode("latin-1")
    return LoginRequest(
        method=scope["method"],
        path=path,
        root_path=root,
        query_string=scope.get("query_string", b"").decode("latin-1"),
        cookies=tuple(cookies),
        accept=accept,
        origins=asgi_origin_headers(scope),
    )


class LWALogin:
    """``/login?next=``, the callback and ``/logout`` of a website signing in with Amazon.

    ``LWALogin(client_id, client_secret=None, *, redirect_uri=..., secret_key=...)``; the
    other options are described in ``docs/login.md``. ``clock`` and ``transport`` are for
    tests (a fake clock; an ``httpx`` transport for the token endpoint).
    """

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
        transport: httpx.AsyncBaseTransport | None = None,
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
        self.client = AsyncTokenClient(
            config.api_base_url, transport=transport, **config.client_options()
        )
        #: What ``LWAMiddleware(login=self)`` refreshes sessions with (the same client).
        self.refresher = AsyncRefresher(self.core.session, self.client, clock)

    def __repr__(self) -> str:
        config = self.core.config
        return f"LWALogin({config.client_id!r}, redirect_uri={config.redirect_uri!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        step = self.core.handle(asgi_request(scope), self.clock())
        if isinstance(step, Exchange):
            answer = await self._exchange(step)
            refusal = None
            if isinstance(answer, TokenGrant) and self.core.access_checks:
                refusal = await self._refusal(answer.access_token, policy_path(step.next))
            step = self.core.exchanged(step, answer, self.clock(), refusal)
        status, headers, body = step
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _exchange(self, step: Exchange) -> TokenGrant | GrantError | ServerError:
        try:
            return await self.client.exchange_code(
                step.code,
                redirect_uri=step.redirect_uri,
                client_id=step.client_id,
                client_secret=step.client_secret,
                code_verifier=step.code_verifier,
            )
        except (GrantError, ServerError) as error:  # ServerError: refused, LWA not asked
            return error

    async def _refusal(self, access_token: str, path: str) -> LWAError | None:
        """The first error of the joined middlewares' access checks (``None``: every one
        lets the customer in); a check that fails unexpectedly refuses."""
        for check in self.core.access_checks:
            try:
                result = check(access_token, path)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as error:
                logger.error(
                    "sign-in: the access check raised %s", type(error).__name__, exc_info=error
                )
                return ServerError()
            if result is not None:
                return result
        return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Served on its own: start at once, close the token client at shutdown."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Close the token client's connection pool (the running loop's)."""
        await self.client.aclose()
