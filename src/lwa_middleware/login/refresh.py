"""The transparent refresh's I/O: one refresh grant per session at a time.

Layer: ``login``.

:class:`AsyncRefresher` (``LWAMiddleware``) and :class:`Refresher` (``LWAWSGIMiddleware``)
run what :class:`~lwa_middleware.login.session.SessionRules` decides: the refresh grant,
then the middleware's own verifier on the new access token. Both run the same steps
(``recovery``, written once: :mod:`lwa_middleware.upstream.steps`); they differ only in how
concurrent requests share one refresh. Concurrent requests of one
session (the same refresh token) share one flight, keyed by the plan's SHA-256 of the
refresh token: an asyncio task per event loop that every waiter awaits shielded (a
waiter that goes away never cancels it), or a leading thread the others wait for. All of
them get the same outcome, and so the same ``Set-Cookie`` headers; a failure is shared
only with the requests that waited on that flight. Outcomes are then kept a minute
(:class:`~lwa_middleware.login.session.RecentRefreshes`) for requests that still carry
the old cookies. A session signed out (sign-out's revocations) or past ``session_max_age``
is never refreshed nor answered from that memo: its cookies are cleared, ``invalid_token``.

:func:`send_with_headers` and :func:`start_response_with_headers` add the cookies to
whatever the app (or the error answer) sends.

"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from lwa_middleware.core.errors import ConfigurationError, LWAError, LWAUnavailable
from lwa_middleware.core.grants import GrantError, InvalidGrant, TokenGrant
from lwa_middleware.core.metrics import Recorder
from lwa_middleware.core.models import Identity
from lwa_middleware.core.settings import LWASettings
from lwa_middleware.core.tokens import query_tokens
from lwa_middleware.login.config import LoginConfig
from lwa_middleware.login.cookies import Header, with_session_cookies
from lwa_middleware.login.core import LoginCore
from lwa_middleware.login.session import Outcome, RefreshPlan, SessionRules, SignedOut
from lwa_middleware.upstream.steps import Steps, arun, run
from lwa_middleware.upstream.token_client import AsyncTokenClient, TokenClient

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse
    from starlette.types import Message, Send
    from typing_extensions import Self

Clock = Callable[[], float]
#: What a request carried: its ``Authorization`` and ``x-amz-access-token`` values, its
#: ``Cookie`` headers, and its query string (``""`` when the query is not read).
Carried = tuple[Sequence[bytes], Sequence[bytes], Sequence[bytes], str]
#: ``(identity or None, error or None, Set-Cookie headers)``: see ``SessionRules.resolve``.
Recovery = tuple[Identity | None, LWAError | None, tuple[Header, ...]]
#: How long a thread waits, beyond the token client's own deadline, for another thread's
#: flight (the leader's grant and verification are each held to a deadline of their own).
WAIT_MARGIN = 30.0


def _text(values: Sequence[bytes]) -> list[str]:
    return [value.decode("latin-1") for value in values]


def _copy(error: BaseException) -> BaseException:
    """A fresh instance for each waiter (one exception object is never raised twice)."""
    return type(error)(error.description) if isinstance(error, LWAError) else error


def login_core(login: object) -> LoginCore:
    """The :class:`LoginCore` of ``login=`` (an ``LWALogin``, an ``LWAWSGILogin`` or a core)."""
    core = login if isinstance(login, LoginCore) else getattr(login, "core", None)
    if not isinstance(core, LoginCore):
        raise ConfigurationError(
            f"login must be an LWALogin, an LWAWSGILogin or a LoginCore, got {type(login).__name__}"
        )
    return core


class _RefresherBase:
    """The plan and the grant's settlement, shared by both refreshers."""

    client: TokenClient | AsyncTokenClient

    def __init__(self, session: SessionRules, client: Any, clock: Clock) -> None:
        self.session = session
        self.client = client
        self.clock = clock

    def join(self, settings: LWASettings) -> LWASettings:
        """The middleware's settings with the sign-in's cookie rules (see
        :meth:`SessionRules.adopt`)."""
        return self.session.adopt(settings)

    def count_with(self, recorder: Recorder) -> None:
        """Count the sign-in's token calls with the middleware's ``recorder``, unless its
        token client already has one of its own."""
        if self.client.recorder is None:
            self.client.recorder = recorder

    def _plan(self, error: LWAError | None, tokens: Carried) -> RefreshPlan | SignedOut | None:
        authorization, amz_token, cookies, query_string = tokens
        return self.session.plan(
            error,
            _text(authorization),
            _text(amz_token),
            _text(cookies),
            bool(query_string) and bool(query_tokens(query_string)),
            self.clock(),
        )

    @classmethod
    def of(cls, login: object, clock: Clock = time.time) -> Self:
        """``login``'s own refresher (an ``LWALogin``'s for :class:`AsyncRefresher`, an
        ``LWAWSGILogin``'s for :class:`Refresher`), else a new one for its core."""
        refresher = getattr(login, "refresher", None)
        if isinstance(refresher, cls):
            return refresher
        core = login_core(login)
        return cls(core.session, cls._new_client(core.config), clock)

    @staticmethod
    def _new_client(config: LoginConfig) -> Any:
        """A token client of the refresher's kind, with the sign-in's options."""
        raise NotImplementedError

    def recovery(
        self,
        error: LWAError | None,
        tokens: Carried,
        verify: Callable[[str], Any],
        guard: Callable[[], None] | None = None,
        ready: Callable[[], Any] | None = None,
    ) -> Steps[Recovery]:
        """The request's identity after a refresh, the error to answer, and the cookies to
        set, as steps (:mod:`lwa_middleware.upstream.steps`); raises ``LWAError``
        (``ServerError``: cookies kept) when LWA failed. ``tokens`` are what the request
        carried (:data:`Carried`).

        ``verify`` is the middleware's verifier's. ``guard`` runs before a planned refresh,
        and may raise (the middleware's forgery check, for a method that can change state:
        the refresh cookie authenticates too). ``ready`` is run before the session's
        revocation is looked up (a new worker's first read of the fleet's revocations)."""
        plan = self._plan(error, tokens)
        if plan is not None and guard is not None:
            guard()
        if not isinstance(plan, RefreshPlan):
            return SessionRules.resolve(error, plan)
        if ready is not None:
            yield ready
        outcome = self._known(plan)
        if outcome is None:
            outcome = yield partial(self._flight, plan, verify)
        return SessionRules.resolve(error, outcome)

    def _known(self, plan: RefreshPlan) -> Outcome | None:
        """The outcome without a grant: the session ended, or refreshed a moment ago."""
        ended = self.session.ended(plan, self.clock())
        if ended is not None:
            return ended
        return self.session.recent.get(plan.key, self.clock())

    def _flight(self, plan: RefreshPlan, verify: Callable[[str], Any]) -> Any:
        """The outcome of the session's one refresh in flight (led, or waited for)."""
        raise NotImplementedError

    def _refreshing(self, plan: RefreshPlan, verify: Callable[[str], Any]) -> Steps[Outcome]:
        """One refresh: the grant, then the middleware's verification of the new token."""
        session = self.session
        answer: TokenGrant | GrantError
        try:
            answer = yield partial(self.client.refresh, plan.refresh_token, **self._grant_args())
        except GrantError as error:
            answer = error
        except (TypeError, ValueError):  # a refresh token no grant can carry
            answer = InvalidGrant()
        settled = session.settle(answer, self.clock())
        if isinstance(settled, TokenGrant):
            identity = yield partial(verify, settled.access_token)
            now = self.clock()
            outcome: Outcome = session.ended(plan, now) or session.refreshed(
                settled, identity, now, plan.session
            )
        else:
            outcome = settled
        session.recent.put(plan.key, outcome)
        return outcome

    def _grant_args(self) -> dict[str, Any]:
        config = self.session.config
        return {"client_id": config.client_id, "client_secret": config.client_secret}


