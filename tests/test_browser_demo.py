"""The demo's whole story in headless Chromium: home, Login with Amazon, the emulator's
consent page, the protected profile page, sign out, refused.

Screenshots of every page go to ``$LWA_SCREENSHOT_DIR`` when set (else the test's tmp dir).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import chromium
from lwa_middleware.cli.demo import free_port
from lwa_middleware.cli.demo_app import demo_app
from lwa_middleware.emulator import Emulator, serve


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("LWA_SCREENSHOT_DIR") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def demo(emulator: Emulator) -> Iterator[tuple[str, Emulator]]:
    port = free_port("127.0.0.1")
    base_url = f"http://127.0.0.1:{port}"
    app = demo_app(emulator.url, emulator.client_id, base_url=base_url)
    with serve(app, port=port, lifespan="on"):
        yield base_url, emulator


def test_sign_in_see_profile_sign_out_be_refused(demo: tuple[str, Emulator], shots: Path) -> None:
    base_url, emulator = demo
    user = emulator.add_user(name="Grace Hopper", email="grace@example.com", postal_code="20001")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{base_url}/")
        assert "not signed in" in page.inner_text("#greeting")
        page.screenshot(path=str(shots / "demo-1-home.png"), full_page=True)

        page.click("#login")
        page.wait_for_selector("#approve")
        assert page.url.startswith(f"{emulator.url}/ap/oa")
        page.select_option("#user", user.user_id)
        page.screenshot(path=str(shots / "demo-2-consent.png"), full_page=True)
        with page.expect_navigation(url=f"{base_url}/profile"):
            page.click("#approve")
        assert page.inner_text("#name") == "Grace Hopper"
        assert page.inner_text("#postal_code") == "20001"
        page.screenshot(path=str(shots / "demo-3-profile.png"), full_page=True)

        cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
        session = cookies["lwa_token"]
        assert session["httpOnly"] and session["sameSite"] == "Lax"
        assert "lwa_token_refresh" in cookies and cookies["lwa_token_refresh"]["httpOnly"]
        # The page's scripts cannot read either cookie.
        assert "lwa_token" not in page.evaluate("document.cookie")

        page.goto(f"{base_url}/")
        assert "Grace Hopper" in page.inner_text("#greeting")
        page.screenshot(path=str(shots / "demo-4-home-signed-in.png"), full_page=True)
        with page.expect_navigation(url=f"{base_url}/"):
            page.click("#sign-out")
        assert "not signed in" in page.inner_text("#greeting")
        assert not [c for c in page.context.cookies() if c["name"].startswith("lwa_token")]

        answer = page.goto(f"{base_url}/profile")
        assert answer is not None and answer.status == 400
        assert "invalid_request" in page.inner_text("#refused")
        page.screenshot(path=str(shots / "demo-5-refused.png"), full_page=True)


def test_denied_consent_shows_a_clear_page(demo: tuple[str, Emulator], shots: Path) -> None:
    base_url, emulator = demo
    emulator.add_user(name="Alan Turing", email="alan@example.com")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{base_url}/")
        page.click("#login")
        page.wait_for_selector("#deny")
        with page.expect_navigation(url=f"{base_url}/auth/callback*") as navigation:
            page.click("#deny")
        answer = navigation.value
        assert answer is not None and answer.status == 403  # access_denied: a clear page
        assert "not signed in" in page.inner_text("body")
        page.screenshot(path=str(shots / "demo-6-denied.png"), full_page=True)
        assert not [c for c in page.context.cookies() if c["name"] == "lwa_token"]
