"""The demo's whole story in headless Chromium, at 1280 px and on a 390 px phone: home,
Login with Amazon, the emulator's consent page, the protected profile page, the sign-out
confirmation, signed out (a page in words with a sign-in link, never LWA's JSON text), a
sign-in error, a customer the access policy refuses, and the emulator's ``/activate``.

Every page the package serves is checked as it is shown: it is set in the one shared
stylesheet (``lwa_middleware.core.pages_style.STYLE``, inline, nothing else), it never scrolls
sideways, no element reaches past the screen, and no word or identifier is cut between
two letters or digits (ids break after their dots and slashes).

Screenshots of every page at both widths go to ``$LWA_SCREENSHOT_DIR`` when it is set
(``LWA_SCREENSHOT_DIR=screenshots pytest tests/test_browser_demo.py``; none otherwise).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from browser import chromium
from lwa_middleware import LWALogin, LWAMiddleware
from lwa_middleware.cli.demo import free_port
from lwa_middleware.cli.demo_app import demo_app
from lwa_middleware.core.pages_style import STYLE
from lwa_middleware.emulator import Emulator, serve

from conftest import assert_error

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

WIDTHS = {1280: 800, 390: 844}  # width: height (a laptop, a phone)

# Runs in the page: its stylesheets, and every way it fails a phone, as readable strings.
LAYOUT_JS = r"""
() => {
  const problems = [];
  const width = window.innerWidth;
  const root = document.documentElement;
  if (root.scrollWidth > width) {
    problems.push(`the page scrolls sideways: ${root.scrollWidth} > ${width}`);
  }
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "");
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width && (box.right > width + 0.5 || box.left < -0.5)) {
      problems.push(`${name(el)} reaches past the screen (${box.left}..${box.right})`);
    }
  }
  // A line may not start between two letters or digits of the same text.
  const range = document.createRange();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest("select, option")) continue;
    let top = null;
    for (let i = 0; i < node.data.length; i++) {
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const rect = range.getClientRects()[0];
      if (!rect) continue;
      if (top !== null && rect.top > top + 2
          && /[A-Za-z0-9]/.test(node.data[i - 1]) && /[A-Za-z0-9]/.test(node.data[i])) {
        problems.push(`${name(node.parentElement)} cuts "${node.data}" after `
          + `"${node.data.slice(0, i)}"`);
      }
      top = rect.top;
    }
  }
  const styles = [...document.querySelectorAll("style")].map((s) => s.textContent);
  const linked = document.querySelectorAll("link[rel=stylesheet]").length
    + [...document.querySelectorAll("[style]")].filter((el) => el.getAttribute("style")).length;
  return {problems, styles, linked, title: document.title};
}
"""


@pytest.fixture(scope="module")
def shots() -> Path | None:
    configured = os.environ.get("LWA_SCREENSHOT_DIR")
    if not configured:
        return None
    Path(configured).mkdir(parents=True, exist_ok=True)
    return Path(configured)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def demo(emulator: Emulator) -> Iterator[str]:
    port = free_port("127.0.0.1")
    base_url = f"http://127.0.0.1:{port}"
    app = demo_app(emulator.url, emulator.client_id, base_url=base_url)
    with serve(app, port=port, lifespan="on"):
        yield base_url


@pytest.fixture(scope="module")
def members_only(emulator: Emulator) -> Iterator[str]:
    """A site whose access policy admits one customer nobody here is: its sign-in shows
    the access-denied page."""
    port = free_port("127.0.0.1")
    base_url = f"http://127.0.0.1:{port}"
    login = LWALogin(
        emulator.client_id,
        redirect_uri=f"{base_url}/auth/callback",
        secret_key=secrets.token_urlsafe(32),
        authorize_url=f"{emulator.url}/ap/oa",
        api_base_url=emulator.url,
    )
    app = LWAMiddleware(
        Starlette(
            routes=[Mount("/auth", app=login), Route("/", lambda _: PlainTextResponse("in"))]
        ),
        client_ids=[emulator.client_id],
        api_base_url=emulator.url,
        exclude=["/auth/*"],
        allow={"/*": ["user:amzn1.account.SOMEONEELSE"]},
        login=login,
    )
    with serve(app, port=port, lifespan="on"):
        yield base_url


def shown_right(page: Page, name: str, shots: Path | None) -> None:
    """``page`` is in the shared style and fits a laptop's screen and a phone's (and its
    screenshots are taken); the phone's stays on."""
    for width, height in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        seen = page.evaluate(LAYOUT_JS)
        if shots is not None:
            page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
        assert seen["styles"] == [STYLE], f"{name} ({seen['title']}) is not in the shared style"
        assert seen["linked"] == 0, f"{name} has a stylesheet or a style of its own"
        assert not seen["problems"], f"{name} at {width} px:\n" + "\n".join(seen["problems"])


