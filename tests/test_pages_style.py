"""The shared page style's helpers: what they escape, where ids may break, and that the
module stands alone (the emulator may import it). How the pages look and fit a phone is
tested in Chromium (test_browser_demo.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from lwa_middleware.core import pages_style
from lwa_middleware.core.pages_style import STYLE, breakable, document


def test_breakable_escapes_and_breaks_long_ids_after_punctuation() -> None:
    assert breakable("amzn1.account.AEXAMPLE0123") == "amzn1.<wbr>account.<wbr>AEXAMPLE0123"
    assert breakable("http://h/a?x=1&y=<2>") == (  # "://" stays whole
        "http://<wbr>h/<wbr>a?<wbr>x=<wbr>1&amp;<wbr>y=<wbr>&lt;2&gt;"
    )
    # Short words and prose are only escaped: postal_code stays whole.
    assert breakable("postal_code profile <b>") == "postal_code profile &lt;b&gt;"
    assert breakable('"><script>alert(1)</script>') == (
        "&quot;&gt;&lt;script&gt;alert(1)&lt;/<wbr>script&gt;"
    )


def test_document_escapes_the_title_and_carries_the_one_style() -> None:
    page = document("<Sign-in> & out", "<p>body</p>", narrow=True)
    assert "<title>&lt;Sign-in&gt; &amp; out</title>" in page
    assert f"<style>{STYLE}</style>" in page
    assert '<main class="narrow"><p>body</p></main>' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "break-all" not in STYLE  # it cut words such as postal_code in two


def test_the_module_imports_nothing_of_the_package() -> None:
    tree = ast.parse(Path(pages_style.__file__).read_text(encoding="utf-8"))
    imported = [
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert sorted(set(imported)) == ["__future__", "html", "re"]
