"""The docs site renders without cutting anything off, at 1280 px and on a phone (390 px).

The site is built (``mkdocs build``, as ``scripts/check`` does) into a temporary directory,
served on 127.0.0.1 by a small ``http.server`` thread, and every page is opened in headless
Chromium (``tests/browser.py``: a missing browser FAILS the test). On each page:

- the page itself never scrolls sideways (``scrollWidth <= innerWidth``);
- no code block (``pre > code``, API signatures included) is wider than its box: nothing
  is hidden behind a horizontal scroll bar; except on a phone (below Material's 720 px),
  where a code block keeps its lines as written (no line wraps: it shows as many lines as
  it has) and scrolls sideways inside its own box (``overflow-x: auto``), the page never
  (a command wrapped mid-token into a 40-column box reads as something else);
- no table is wider than the column: its wrappers (``.md-typeset__scrollwrap``,
  ``.md-typeset__table``) never scroll; a table whose narrowest layout is wider than the
  column scrolls inside its own bordered box (``overflow-x: auto``), never past it;
- no word of a table cell's code is broken in the middle (``invalid_requ est``): a line
  inside a ``<code>`` may only end at a space, at a ``<wbr>`` the site's table hook put
  there (``docs/_ext/tables.py``), or, in a word longer than 20 characters, next to
  punctuation; never inside a run of letters and digits, never inside a shorter word.

The page is measured the same everywhere: the test command installs a pinned Debian font
package (``fonts-roboto-unhinted``, ``scripts/system-deps``), the font Material's pages ask
for first, and the browser fetches nothing but the site (Material's Google Fonts stylesheet
is refused), so a networked CI machine and a closed one lay out the same page; a test
fails, naming the package, when the body text is not set in Roboto. And a table made too
wide for any column (a row of long unbreakable words, added in the page) scrolls inside its
box at 1280 px while the page and the table's wrappers stay within the column.

Screenshots of a few pages at both widths go to ``$LWA_SCREENSHOT_DIR`` when it is set,
else to the test's temporary directory. And the copy button of a code block copies the
code as written: the stylesheet lays each line out as a box of its own (so a wrapped line
continues indented), which would double every line break of the ``innerText`` Material
copies, were the rule not off while it copies.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from browser import chromium
from test_docs_snippets import DOCS, marked_blocks

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = {1280: 800, 390: 844}  # width: height (a 1280 px laptop, a 390 px phone)
SCREENSHOTS = ("", "quickstart/", "options/", "errors/", "api/", "api/clients/", "benchmarks/")

# Runs in the page: every way a page can cut content off, as readable strings.
PROBLEMS_JS = r"""
() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > window.innerWidth) {
    problems.push(`the page scrolls sideways: ${root.scrollWidth} > ${window.innerWidth}`);
  }
  const label = (el) => el.textContent.trim().replace(/\s+/g, " ").slice(0, 60);
  // Material's phone layout: a code block keeps its lines and scrolls inside its box.
  const phone = window.innerWidth < 720;
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  for (const el of document.querySelectorAll(
      "pre > code, .md-typeset__scrollwrap, .md-typeset__table")) {
    if (phone && el.matches("pre > code") && scrolls(el)) continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${el.tagName.toLowerCase()}.${el.className} is cut off `
        + `(${el.scrollWidth} > ${el.clientWidth}): ${label(el)}`);
    }
  }
  // On a phone no line of a code block is wrapped (mid-token, in a 40-column box): it
  // shows as many lines as it has.
  for (const code of phone ? document.querySelectorAll(".md-typeset pre > code") : []) {
    if (!code.getClientRects().length) continue;  // in a tab not shown
    const style = getComputedStyle(code);
    const lines = code.textContent.replace(/\n$/, "").split("\n").length;
    const height = code.scrollHeight - parseFloat(style.paddingTop)
      - parseFloat(style.paddingBottom);
    const shown = Math.round(height / parseFloat(style.lineHeight));
    if (shown !== lines) {
      problems.push(`a code block shows ${lines} lines as ${shown}: ${label(code)}`);
    }
  }
  // A table may be wider than the column only by scrolling inside its own box.
  for (const table of document.querySelectorAll(".md-typeset table")) {
    const overflow = getComputedStyle(table).overflowX;
    if (table.scrollWidth > table.clientWidth + 1 && !["auto", "scroll"].includes(overflow)) {
      problems.push(`table.${table.className} is cut off (${table.scrollWidth} > `
        + `${table.clientWidth}, overflow-x: ${overflow}): ${label(table)}`);
    }
  }
  // Words broken mid-identifier in table cells: find where each line of a <code> starts.
  const range = document.createRange();
  for (const code of document.querySelectorAll(".md-typeset table code")) {
    if (code.getClientRects().length < 2) continue;  // on one line
    const chars = [];  // [character, top, a <wbr> right before it]
    const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      let wbr = false;
      for (let el = node; el && el !== code; el = el.parentNode) {
        const before = el.previousSibling;
        if (before) { wbr = before.nodeName === "WBR"; break; }
      }
      for (let i = 0; i < node.data.length; i++) {
        range.setStart(node, i);
        range.setEnd(node, i + 1);
        const rect = range.getClientRects()[0];
        chars.push([node.data[i], rect ? rect.top : null, i === 0 && wbr]);
      }
    }
    const text = chars.map((c) => c[0]).join("");
    let top = null;
    chars.forEach(([ch, charTop, wbrBefore], k) => {
      if (charTop === null) return;
      if (top !== null && charTop > top + 2 && k > 0) {
        const before = text[k - 1];
        const start = text.lastIndexOf(" ", k - 1) + 1;
        const end = text.indexOf(" ", k) === -1 ? text.length : text.indexOf(" ", k);
        const word = text.slice(start, end);
        // A word of at most 20 characters never breaks; a longer one may break at a
        // <wbr> or next to punctuation, never inside a run of letters and digits.
        const allowed = /\s/.test(before) || /\s/.test(ch) || wbrBefore
          || (word.length > 20 && !(/[A-Za-z0-9]/.test(before) && /[A-Za-z0-9]/.test(ch)));
        if (!allowed) {
          problems.push(`a table cell breaks "${word}" as "${text.slice(start, k)}|`
            + `${text.slice(k, end)}"`);
        }
      }
      top = charTop;
    });
  }
  return problems;
}
"""


# Runs in the page: a row of long unbreakable words added to the first table, then where
# the table, its wrappers, the column and the row's last cell end.
WIDE_TABLE_JS = r"""
() => {
  const wrap = document.querySelector(".md-typeset__scrollwrap");
  const table = wrap.querySelector("table");
  const row = table.querySelector("tbody tr").cloneNode(true);
  for (const cell of row.cells) cell.textContent = "W".repeat(40);
  table.tBodies[0].appendChild(row);
  const inner = wrap.querySelector(".md-typeset__table");
  const column = document.querySelector(".md-content__inner").getBoundingClientRect();
  const result = {
    pageScrolls: document.documentElement.scrollWidth > window.innerWidth,
    wrappers: [wrap, inner].filter((el) => el.scrollWidth > el.clientWidth + 1)
      .map((el) => `${el.className}: ${el.scrollWidth} > ${el.clientWidth}`),
    tableRight: table.getBoundingClientRect().right,
    columnRight: column.right,
    scrollWidth: table.scrollWidth,
    clientWidth: table.clientWidth,
  };
  table.scrollLeft = table.scrollWidth;
  const last = row.cells[row.cells.length - 1].getBoundingClientRect();
  const box = table.getBoundingClientRect();
  result.lastCellShown = last.right <= box.right + 1 && last.left >= box.left - 1;
  return result;
}
"""

PINNED_FONT_PACKAGE = "fonts-roboto-unhinted"


def open_page(browser: Browser, site_url: str, width: int) -> Page:
    """A page of the site at ``width`` that fetches nothing but the site: Material's Google
    Fonts stylesheet is refused, so the page is set in the installed fonts everywhere."""
    page = browser.new_page(viewport={"width": width, "height": WIDTHS[width]})
    page.route(
        "**/*",
        lambda route: (
            route.continue_() if route.request.url.startswith(site_url) else route.abort()
        ),
    )
    return page


def platform_fonts(page: Page, selector: str) -> set[str]:
    """The fonts Chromium drew the text right inside ``selector``'s first match with."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        assert node, f"nothing matches {selector!r}"
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    finally:
        cdp.detach()
    return {font["familyName"] for font in fonts}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the browser moved on
            super().handle()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as ``scripts/check`` builds it (``--strict``)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build failed:\n{result.stdout}{result.stderr}"
    return out


