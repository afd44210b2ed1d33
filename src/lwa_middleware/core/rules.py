"""Path rules: which paths need a token, which may have one, which scopes they need.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

Glob patterns (``fnmatch``: ``*`` matches across ``/``) are compiled once. The order is
DESIGN's: ``exclude`` first (no verification at all), then ``optional`` (no token →
anonymous; a bad token → its error), then ``protect``; a path matched by none passes
through untouched. ``require_scopes`` adds the union of every matching pattern's scopes
wherever a token is verified. Paths are those below the mount point.

A path is judged in every form a router, proxy or file server may make of it (see
:func:`path_forms`): as received (Starlette, Werkzeug and Django route on that), with ``//``
merged (Werkzeug), with dot segments resolved, in normal form, in servlet form (``;params``
dropped, ``\\`` as ``/``), and decoded once more when it still holds a ``%``. The
decision is the strictest: a token is verified if any form needs it, the path is excluded
only if every form is, and the scopes are those of every form verified. So neither
``/admin/../public`` (served by ``/admin/{p:path}``) nor ``/public/../admin`` (served as
``/admin`` behind a normalizing proxy) gets past the rules. A path with none of ``%``,
``;``, ``\\``, ``//``, ``/.`` has one form and costs what it always did. Decisions are
memoised for paths of at most :data:`MEMO_MAX_PATH` characters, at most :data:`MEMO_LIMIT`
of them, so the memo stays under ~1 MB whatever clients send.

The access policy's rules of a route (:class:`~lwa_middleware.core.policy.Access`, or ``None``
where no rule applies) are resolved with the route, over the same forms, and memoised with
it (``Route.access``); :meth:`PathRules.set_policy` swaps the policy and empties the memo
(a route judged under the old policy while it changes is answered, never memoised).

"""

from __future__ import annotations

import enum
import fnmatch
import posixpath
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from lwa_middleware.core.policy import Access, AccessPolicy

#: The longest path with several forms that is judged form by form; a longer one gets the
#: strictest decision there is (a token, and every scope of ``require_scopes``) at once, so
#: a crafted 60 KB path of ``%2e%2e;\`` costs a lookup, not ~5 ms of CPU.
MAX_JUDGED_PATH = 2048
#: The most decisions memoised (the memo is emptied when full).
MEMO_LIMIT = 4096
#: The longest path whose decision is memoised; longer ones are decided every time, so
#: distinct long paths cannot grow the memo (4,096 paths of 60 KB once held ~235 MB).
MEMO_MAX_PATH = 256

_SLASHES = re.compile("//+")
_PARAMS = re.compile(";[^/]*")


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
    #: The access policy's rules here (``None``: none apply); set only where a token is
    #: verified.
    access: Access | None = field(default=None, compare=False)
    #: Whether a token on this path is verified (computed once: reading an ``Enum`` member
    #: costs ~140 ns on Python 3.11, and this is read on every request).
    verifies: bool = field(init=False, repr=False, compare=False)
    #: Whether a missing token is allowed (``Mode.OPTIONAL``).
    optional: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verifies", self.mode in (Mode.OPTIONAL, Mode.PROTECT))
        object.__setattr__(self, "optional", self.mode is Mode.OPTIONAL)


_EXCLUDED = Route(Mode.EXCLUDE)
_PASSED = Route(Mode.PASS)


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


def merge_slashes(path: str) -> str:
    """``path`` with runs of ``/`` merged and dot segments kept, as Werkzeug's router (and
    proxies that merge slashes) read it: ``//account/.`` → ``/account/.``."""
    return _SLASHES.sub("/", path)


def resolve_dots(path: str) -> str:
    """``path`` with ``.`` and ``..`` resolved as RFC 3986 §5.2.4 does, empty segments kept
    (proxies that normalize without merging slashes): ``/admin//..`` → ``/admin/``."""
    segments = ("/" + path if not path.startswith("/") else path).split("/")
    kept: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", ".."):
        kept.append("")
    return "/" + "/".join(kept)


def servlet_path(path: str) -> str:
    """``path`` as a servlet container or a Windows server reads it: ``\\`` taken as ``/``,
    each segment's ``;params`` dropped (``/public/..;/admin`` → ``/admin``), normal form."""
    return normalize_path(_PARAMS.sub("", path.replace("\\", "/")))


def path_forms(path: str) -> set[str]:
    """Every form a router, proxy or file server may make of ``path`` (already decoded once
    by the server): the path and, when it still holds a ``%``, the path decoded once more
    (apps and proxies that decode twice), each as is, with slashes merged, with dot segments
    resolved (RFC 3986), in normal form (both) and in servlet form."""
    forms: set[str] = set()
    for base in (path, unquote(path)) if "%" in path else (path,):
        forms.add(base)
        forms.add(normalize_path(base))
        if "//" in base:
            forms.add(merge_slashes(base))
        if "/." in base:
            forms.add(resolve_dots(base))
        if ";" in base or "\\" in base:
            forms.add(servlet_path(base))
    return forms


