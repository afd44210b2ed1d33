"""Path rules: which paths need a token, which may have one, which scopes they need.

Glob patterns (``fnmatch``: ``*`` matches across ``/``) are compiled once. The order is
DESIGN's: ``exclude`` first (no verification at all), then ``optional`` (no token →
anonymous; a bad token → its error), then ``protect``; a path matched by none passes
through untouched. ``require_scopes`` adds the union of every matching pattern's scopes
wherever a token is verified. Paths are those below the mount point, and are matched in
normal form (``//`` collapsed, ``.`` and ``..`` resolved), so ``/public/../admin`` is judged
as ``/admin`` whatever the app or a proxy later makes of it.
"""

from __future__ import annotations

import enum
import fnmatch
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_MEMO_LIMIT = 4096


class Mode(enum.Enum):
    """What the middleware does on a path."""

    PASS = "pass"  #: matched by no pattern: untouched
    EXCLUDE = "exclude"  #: excluded: untouched, even with a token
    OPTIONAL = "optional"  #: a token is verified when present
    PROTECT = "protect"  #: a token is required


@dataclass(frozen=True, slots=True)
class Route:
    """The decision for one path."""

    mode: Mode
    required_scopes: frozenset[str] = frozenset()
    #: Whether a token on this path is verified (computed once: reading an ``Enum`` member
    #: costs ~140 ns on Python 3.11, and this is read on every request).
    verifies: bool = field(init=False, repr=False, compare=False)
    #: Whether a missing token is allowed (``Mode.OPTIONAL``).
    optional: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verifies", self.mode in (Mode.OPTIONAL, Mode.PROTECT))
        object.__setattr__(self, "optional", self.mode is Mode.OPTIONAL)


def normalize_path(path: str) -> str:
    """``path`` with ``//``, ``.`` and ``..`` resolved, keeping a trailing slash."""
    if "//" not in path and "/." not in path and path.startswith("/"):
        return path
    normal = posixpath.normpath("/" + path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    if path.endswith("/") and normal != "/":
        normal += "/"
    return normal


def compile_patterns(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex matching any of the glob patterns, or ``None`` for none."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class PathRules:
    """Compiled path rules with a bounded memo of decisions."""

    __slots__ = ("_exclude", "_memo", "_optional", "_protect", "_scoped")

    def __init__(
        self,
        protect: Sequence[str],
        exclude: Sequence[str] = (),
        optional: Sequence[str] = (),
        require_scopes: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self._exclude = compile_patterns(exclude)
        self._optional = compile_patterns(optional)
        self._protect = compile_patterns(protect)
        self._scoped = [
            (re.compile(fnmatch.translate(pattern)), scopes)
            for pattern, scopes in (require_scopes or {}).items()
        ]
        self._memo: dict[str, Route] = {}

    def route(self, path: str) -> Route:
        """The decision for ``path`` (memoised; the memo is bounded)."""
        route = self._memo.get(path)
        if route is None:
            route = self._decide(normalize_path(path))
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[path] = route
        return route

    def _decide(self, path: str) -> Route:
        if self._exclude is not None and self._exclude.match(path):
            return Route(Mode.EXCLUDE)
        if self._optional is not None and self._optional.match(path):
            mode = Mode.OPTIONAL
        elif self._protect is not None and self._protect.match(path):
            mode = Mode.PROTECT
        else:
            return Route(Mode.PASS)
        scopes: frozenset[str] = frozenset()
        for regex, needed in self._scoped:
            if regex.match(path):
                scopes |= needed
        return Route(mode, scopes)
