"""The emulator's HTML pages: for ``/ap/oa`` the consent page and the error page, for
``/activate`` (code-based linking) the code entry page and its result page.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

Self-contained (inline CSS, no script, no external asset) and with stable hooks for
browser tests: ``form#consent``, ``select#user`` (one ``option`` per user, its value the
user id), one checkbox per requested scope (``#scope-profile``, ``#scope-profile_user_id``,
``#scope-postal_code``, each with its ``label``), buttons ``#approve`` ("Allow") and
``#deny`` ("Cancel"); the error page shows ``#error`` (the OAuth error code) and
``#error-description``. The activation page: ``form#activate``, ``input#user_code``,
``select#user``, ``#approve``, ``#deny``; its result page: ``#result`` (``approved``,
``denied`` or ``error``), and for an error ``#error`` and ``#error-description``.

"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from lwa_middleware.core.pages_style import breakable, document
from lwa_middleware.emulator.accounts import EmulatorUser
from lwa_middleware.emulator.oauth import AuthorizationRequest

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
"""Headers of both pages: not cached, not framed (clickjacking), nothing loaded."""

SCOPE_LABELS = {
    "profile": "Your name and email address",
    "profile:user_id": "Your Amazon customer ID",
    "postal_code": "Your postal code",
}


def _page(title: str, body: str) -> str:
    return document(title, body, narrow=True)


def scope_id(scope: str) -> str:
    """The checkbox id of a scope: ``scope-`` + the scope with ``:`` made ``_``."""
    return "scope-" + scope.replace(":", "_")


def consent_page(
    request: AuthorizationRequest,
    consent_id: str,
    users: Sequence[EmulatorUser],
    action: str,
) -> str:
    """The page asking a user to let ``request.client_id`` see the requested scopes;
    the form posts ``consent_id``, ``user``, ``scope`` (checked ones) and ``decision``
    (``approve`` or ``deny``) to ``action``."""
    options = _user_options(users)
    scopes = "".join(
        f'<div class="scope"><input type="checkbox" id="{scope_id(scope)}" name="scope" '
        f'value="{escape(scope)}" checked><label for="{scope_id(scope)}">'
        f"{escape(SCOPE_LABELS.get(scope, scope))} <code>{escape(scope)}</code></label></div>"
        for scope in request.scopes
    )
    body = (
        '<h1>Sign in with Amazon <span class="tag">emulator</span></h1>'
        f'<p><code id="client">{breakable(request.client_id)}</code> would like to access '
        "your Amazon account.</p>"
        f'<form id="consent" method="post" action="{escape(action)}">'
        f'<input type="hidden" name="consent_id" value="{escape(consent_id)}">'
        f'<label class="field" for="user">Sign in as</label><select id="user" name="user">'
        f"{options}</select>"
        f"<fieldset><legend>Share with this app</legend>{scopes}</fieldset>"
        '<div class="actions">'
        '<button type="submit" id="approve" name="decision" value="approve">Allow</button>'
        '<button type="submit" id="deny" name="decision" value="deny">Cancel</button>'
        "</div></form>"
        '<p class="small">You will be sent back to '
        f'<code id="redirect-uri">{breakable(request.redirect_uri)}</code></p>'
    )
    return _page("Amazon Sign-In (LWA emulator)", body)


def error_page(error: str, description: str) -> str:
    """The page shown instead of a redirect (unknown client, unregistered redirect URI,
    an expired consent page)."""
    body = (
        '<h1>Sign in with Amazon <span class="tag">emulator</span></h1>'
        '<p class="error">We cannot process this sign-in request.</p>'
        f'<p>Error: <code id="error">{escape(error)}</code></p>'
        f'<p id="error-description">{escape(description)}</p>'
        '<p class="small">The app sent an invalid request. You were not redirected.</p>'
    )
    return _page("Amazon Sign-In error (LWA emulator)", body)


def _user_options(users: Sequence[EmulatorUser]) -> str:
    return "".join(
        f'<option value="{escape(user.user_id)}">{escape(user.name)} '
        f"&lt;{escape(user.email)}&gt;</option>"
        for user in users
    )


def activate_page(users: Sequence[EmulatorUser], action: str, user_code: str = "") -> str:
    """The page where a user enters a device's code (``verification_uri``); the form posts
    ``user_code``, ``user`` and ``decision`` (``approve`` or ``deny``) to ``action``."""
    body = (
        '<h1>Register your device <span class="tag">emulator</span></h1>'
        "<p>Enter the code shown on your device to let it use your Amazon account.</p>"
        f'<form id="activate" method="post" action="{escape(action)}">'
        '<label class="field" for="user_code">Code</label>'
        f'<input class="code" type="text" id="user_code" name="user_code" '
        f'value="{escape(user_code)}" autocomplete="off" autocapitalize="characters" '
        'spellcheck="false" maxlength="32" required>'
        '<label class="field" for="user">Sign in as</label><select id="user" name="user">'
        f"{_user_options(users)}</select>"
        '<div class="actions">'
        '<button type="submit" id="approve" name="decision" value="approve">Allow</button>'
        '<button type="submit" id="deny" name="decision" value="deny">Cancel</button>'
        "</div></form>"
    )
    return _page("Register your device (LWA emulator)", body)


def activate_result_page(
    result: str,
    *,
    client_id: str | None = None,
    error: str | None = None,
    description: str = "",
    action: str = "",
) -> str:
    """The answer to the activation form: ``result`` is ``approved``, ``denied`` or
    ``error`` (then ``error`` and ``description`` say why, and ``action`` links back to
    the entry page)."""
    if result == "error":
        body = (
            '<h1>Register your device <span class="tag">emulator</span></h1>'
            '<p id="result" class="error">error</p>'
            f'<p>Error: <code id="error">{escape(error or "invalid_request")}</code></p>'
            f'<p id="error-description">{escape(description)}</p>'
            f'<p class="small"><a id="retry" href="{escape(action)}">Enter a code again</a></p>'
        )
        return _page("Register your device: error (LWA emulator)", body)
    told = (
        "You can go back to your device: it is signed in."
        if result == "approved"
        else "The device was not given access to your account."
    )
    client = f'<p>App: <code id="client">{breakable(client_id)}</code></p>' if client_id else ""
    body = (
        '<h1>Register your device <span class="tag">emulator</span></h1>'
        f'<p id="result">{escape(result)}</p>{client}<p>{escape(told)}</p>'
    )
    return _page(f"Register your device: {result} (LWA emulator)", body)
