"""Where a sign-in may send the browser afterwards: local paths only (no I/O).

Layer: ``login`` (website sign-in; see ``ARCHITECTURE.md``).

``next`` is attacker-controlled (anyone can link to ``/login?next=…``), so a value is
kept only when it is a path on this site in every form a browser or a later decoding
could read it in; anything else becomes ``/``. Refused: anything not starting with one
``/`` (``https:``, ``javascript:``, ``//host``, ``/\\host``: browsers read a backslash as a
slash), any character outside visible ASCII (controls, tabs and newlines, which browsers
strip, spaces, non-ASCII), a backslash anywhere, anything that carries a scheme or a host,
dot segments (``/.//host``), and anything that *decodes* (once or repeatedly:
``/%2F%2Fhost``, ``/%5Chost``, ``/%252F%252Fhost``) to one of those.

"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

#: The fallback target.
HOME = "/"
#: The longest ``next`` kept.
MAX_NEXT_CHARS = 2048
#: How many rounds of percent-decoding are looked through.
_DECODE_ROUNDS = 4


def _local(path: str) -> bool:
    """One form of the path: a single leading slash, no control character, no backslash,
    no scheme, no host."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return False
    if any(char < "\x20" or char == "\x7f" for char in path):
        return False
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return False
    # Dot segments: "/.//host" resolves to "//host" in whatever normalizes it next.
    segments = parts.path.split("/")
    return "." not in segments and ".." not in segments


def safe_next(value: str | None) -> str:
    """``value`` when it is a local path in every decoded form, else ``/``."""
    if not value or len(value) > MAX_NEXT_CHARS:
        return HOME
    if not all("\x21" <= char <= "\x7e" for char in value):
        return HOME  # what goes into Location is visible ASCII as given
    form = value
    for _ in range(_DECODE_ROUNDS):
        if not _local(form):
            return HOME
        # latin-1 maps every byte to one character: a decoding never fails, and every
        # control byte stays a control character for _local to see.
        decoded = unquote(form, encoding="latin-1")
        if decoded == form:
            return value
        form = decoded
    return HOME  # still decoding after that many rounds: nothing legitimate looks so