def compile_patterns(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex matching any of the glob patterns, or ``None`` for none."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class PathRules:
    """Compiled path rules with a bounded memo of decisions."""

    __slots__ = (
        "_exclude",
        "_lock",
        "_memo",
        "_optional",
        "_protect",
        "_scoped",
        "_strictest",
        "policy",
    )

    def __init__(
        self,
        protect: Sequence[str],
        exclude: Sequence[str] = (),
        optional: Sequence[str] = (),
        require_scopes: Mapping[str, frozenset[str]] | None = None,
        policy: AccessPolicy | None = None,
    ) -> None:
        self._exclude = compile_patterns(exclude)
        self._optional = compile_patterns(optional)
        self._protect = compile_patterns(protect)
        self._scoped = [
            (re.compile(fnmatch.translate(pattern)), scopes)
            for pattern, scopes in (require_scopes or {}).items()
        ]
        self._memo: dict[str, Route] = {}
        self._lock = threading.Lock()
        #: The access policy whose rules each route carries (:meth:`set_policy` swaps it).
        self.policy = policy if policy is not None else AccessPolicy()
        self._strictest = self._strictest_route()

    def _strictest_route(self) -> Route:
        every_scope: frozenset[str] = frozenset().union(*(s for _, s in self._scoped))
        return Route(Mode.PROTECT, every_scope, self.policy.strictest())

    def set_policy(self, policy: AccessPolicy) -> None:
        """Judge every route by ``policy`` from now on (the memo is emptied)."""
        with self._lock:
            self.policy = policy
            self._strictest = self._strictest_route()
            self._memo.clear()

    def access(self, path: str) -> Access | None:
        """The access policy's rules for ``path`` in every form, whatever the path rules
        decide there (the sign-in and ``inspect`` judge a path this way; not memoised)."""
        policy = self.policy
        if len(path) > MAX_JUDGED_PATH:
            return policy.strictest()
        return policy.access(path_forms(path))

    @property
    def memo(self) -> Mapping[str, Route]:
        """The memoised decisions (read-only use: a shell's one ``dict.get`` before
        :meth:`route`, which fills it)."""
        return self._memo

    def route(self, path: str) -> Route:
        """The decision for ``path``: the strictest over :func:`path_forms` (memoised for
        paths of at most :data:`MEMO_MAX_PATH` characters; the memo is bounded)."""
        route = self._memo.get(path)
        if route is None:
            policy = self.policy
            route = self._judge(path, policy)
            if len(path) <= MEMO_MAX_PATH:
                with self._lock:  # never memoise a route of a policy swapped meanwhile
                    if self.policy is policy:
                        if len(self._memo) >= MEMO_LIMIT:
                            self._memo.clear()
                        self._memo[path] = route
        return route

    def _judge(self, path: str, policy: AccessPolicy) -> Route:
        """The strictest decision over every form of ``path``: verified if any form is
        (``PROTECT`` over ``OPTIONAL``), with every verified form's scopes and the policy
        of every form; excluded only if every form is; else passed through."""
        if not (
            "%" in path
            or ";" in path
            or "\\" in path
            or "//" in path
            or "/." in path
            or not path.startswith("/")
        ):
            route = self._decide(path)  # its only form (`in` beats one regex 3x here)
            if route.verifies and not policy.empty:
                return Route(route.mode, route.required_scopes, policy.access((path,)))
            return route
        if len(path) > MAX_JUDGED_PATH:
            return (
                self._strictest
                if policy is self.policy
                else Route(Mode.PROTECT, self._strictest.required_scopes, policy.strictest())
            )
        forms = path_forms(path)
        routes = [self._decide(form) for form in forms]
        verified = [route for route in routes if route.verifies]
        if not verified:
            if all(route.mode is Mode.EXCLUDE for route in routes):
                return _EXCLUDED
            return _PASSED
        mode = Mode.OPTIONAL if all(route.optional for route in verified) else Mode.PROTECT
        scopes: frozenset[str] = frozenset()
        for route in verified:
            scopes |= route.required_scopes
        return Route(mode, scopes, policy.access(forms))

    def _decide(self, path: str) -> Route:
        if self._exclude is not None and self._exclude.match(path):
            return _EXCLUDED
        if self._optional is not None and self._optional.match(path):
            mode = Mode.OPTIONAL
        elif self._protect is not None and self._protect.match(path):
            mode = Mode.PROTECT
        else:
            return _PASSED
        scopes: frozenset[str] = frozenset()
        for regex, needed in self._scoped:
            if regex.match(path):
                scopes |= needed
        return Route(mode, scopes)
