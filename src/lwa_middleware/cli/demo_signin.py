"""The website sign-in, walked over HTTP the way a browser does it (``demo --once``).

Layer: ``cli`` (the command, on top of everything; see ``ARCHITECTURE.md``).

``sign_in_checks(base_url)`` follows ``/auth/login`` to the emulator's consent page,
approves it as the demo's test user, comes back through the callback with the session
cookie, reads ``/profile`` and ``/me`` with it, signs out and checks the session is gone.
Each step prints ``PASS``/``FAIL`` like the token checks; the number of failures is
returned. (The test suite walks the same story in headless Chromium.)

"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urljoin

import httpx

from lwa_middleware.cli.console import say
from lwa_middleware.cli.serving import TEST_NAME

_FORM_ACTION = re.compile(r'<form id="consent" method="post" action="([^"]+)"')
_CONSENT_ID = re.compile(r'name="consent_id" value="([^"]+)"')
_USER = re.compile(r'<option value="([^"]+)">' + re.escape(TEST_NAME))


class _Walk:
    """One browser's cookie jar and the steps' results."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(trust_env=False, timeout=10.0, follow_redirects=False)
        self.failures = 0

    def step(self, title: str, check: Callable[[], str | None]) -> bool:
        try:
            problem = check()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        self.failures += problem is not None
        say(f"{'PASS' if problem is None else 'FAIL'}  sign-in: {title}")
        if problem is not None:
            say(f"      {problem}")
        return problem is None


def sign_in_checks(base_url: str) -> tuple[int, int]:
    """Walk the sign-in; ``(steps, failures)``."""
    walk = _Walk(base_url)
    state: dict[str, str] = {}
    html = {"accept": "text/html"}

    def login() -> str | None:
        answer = walk.http.get(f"{base_url}/auth/login", params={"next": "/profile"})
        if answer.status_code != 302:
            return f"status {answer.status_code}, expected 302 to the consent page"
        location = answer.headers["location"]
        if "code_challenge_method=S256" not in location:
            return "the authorize URL does not ask for PKCE S256"
        state["consent_url"] = location
        return None

    def consent() -> str | None:
        page = walk.http.get(state["consent_url"])
        action, consent_id, user = (
            _FORM_ACTION.search(page.text),
            _CONSENT_ID.search(page.text),
            _USER.search(page.text),
        )
        if page.status_code != 200 or not (action and consent_id and user):
            return f"status {page.status_code}; no consent form for {TEST_NAME!r}"
        answer = walk.http.post(
            urljoin(state["consent_url"], action.group(1)),
            data={
                "consent_id": consent_id.group(1),
                "user": user.group(1),
                "scope": ["profile", "postal_code"],
                "decision": "approve",
            },
        )
        if answer.status_code != 302 or "code=" not in answer.headers.get("location", ""):
            return f"status {answer.status_code}, expected 302 back with a code"
        state["callback"] = answer.headers["location"]
        return None

    def callback() -> str | None:
        answer = walk.http.get(state["callback"])
        if answer.status_code != 302 or answer.headers.get("location") != "/profile":
            return f"status {answer.status_code}, expected 302 to /profile"
        if "lwa_token" not in walk.http.cookies:
            return "no session cookie was set"
        return None

    def profile() -> str | None:
        page = walk.http.get(f"{base_url}/profile", headers=html)
        if page.status_code != 200 or TEST_NAME not in page.text:
            return f"status {page.status_code}, expected 200 showing {TEST_NAME!r}"
        me = walk.http.get(f"{base_url}/me").json()
        if me.get("name") != TEST_NAME:
            return f"/me with the cookie answered {me!r}"
        return None

    def cross_site_logout() -> str | None:
        answer = walk.http.post(
            f"{base_url}/auth/logout", headers={"origin": "https://attacker.example"}
        )
        return None if answer.status_code == 403 else f"status {answer.status_code}, not 403"

    def logout() -> str | None:
        answer = walk.http.post(f"{base_url}/auth/logout", headers={"origin": base_url})
        if answer.status_code != 303:
            return f"status {answer.status_code}, expected 303"
        if "lwa_token" in walk.http.cookies:
            return "the session cookie is still set"
        return None

    def refused() -> str | None:
        page = walk.http.get(f"{base_url}/profile", headers=html)
        if page.status_code != 400:
            return f"status {page.status_code}, expected 400"
        if 'id="login"' not in page.text or "access_token" in page.text:
            return "the page is not the friendly one with a sign-in link"
        return None

    steps = [
        ("/auth/login redirects to the consent page with PKCE S256", login),
        (f"approve as {TEST_NAME} on the emulator's consent page", consent),
        ("the callback sets the signed session cookie", callback),
        ("/profile and /me answer with the cookie", profile),
        ("a cross-site sign-out is refused (403)", cross_site_logout),
        ("sign out (same-origin POST) clears the cookie", logout),
        ("/profile after signing out: a page with a sign-in link (400)", refused),
    ]
    with walk.http:
        for title, check in steps:
            if not walk.step(title, check):
                walk.failures += len(steps) - 1 - [t for t, _ in steps].index(title)
                say("      (the remaining sign-in steps depend on this one)")
                break
    return len(steps), walk.failures