class AsyncRefresher(_RefresherBase):
    """Refreshes cookie sessions for ``LWAMiddleware``: one task per session and loop."""

    client: AsyncTokenClient

    def __init__(self, session: SessionRules, client: AsyncTokenClient, clock: Clock) -> None:
        super().__init__(session, client, clock)
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[bytes, asyncio.Task[Outcome]]
        ] = weakref.WeakKeyDictionary()

    @staticmethod
    def _new_client(config: LoginConfig) -> AsyncTokenClient:
        return AsyncTokenClient(config.api_base_url, **config.client_options())

    async def _flight(
        self, plan: RefreshPlan, verify: Callable[[str], Awaitable[Identity]]
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        flights = self._loops.get(loop)
        if flights is None:
            flights = self._loops[loop] = {}
        task = flights.get(plan.key)
        if task is None:
            task = loop.create_task(arun(self._refreshing(plan, verify)))
            flights[plan.key] = task
            task.add_done_callback(partial(_landed, flights, plan.key))
        try:
            return await asyncio.shield(task)
        except LWAError as error:
            raise _copy(error) from None

    async def aclose(self) -> None:
        """Close the token client's pool for the running loop."""
        await self.client.aclose()


def _landed(
    flights: dict[bytes, asyncio.Task[Outcome]], key: bytes, task: asyncio.Task[Outcome]
) -> None:
    """A flight ended: forget it, and mark its failure retrieved (nobody may be waiting)."""
    if flights.get(key) is task:
        del flights[key]
    if not task.cancelled():
        task.exception()


class _Flight:
    __slots__ = ("done", "error", "outcome")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None


class Refresher(_RefresherBase):
    """Refreshes cookie sessions for ``LWAWSGIMiddleware``: one leading thread per session."""

    client: TokenClient

    def __init__(self, session: SessionRules, client: TokenClient, clock: Clock) -> None:
        super().__init__(session, client, clock)
        self._flights: dict[bytes, _Flight] = {}
        self._lock = threading.Lock()
        self._wait = client.timeout + WAIT_MARGIN

    @staticmethod
    def _new_client(config: LoginConfig) -> TokenClient:
        return TokenClient(config.api_base_url, **config.client_options())

    def _flight(self, plan: RefreshPlan, verify: Callable[[str], Identity]) -> Outcome:
        recent = self.session.recent
        with self._lock:
            flight = self._flights.get(plan.key)
            leader = flight is None
            if flight is None:
                # A leader may have landed since the look in recovery().
                outcome = recent.get(plan.key, self.clock())
                if outcome is not None:
                    return outcome
                flight = self._flights[plan.key] = _Flight()
        if not leader:
            if not flight.done.wait(self._wait):
                raise LWAUnavailable("Login with Amazon timed out.")
            if flight.error is not None:
                raise _copy(flight.error) from None
            assert flight.outcome is not None
            return flight.outcome
        try:
            flight.outcome = run(self._refreshing(plan, verify))
            return flight.outcome
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[plan.key]
            flight.done.set()

    def close(self) -> None:
        """Close the token client's pool."""
        self.client.close()


def send_with_headers(send: Send, headers: Sequence[Header]) -> Send:
    """ASGI ``send`` that adds ``headers`` (cookies) to the response's start, its
    ``Cache-Control`` made ``private, no-store`` (``cookies.with_session_cookies``)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            sent = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())
            ]
            out = with_session_cookies(sent, headers)
            encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out]
            message = {**message, "headers": encoded}
        await send(message)

    return wrapped


def start_response_with_headers(
    start_response: StartResponse, headers: Sequence[Header]
) -> StartResponse:
    """WSGI ``start_response`` that adds ``headers`` (cookies) to the response's, its
    ``Cache-Control`` made ``private, no-store``."""

    def wrapped(
        status: str, response_headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], object]:
        return start_response(status, with_session_cookies(response_headers, headers), exc_info)

    return wrapped
