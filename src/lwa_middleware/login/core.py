"""``LoginCore``: the sign-in app's decisions for ``/login``, ``/callback`` and ``/logout``,
without I/O.

Layer: ``login`` (website sign-in; see ``ARCHITECTURE.md``).

A shell turns its request into a :class:`LoginRequest` and calls :meth:`LoginCore.handle`
with the time. The answer is ``(status, headers, body)`` to write back as it is, or an
:class:`Exchange`: the one I/O step (the code for tokens at LWA), whose result the shell
hands to :meth:`LoginCore.exchanged` for the answer.

* ``GET /login?next=``: a new state and PKCE pair (:mod:`.state`), the login cookie, and a
  302 to the authorize URL with ``client_id``, ``scope``, ``response_type=code``,
  ``redirect_uri``, ``state``, ``code_challenge`` and ``code_challenge_method=S256``
  (always: Amazon assumes ``plain`` without it).
* ``GET <redirect_uri's path>``: the callback. The login cookie is cleared whatever
  happens; Amazon's ``error`` (``access_denied``…) or a state that fails a rule is a page
  (JSON when ``Accept`` asks for it); else the code is exchanged with the verifier (and the
  client secret, when configured), the session cookies set (:mod:`.session`), and the
  browser sent to ``next`` (a local path, else ``/``: :mod:`.redirects`).
* A sign-in joined to a middleware (``login=``) that has an access policy: after the
  exchange, the shell asks the middleware (:attr:`LoginCore.access_checks`) whether the
  customer may ``GET`` the ``next`` path (:func:`policy_path`); one it refuses gets a page
  saying so (403 ``access_denied``) and no session cookie; so does one without an account
  on this site (a middleware's ``user_loader`` answered ``None``: a page of its own).
* ``GET /logout``: a confirm page whose form ``POST``\\s; ``POST /logout`` from this site
  (same-origin ``Origin``, else ``Referer``) revokes the session and clears the cookies;
  from elsewhere, 403. LWA has no revocation endpoint for websites, so sign-out revokes here
  (:meth:`SessionRules.revoke <lwa_middleware.login.session.SessionRules.revoke>`): the
  access token until it expires, the session until it would have ended, refused by every
  middleware given ``login=`` (and, with a shared cache, by every worker of the fleet).

``/login`` and ``/logout`` are matched below the mount point, the callback by its full
path, so the app works wherever it is mounted.

"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from lwa_middleware.core.csrf import CSRFPolicy, OriginHeaders
from lwa_middleware.core.errors import (
    AccessDenied,
    CrossSiteRequest,
    LWAError,
    NoAccount,
    ServerError,
)
from lwa_middleware.core.grants import GrantError, GrantUnavailable, TokenGrant
from lwa_middleware.login.config import LoginConfig
from lwa_middleware.login.cookies import Sealer, clear_cookie, read_cookie, set_cookie
from lwa_middleware.login.pages import (
    Answer,
    Header,
    confirm_logout,
    error_answer,
    json_answer,
    redirect,
    wants_json,
)
from lwa_middleware.login.redirects import HOME, safe_next
from lwa_middleware.login.session import SessionRules
from lwa_middleware.login.state import STATE_MAX_AGE, StateKeeper, StateProblem, UsedNonces

#: The longest authorization code accepted from the query string.
MAX_CODE_CHARS = 2048
_CODE = re.compile(r"[\x21-\x7e]+")
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")

#: Amazon's authorize errors (RFC 6749 §4.1.2.1): status and the sentence shown.
_AMAZON_ERRORS = {
    "access_denied": (
        403,
        "You chose not to share your Amazon account with this site, so you are not signed in.",
    ),
    "server_error": (502, "Amazon could not complete the sign-in right now. Please try again."),
    "temporarily_unavailable": (
        503,
        "Amazon could not complete the sign-in right now. Please try again.",
    ),
}
_AMAZON_REFUSED = (400, "Amazon refused this site's sign-in request. Please try again later.")
#: The page of a customer the access policy refuses (it names no rule).
NOT_ALLOWED = (
    "You signed in with Amazon, but this Amazon account is not allowed to use this site, "
    "so you are not signed in here. If you have another Amazon account that is, sign in "
    "with it; otherwise ask the site's owner for access."
)
#: The page of a customer without an account here (the ``user_loader`` answered ``None``).
NO_ACCOUNT = (
    "You signed in with Amazon, but there is no account on this site for this Amazon "
    "account, so you are not signed in here. If your account here is linked to another "
    "Amazon account, sign in with that one; otherwise ask the site's owner for an account."
)
#: The page when this site (its ``authorize`` or ``user_loader``) failed to decide.
SITE_FAILED = "This site could not finish signing you in right now. Please try again later."

#: ``check(access_token, path)``: whether the customer of a new access token may ``GET``
#: ``path`` under the access policy of a middleware this sign-in is joined to (``None``:
#: yes; else the error); async under ASGI.
AccessCheck = Callable[[str, str], "LWAError | Awaitable[LWAError | None] | None"]


def policy_path(next_path: str) -> str:
    """The path the access policy judges for a validated ``next``: its path, without the
    query, decoded once (as a server hands a path to the app)."""
    return unquote(urlsplit(next_path).path) or "/"


@dataclass(frozen=True)
class LoginRequest:
    """What the core needs of a request (the shells build it from a scope or an environ)."""

    method: str
    #: The path below the mount point (ASGI: without ``root_path``; WSGI: ``PATH_INFO``).
    path: str
    #: The mount point (ASGI ``root_path``, WSGI ``SCRIPT_NAME``), ``""`` at the root.
    root_path: str = ""
    query_string: str = ""
    cookies: tuple[str, ...] = field(default=(), repr=False)
    accept: str | None = None
    #: Every ``Host``, ``Origin`` and ``Referer`` value, as the middlewares read them
    #: (:func:`~lwa_middleware.core.csrf.origin_headers`); none by default.
    origins: OriginHeaders = field(default=OriginHeaders(None), repr=False)

    @property
    def full_path(self) -> str:
        return self.root_path + self.path


@dataclass(frozen=True)
class Exchange:
    """The callback's I/O step: exchange ``code`` at LWA, then :meth:`LoginCore.exchanged`."""

    code: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str
    client_id: str
    client_secret: str | None = field(repr=False)
    next: str
    json_mode: bool
    retry_href: str