@pytest.fixture(scope="module")
def site_url(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("LWA_SCREENSHOT_DIR")
    path = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def site_pages(site: Path) -> list[str]:
    """Every page's URL path below the site root ("" is the home page)."""
    pages = []
    for index in sorted(site.rglob("index.html")):
        relative = index.parent.relative_to(site).as_posix()
        pages.append("" if relative == "." else f"{relative}/")
    return pages


def test_every_page_is_built_and_searchable(site: Path) -> None:
    pages = site_pages(site)
    for expected in SCREENSHOTS:
        assert expected in pages, f"{expected or 'the home page'} was not built"
    assert len(pages) >= 20
    # The search box's index (the search plugin, listed beside mkdocstrings) holds the
    # guides and the API reference.
    index = (site / "search" / "search_index.json").read_text(encoding="utf-8")
    assert "invalid_token" in index
    assert "AsyncLWAClient" in index


@pytest.mark.parametrize("width", sorted(WIDTHS, reverse=True))
def test_nothing_is_cut_off(
    width: int, site: Path, site_url: str, browser: Browser, screenshot_dir: Path
) -> None:
    page = open_page(browser, site_url, width)
    problems: list[str] = []
    try:
        for path in site_pages(site):
            page.goto(site_url + path, wait_until="load")
            problems += [f"{path or '/'} at {width} px: {p}" for p in page.evaluate(PROBLEMS_JS)]
            if path in SCREENSHOTS:
                name = (path.strip("/").replace("/", "-") or "home") + f"-{width}.png"
                page.screenshot(path=str(screenshot_dir / name), full_page=True)
    finally:
        page.close()
    assert not problems, "\n".join(problems)


def test_pages_are_set_in_the_pinned_font(site_url: str, browser: Browser) -> None:
    page = open_page(browser, site_url, 1280)
    try:
        page.goto(site_url + "quickstart/", wait_until="load")
        text = platform_fonts(page, ".md-content .md-typeset > p:not(:has(code))")
        code = platform_fonts(page, ".md-content .md-typeset > p > code")
    finally:
        page.close()
    hint = f"install {PINNED_FONT_PACKAGE} (Debian; scripts/system-deps does)"
    assert text == {"Roboto"}, f"the body text is set in {text}, not Roboto: {hint}"
    # Material asks for Roboto Mono (no Debian package), then the system's monospace.
    assert code == {"DejaVu Sans Mono"}, f"code is set in {code}: install fonts-dejavu-core"


def test_a_table_too_wide_for_the_column_scrolls_inside_its_box(
    site_url: str, browser: Browser
) -> None:
    page = open_page(browser, site_url, 1280)
    try:
        page.goto(site_url + "errors/", wait_until="load")
        result = page.evaluate(WIDE_TABLE_JS)
    finally:
        page.close()
    assert result["scrollWidth"] > result["clientWidth"] + 100, result  # it does not fit
    assert not result["pageScrolls"], result
    assert not result["wrappers"], result
    assert result["tableRight"] <= result["columnRight"] + 1, result
    assert result["lastCellShown"], result  # scrolled to its end, the last cell is in view


def test_copy_button_copies_the_code_as_written(site_url: str, browser: Browser) -> None:
    expected = next(
        block.code for block in marked_blocks(DOCS / "quickstart.md") if block.file == "app.py"
    )
    context = browser.new_context(viewport={"width": 390, "height": WIDTHS[390]})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site_url[:-1])
    try:
        page = context.new_page()
        page.goto(site_url + "quickstart/", wait_until="load")
        target = page.evaluate(
            """(code) => {
                const blocks = [...document.querySelectorAll("pre > code")];
                const block = blocks.find((c) => c.textContent.trimEnd() === code.trimEnd());
                return block ? "#" + block.parentNode.id + " > code" : null;
            }""",
            expected,
        )
        assert target, "the quickstart's app.py block is not on the page"
        button = page.locator(f'button[data-clipboard-target="{target}"]')
        button.scroll_into_view_if_needed()
        button.click(force=True)  # the button shows on hover
        page.wait_for_function("() => document.querySelector('.md-dialog--active')")
        copied = page.evaluate("navigator.clipboard.readText()")
    finally:
        context.close()
    assert copied == expected.rstrip()
