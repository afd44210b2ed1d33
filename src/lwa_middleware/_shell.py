"""What both middlewares share: one constructor, and the decisions that need I/O half-way.

Layer: ``root`` (the shells'; private).

:class:`Shell` takes the options of :class:`~lwa_middleware.asgi.LWAMiddleware` and
:class:`~lwa_middleware.wsgi.LWAWSGIMiddleware` (one signature, one path: the settings,
the sign-in's refresher, the access policy's sources, the gate, the verifier, the
recorder, the ``user_loader``'s cache) and holds the steps both run
(:mod:`lwa_middleware.upstream.steps`): admitting a verified identity (scopes, the policy's
rules, ``authorize``, then the app's user from the ``user_loader``), the sign-in's question
(``login=``), and a session's refresh. The ASGI shell drives them with ``arun`` (an async
``authorize`` or ``user_loader`` is awaited, a sync loader runs in a worker thread), the
WSGI shell with ``run`` (an async one is refused at construction).

"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import httpx

from lwa_middleware.core.errors import AccessDenied, ConfigurationError, LWAError
from lwa_middleware.core.gate import Gate, check_on_error
from lwa_middleware.core.metrics import Recorder
from lwa_middleware.core.models import Identity
from lwa_middleware.core.policy import (
    DENIED,
    callable_failed,
    callable_verdict,
    is_async_callable,
)
from lwa_middleware.core.rules import Route
from lwa_middleware.core.settings import LWAOptions, LWASettings
from lwa_middleware.core.users import Entry, UserCache, loader_failed
from lwa_middleware.core.verification import authorize
from lwa_middleware.login.core import LoginCore
from lwa_middleware.login.refresh import (
    AsyncRefresher,
    Carried,
    Refresher,
    login_core,
)
from lwa_middleware.upstream.policy_watch import build_policy
from lwa_middleware.upstream.steps import Blocking, Steps
from lwa_middleware.upstream.tracing import Tracer
from lwa_middleware.upstream.verifier import AsyncVerifier, Clock, Verifier

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: A refreshed session: ``(identity, error, cookies to set, the app's user)``.
Recovered = tuple[Identity | None, LWAError | None, tuple[tuple[str, str], ...], Entry | None]

AppT = TypeVar("AppT")
HandlerT = TypeVar("HandlerT")
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
LoginT = TypeVar("LoginT")


class Shell(Generic[AppT, HandlerT, TransportT, LoginT]):
    """The options and the parts of one middleware, wired once (see the subclasses)."""

    #: The verifier's class (``AsyncVerifier`` or ``Verifier``).
    _verifier_type: ClassVar[Any]
    #: The refresher's class (``AsyncRefresher`` or ``Refresher``).
    _refresher_type: ClassVar[Any]
    #: The other shell's sign-in class, refused as ``login=`` when a policy is set.
    _other_login: ClassVar[type]
    #: The name of this shell's own sign-in class (for that refusal's message).
    _login_name: ClassVar[str]
    verifier: Verifier | AsyncVerifier
    _refresh: Refresher | AsyncRefresher | None

    def __init__(
        self,
        app: AppT,
        settings: LWASettings | None = None,
        *,
        on_error: HandlerT | None = None,
        clock: Clock = time.time,
        transport: TransportT | None = None,
        redis: Any = None,
        recorder: Recorder | None = None,
        tracer: Tracer | None = None,
        login: LoginT | LoginCore | None = None,
        **options: Unpack[LWAOptions],
    ) -> None:
        check_on_error(on_error)
        self.app = app
        self.settings = LWASettings.build(settings, dict(options))
        #: ``login=``: expired cookie sessions are refreshed through the sign-in's refresh
        #: cookie (its ``secret_key`` is taken when none is given).
        self._refresh = None if login is None else self._refresher_type.of(login, clock)
        if self._refresh is not None:
            self.settings = self._refresh.join(self.settings)
        self._check(self.settings)
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
        #: ``user_loader``: the app's users, cached by user id (None: no loader).
        self._loader = self.settings.user_loader
        self._async_loader = is_async_callable(self._loader)
        self.users: UserCache | None = None
        if self._loader is not None:
            self.users = UserCache(
                self.settings.user_cache_ttl,
                self.settings.cache_maxsize,
                self._user_view,
                self.settings.user_optional,
            )
        self.verifier = self._verifier_type(
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
        self.recorder: Recorder = self.verifier.recorder
        self._l1_hit: Callable[[], object] = self.verifier.count_l1_hit
        if self._refresh is not None:
            self._refresh.count_with(self.recorder)
            # The sign-in's token calls share the verifier's breaker (one per LWA host).
            self._refresh.client.guard_with(self.verifier.breaker, self.verifier.clock)
        self.on_error = on_error
        self._query = self.gate.finder.reads_query
        self._preflights = self.gate.passes_preflights
        # Bound once: the warm path runs these on every request.
        self._memo = self.gate.rules.memo.get
        self._route = self.gate.rules.route
        #: A lone ``Authorization`` header is looked at first (the warm path).
        self._bearer_first = self.gate.finder.reads_headers and not self._query
        self._key_prefix: bytes = self.verifier.authority.key.prefix
        self._fresh = self.verifier.authority.fresh
        self._clock: Clock = self.verifier.clock
        if login is not None and (
            self.policy.configured or self._judge is not None or self.users is not None
        ):
            if isinstance(login, self._other_login):
                raise ConfigurationError(
                    f"login= must be an {self._login_name} (or its LoginCore) for "
                    f"{type(self).__name__} when an access policy or a user_loader is set: "
                    "the sign-in checks them with this middleware"
                )
            login_core(login).access_checks.append(self.sign_in_check)
        self._bind()

    def _bind(self) -> None:
        """Bind what the shell's warm path calls (once, at construction)."""

    def _check(self, settings: LWASettings) -> None:
        """Refuse what this shell cannot run (a ``ConfigurationError``)."""

    @staticmethod
    def _user_view(user: Any) -> Any:
        """What the framework gets as its own user for a loaded one (ASGI: Starlette's
        ``scope["user"]`` when it is a ``BaseUser``); ``None``: nothing."""
        return None

    def forget_user(self, user_id: str) -> None:
        """Drop the app's user of ``user_id`` from this worker's cache: their next request
        asks the ``user_loader`` again (other workers: within ``user_cache_ttl``)."""
        if self.users is not None:
            self.users.forget(user_id)

    def stats(self) -> dict[str, Any]:
        """What the middleware counted, as a JSON-safe ``dict``: verifications by outcome,
        L1/L2 hits and misses, LWA calls by endpoint and status with their latency, errors
        answered, the circuit breaker, stale answers, ... (the verifier's ``stats``)."""
        return self.verifier.stats()

    # The steps both shells run --------------------------------------------------------

    def _refusal(self, route: Route, identity: Identity, now: float) -> AccessDenied | None:
        """The warm path's access policy, before ``authorize``: the policy files looked at
        (at most once a second), then the route's rules."""
        if self._tick is not None:
            self._tick(now)
        access = route.access
        if access is not None and not access.admits(identity):
            return AccessDenied(DENIED)
        return None

    def _authorized(self, identity: Identity, method: str, path: str) -> Steps[None]:
        """Ask ``authorize`` (awaited by the ASGI shell, refused as async by the WSGI one):
        ``AccessDenied`` on ``False``; a ``ServerError`` when it raises or answers
        something else (logged)."""
        assert self._judge is not None
        try:
            result = yield partial(self._judge, identity, method, path)
        except Exception as error:
            raise callable_failed(error) from None
        callable_verdict(result)

    def _judged(self, identity: Identity, method: str, path: str) -> Steps[LWAError | None]:
        """:meth:`_authorized`'s refusal, returned (``None``: admitted)."""
        try:
            yield from self._authorized(identity, method, path)
        except LWAError as error:
            return error
        return None

    def _rules(self, identity: Identity, route: Route) -> None:
        """Whether a verified identity may enter by the route's scopes, then the access
        policy's rules; raises the ``LWAError`` to answer (``authorize`` comes next)."""
        authorize(identity, route.required_scopes)
        self.gate.admit(route, identity)

    def _admit(
        self, identity: Identity, route: Route, method: str, path: str
    ) -> Steps[Entry | None]:
        """:meth:`_rules`, then ``authorize``, then the app's user (:meth:`_user`; ``None``
        without a ``user_loader``); raises the ``LWAError`` to answer."""
        self._rules(identity, route)
        if self._judge is not None:
            yield from self._authorized(identity, method, path)
        if self.users is None:
            return None
        return (yield from self._user(identity, path, self._clock()))

    def _user(self, identity: Identity, path: str, now: float) -> Steps[Entry]:
        """The app's user of an admitted customer: the cached entry, else the
        ``user_loader``'s answer (a sync loader is a :class:`Blocking` step: a worker thread
        under ASGI, since it may wait on a database), settled by :meth:`UserCache.settle`:
        ``NoAccount`` for ``None`` outside ``user_optional``, a ``ServerError`` when it
        raises."""
        assert self.users is not None
        assert self._loader is not None
        entry = self.users.get(identity.user_id, now)
        if entry is not None:
            return entry
        call = partial(self._loader, identity)
        try:
            user = yield (call if self._async_loader else Blocking(call))
        except Exception as error:
            raise loader_failed(error) from None
        return self.users.settle(identity.user_id, user, path, now)

    def _sign_in_check(self, access_token: str, path: str) -> Steps[LWAError | None]:
        """The sign-in's question (``login=``): may the customer of a new access token enter
        ``path`` with a ``GET``? ``None`` when yes (or when no policy is set), else the
        error: ``AccessDenied``, or the verification's own. The token is verified (and so
        cached) by this middleware's verifier."""
        if self._tick is not None:
            self._tick(self._clock())
        if self.gate.judges_nothing and self.users is None:
            return None
        try:
            identity = yield partial(self.verifier.verify, access_token)
            self.gate.admit_path(path, identity)
            if self._judge is not None:
                yield from self._authorized(identity, "GET", path)
            if self.users is not None:  # no account: refused here, no session cookie
                yield from self._user(identity, path, self._clock())
        except LWAError as error:
            return error
        return None

    def sign_in_check(self, access_token: str, path: str) -> Any:
        """The sign-in's question (``login=``); see the shells."""
        raise NotImplementedError

    def _recovered(
        self,
        route: Route,
        error: LWAError | None,
        tokens: Carried,
        method: str,
        path: str,
        guard: Callable[[], None],
    ) -> Steps[Recovered]:
        """A cookie session that failed with ``error`` (``None``: none on an optional
        route), refreshed through ``login=`` when :mod:`lwa_middleware.login.session` says
        so: ``(identity, error, cookies to set, the app's user)``: the new identity
        (admitted), or the sign-out (``error``, cookies cleared), or the request as it
        was."""
        assert self._refresh is not None
        headers: Sequence[tuple[str, str]] = ()
        identity: Identity | None = None
        entry: Entry | None = None
        try:
            identity, error, headers = yield from self._refresh.recovery(
                error, tokens, self.verifier.verify, guard, self.verifier.revocations_ready
            )
            if identity is not None:
                entry = yield from self._admit(identity, route, method, path)
        except LWAError as failure:
            error = failure
        return identity, error, tuple(headers), entry
