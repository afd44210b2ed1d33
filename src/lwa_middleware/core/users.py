"""The app's own users: the ``user_loader``'s rules and the cache of what it loaded, without
I/O (``now`` is passed in).

A site keeps its own accounts and links each to the Amazon customer who signs in. Both
middlewares take ``user_loader(identity) -> user | None`` (sync, or async under ASGI) and
call it only for a customer the access policy admitted (after ``authorize``), so no account
is ever made for someone the policy refuses. What it answers:

* a user (any object but ``None``): put at ``scope["lwa.user"]`` / ``environ["lwa.user"]``
  (and, under ASGI, at Starlette's ``scope["user"]`` when it is a ``BaseUser``), and kept
  in :class:`UserCache` for ``user_cache_ttl`` seconds, so warm requests do not call the
  loader again. The object is shared by every request of that customer meanwhile: the app
  treats it as read-only;
* ``None``: this customer has no account here: :class:`~lwa_middleware.core.errors.NoAccount`
  (403 ``access_denied``), wherever a token was verified, ``optional`` routes included,
  except on the ``user_optional`` paths (:class:`UserRules`: the page that links or creates
  an account), where the request goes on with ``lwa.user`` set to ``None``. ``None`` is
  never cached: an account linked or created a moment later counts at once;
* an exception (or, under WSGI, an awaitable), or ``True``/``False`` (``False`` meant as
  "no" would otherwise pass for a user): a ``ServerError`` (500, logged), never an
  admission.

The cache lives in the worker's memory only (never in Redis: a user object is the app's,
and may not survive serialization), is keyed by the LWA ``user_id`` (never a token), and
is bounded (``cache_maxsize`` entries, the oldest dropped first). A deactivated account
(the loader answers ``None`` from then on) so loses access within ``user_cache_ttl``
(:meth:`UserCache.forget` drops one at once, in this worker).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lwa_middleware.core.errors import ConfigurationError, LWAError, NoAccount, ServerError
from lwa_middleware.core.models import Identity
from lwa_middleware.core.rules import MAX_JUDGED_PATH, compile_patterns, path_forms

logger = logging.getLogger("lwa_middleware")

#: ``user_loader``: ``(identity) -> user | None`` (async allowed under ASGI).
UserLoader = Callable[[Identity], "Any | Awaitable[Any]"]
#: The ``ServerError`` description when the ``user_loader`` fails.
LOADER_FAILED = "The server could not load the account of this customer."

#: A cache entry: ``(deadline, user, framework_user)``; ``framework_user`` is what
#: Starlette's ``scope["user"]`` gets (the user when it is a ``BaseUser``, else ``None``:
#: the middleware's own ``LWAUser``).
Entry = tuple[float, Any, Any]
#: What a customer without an account gets on a ``user_optional`` path (never cached).
NO_USER: Entry = (0.0, None, None)


def check_loader(loader: object) -> None:
    """Refuse a ``user_loader`` that cannot be called, at construction."""
    if loader is not None and not callable(loader):
        raise ConfigurationError(
            f"user_loader must be callable (identity) -> user | None, or None; "
            f"got {type(loader).__name__}"
        )


def loader_failed(error: BaseException) -> LWAError:
    """The error to answer when the ``user_loader`` raised (or could not be awaited): a
    ``ServerError``, logged with its traceback, never an admission."""
    logger.error(
        "user_loader raised %s; the request is refused (500)",
        type(error).__name__,
        exc_info=error,
    )
    return ServerError(LOADER_FAILED)


class UserRules:
    """The ``user_optional`` paths: where a verified customer without an account (the
    loader answered ``None``) still reaches the app, with ``lwa.user`` set to ``None``.

    A relaxation, so it takes the narrow reading (as ``exclude`` does): a path is
    ``user_optional`` only when every form of it (:func:`~lwa_middleware.core.rules.path_forms`)
    matches a pattern. Asked only when the loader answered ``None`` (never on the warm
    path of a customer who has an account)."""

    __slots__ = ("_regex",)

    def __init__(self, patterns: Sequence[str]) -> None:
        self._regex = compile_patterns(patterns)

    def optional(self, path: str) -> bool:
        """Whether a customer without an account may go on at ``path``."""
        regex = self._regex
        if regex is None or len(path) > MAX_JUDGED_PATH:
            return False
        return all(regex.match(form) for form in path_forms(path))


class UserCache:
    """The users the loader answered, by LWA ``user_id``, each until ``now + ttl``.

    :meth:`peek` is one ``dict.get`` (the warm path compares the deadline itself); entries
    are replaced, never mutated; past ``maxsize`` the oldest entry is dropped. Writes are
    locked (threads of a WSGI worker), reads are not (a ``dict`` read is atomic)."""

    __slots__ = ("_entries", "_lock", "framework_user", "maxsize", "peek", "rules", "ttl")

    def __init__(
        self,
        ttl: float,
        maxsize: int,
        framework_user: Callable[[Any], Any] | None = None,
        user_optional: Sequence[str] = (),
    ) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        #: The ``user_optional`` paths.
        self.rules = UserRules(user_optional)
        #: What a user is to the framework (Starlette's ``BaseUser`` check); ``None``: nothing.
        self.framework_user = framework_user
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        #: ``peek(user_id)``: the entry, live or not, or ``None``.
        self.peek = self._entries.get

    def get(self, user_id: str, now: float) -> Entry | None:
        """The live entry of ``user_id``, or ``None``."""
        entry = self._entries.get(user_id)
        if entry is not None and now < entry[0]:
            return entry
        return None

    def settle(self, user_id: str, user: Any, path: str, now: float) -> Entry:
        """What the loader's answer for ``user_id`` means at ``path``: a user is kept
        (:meth:`put`); ``None`` is :data:`NO_USER` on a ``user_optional`` path, else
        :class:`~lwa_middleware.core.errors.NoAccount`."""
        if user is None:
            if self.rules.optional(path):
                return NO_USER
            raise NoAccount()
        if isinstance(user, bool):  # ``False`` for "no account" would let them in: a bug
            logger.error(
                "user_loader returned %s, not a user or None; the request is refused (500)",
                user,
            )
            raise ServerError(LOADER_FAILED)
        return self.put(user_id, user, now)

    def put(self, user_id: str, user: Any, now: float) -> Entry:
        """Keep ``user`` (never ``None``) for ``ttl`` seconds; the entry to use now (kept or
        not: with ``ttl`` 0 nothing is kept)."""
        shown = self.framework_user(user) if self.framework_user is not None else None
        entry: Entry = (now + self.ttl, user, shown)
        if self.ttl <= 0:
            return entry
        entries = self._entries
        with self._lock:
            entries.pop(user_id, None)  # re-inserted last: the oldest is first
            while len(entries) >= self.maxsize:
                del entries[next(iter(entries))]
            entries[user_id] = entry
        return entry

    def forget(self, user_id: str) -> None:
        """Drop ``user_id``'s entry: its next request asks the loader again."""
        with self._lock:
            self._entries.pop(user_id, None)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
