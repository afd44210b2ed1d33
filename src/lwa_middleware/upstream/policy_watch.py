"""The access policy's I/O: reading ``policy_file`` (and re-reading it when it changes) and
the ``LWA_ALLOW``/``LWA_DENY``/``LWA_POLICY_FILE`` environment variables.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

Everything it reads is parsed and judged by :mod:`lwa_middleware.core.policy`; this module only
opens, stats and reads. :func:`build_policy` gathers the sources of one middleware (its
keyword options, its ``policy_file``, the process environment) into a
:class:`PolicyWatch`; a file missing or broken then is a ``ConfigurationError`` (never an
empty, admit-all policy).

:meth:`PolicyWatch.tick` is what a request calls, with the time it has already read: at
most once per :data:`CHECK_INTERVAL` seconds (also when the clock jumped back), one
thread stats each file (``os.stat``: a few µs); a file whose inode, size, mtime or ctime
changed is read and parsed, and the new policy handed to ``on_change`` (the gate swaps
it in, and every route, cached identities included, is judged by it from the next
request). A file that became unreadable or broken keeps the last good policy and logs an
ERROR naming the file and the problem, once per change of the file.

"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.policy import (
    AccessPolicy,
    PolicySource,
    file_format,
    parse_document,
    parse_json_variable,
)

logger = logging.getLogger("lwa_middleware")

#: The most seconds between two looks at the policy files.
CHECK_INTERVAL = 1.0
#: The environment variables of the policy (read by every middleware, whatever its options).
ENV_ALLOW = "LWA_ALLOW"
ENV_DENY = "LWA_DENY"
ENV_POLICY_FILE = "LWA_POLICY_FILE"
ENV_VARIABLES = (ENV_ALLOW, ENV_DENY, ENV_POLICY_FILE)
#: The largest policy file read (a bigger one is refused as broken).
MAX_FILE_BYTES = 8 * 1024 * 1024

FileKey = tuple[int, int, int, int, int]


def _file_key(path: str) -> FileKey:
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _read(path: str) -> str:
    with open(path, "rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8-sig")


class PolicyFile:
    """One policy file: read now (``ConfigurationError`` when missing or broken), then
    re-read by :meth:`check` when it changes, keeping the last good rules when it breaks."""

    __slots__ = ("_failed", "key", "path", "source")

    def __init__(self, path: str | os.PathLike[str], origin: str = "policy_file") -> None:
        #: Absolute: a later ``chdir`` of the process must not lose the file.
        self.path = os.path.abspath(os.fspath(path))
        where = f"{origin} {self.path!r}"
        try:
            key = _file_key(self.path)
            text = _read(self.path)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{where} cannot be read: {_reason(exc)}") from None
        self.source = parse_document(where, text, file_format(self.path))
        self.key: FileKey | None = key
        #: The key (or ``"missing"``) of the state last found broken: logged once.
        self._failed: FileKey | str | None = None

    def check(self) -> bool:
        """Look at the file; ``True`` when it changed and its new rules are now
        :attr:`source`."""
        try:
            key = _file_key(self.path)
        except OSError as exc:
            self._broken("missing", f"cannot be read: {_reason(exc)}")
            return False
        if key == self.key or key == self._failed:
            return False
        where = f"policy file {self.path!r}"
        try:
            text = _read(self.path)
            source = parse_document(where, text, file_format(self.path))
        except (OSError, ValueError) as exc:  # ConfigurationError is a ValueError
            problem = _reason(exc)
            self._broken(key, problem.removeprefix(f"{where}: "))
            return False
        self.source, self.key, self._failed = source, key, None
        logger.info("access policy file %r changed: its new rules apply now", self.path)
        return True

    def _broken(self, state: FileKey | str, problem: str) -> None:
        if self._failed == state:
            return
        self._failed = state
        logger.error(
            "access policy file %r is broken (%s); the last good policy stays in force",
            self.path,
            problem,
        )


def _reason(exc: BaseException) -> str:
    """What went wrong, in a few words (an ``OSError``'s text without its path)."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


class PolicyWatch:
    """The policy of one middleware: fixed sources (options, environment) and files, the
    current :class:`AccessPolicy`, and the check for changed files."""

    __slots__ = ("_due", "_lock", "_since", "files", "fixed", "interval", "on_change", "policy")

    def __init__(
        self,
        fixed: Sequence[PolicySource] = (),
        files: Sequence[PolicyFile] = (),
        *,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self.fixed = tuple(source for source in fixed if not source.empty)
        self.files = tuple(files)
        self.interval = interval
        self.policy = AccessPolicy(self._sources())
        #: Called with each new policy (the gate's ``set_policy``).
        self.on_change: Callable[[AccessPolicy], None] | None = None
        self._lock = threading.Lock()
        #: No look while ``_since <= now < _due`` (a clock that went back looks at once).
        self._since = self._due = float("-inf")

    def _sources(self) -> list[PolicySource]:
        return [*self.fixed, *(file.source for file in self.files)]

    @property
    def configured(self) -> bool:
        """Whether any source is there (a file counts, even empty now: it may change)."""
        return bool(self.fixed or self.files)

    @property
    def watching(self) -> bool:
        """Whether there is a file to watch (else :meth:`tick` need never be called)."""
        return bool(self.files)

    def tick(self, now: float) -> None:
        """Called by requests with the time: looks at the files when due (at most once per
        :attr:`interval`, by one thread at a time)."""
        if self._since <= now < self._due or not self.files:
            return
        if not self._lock.acquire(blocking=False):
            return  # another thread is looking
        try:
            self._since, self._due = now, now + self.interval
            changed = [file.check() for file in self.files]
            if any(changed):
                self.policy = AccessPolicy(self._sources())
                if self.on_change is not None:
                    self.on_change(self.policy)
        finally:
            self._lock.release()


def environment_sources(
    environ: Mapping[str, str],
) -> tuple[list[PolicySource], list[PolicyFile]]:
    """The policy the environment sets: ``LWA_ALLOW`` (a JSON object of pattern → rules),
    ``LWA_DENY`` (a JSON list of rules, or an object), ``LWA_POLICY_FILE`` (a file's path).
    Empty variables are skipped; errors name the variable."""
    allow_text = (environ.get(ENV_ALLOW) or "").strip()
    deny_text = (environ.get(ENV_DENY) or "").strip()
    path = (environ.get(ENV_POLICY_FILE) or "").strip()
    sources: list[PolicySource] = []
    if allow_text:
        allow = parse_json_variable(ENV_ALLOW, allow_text, mapping=True)
        sources.append(PolicySource.of(ENV_ALLOW, allow=allow))
    if deny_text:
        deny = parse_json_variable(ENV_DENY, deny_text, mapping=False)
        sources.append(PolicySource.of(ENV_DENY, deny=deny))
    files = [PolicyFile(path, ENV_POLICY_FILE)] if path else []
    return sources, files


def build_policy(settings: Any, environ: Mapping[str, str] | None = None) -> PolicyWatch:
    """Every source of a middleware's policy: ``settings.allow``/``settings.deny``,
    ``settings.policy_file`` and the environment (``os.environ`` unless given); a file
    missing or broken, or a malformed variable, is a ``ConfigurationError`` now."""
    fixed = [PolicySource.of("options", settings.allow, settings.deny or None)]
    files = [] if settings.policy_file is None else [PolicyFile(settings.policy_file)]
    env_sources, env_files = environment_sources(os.environ if environ is None else environ)
    return PolicyWatch([*fixed, *env_sources], [*files, *env_files])
