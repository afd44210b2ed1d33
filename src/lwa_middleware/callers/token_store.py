"""Where ``lwa-middleware login`` keeps a person's tokens: a private JSON file, and the OS
keyring when the ``keyring`` package is installed.

Layer: ``callers`` (for those who call protected routes; see ``ARCHITECTURE.md``).

One login per API base URL and client ID (``"<api_base_url> <client_id>"``). The file is
``tokens.json`` in :func:`config_dir` (``$XDG_CONFIG_HOME/lwa-middleware`` when
``XDG_CONFIG_HOME`` is set; else ``~/.config/lwa-middleware`` on Linux and other Unixes,
``~/Library/Application Support/lwa-middleware`` on macOS, ``%APPDATA%\\lwa-middleware`` on
Windows)::

    {
      "version": 1,
      "logins": {
        "https://api.amazon.com amzn1.application-oa2-client.abc": {
          "api_base_url": "https://api.amazon.com",
          "client_id": "amzn1.application-oa2-client.abc",
          "store": "file",                      # or "keyring": no tokens in the file
          "access_token": "Atza|…", "refresh_token": "Atzr|…",
          "expires_at": 1767225600.0,           # epoch seconds
          "scope": "profile", "allow_insecure_http": false, "updated_at": 1767222000.0
        }
      }
    }

With the keyring (``store: "keyring"``) the tokens are the password of service
``lwa-middleware``, user ``"<api_base_url> <client_id>"`` (a JSON object with
``access_token`` and ``refresh_token``); the file then holds the rest, so logins can be
listed. A keyring that fails to store (no backend) falls back to the file.

Files are written atomically: a temporary file created ``0600`` in the same directory,
written, ``fsync``-ed, renamed over ``tokens.json``, and the directory ``fsync``-ed; the
directory is ``0700``. A ``tokens.json`` that other users may read (any of ``0o077``) is
refused on POSIX, as ``ssh`` refuses a readable key. :meth:`TokenStore.lock` is an
exclusive ``flock`` on ``tokens.lock`` beside it (POSIX; no lock on Windows), held while a
token is refreshed and written back so two processes do not refresh at once.

``LWA_MIDDLEWARE_TOKEN_STORE=file`` forces the file (tests; a machine whose keyring
prompts), ``=keyring`` requires the keyring, ``=auto`` (or unset) uses it when importable.

"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lwa_middleware.core.grants import TokenGrant

__all__ = [
    "FILE_NAME",
    "KEYRING_SERVICE",
    "STORE_VARIABLE",
    "AmbiguousLogin",
    "NotLoggedIn",
    "StoredTokens",
    "TokenStore",
    "TokenStoreError",
    "config_dir",
]

APP_DIR = "lwa-middleware"
FILE_NAME = "tokens.json"
LOCK_NAME = "tokens.lock"
KEYRING_SERVICE = "lwa-middleware"
#: ``file``, ``keyring`` or ``auto``: which store :class:`TokenStore` uses by default.
STORE_VARIABLE = "LWA_MIDDLEWARE_TOKEN_STORE"
FORMAT_VERSION = 1
#: The largest ``tokens.json`` read.
MAX_FILE_BYTES = 1024 * 1024


def config_dir(
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    home: Path | None = None,
) -> Path:
    """The directory of ``tokens.json`` (see the module's docstring)."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    home = Path.home() if home is None else home
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_DIR
    if platform == "win32":
        appdata = env.get("APPDATA", "")
        base = Path(appdata) if appdata else home / "AppData" / "Roaming"
        return base / APP_DIR
    if platform == "darwin":
        return home / "Library" / "Application Support" / APP_DIR
    return home / ".config" / APP_DIR


class TokenStoreError(Exception):
    """The store cannot be read or written; the message says why (never with a token)."""


class NotLoggedIn(TokenStoreError):
    """No stored login matches: run ``lwa-middleware login``."""


class AmbiguousLogin(TokenStoreError):
    """Several stored logins match: name the client ID (and API base URL)."""


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """One login's tokens. The tokens are hidden from ``repr``."""

    api_base_url: str
    client_id: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    #: When the access token expires (epoch seconds).
    expires_at: float
    scope: str | None = None
    #: The login was made with ``--allow-insecure-http`` (plain http beyond loopback).
    allow_insecure_http: bool = False
    updated_at: float = 0.0

    @property
    def key(self) -> str:
        return login_key(self.api_base_url, self.client_id)

    def expires_within(self, seconds: float, now: float) -> bool:
        """Whether the access token expires within ``seconds`` of ``now`` (or has)."""
        return self.expires_at - now <= seconds

    def refreshed(self, grant: TokenGrant, now: float) -> StoredTokens:
        """These tokens after a refresh ``grant`` received at ``now`` (the old refresh
        token is kept when none came back, as without a client secret)."""
        return replace(
            self,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token or self.refresh_token,
            expires_at=grant.expires_at(now),
            scope=grant.scope or self.scope,
            updated_at=now,
        )

    @classmethod
    def from_grant(
        cls,
        grant: TokenGrant,
        *,
        api_base_url: str,
        client_id: str,
        now: float,
        scope: str | None = None,
        allow_insecure_http: bool = False,
    ) -> StoredTokens:
        """The tokens of a first grant (it must hold a refresh token)."""
        if grant.refresh_token is None:
            raise TokenStoreError("Login with Amazon granted no refresh token: nothing to store")
        return cls(
            api_base_url=api_base_url,
            client_id=client_id,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_at=grant.expires_at(now),
            scope=grant.scope or scope,
            allow_insecure_http=allow_insecure_http,
            updated_at=now,
        )


def login_key(api_base_url: str, client_id: str) -> str:
    """The key of a login: ``"<api_base_url> <client_id>"`` (neither holds a space)."""
    return f"{api_base_url.rstrip('/')} {client_id}"


def _text(entry: Mapping[str, Any], name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise TokenStoreError(f"a stored login has no usable {name}")
    return value


def _number(entry: Mapping[str, Any], name: str) -> float:
    value = entry.get(name, 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TokenStoreError(f"a stored login has no usable {name}")
    return float(value)


def _entry(tokens: StoredTokens, store: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "api_base_url": tokens.api_base_url,
        "client_id": tokens.client_id,
        "store": store,
    }
    if store == "file":
        entry |= {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token}
    return entry | {
        "expires_at": tokens.expires_at,
        "scope": tokens.scope,
        "allow_insecure_http": tokens.allow_insecure_http,
        "updated_at": tokens.updated_at,
    }


class TokenStore:
    """The tokens of ``lwa-middleware login``: ``path`` (default
    ``config_dir() / "tokens.json"``), and the OS keyring when ``keyring`` is ``True``, or
    ``None`` and :data:`STORE_VARIABLE` allows it and the package is importable."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        keyring: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.path = Path(path) if path is not None else config_dir(env) / FILE_NAME
        choice = env.get(STORE_VARIABLE, "auto").strip().lower() or "auto"
        if choice not in ("auto", "file", "keyring"):
            raise TokenStoreError(f"{STORE_VARIABLE} must be file, keyring or auto")
        self._module: Any = None
        self._imported = False
        if keyring is None:
            keyring = choice != "file"
            required = choice == "keyring"
        else:
            required = keyring
        self._use_keyring = bool(keyring) and self._keyring() is not None
        if required and not self._use_keyring:
            raise TokenStoreError(
                "the OS keyring was asked for, but the keyring package is not installed "
                "(pip install keyring)"
            )

    def _keyring(self) -> Any:
        """The ``keyring`` module (imported once), or ``None`` when it is not installed.
        Logins already in the keyring are read and forgotten through it even when new
        tokens go to the file."""
        if not self._imported:
            self._module, self._imported = _import_keyring(), True
        return self._module

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def uses_keyring(self) -> bool:
        """Whether new tokens go to the OS keyring."""
        return self._use_keyring

    def describe(self, tokens: StoredTokens | None = None) -> str:
        """Where the tokens are (of ``tokens``, as last stored): for messages."""
        where = self._where(tokens) if tokens is not None else None
        if where == "keyring" or (where is None and self.uses_keyring):
            return f"the OS keyring (listed in {self.path})"
        return str(self.path)

    # Reading ----------------------------------------------------------------------

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise TokenStoreError(f"cannot read {self.path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if os.name == "posix" and info.st_mode & 0o077:
                raise TokenStoreError(
                    f"{self.path} may be read by other users (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}); its tokens may have leaked: run "
                    f"`chmod 600 {self.path}`, or remove it and run `lwa-middleware login` again"
                )
            raw = file.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise TokenStoreError(f"{self.path} is too large to be a token store")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise TokenStoreError(f"{self.path} is not valid JSON; remove it") from None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise TokenStoreError(f"{self.path} is not a version {FORMAT_VERSION} token store")
        logins = data.get("logins", {})
        if not isinstance(logins, dict) or not all(isinstance(e, dict) for e in logins.values()):
            raise TokenStoreError(f"{self.path} is not a version {FORMAT_VERSION} token store")
        return logins

    def logins(self) -> list[tuple[str, str]]:
        """``(api_base_url, client_id)`` of every stored login, sorted."""
        return sorted(
            (_text(entry, "api_base_url"), _text(entry, "client_id"))
            for entry in self._read().values()
        )

    def load(self, api_base_url: str, client_id: str) -> StoredTokens | None:
        """The login of ``client_id`` at ``api_base_url``, or ``None``."""
        entry = self._read().get(login_key(api_base_url, client_id))
        return None if entry is None else self._tokens(entry)

    def find(self, client_id: str | None = None, api_base_url: str | None = None) -> StoredTokens:
        """The one stored login matching the given client ID and/or API base URL (any, when
        ``None``); :class:`NotLoggedIn` when none does, :class:`AmbiguousLogin` when several do."""
        matches = [
            (api, client)
            for api, client in self.logins()
            if (client_id is None or client == client_id)
            and (api_base_url is None or api == api_base_url.rstrip("/"))
        ]
        if not matches:
            which = " ".join(
                f"{flag} {value}"
                for flag, value in (("--client-id", client_id), ("--api-base-url", api_base_url))
                if value is not None
            )
            raise NotLoggedIn(
                "not logged in" + (f" for {which}" if which else "") + ": run "
                "`lwa-middleware login --client-id ID` first"
            )
        if len(matches) > 1:
            listed = "; ".join(f"{client} at {api}" for api, client in matches)
            raise AmbiguousLogin(
                f"several logins are stored ({listed}): pass --client-id (and --api-base-url)"
            )
        found = self.load(*matches[0])
        if found is None:  # removed meanwhile
            raise NotLoggedIn("not logged in: run `lwa-middleware login --client-id ID` first")
        return found

    def _where(self, tokens: StoredTokens) -> str | None:
        entry = self._read().get(tokens.key)
        return None if entry is None else str(entry.get("store", "file"))

    def _tokens(self, entry: Mapping[str, Any]) -> StoredTokens:
        api, client = _text(entry, "api_base_url"), _text(entry, "client_id")
        store = entry.get("store", "file")
        secrets: Mapping[str, Any]
        if store == "keyring":
            secrets = self._from_keyring(login_key(api, client))
        elif store == "file":
            secrets = entry
        else:
            raise TokenStoreError(f"a stored login is kept in an unknown store ({store!r})")
        scope = entry.get("scope")
        return StoredTokens(
            api_base_url=api,
            client_id=client,
            access_token=_text(secrets, "access_token"),
            refresh_token=_text(secrets, "refresh_token"),
            expires_at=_number(entry, "expires_at"),
            scope=scope if isinstance(scope, str) and scope else None,
            allow_insecure_http=entry.get("allow_insecure_http") is True,
            updated_at=_number(entry, "updated_at"),
        )

    def _from_keyring(self, key: str) -> dict[str, Any]:
        keyring = self._keyring()
        if keyring is None:
            raise TokenStoreError(
                "the tokens are in the OS keyring, but the keyring package is not installed "
                "now: run `lwa-middleware login` again"
            )
        try:
            raw = keyring.get_password(KEYRING_SERVICE, key)
        except Exception as exc:  # any backend failure; its message may not hold a token
            raise TokenStoreError(
                f"the OS keyring could not be read ({type(exc).__name__})"
            ) from None
        try:
            data = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise NotLoggedIn(
                "the OS keyring holds no tokens for this login: run `lwa-middleware login` again"
            )
        return data

    # Writing ----------------------------------------------------------------------

    def save(self, tokens: StoredTokens) -> str:
        """Store ``tokens`` (replacing the login's); return where: ``"keyring"`` or ``"file"``."""
        logins = self._read()
        previous = logins.get(tokens.key, {}).get("store")
        store = "file"
        if self._use_keyring:
            secret = json.dumps(
                {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token}
            )
            try:
                self._keyring().set_password(KEYRING_SERVICE, tokens.key, secret)
            except Exception:  # no usable backend: the private file instead
                store = "file"
            else:
                store = "keyring"
        logins[tokens.key] = _entry(tokens, store)
        self._write(logins)
        if store == "file" and previous == "keyring":
            self._forget_keyring(tokens.key)
        return store

    def delete(self, api_base_url: str, client_id: str) -> bool:
        """Forget a login (file and keyring); return whether one was stored."""
        logins = self._read()
        key = login_key(api_base_url, client_id)
        entry = logins.pop(key, None)
        if entry is None:
            return False
        self._write(logins)
        if entry.get("store") == "keyring":
            self._forget_keyring(key)
        return True

    def check_writable(self) -> None:
        """Raise :class:`TokenStoreError` unless the file store could be written now: its
        directory made (0700) and a private temporary file created and removed in it, and
        the existing file (if any) readable. Called before a sign-in starts, so nobody
        approves a code whose tokens cannot be kept."""
        self._read()
        self._ensure_directory()
        try:
            fd, temporary = tempfile.mkstemp(prefix=".tokens-", suffix=".tmp", dir=self.directory)
        except OSError as exc:
            raise TokenStoreError(f"cannot write in {self.directory}: {exc.strerror}") from None
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise TokenStoreError(f"cannot write {self.path}: permission denied")

    def _forget_keyring(self, key: str) -> None:
        keyring = self._keyring()
        if keyring is None:
            return
        with contextlib.suppress(Exception):  # already gone, or no backend
            keyring.delete_password(KEYRING_SERVICE, key)

    def _ensure_directory(self) -> None:
        directory = self.directory
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.name == "posix":
                info = directory.stat()
                if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
                    directory.chmod(0o700)
        except OSError as exc:
            raise TokenStoreError(f"cannot create {directory}: {exc.strerror}") from None

    def _write(self, logins: Mapping[str, Mapping[str, Any]]) -> None:
        self._ensure_directory()
        data = {"version": FORMAT_VERSION, "logins": dict(sorted(logins.items()))}
        content = json.dumps(data, indent=2).encode("utf-8") + b"\n"
        try:
            fd, temporary = tempfile.mkstemp(  # created 0600, O_EXCL
                prefix=".tokens-", suffix=".tmp", dir=self.directory
            )
        except OSError as exc:
            raise TokenStoreError(f"cannot write in {self.directory}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as file:
                if os.name == "posix":
                    os.fchmod(file.fileno(), 0o600)
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise TokenStoreError(f"cannot write {self.path}: {exc.strerror}") from None
        _fsync_directory(self.directory)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's exclusive lock (between processes and threads; POSIX only;
        none while the directory does not exist)."""
        try:
            import fcntl
        except ImportError:  # Windows: no lock
            yield
            return
        if not self.directory.is_dir():  # nothing stored yet: nothing to guard
            yield
            return
        path = self.directory / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise TokenStoreError(f"cannot open {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r}, keyring={self.uses_keyring})"


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX; Windows cannot open a directory)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _import_keyring() -> Any:
    """The ``keyring`` module, or ``None`` when it is not installed."""
    try:
        return importlib.import_module("keyring")
    except ImportError:
        return None
