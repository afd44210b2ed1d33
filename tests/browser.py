"""Headless Chromium for the tests that drive a page: Debian's ``chromium`` package, driven
by Playwright's Python package (``executable_path``: Playwright downloads no browser here).

:func:`chromium` launches it with the flags a closed network needs (no background
connections, no component updates) and FAILS the test when it cannot: the test command
installs both, so a missing browser is a broken machine, never a reason to skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def chromium_path() -> str:
    """The Chromium binary (``LWA_TEST_CHROMIUM`` or the one on ``PATH``), else a failure."""
    path = os.environ.get("LWA_TEST_CHROMIUM") or shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed (Debian: apt-get install chromium); "
            "scripts/system-deps installs it"
        )
    return path


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for one test module or test."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")
    path = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, headless=True, args=list(CHROMIUM_FLAGS)
        )
        try:
            yield browser
        finally:
            browser.close()
