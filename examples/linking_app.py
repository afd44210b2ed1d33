"""Linking an existing account to the Amazon customer who signs in (FastAPI).

The site already has accounts of its own (here: ``alice``, password ``alice-password``,
signed in with a session cookie). An account is linked by the Amazon **user id**, from a
signed-in local session, on a page the customer confirms; it is never matched by email.
Run it against the local LWA emulator, from the repository root, in two terminals::

    lwa-middleware emulator
    uvicorn examples.linking_app:app --port 8000

then, in a browser: http://127.0.0.1:8000/ (sign in as alice, then with Amazon).

How it holds together:

* ``load_user`` (the middleware's ``user_loader``) finds the account linked to a verified
  customer's user id, or answers ``None``: such a customer is refused (403
  ``access_denied``) everywhere but on ``/account/link`` (``user_optional``), the one page
  where a customer without an account may arrive;
* ``/account/link`` needs both the local session (who the account is) and the verified
  Amazon customer (who links it); ``GET`` shows what will be linked, ``POST`` links it.
  The ``POST`` carries the LWA session cookie, so the middleware's cross-site check
  applies (its ``Origin`` must be this site), and the local session cookie is
  ``SameSite=Lax``;
* an Amazon account already linked to another local account, or a local account already
  linked to another Amazon account, is refused (409): a link is never silently moved.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

from lwa_middleware import Identity, LWALogin, LWAMiddleware, LWASettings
from lwa_middleware.core.settings import is_loopback_host
from lwa_middleware.emulator import local_settings
from lwa_middleware.integrations.fastapi import add_lwa_exception_handler, lwa_user

AMAZON_AUTHORIZE_URL = "https://www.amazon.com/ap/oa"


@dataclass
class Account:
    """A local account; ``amazon_user_id`` is the link (``None``: not linked)."""

    username: str
    password_hash: bytes
    salt: bytes
    amazon_user_id: str | None = None


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)


class Accounts:
    """The site's account table (a database in a real site)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Account] = {}

    def add(self, username: str, password: str) -> Account:
        salt = secrets.token_bytes(16)
        account = Account(username, hash_password(password, salt), salt)
        self.by_name[username] = account
        return account

    def check(self, username: str, password: str) -> Account | None:
        account = self.by_name.get(username)
        if account is None:
            return None
        good = hmac.compare_digest(account.password_hash, hash_password(password, account.salt))
        return account if good else None

    def linked_to(self, amazon_user_id: str) -> Account | None:
        for account in self.by_name.values():
            if account.amazon_user_id == amazon_user_id:
                return account
        return None


def create_app(
    settings: LWASettings, *, base_url: str, secret_key: str, accounts: Accounts | None = None
) -> FastAPI:
    """The site, served at ``base_url`` (its sign-in's ``redirect_uri`` is below it)."""
    table = accounts if accounts is not None else Accounts()

    def load_user(identity: Identity) -> Account | None:
        """The account linked to this Amazon customer, or ``None`` (no account here)."""
        return table.linked_to(identity.user_id)

    host = settings.api_base_url.split("//", 1)[-1].split(":", 1)[0]
    login = LWALogin(
        settings.client_ids[0],
        redirect_uri=base_url + "/auth/callback",
        secret_key=secret_key,
        api_base_url=settings.api_base_url,
        # the local emulator signs customers in itself; else Amazon's page
        authorize_url=(
            settings.api_base_url + "/ap/oa" if is_loopback_host(host) else AMAZON_AUTHORIZE_URL
        ),
    )
    app = FastAPI(title="Linking accounts")
    app.mount("/auth", login)
    app.add_middleware(
        LWAMiddleware,
        settings=settings,
        login=login,
        user_loader=load_user,
        user_optional=["/account/link"],
        exclude=["/", "/auth/*", "/local/*", "/docs", "/openapi.json"],
    )
    # The local session: who is signed in with a password (a cookie of its own).
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key,
        session_cookie="local_session",
        same_site="lax",
        https_only=base_url.startswith("https://"),
    )
    add_lwa_exception_handler(app)

    def local_account(request: Request) -> Account | None:
        name = request.session.get("account")
        return table.by_name.get(name) if isinstance(name, str) else None

    @app.get("/", response_class=HTMLResponse)
    def home() -> str:
        return (
            '<form method="post" action="/local/login">'
            '<input name="username"> <input name="password" type="password">'
            "<button>Sign in</button></form>"
            '<p><a href="/auth/login?next=/account/link">Link your Amazon account</a></p>'
        )

    @app.post("/local/login")
    async def local_login(request: Request) -> RedirectResponse:
        form = parse_qs((await request.body()).decode())
        username = (form.get("username") or [""])[0]
        password = (form.get("password") or [""])[0]
        account = table.check(username, password)
        if account is None:
            return RedirectResponse("/?failed=1", status_code=303)
        request.session.clear()
        request.session["account"] = account.username
        return RedirectResponse("/", status_code=303)

    def link_problem(request: Request, identity: Identity) -> JSONResponse | Account:
        """The local account to link to ``identity``, or why it cannot be."""
        account = local_account(request)
        if account is None:
            return JSONResponse({"error": "sign in to your account here first"}, 401)
        linked = table.linked_to(identity.user_id)
        if linked is not None and linked is not account:
            return JSONResponse({"error": "this Amazon account is linked to another account"}, 409)
        if account.amazon_user_id not in (None, identity.user_id):
            return JSONResponse({"error": "your account is linked to another Amazon account"}, 409)
        return account

    @app.get("/account/link", response_model=None)
    def confirm_link(request: Request) -> HTMLResponse | JSONResponse:
        identity: Identity = request.scope["lwa"]
        found = link_problem(request, identity)
        if isinstance(found, JSONResponse):
            return found
        amazon = html.escape(identity.profile.name or identity.user_id)
        return HTMLResponse(
            f"<p>Link the Amazon account of {amazon} to your account "
            f"<b>{html.escape(found.username)}</b>?</p>"
            '<form method="post" action="/account/link"><button>Link</button></form>'
        )

    @app.post("/account/link", response_model=None)
    def link(request: Request) -> RedirectResponse | JSONResponse:
        identity: Identity = request.scope["lwa"]
        found = link_problem(request, identity)
        if isinstance(found, JSONResponse):
            return found
        found.amazon_user_id = identity.user_id  # by user id: never by email
        return RedirectResponse("/account", status_code=303)

    @app.get("/account")
    def account(user: Annotated[Account, Depends(lwa_user)]) -> dict[str, str | None]:
        return {"username": user.username, "amazon_user_id": user.amazon_user_id}

    return app


def app_from_env() -> FastAPI:
    """The example as ``uvicorn examples.linking_app:app`` serves it (local emulator)."""
    accounts = Accounts()
    accounts.add("alice", "alice-password")
    return create_app(
        local_settings(),
        base_url=os.environ.get("LINKING_BASE_URL", "http://127.0.0.1:8000"),
        secret_key=os.environ.get("LINKING_SECRET_KEY") or secrets.token_urlsafe(32),
        accounts=accounts,
    )


app = app_from_env()
