"""The demo app of ``lwa-middleware demo``: a small Starlette site behind ``LWAMiddleware``.

Layer: ``cli`` (the command, on top of everything; see ``ARCHITECTURE.md``).

The whole story of a site that trusts Login with Amazon, against the emulator:

* ``/``: the home page (a token is optional). A browser gets HTML with a **Login with
  Amazon** button (or, signed in, the customer's name); curl gets plain-text instructions;
* ``/auth/login``, ``/auth/callback``, ``/auth/logout``: :class:`~lwa_middleware.LWALogin`
  (authorization code with PKCE), which sets the signed session cookie;
* ``/profile``: protected; the signed-in customer's profile as a page (a browser without a
  session gets a page saying so, with the same status the API would answer);
* ``/public``: JSON anyone may read (excluded);
* ``/me``: protected; the customer's profile and granted scopes as JSON;
* ``/zip``: protected and requires the ``postal_code`` scope;
* ``/hello``: optional; greets the customer, or "anonymous" without a token;
* ``/metrics``: the middleware's Prometheus metrics (``prometheus_client``, which the
  ``emulator`` extra installs with the demo; without it the demo says so and does not
  list the route), ``/stats`` the same counters as JSON. Both are operator endpoints,
  excluded on purpose and said to be: a scraper has no Amazon token, and a customer's
  token proves a customer, not an operator (in production they belong on an internal
  port or behind the network's access control).

The API routes take the token as ``Authorization: Bearer``, ``x-amz-access-token`` or the
session cookie the sign-in sets. A browser that a protected route refuses gets a page in
words with a sign-in link (``on_error``), never the JSON error; other clients get the
documented JSON.
"""

from __future__ import annotations

import secrets
import textwrap
from html import escape
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from lwa_middleware.asgi import LWAMiddleware
from lwa_middleware.core.credentials import LWAUser
from lwa_middleware.core.errors import (
    AccessDenied,
    CrossSiteRequest,
    InsufficientScope,
    InvalidToken,
    LWAError,
    ServerError,
    www_authenticate,
)
from lwa_middleware.core.metrics import Recorder
from lwa_middleware.core.models import Identity
from lwa_middleware.core.pages_style import breakable, document
from lwa_middleware.login import LWALogin

__all__ = ["demo_app"]

EXCLUDE = ("/public", "/favicon.ico", "/auth/*", "/metrics", "/stats")
OPTIONAL = ("/", "/hello")
REQUIRE_SCOPES = {"/zip": "postal_code"}
#: The scopes the demo's sign-in asks for (the consent page lets the customer untick some).
SIGN_IN_SCOPES = ("profile", "postal_code")

_INDEX = """\
lwa-middleware demo, behind LWAMiddleware

  Login with Amazon   {api} (checks every token)
  client ID           {client_id} (only tokens issued to it are accepted)

A token is needed everywhere but on /public, the sign-in (/auth/*), the two routes where
it is optional (/ and /hello), and the two operator endpoints /metrics and /stats.

  GET /          this page; in a browser: sign in with Login with Amazon
  GET /public    anyone
  GET /me        needs a token: your profile and scopes
  GET /zip       needs a token with the postal_code scope
  GET /hello     a token is optional: greets you, or "anonymous"
  GET /profile   needs a token: your profile as a page (the browser's sign-in)
{metrics}
Send the token as "Authorization: Bearer <token>" or "x-amz-access-token: <token>", or
sign in with a browser at /auth/login (the session cookie then carries it).

{operator}
"""

#: Why /metrics and /stats answer without a token (the home page and the text say it).
OPERATOR_NOTE = (
    "/metrics and /stats are operator endpoints, excluded from the middleware on purpose: "
    "a Prometheus scraper has no Amazon token, and a token proves that someone is an "
    "Amazon customer, not that they run this site. In production, serve them on an "
    "internal port or behind your network's access control, never to the internet."
)
STATS_LINE = "  GET /stats     operator endpoint, no token: the same counters as JSON"
#: What the demo says instead of /metrics when ``prometheus_client`` is missing.
NO_METRICS = "not served: prometheus_client is missing (pip install 'lwa-middleware[emulator]')"


