"""What both sign-in apps share: their options, the core, and the sign-in's one I/O step.

Layer: ``login``.

:class:`LoginShell` takes the options (one constructor for :class:`~.asgi.LWALogin` and
:class:`~.wsgi.LWAWSGILogin`), builds the :class:`~lwa_middleware.login.core.LoginCore`,
and answers a request as a generator of steps (:mod:`lwa_middleware.upstream.steps`): the
core's answer, or, on the callback, the code exchange on the token client and the joined
middlewares' access checks, then the core's answer to them. The ASGI shell drives it with
``arun``, the WSGI shell with ``run`` (where an async access check is refused: the sign-in
is then refused, ``ServerError``).

"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from functools import partial
from typing import Generic, TypeVar

import httpx

from lwa_middleware.core.errors import LWAError, ServerError
from lwa_middleware.core.grants import GrantError, TokenGrant
from lwa_middleware.login.config import DEFAULT_AUTHORIZE_URL, DEFAULT_SESSION_MAX_AGE, LoginConfig
from lwa_middleware.login.core import Exchange, LoginCore, LoginRequest, policy_path
from lwa_middleware.login.pages import Answer
from lwa_middleware.login.refresh import AsyncRefresher, Clock, Refresher
from lwa_middleware.upstream.steps import Steps
from lwa_middleware.upstream.token_client import AsyncTokenClient, TokenClient

logger = logging.getLogger("lwa_middleware")

TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
ClientT = TypeVar("ClientT", TokenClient, AsyncTokenClient)
RefresherT = TypeVar("RefresherT", Refresher, AsyncRefresher)


class LoginShell(Generic[TransportT, ClientT, RefresherT]):
    """``/login?next=``, the callback and ``/logout`` of a website signing in with Amazon.

    ``(client_id, client_secret=None, *, redirect_uri=..., secret_key=...)``; the other
    options are described in ``docs/login.md``. ``clock`` and ``transport`` are for tests
    (a fake clock; an ``httpx`` transport for the token endpoint: a sync one for
    ``LWAWSGILogin``, an async one for ``LWALogin``).
    """

    #: The token endpoint's client (its pool is closed by ``aclose``/``close``).
    client: ClientT
    #: What the middleware given ``login=self`` refreshes sessions with (the same client).
    refresher: RefresherT

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
        transport: TransportT | None = None,
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
        self._connect(config, transport)

    def _connect(self, config: LoginConfig, transport: TransportT | None) -> None:
        """Set :attr:`client` and :attr:`refresher` (the shell's kind)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        config = self.core.config
        return f"{type(self).__name__}({config.client_id!r}, redirect_uri={config.redirect_uri!r})"

    def _answer(self, request: LoginRequest) -> Steps[Answer]:
        """The answer to a request: the core's; on the callback, after the code exchange
        and the access checks (the steps the shell runs)."""
        step = self.core.handle(request, self.clock())
        if not isinstance(step, Exchange):
            return step
        answer: TokenGrant | GrantError | ServerError
        try:
            answer = yield partial(
                self.client.exchange_code,
                step.code,
                redirect_uri=step.redirect_uri,
                client_id=step.client_id,
                client_secret=step.client_secret,
                code_verifier=step.code_verifier,
            )
        except (GrantError, ServerError) as error:  # ServerError: refused, LWA not asked
            answer = error
        refusal = None
        if isinstance(answer, TokenGrant) and self.core.access_checks:
            refusal = yield from self._refusal(answer.access_token, policy_path(step.next))
        return self.core.exchanged(step, answer, self.clock(), refusal)

    def _refusal(self, access_token: str, path: str) -> Steps[LWAError | None]:
        """The first error of the joined middlewares' access checks (``None``: every one
        lets the customer in); a check that fails unexpectedly (or that is async under the
        WSGI shell, which cannot await it) refuses."""
        for check in self.core.access_checks:
            try:
                result = yield partial(check, access_token, path)
            except Exception as error:
                logger.error(
                    "sign-in: the access check raised %s", type(error).__name__, exc_info=error
                )
                return ServerError()
            if result is not None:
                return result  # type: ignore[no-any-return]
        return None
