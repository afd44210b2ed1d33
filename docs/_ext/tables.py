"""A MkDocs hook that lets tables fit their column, at 1280 px and on a phone.

- Inside a table cell's ``<code>``, a word longer than 20 characters may break after
  ``_`` and ``.`` and before ``/`` (``LWA_MAX_<wbr>CONCURRENT_<wbr>VERIFICATIONS``);
  shorter words, and every word of a heading, never break (those with a ``-`` or other
  punctuation, where a browser would break, are wrapped in ``<span data-word>``, which
  the stylesheet keeps whole), and no word breaks anywhere else: the stylesheet turns off
  Material's ``word-break: break-word`` there, which split identifiers anywhere
  (``invalid_requ est``).
- Every ``<td>`` gets ``data-label`` = its column's heading, and the table
  ``data-columns`` = how many columns it has, so that on a narrow screen
  ``docs/stylesheets/extra.css`` can show each row as a card of "heading: value" lines
  instead of a table wider than the phone (and set wide tables in a smaller type).

Loaded by ``mkdocs.yml`` (``hooks:``); ``docs/_ext/`` is left out of the built site.
"""

from __future__ import annotations

import html
import re
from typing import Any

_TABLE = re.compile(r"<table>(?P<body>.*?)</table>", re.DOTALL)
_CELL = re.compile(r"<(?P<tag>th|td)(?P<attrs>[^>]*)>(?P<content>.*?)</(?P=tag)>", re.DOTALL)
_ROW = re.compile(r"<tr>(?P<cells>.*?)</tr>", re.DOTALL)
_CODE = re.compile(r"<code>(?P<text>[^<]*)</code>")
_TAGS = re.compile(r"<[^>]+>")
# After "_" between word characters, after "." between letters (not in "0.25"), and
# before "/" (not in "//" or "://").
_BREAK = re.compile(
    r"(?<=[A-Za-z0-9)\]]_)(?=[A-Za-z0-9])|(?<=[A-Za-z)\]]\.)(?=[A-Za-z])|(?<=[^/:\s])(?=/[^/])"
)


_WORD = re.compile(r"\S+")
#: Shorter words never break: ``LWA_CLIENT_IDS`` stays whole, its column is wide enough.
_LONG_WORD = 20


_PLAIN = re.compile(r"[A-Za-z0-9_]+")


def _keep_whole(text: str) -> str:
    if _PLAIN.fullmatch(text):
        return text  # no break opportunity inside it anyway
    # A browser may break after "-" ("Retry-" / "After"): the word stays whole.
    return f"<span data-word>{text}</span>"


def _break_word(word: re.Match[str]) -> str:
    text = word[0]
    if len(html.unescape(text)) > _LONG_WORD:
        return _BREAK.sub("<wbr>", text)
    return _keep_whole(text)


def _breakable(match: re.Match[str]) -> str:
    """A cell's code: long words may break at identifier boundaries, short ones never."""
    return "<code>" + _WORD.sub(_break_word, match["text"]) + "</code>"


def _unbreakable(match: re.Match[str]) -> str:
    """A heading's code: no word breaks (headings are short; their column fits them)."""
    return "<code>" + _WORD.sub(lambda word: _keep_whole(word[0]), match["text"]) + "</code>"


def _label_cells(row: re.Match[str], headings: list[str]) -> str:
    index = 0

    def label(cell: re.Match[str]) -> str:
        nonlocal index
        heading = headings[index] if index < len(headings) else ""
        index += 1
        if cell["tag"] != "td":
            return f"<th{cell['attrs']}>{_CODE.sub(_unbreakable, cell['content'])}</th>"
        attrs = cell["attrs"]
        if heading:
            attrs += f' data-label="{html.escape(heading, quote=True)}"'
        return f"<td{attrs}>{_CODE.sub(_breakable, cell['content'])}</td>"

    return "<tr>" + _CELL.sub(label, row["cells"]) + "</tr>"


def _table(match: re.Match[str]) -> str:
    body = match["body"]
    head, _, rest = body.partition("</thead>")
    headings = [
        html.unescape(_TAGS.sub("", cell["content"])).strip()
        for cell in _CELL.finditer(head)
        if cell["tag"] == "th"
    ]
    if rest:
        rest = _ROW.sub(lambda row: _label_cells(row, headings), rest)
        body = f"{_CODE.sub(_unbreakable, head)}</thead>{rest}"
    columns = f' data-columns="{len(headings)}"' if headings else ""
    return f"<table{columns}>{body}</table>"


def on_page_content(html_text: str, **kwargs: Any) -> str:
    """Rewrite the page's Markdown tables (``<table>`` without a class)."""
    return _TABLE.sub(_table, html_text)