def test_sign_in_see_profile_sign_out_be_told(
    demo: str, emulator: Emulator, browser: Browser, shots: Path | None
) -> None:
    base_url = demo
    user = emulator.add_user(name="Grace Hopper", email="grace@example.com", postal_code="20001")
    context = browser.new_context(viewport={"width": 390, "height": WIDTHS[390]})
    page = context.new_page()
    try:
        page.goto(f"{base_url}/")
        assert "not signed in" in page.inner_text("#greeting")
        # /metrics and /stats answer without a token, and the page says why.
        assert "operator endpoints" in page.inner_text("#operator-note")
        shown_right(page, "demo-1-home", shots)

        page.click("#login")
        page.wait_for_selector("#approve")
        assert page.url.startswith(f"{emulator.url}/ap/oa")
        page.select_option("#user", user.user_id)
        shown_right(page, "demo-2-consent", shots)
        with page.expect_navigation(url=f"{base_url}/profile"):
            page.click("#approve")
        assert page.inner_text("#name") == "Grace Hopper"
        assert page.inner_text("#postal_code") == "20001"
        assert page.inner_text("#user_id") == user.user_id
        shown_right(page, "demo-3-profile", shots)

        cookies = {cookie["name"]: cookie for cookie in context.cookies()}
        session = cookies["lwa_token"]
        assert session["httpOnly"] and session["sameSite"] == "Lax"
        assert "lwa_token_refresh" in cookies and cookies["lwa_token_refresh"]["httpOnly"]
        # The page's scripts cannot read either cookie.
        assert "lwa_token" not in page.evaluate("document.cookie")

        page.goto(f"{base_url}/")
        assert "Grace Hopper" in page.inner_text("#greeting")
        shown_right(page, "demo-4-home-signed-in", shots)

        page.goto(f"{base_url}/auth/logout")  # the sign-in's confirmation page
        shown_right(page, "signin-1-sign-out-confirm", shots)
        with page.expect_navigation(url=f"{base_url}/"):
            page.click("button[type=submit]")
        assert "not signed in" in page.inner_text("#greeting")
        assert not [c for c in context.cookies() if c["name"].startswith("lwa_token")]

        # Signed out, /profile tells a person so in words, with a way back in.
        answer = page.goto(f"{base_url}/profile")
        assert answer is not None and answer.status == 400
        assert answer.headers["content-type"].startswith("text/html")
        assert page.get_attribute("#refused", "data-error") == "invalid_request"
        text = page.inner_text("body")
        assert "You are not signed in" in text
        assert "access_token" not in text and "invalid_request" not in text
        assert page.get_attribute("#login", "href") == "/auth/login?next=%2Fprofile"
        shown_right(page, "demo-5-signed-out", shots)
        page.click("#login")  # the link starts a sign-in that comes back to /profile
        page.wait_for_selector("#approve")
        assert "redirect_uri=" in page.url and page.url.startswith(f"{emulator.url}/ap/oa")

        # A sign-in that fails (a forged state): the sign-in's error page.
        answer = page.goto(f"{base_url}/auth/callback?state=forged&code=x")
        assert answer is not None and answer.status == 400
        assert page.title() == "Sign-in failed"
        shown_right(page, "signin-2-error", shots)
    finally:
        context.close()
    # Other clients keep the middleware's documented JSON error.
    assert_error(httpx.get(f"{base_url}/profile"), "invalid_request", 400)
    json_accept = {"accept": "application/json"}
    assert_error(httpx.get(f"{base_url}/profile", headers=json_accept), "invalid_request", 400)


def test_the_other_pages(
    demo: str,
    members_only: str,
    emulator: Emulator,
    browser: Browser,
    shots: Path | None,
) -> None:
    """Access denied (the policy's page), a denied consent, the emulator's ``/activate``
    and its error page: the same style, and they fit a phone."""
    user = emulator.add_user(name="Alan Turing", email="alan@example.com")
    context = browser.new_context(viewport={"width": 390, "height": WIDTHS[390]})
    page = context.new_page()
    try:
        page.goto(f"{members_only}/auth/login")
        page.select_option("#user", user.user_id)
        with page.expect_navigation(url=f"{members_only}/auth/callback*") as navigation:
            page.click("#approve")
        answer = navigation.value
        assert answer is not None and answer.status == 403
        assert page.title() == "Not allowed here"
        assert "not allowed to use this site" in page.inner_text("body")
        shown_right(page, "signin-3-access-denied", shots)

        page.goto(f"{demo}/")
        page.click("#login")
        page.wait_for_selector("#deny")
        with page.expect_navigation(url=f"{demo}/auth/callback*") as navigation:
            page.click("#deny")
        answer = navigation.value
        assert answer is not None and answer.status == 403  # access_denied: a clear page
        assert "not signed in" in page.inner_text("body")
        shown_right(page, "signin-4-consent-denied", shots)
        assert not [c for c in context.cookies() if c["name"] == "lwa_token"]

        page.goto(f"{emulator.url}/activate?user_code=ABCD1234")
        assert page.input_value("#user_code") == "ABCD1234"
        shown_right(page, "emulator-1-activate", shots)
        page.click("#approve")  # an unknown code: the result page says so
        assert page.inner_text("#result") == "error"
        shown_right(page, "emulator-2-activate-error", shots)

        page.goto(f"{emulator.url}/ap/oa?client_id=amzn1.application-oa2-client.unknown")
        assert page.inner_text("#error")
        shown_right(page, "emulator-3-consent-error", shots)
    finally:
        context.close()
