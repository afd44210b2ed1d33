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
* ``/metrics``: the middleware's Prometheus metrics (excluded; when ``prometheus_client``
  is installed: ``pip install 'lwa-middleware[prometheus]'``), ``/stats`` the same as JSON.

The API routes take the token as ``Authorization: Bearer``, ``x-amz-access-token`` or the
session cookie the sign-in sets.

"""

from __future__ import annotations

import secrets
from html import escape

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from lwa_middleware.asgi import LWAMiddleware
from lwa_middleware.core.credentials import LWAUser
from lwa_middleware.core.errors import LWAError
from lwa_middleware.core.metrics import Recorder
from lwa_middleware.core.models import Identity
from lwa_middleware.login import LWALogin

__all__ = ["demo_app"]

EXCLUDE = ("/public", "/favicon.ico", "/auth/*", "/metrics", "/stats")
OPTIONAL = ("/", "/hello")
REQUIRE_SCOPES = {"/zip": "postal_code"}
#: The scopes the demo's sign-in asks for (the consent page lets the customer untick some).
SIGN_IN_SCOPES = ("profile", "postal_code")

_INDEX = """\
lwa-middleware demo

Every route but /public and /auth/* is behind LWAMiddleware, which checks the access token
with Login with Amazon ({api}) and accepts tokens issued to {client_id}.

  GET /          this page; in a browser: sign in with Login with Amazon
  GET /public    anyone
  GET /me        needs a token: your profile and scopes
  GET /zip       needs a token with the postal_code scope
  GET /hello     a token is optional: greets you, or "anonymous"
  GET /profile   needs a token: your profile as a page (the browser's sign-in)
  GET /metrics   the middleware's Prometheus metrics; GET /stats the same as JSON

Send the token as "Authorization: Bearer <token>" or "x-amz-access-token: <token>", or
sign in with a browser at /auth/login (the session cookie then carries it).
"""

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:44rem;margin:3rem auto;
padding:0 1rem;color:#0f1111;line-height:1.5}
h1{font-size:1.6rem}code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}
.button{display:inline-block;background:#ffd814;border:1px solid #fcd200;border-radius:8px;
padding:.5rem 1.2rem;color:#0f1111;text-decoration:none;font-weight:600;cursor:pointer;
font-family:inherit;line-height:1.5;
font-size:1rem}
table{border-collapse:collapse}td,th{text-align:left;padding:.3rem 1rem .3rem 0;
border-bottom:1px solid #ddd;vertical-align:top}.muted{color:#565959}
pre{background:#f3f3f3;padding:.6rem;overflow-x:auto;white-space:pre-wrap}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


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
        '<button class="button" id="sign-out" type="submit">Sign out</button></form>'
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
    index = _INDEX.format(api=api_base_url, client_id=client_id)
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

    async def home(request: Request) -> Response:
        if not _wants_html(request):
            return PlainTextResponse(index)
        identity = request.scope.get("lwa")
        if isinstance(identity, Identity):
            who = escape(identity.profile.name or identity.user_id)
            action = (
                f'<p id="greeting">Signed in as <strong>{who}</strong>.</p>'
                '<p><a class="button" id="profile-link" href="/profile">Your profile</a></p>'
                f"{_sign_out_form()}"
            )
        elif login is not None:
            action = (
                '<p id="greeting">You are not signed in.</p>'
                '<p><a class="button" id="login" href="/auth/login?next=/profile">'
                "Login with Amazon</a></p>"
            )
        else:
            action = '<p id="greeting">Sign-in is off in this demo.</p>'
        routes = "".join(
            f"<tr><td><code>{escape(path)}</code></td><td>{escape(what)}</td></tr>"
            for path, what in (
                ("/public", "anyone"),
                ("/me", "a token: the profile and scopes as JSON"),
                ("/zip", "a token with the postal_code scope"),
                ("/hello", "a token is optional"),
                ("/profile", "a token: the profile as this page"),
            )
        )
        body = (
            "<h1>lwa-middleware demo</h1>"
            f"<p class='muted'>Protected by LWAMiddleware, which checks every token with "
            f"Login with Amazon at <code>{escape(api_base_url)}</code> and accepts tokens "
            f"issued to <code>{escape(client_id)}</code>.</p>"
            f"{action}<h2>API routes</h2><table>{routes}</table>"
            "<p class='muted'>Send a token as <code>Authorization: Bearer …</code>; the "
            "curl lines are in the terminal that runs the demo.</p>"
        )
        return _page("lwa-middleware demo", body)

    async def profile_page(request: Request) -> Response:
        data = _profile(_identity(request))
        rows = "".join(
            f'<tr><th>{escape(name)}</th><td id="{escape(name)}">'
            f"{escape(' '.join(value) if isinstance(value, list) else str(value or '-'))}"
            "</td></tr>"
            for name, value in data.items()
        )
        body = (
            "<h1>Your Amazon profile</h1>"
            "<p class='muted'>Verified by LWAMiddleware: the token was issued to this app.</p>"
            f"<table>{rows}</table><p></p>{_sign_out_form()}"
            "<p><a href='/'>Home</a></p>"
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
        """A browser asking for /profile without a valid session gets a page (same status)."""
        if conn.url.path != "/profile" or not _wants_html(conn):
            return None
        status = error.status("lwa")
        sign_in = (
            '<p><a class="button" id="login" href="/auth/login?next=/profile">'
            "Login with Amazon</a></p>"
            if login is not None
            else ""
        )
        body = (
            "<h1>Not signed in</h1>"
            f'<p id="refused">The middleware refused this request: '
            f"<code>{escape(error.error)}</code>: {escape(error.description)}</p>"
            f"{sign_in}<p><a href='/'>Home</a></p>"
        )
        return _page("Not signed in", body, status=status)

    recorder: Recorder | None = None
    try:
        from lwa_middleware.integrations.prometheus import PrometheusRecorder, metrics_app
    except ImportError:  # the prometheus extra is not installed: no /metrics
        metrics: Route | None = None
    else:
        recorder = PrometheusRecorder()
        metrics = Route("/metrics", metrics_app())

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
