"""The sign-in app's small answers as ``(status, headers, body)``: redirects, HTML pages for
browsers, JSON for clients that ask for it (no I/O).

Layer: ``login`` (website sign-in; see ``ARCHITECTURE.md``).

Every answer is ``Cache-Control: private, no-store`` (most set or clear a cookie) and
``Referrer-Policy: no-referrer`` (a callback URL holds a code and a state); pages load
nothing (a ``Content-Security-Policy`` of ``default-src 'none'``), cannot be framed, and
only ever show our own sentences: what comes from the query string (an
``error_description``) is never echoed.

"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping

from lwa_middleware.core.errors import JSON_CONTENT_TYPE
from lwa_middleware.core.pages_style import document
from lwa_middleware.login.cookies import CACHE_CONTROL

Header = tuple[str, str]
#: ``(status, headers, body)``, what both shells write back as it is.
Answer = tuple[int, list[Header], bytes]

HTML_CONTENT_TYPE = "text/html; charset=utf-8"
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_COMMON: tuple[Header, ...] = (
    CACHE_CONTROL,
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
)


def wants_json(accept: str | None) -> bool:
    """Whether ``Accept`` prefers ``application/json`` to ``text/html`` (q-values honoured;
    no ``Accept``, or ``*/*``, is a browser's page)."""
    if not accept:
        return False
    weights: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        media = media.lower()
        weights[media] = max(weights.get(media, 0.0), weight)
    return weights.get("application/json", 0.0) > weights.get("text/html", 0.0)


def _answer(status: int, content_type: str, body: bytes, headers: Iterable[Header]) -> Answer:
    extra = list(headers)
    given = {name for name, _ in extra}  # a header given here replaces the common one
    return (
        status,
        [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            *(header for header in _COMMON if header[0] not in given),
            *extra,
        ],
        body,
    )


def json_answer(status: int, data: Mapping[str, object], headers: Iterable[Header] = ()) -> Answer:
    """A JSON answer."""
    body = json.dumps(dict(data), separators=(",", ":")).encode()
    return _answer(status, JSON_CONTENT_TYPE, body, headers)


def html_page(
    status: int,
    title: str,
    paragraphs: Iterable[str],
    extra_html: str = "",
    headers: Iterable[Header] = (),
) -> Answer:
    """A small HTML page in the package's one style (:mod:`lwa_middleware.core.pages_style`):
    a title, escaped paragraphs, and already-escaped ``extra_html``."""
    text = "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in paragraphs)
    body = document(title, f"<h1>{html.escape(title)}</h1>{text}{extra_html}", narrow=True).encode()
    return _answer(status, HTML_CONTENT_TYPE, body, [("content-security-policy", _CSP), *headers])


def error_answer(
    status: int,
    error: str,
    description: str,
    *,
    json_mode: bool,
    retry_href: str | None = None,
    headers: Iterable[Header] = (),
) -> Answer:
    """An error: ``{"error", "error_description"}`` in JSON, else a page with a link to
    start again."""
    if json_mode:
        return json_answer(status, {"error": error, "error_description": description}, headers)
    href = None if retry_href is None else html.escape(retry_href, quote=True)
    link = "" if href is None else f'<p><a class="button" href="{href}">Sign in again</a></p>'
    title = "Not allowed here" if error == "access_denied" else "Sign-in failed"
    return html_page(status, title, [description], link, headers)


def redirect(location: str, headers: Iterable[Header] = (), status: int = 302) -> Answer:
    """A redirect to ``location`` (302 after a ``GET``, 303 after a ``POST``)."""
    return (
        status,
        [("location", location), ("content-length", "0"), *_COMMON, *headers],
        b"",
    )


def confirm_logout(action: str, *, json_mode: bool) -> Answer:
    """``GET /logout``: a page whose form ``POST``s to ``action`` (the logout itself)."""
    if json_mode:
        return json_answer(200, {"message": "POST to this URL to sign out."})
    form = (
        f'<form method="post" action="{html.escape(action, quote=True)}">'
        '<button type="submit">Sign out</button></form>'
    )
    # Not no-referrer here: under it a browser sends the form's POST with "Origin: null",
    # which the sign-out refuses as cross-site (the page's URL holds nothing secret).
    return html_page(
        200, "Sign out", ["Sign out of this site?"], form, [("referrer-policy", "same-origin")]
    )
