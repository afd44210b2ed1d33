"""One look for every HTML page the package serves: the sign-in's pages (an error, the
sign-out confirmation, a customer the access policy refuses), the demo's pages, and the
emulator's consent and ``/activate`` pages.

:data:`STYLE` is the one stylesheet, set inline (the sign-in's pages load nothing: their
``Content-Security-Policy`` is ``default-src 'none'`` with inline styles only) and
:func:`document` the one page around a body. This module imports nothing of the package
(the standard library's :func:`html.escape` only), so every layer may use it, the emulator
(which stands on the core alone) included.

The rules that keep a page readable on a 390 px phone: the page never scrolls sideways; a
long identifier (a user id, a client id, a URL) passed through :func:`breakable` breaks
after its dots and slashes, and any text breaks inside a word only when the word alone is
wider than the line (``overflow-wrap: anywhere``, never ``word-break: break-all``, which
cut ``postal_code`` in two).
"""

from __future__ import annotations

import re
from html import escape

__all__ = ["STYLE", "breakable", "document"]

STYLE = """\
*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:#eaeded;color:#0f1111;
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;overflow-wrap:anywhere}
main{width:min(42rem,100% - 2rem);margin:2.5rem auto;background:#fff;border:1px solid #d5d9d9;
border-radius:8px;padding:1.5rem 1.6rem;box-shadow:0 2px 6px rgba(0,0,0,.08)}
main.narrow{width:min(27rem,100% - 2rem)}
main>:last-child,main>:last-child>:last-child{margin-bottom:0}
@media (max-width:480px){main,main.narrow{width:auto;margin:1rem .75rem;padding:1.25rem 1rem}}
h1{font-size:1.45rem;font-weight:500;line-height:1.3;margin:0 0 .6rem}
h2{font-size:1.1rem;font-weight:600;margin:1.6rem 0 .5rem}
p{margin:.7rem 0}
a{color:#007185}a:hover{color:#c7511f}
code{font:.85em/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;
background:#f3f3f3;border-radius:3px;padding:.05em .3em;overflow-wrap:break-word}
pre{background:#f3f3f3;border-radius:6px;padding:.6rem .8rem;overflow-x:auto}
pre code{padding:0}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;vertical-align:top;padding:.4rem .8rem .4rem 0;
border-bottom:1px solid #e3e6e6}
th{font-weight:600;white-space:nowrap;overflow-wrap:normal}
@media (max-width:480px){table.pairs th,table.pairs td{display:block;padding:0 0 .45rem}
table.pairs th{border:0;padding:.45rem 0 0;color:#565959;font-size:.85rem}}
.muted,.small{color:#565959}.small{font-size:.8rem}
.tag{display:inline-block;font-size:.7rem;font-weight:400;letter-spacing:.04em;
text-transform:uppercase;background:#232f3e;color:#fff;border-radius:3px;padding:.05rem .4rem;
vertical-align:middle}
.error{color:#b12704;font-weight:600}
label.field{display:block;font-weight:600;margin:1rem 0 .4rem}
select,input.code{width:100%;padding:.45rem 2rem .45rem .5rem;text-overflow:ellipsis;
border:1px solid #888c8c;border-radius:6px;
font:inherit;background:#f7f8f8;color:inherit}
input.code{font:600 1.25rem ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
letter-spacing:.2em;text-transform:uppercase;background:#fff;padding-right:.5rem}
fieldset{border:1px solid #d5d9d9;border-radius:6px;margin:1rem 0;padding:.5rem .75rem .6rem}
legend{font-weight:600;padding:0 .25rem}
.scope{display:flex;gap:.5rem;align-items:baseline;margin:.4rem 0}
.scope code{color:#565959;background:none;padding:0}
form{margin:1rem 0}
.actions{display:flex;flex-wrap:wrap;gap:.6rem;align-items:center;margin:1.1rem 0}
.actions form{margin:0}
button,.button{display:inline-block;min-width:8rem;padding:.5rem 1.2rem;border-radius:20px;
border:1px solid #fcd200;background:#ffd814;color:#0f1111;font:inherit;font-weight:500;
text-align:center;text-decoration:none;cursor:pointer}
button:hover,.button:hover{background:#f7ca00;color:#0f1111}
.secondary,#deny{border-color:#d5d9d9;background:#fff}
.secondary:hover,#deny:hover{background:#f7fafa}
.actions>button{flex:1}
#result{font-size:1.15rem;font-weight:600}
"""
"""The stylesheet of every page (inline in each: nothing is fetched)."""

# After a dot, a slash, a colon, an "@", "?", "&", "=" or "_" followed by something else.
_BREAK_AFTER = re.compile(r"(?<=[./:@?&=_])(?=[^./:@?&=_])")
_LONG = 16


def breakable(text: str) -> str:
    """``text`` escaped, with a ``<wbr>`` after the punctuation of every word longer than
    16 characters (``amzn1.account.<wbr>AEXAMPLE…``, ``http://<wbr>127.0.0.1…``), so a
    long identifier breaks between its parts on a narrow screen, not mid-part."""
    return "".join(
        "<wbr>".join(escape(part) for part in _BREAK_AFTER.split(word))
        if len(word) > _LONG
        else escape(word)
        for word in re.split(r"(\s+)", text)
    )


def document(title: str, body: str, *, narrow: bool = False) -> str:
    """A whole page: ``title`` (escaped) and ``body`` (HTML, already escaped) in the one
    card (``narrow``: the width of a sign-in form), with :data:`STYLE`."""
    main = '<main class="narrow">' if narrow else "<main>"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{main}{body}</main></body></html>\n"
    )