def _page(
    title: str, body: str, status: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    return HTMLResponse(
        document(title, body),
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _wants_html(conn: HTTPConnection) -> bool:
    return "text/html" in conn.headers.get("accept", "")


def _identity(request: Request) -> Identity:
    """The identity the middleware attached (it answered the request itself otherwise)."""
    identity = request.scope["lwa"]
    assert isinstance(identity, Identity)
    return identity


def _profile(identity: Identity) -> dict[str, object]:
    profile = identity.profile
    return {
        "user_id": profile.user_id,
        "name": profile.name,
        "email": profile.email,
        "postal_code": profile.postal_code,
        "scopes": sorted(identity.scopes),
    }


def _sign_out_form() -> str:
    return (
        '<form method="post" action="/auth/logout?next=/">'
        '<button class="secondary" id="sign-out" type="submit">Sign out</button></form>'
    )


def _sign_in_link(next_path: str, label: str = "Login with Amazon") -> str:
    query = urlencode({"next": next_path})
    return f'<a class="button" id="login" href="/auth/login?{escape(query)}">{escape(label)}</a>'


def refusal_words(error: LWAError) -> tuple[str, str, bool]:
    """What the demo tells a person whose browser a protected route refused: a title, a
    sentence, and whether signing in (again) can help. Never the JSON error's text."""
    if isinstance(error, AccessDenied):
        return (
            "Not allowed here",
            "You are signed in, but this Amazon account may not open this page.",
            False,
        )
    if isinstance(error, InsufficientScope):
        what = " and ".join(sorted(error.required)) or "a permission"
        return (
            "More access needed",
            f"This page needs {what}, which you did not share when you signed in. "
            "Sign in again and allow it on Amazon's page.",
            True,
        )
    if isinstance(error, CrossSiteRequest):
        return (
            "Request refused",
            "This request came from another site, so it was refused. Go back to this "
            "site's pages and try again from there.",
            False,
        )
    if isinstance(error, ServerError):
        return (
            "Please try again",
            "Your sign-in could not be checked with Amazon right now. Please try again in "
            "a moment.",
            False,
        )
    if isinstance(error, InvalidToken):
        return (
            "Your sign-in has ended",
            "Your sign-in has expired or was ended. Sign in again to continue.",
            True,
        )
    return (  # no token (MissingToken), or a malformed one
        "You are not signed in",
        "This page needs you to sign in with your Amazon account first. If you just "
        "signed out, that worked: sign in again to come back.",
        True,
    )


def demo_app(
    api_base_url: str,
    client_id: str,
    *,
    base_url: str | None = None,
    secret_key: str | None = None,
    authorize_url: str | None = None,
    client_secret: str | None = None,
) -> LWAMiddleware:
    """The demo app, verifying tokens issued to ``client_id`` with the LWA at ``api_base_url``.

    ``base_url`` (the demo's own address, e.g. ``http://127.0.0.1:8000``) turns on the
    website sign-in: ``LWALogin`` at ``/auth`` with the callback ``{base_url}/auth/callback``
    and the consent page at ``authorize_url`` (default: the emulator's, ``{api}/ap/oa``).
    ``secret_key`` signs the cookies (default: a random one per process).
    """
    recorder: Recorder | None = None
    try:
        from lwa_middleware.integrations.prometheus import PrometheusRecorder, metrics_app
    except ImportError:  # prometheus_client is not installed: no /metrics, and we say so
        metrics: Route | None = None
    else:
        recorder = PrometheusRecorder()
        metrics = Route("/metrics", metrics_app())
    metrics_line = (
        "  GET /metrics   operator endpoint, no token: the middleware's Prometheus metrics"
        if metrics is not None
        else f"  GET /metrics   {NO_METRICS}"
    )
    index = _INDEX.format(
        api=api_base_url,
        client_id=client_id,
        metrics=f"{metrics_line}\n{STATS_LINE}\n",
        operator=textwrap.fill(OPERATOR_NOTE, 88),
    )
    key = secret_key or secrets.token_urlsafe(32)
    login = (
        LWALogin(
            client_id,
            client_secret,
            redirect_uri=f"{base_url.rstrip('/')}/auth/callback",
            secret_key=key,
            scopes=SIGN_IN_SCOPES,
            authorize_url=authorize_url or f"{api_base_url}/ap/oa",
            api_base_url=api_base_url,
        )
        if base_url is not None
        else None
    )
    route_rows = (
        ("/public", "anyone"),
        ("/me", "a token: the profile and scopes as JSON"),
        ("/zip", "a token with the postal_code scope"),
        ("/hello", "a token is optional: a greeting"),
        ("/profile", "a token: the profile as a page"),
        (
            "/metrics",
            "no token (operator endpoint): the Prometheus metrics"
            if metrics is not None
            else NO_METRICS,
        ),
        ("/stats", "no token (operator endpoint): the counters as JSON"),
    )

    async def home(request: Request) -> Response:
        if not _wants_html(request):
            return PlainTextResponse(index)
        identity = request.scope.get("lwa")
        if isinstance(identity, Identity):
            who = escape(identity.profile.name or identity.user_id)
            action = (
                f'<p id="greeting">Signed in as <strong>{who}</strong>.</p>'
                '<div class="actions"><a class="button" id="profile-link" href="/profile">'
                f"Your profile</a>{_sign_out_form()}</div>"
            )
        elif login is not None:
            action = (
                '<p id="greeting">You are not signed in.</p>'
                f'<div class="actions">{_sign_in_link("/profile")}</div>'
            )
        else:
            action = '<p id="greeting">Sign-in is off in this demo.</p>'
        routes = "".join(
            f"<tr><td><code>{escape(path)}</code></td><td>{escape(what)}</td></tr>"
            for path, what in route_rows
        )
        body = (
            "<h1>lwa-middleware demo</h1>"
            f"<p class='muted'>Protected by LWAMiddleware, which checks every token with "
            f"Login with Amazon at <code>{breakable(api_base_url)}</code> and accepts tokens "
            f"issued to <code>{breakable(client_id)}</code>.</p>"
            f"{action}<h2>Routes</h2><table>{routes}</table>"
            f'<p class="small" id="operator-note">{escape(OPERATOR_NOTE)}</p>'
            "<p class='muted'>Send a token as <code>Authorization: Bearer …</code>; the "
            "curl lines are in the terminal that runs the demo.</p>"
        )
        return _page("lwa-middleware demo", body)

    async def profile_page(request: Request) -> Response:
        data = _profile(_identity(request))
        rows = "".join(
            f'<tr><th>{escape(name)}</th><td id="{escape(name)}">'
            f"{breakable(' '.join(value) if isinstance(value, list) else str(value or '-'))}"
            "</td></tr>"
            for name, value in data.items()
        )
        body = (
            "<h1>Your Amazon profile</h1>"
            "<p class='muted'>Verified by LWAMiddleware: the token was issued to this app.</p>"
            f'<table class="pairs">{rows}</table><div class="actions">{_sign_out_form()}'
            "<a href='/'>Home</a></div>"
        )
        return _page("Your profile", body)

    async def public(request: Request) -> Response:
        return JSONResponse({"public": True, "message": "No token needed here."})

    async def me(request: Request) -> Response:
        return JSONResponse(_profile(_identity(request)))

    async def zip_code(request: Request) -> Response:
        identity = _identity(request)
        return JSONResponse(
            {"user_id": identity.user_id, "postal_code": identity.profile.postal_code}
        )

    async def hello(request: Request) -> Response:
        user = request.user
        name = user.display_name if isinstance(user, LWAUser) else "anonymous"
        return JSONResponse({"message": f"Hello, {name}!", "authenticated": user.is_authenticated})

    def refused_page(conn: HTTPConnection, error: LWAError) -> Response | None:
        """A browser that a route refuses gets a page in words with a sign-in link (the
        same status); any other client, the middleware's documented JSON."""
        if conn.scope["type"] != "http" or not _wants_html(conn):
            return None
        settings = protected.settings
        title, sentence, sign_in = refusal_words(error)
        headers: dict[str, str] = {}
        challenge = www_authenticate(error, settings.error_style, settings.realm)
        if challenge is not None:
            headers["WWW-Authenticate"] = challenge
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
        button = (
            _sign_in_link(
                conn.url.path,
                "Sign in again" if isinstance(error, InvalidToken) else "Login with Amazon",
            )
            if sign_in and login is not None and conn.scope.get("method") == "GET"
            else ""
        )
        body = (
            f"<h1>{escape(title)}</h1>"
            f'<p id="refused" data-error="{escape(error.error)}">{escape(sentence)}</p>'
            f'<div class="actions">{button}<a href="/">Home</a></div>'
        )
        return _page(title, body, error.status(settings.error_style), headers)

    async def stats(request: Request) -> Response:
        return JSONResponse(protected.stats())

    routes: list[Route | Mount] = [
        Route("/", home),
        Route("/public", public),
        Route("/me", me),
        Route("/zip", zip_code),
        Route("/hello", hello),
        Route("/profile", profile_page),
        Route("/stats", stats),
    ]
    if login is not None:
        routes.append(Mount("/auth", app=login))
    if metrics is not None:
        routes.append(metrics)
    protected = LWAMiddleware(
        Starlette(routes=routes),
        client_ids=[client_id],
        api_base_url=api_base_url,
        exclude=EXCLUDE,
        optional=OPTIONAL,
        require_scopes=REQUIRE_SCOPES,
        secret_key=key,
        login=login,
        on_error=refused_page,
        recorder=recorder,
    )
    return protected