def _one(params: dict[str, list[str]], name: str) -> str | None:
    """A query parameter given exactly once (twice is as good as forged)."""
    values = params.get(name)
    return values[0] if values is not None and len(values) == 1 else None


class LoginCore:
    """The sign-in's decisions for one :class:`LoginConfig` (thread-safe; one per app)."""

    def __init__(self, config: LoginConfig, *, used_nonces: UsedNonces | None = None) -> None:
        self.config = config
        self.session = SessionRules(config)
        #: Sign-out's revoked keys (the middlewares given ``login=`` share them).
        self.revocations = self.session.revocations
        # The login cookie has a sealing key of its own (HKDF info "login-cookie").
        sealer = Sealer(config.secrets, "login-cookie")
        self.states = StateKeeper(config.secrets, sealer, used_nonces)
        self._callback = config.callback_path
        # A __Host- cookie must be Path=/; else the login cookie goes to the callback only.
        self._login_path = "/" if config.host_prefixed else self._callback
        url = config.authorize_url
        self._authorize = url + ("&" if urlsplit(url).query else "?")
        self._csrf = CSRFPolicy(True, [config.origin])
        #: The access policies of the middlewares joined through ``login=``: each must let
        #: the customer ``GET`` the ``next`` path before a session cookie is set.
        self.access_checks: list[AccessCheck] = []

    # Requests ----------------------------------------------------------------------------

    def handle(self, request: LoginRequest, now: float) -> Answer | Exchange:
        """The answer to ``request``, or the code exchange to run first."""
        if request.full_path == self._callback:
            step = self._callback_step(request, now)
        elif request.path == "/login":
            step = self._login(request, now)
        elif request.path == "/logout":
            step = self._logout(request, now)
        else:
            step = error_answer(
                404,
                "not_found",
                "There is no such sign-in page.",
                json_mode=wants_json(request.accept),
            )
        if request.method == "HEAD" and not isinstance(step, Exchange):
            status, headers, _ = step
            return status, headers, b""
        return step

    def _not_allowed(self, request: LoginRequest, allow: str) -> Answer:
        return error_answer(
            405,
            "method_not_allowed",
            f"This sign-in page answers {allow} only.",
            json_mode=wants_json(request.accept),
            headers=[("allow", allow)],
        )

    def _login(self, request: LoginRequest, now: float) -> Answer:
        if request.method not in ("GET", "HEAD"):
            return self._not_allowed(request, "GET, HEAD")
        params = parse_qs(request.query_string, keep_blank_values=True)
        next_path = safe_next(_one(params, "next"))
        start = self.states.start(next_path, now)
        config = self.config
        query = urlencode(
            {
                "client_id": config.client_id,
                "scope": " ".join(config.scopes),
                "response_type": "code",
                "redirect_uri": config.redirect_uri,
                "state": start.state,
                "code_challenge": start.code_challenge,
                "code_challenge_method": "S256",
            },
            quote_via=quote,
        )
        cookie = set_cookie(
            self.session.login_cookie_name,
            start.cookie_value,
            path=self._login_path,
            max_age=STATE_MAX_AGE,
            secure=config.secure,
        )
        return redirect(self._authorize + query, [cookie])

    def _clear_login(self) -> Header:
        return clear_cookie(
            self.session.login_cookie_name, path=self._login_path, secure=self.config.secure
        )

    def _callback_step(self, request: LoginRequest, now: float) -> Answer | Exchange:
        json_mode = wants_json(request.accept)
        if request.method != "GET":
            return self._not_allowed(request, "GET")
        params = parse_qs(request.query_string, keep_blank_values=True)
        clear = [self._clear_login()]
        retry = request.root_path + "/login"
        ticket = self.states.check(
            _one(params, "state"),
            read_cookie(request.cookies, self.session.login_cookie_name),
            now,
        )
        if "error" in params:
            refused = _one(params, "error") or ""
            status, sentence = _AMAZON_ERRORS.get(refused, _AMAZON_REFUSED)
            shown = refused if _ERROR_CODE.fullmatch(refused) else "invalid_request"
            return error_answer(
                status, shown, sentence, json_mode=json_mode, retry_href=retry, headers=clear
            )
        if isinstance(ticket, StateProblem):
            return error_answer(
                400,
                "invalid_state",
                f"{ticket.value} Please sign in again.",
                json_mode=json_mode,
                retry_href=retry,
                headers=clear,
            )
        code = _one(params, "code")
        if not code or len(code) > MAX_CODE_CHARS or not _CODE.fullmatch(code):
            return error_answer(
                400,
                "invalid_request",
                "Amazon's answer is missing the authorization code. Please sign in again.",
                json_mode=json_mode,
                retry_href=retry,
                headers=clear,
            )
        config = self.config
        return Exchange(
            code=code,
            code_verifier=ticket.verifier,
            redirect_uri=config.redirect_uri,
            client_id=config.client_id,
            client_secret=config.client_secret,
            next=safe_next(ticket.next),
            json_mode=json_mode,
            retry_href=retry,
        )

    def exchanged(
        self,
        exchange: Exchange,
        answer: TokenGrant | GrantError | ServerError,
        now: float,
        refusal: LWAError | None = None,
    ) -> Answer:
        """The callback's answer once LWA answered the code exchange (and, for a grant,
        once :attr:`access_checks` answered: ``refusal`` is the first error one gave), or
        once the token client refused to ask it (a
        :class:`~lwa_middleware.core.errors.ServerError`: too many sign-ins at once,
        ``Overloaded``, or the circuit breaker open: 503 with ``Retry-After``)."""
        clear = [self._clear_login()]

        def failed(status: int, error: str, sentence: str, *extra: Header) -> Answer:
            return error_answer(
                status,
                error,
                sentence,
                json_mode=exchange.json_mode,
                retry_href=exchange.retry_href,
                headers=[*clear, *extra],
            )

        if isinstance(answer, ServerError):
            return failed(
                503,
                "temporarily_unavailable",
                "Too many sign-ins are under way right now. Please try again in a moment.",
                ("retry-after", str(answer.retry_after or 1)),
            )
        if isinstance(answer, GrantUnavailable):
            return failed(502, "temporarily_unavailable", _AMAZON_ERRORS["server_error"][1])
        if isinstance(answer, GrantError):
            if answer.error == "invalid_grant":
                return failed(
                    400,
                    "invalid_grant",
                    "Amazon did not accept the sign-in (it expired or was already used). "
                    "Please sign in again.",
                )
            return failed(
                500,
                "ServerError",
                f"This site's sign-in is misconfigured: Amazon answered {answer.error}.",
            )
        if isinstance(refusal, NoAccount):
            return failed(403, "access_denied", NO_ACCOUNT)
        if isinstance(refusal, AccessDenied):
            return failed(403, "access_denied", NOT_ALLOWED)
        if type(refusal) is ServerError:  # authorize or user_loader failed (not LWA)
            return failed(500, "server_error", SITE_FAILED)
        if refusal is not None:  # the policy could not be judged: no session
            return failed(502, "temporarily_unavailable", _AMAZON_ERRORS["server_error"][1])
        try:
            cookies = self.session.issue(answer, now)
        except LWAError:
            return failed(502, "temporarily_unavailable", _AMAZON_ERRORS["server_error"][1])
        return redirect(exchange.next, [*clear, *cookies])

    def _logout(self, request: LoginRequest, now: float) -> Answer:
        json_mode = wants_json(request.accept)
        params = parse_qs(request.query_string, keep_blank_values=True)
        next_path = safe_next(_one(params, "next"))
        if request.method in ("GET", "HEAD"):
            action = request.full_path
            if next_path != HOME:
                action += "?" + urlencode({"next": next_path})
            return confirm_logout(action, json_mode=json_mode)
        if request.method != "POST":
            return self._not_allowed(request, "GET, HEAD, POST")
        if not self.same_origin(request):
            return error_answer(
                403,
                "invalid_origin",
                "The sign-out request did not come from this site.",
                json_mode=json_mode,
            )
        self.session.revoke(request.cookies, now)
        cookies = [*self.session.cleared(), self._clear_login()]
        if json_mode:
            return json_answer(200, {"signed_out": True}, cookies)
        return redirect(next_path, cookies, status=303)

    def same_origin(self, request: LoginRequest) -> bool:
        """Whether an unsafe request comes from this site, by the middlewares' forgery rule
        (:mod:`lwa_middleware.core.csrf`): its one ``Origin`` (else its one ``Referer``'s origin)
        is the request's own (``scheme://Host``) or ``redirect_uri``'s. Neither header,
        ``Origin: null``, or a repeated one (every value is read), is refused."""
        try:
            self._csrf.check(request.origins)
        except CrossSiteRequest:
            return False
        return True
