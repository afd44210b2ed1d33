"""The request-level decisions both middlewares share, without I/O.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

A shell asks :class:`Gate` which :class:`~lwa_middleware.core.rules.Route` a path takes, hands
:meth:`Gate.resolve` the raw token-bearing headers (bytes) and its verifier's cache lookup,
verifies the token that comes back (if any) with its own verifier, and renders any
:class:`~lwa_middleware.core.errors.LWAError` with :meth:`Gate.deny`.

A token that came from the session cookie on a request whose method can change state is
checked against cross-site request forgery (:mod:`lwa_middleware.core.csrf`) here, before it
is verified or looked up, so no such request reaches the app (and no verdict is given)
unless its ``Origin``/``Referer`` is this site's.

The access policy (:mod:`lwa_middleware.core.policy`) is judged after the scopes, on every
request with an identity: the route's rules (``Route.access``, resolved and memoised with
the route) by :meth:`Gate.admit`, then the ``authorize`` callable, which the shells call
(it may be async under ASGI) and hand to ``policy.callable_verdict``.

"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence

from lwa_middleware.core.csrf import CSRFPolicy, OriginHeaders
from lwa_middleware.core.errors import (
    AccessDenied,
    ConfigurationError,
    LWAError,
    MissingToken,
    render_error,
)
from lwa_middleware.core.models import Identity
from lwa_middleware.core.policy import DENIED, AccessPolicy, PolicySource
from lwa_middleware.core.rules import PathRules, Route
from lwa_middleware.core.settings import LWASettings
from lwa_middleware.core.tokens import TokenFinder

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


#: A cache lookup by a token's bytes (``_VerifierBase.cached_raw``): no I/O.
CachedLookup = Callable[[bytes], "Identity | None"]
#: What the forgery check needs from a request, read only when it runs (no I/O).
OriginReader = Callable[[], OriginHeaders]


def _text(values: Sequence[bytes]) -> list[str]:
    return [value.decode("latin-1") for value in values]


def is_cors_preflight(method: str, origin: object, request_method: object) -> bool:
    """A CORS preflight: ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``
    (browsers never put credentials on one, so it can carry no token to verify)."""
    return method == "OPTIONS" and origin is not None and request_method is not None


def check_on_error(on_error: object) -> None:
    """Refuse an ``on_error`` hook that cannot be called, at construction."""
    if on_error is not None and not callable(on_error):
        raise ConfigurationError(
            f"on_error must be callable (or None), got {type(on_error).__name__}"
        )


def request_id(incoming: str | None) -> str:
    """A sane incoming ``X-Request-ID`` (≤128 of ``[A-Za-z0-9._:-]``), else a new UUID."""
    if incoming is not None and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return str(uuid.uuid4())


class Gate:
    """Path rules, token finding and error rendering for one settings object."""

    __slots__ = ("_warm", "csrf", "finder", "passes_preflights", "rules", "settings")

    def __init__(self, settings: LWASettings, policy: AccessPolicy | None = None) -> None:
        """``policy``: every source's rules, read by the shell
        (:func:`~lwa_middleware.upstream.policy_watch.build_policy`); without one, the keyword
        options' ``allow``/``deny`` only (refused when ``policy_file`` is set: its rules
        must be read first)."""
        self.settings = settings
        #: Whether CORS preflights pass through unverified (``verify_preflight`` off).
        self.passes_preflights = not settings.verify_preflight
        if policy is None:
            if settings.policy_file is not None:
                raise ConfigurationError(
                    "policy_file must be read before a Gate is built (policy_watch.build_policy)"
                )
            policy = AccessPolicy([PolicySource.of("options", settings.allow, settings.deny)])
        self.rules = PathRules(
            settings.protect,
            settings.exclude,
            settings.optional,
            settings.require_scopes,
            policy,
        )
        self.finder = TokenFinder(settings.token_sources, settings.cookie_name, settings.secret_key)
        self._warm = self.finder.warm  # bound once: every request calls it
        self.csrf = CSRFPolicy(settings.csrf_protection, settings.csrf_trusted_origins)

    def route(self, path: str) -> Route:
        """The decision for a path below the mount point."""
        return self.rules.route(path)

    def resolve(
        self,
        route: Route,
        authorization: Sequence[bytes],
        amz_token: Sequence[bytes],
        cookies: Sequence[bytes],
        query_string: str,
        cached: CachedLookup,
        *,
        method: str | None,
        origins: OriginReader,
    ) -> Identity | str | None:
        """A cached identity, the token still to verify, or ``None`` (anonymous on an optional
        route); else ``LWAError``. Headers are raw bytes (latin-1, as HTTP carries them).

        ``method`` is the request's (``None`` for a WebSocket handshake); ``origins`` reads
        what the forgery check needs, called only when a cookie token on an unsafe method
        is checked (:class:`~lwa_middleware.core.csrf.CSRFPolicy`; ``CrossSiteRequest`` when it
        fails).

        The warm path: a request whose token is carried plainly (:meth:`TokenFinder.warm`) is
        looked up by its bytes (one hash, one dict lookup, no decoding); anything else, or a
        miss, takes the full rules of :meth:`token`. A request the forgery check guards
        always takes the full rules (the shortcut cannot tell a cookie token from a header
        one).
        """
        guarded = self.csrf.guards(method)
        if not guarded:
            plain = self._warm(authorization, amz_token, cookies, query_string)
            if plain is not None:
                identity = cached(plain)
                if identity is not None:
                    return identity
        return self.token(
            route,
            _text(authorization),
            _text(amz_token),
            _text(cookies),
            query_string,
            origins=origins if guarded else None,
        )

    def token(
        self,
        route: Route,
        authorization: Sequence[str],
        amz_token: Sequence[str],
        cookies: Sequence[str],
        query_string: str,
        *,
        origins: OriginReader | None = None,
    ) -> str | None:
        """The token to verify; ``None`` on an optional route without one; else ``LWAError``.

        With ``origins`` (the request's method can change state), a token that comes from
        the cookie must pass the forgery check (``CrossSiteRequest``). The cookie is the
        finder's only when no header or query method is there, so finding without the
        cookie first tells exactly where the token came from.
        """
        find = self.finder.find
        if origins is None:
            token = find(authorization, amz_token, cookies, query_string)
        else:
            token = find(authorization, amz_token, (), query_string)
            if token is None and cookies:
                token = find((), (), cookies, "")
                if token is not None:
                    self.csrf.check(origins())
        if token is None and not route.optional:
            raise MissingToken()
        return token

    @staticmethod
    def admit(route: Route, identity: Identity) -> None:
        """The access policy's rules on ``route`` for a verified ``identity`` (after its
        scopes): ``AccessDenied`` when they refuse it."""
        access = route.access
        if access is not None and not access.admits(identity):
            raise AccessDenied(DENIED)

    def admit_path(self, path: str, identity: Identity) -> None:
        """The access policy's rules for ``path`` in every form, whatever the path rules
        decide there (the sign-in's question for its ``next`` path): ``AccessDenied`` when
        they refuse ``identity``."""
        access = self.rules.access(path)
        if access is not None and not access.admits(identity):
            raise AccessDenied(DENIED)

    @property
    def judges_nothing(self) -> bool:
        """Whether the policy has no rule now and there is no ``authorize`` callable."""
        return self.rules.policy.empty and self.settings.authorize is None

    def deny(
        self, error: LWAError, incoming_request_id: str | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """``(status, headers, body)`` of the documented error answer."""
        settings = self.settings
        return render_error(
            error, settings.error_style, settings.realm, request_id(incoming_request_id)
        )
