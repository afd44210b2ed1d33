"""The token store: where it lives on each platform, 0600 files in a 0700 directory written
atomically, refusing a file others may read, one login per API base URL and client ID,
the OS keyring (a fake ``keyring`` module) with the file as its index and fallback, and
``LWA_MIDDLEWARE_TOKEN_STORE``."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import types
from pathlib import Path

import pytest

from lwa_middleware.callers.token_store import (
    KEYRING_SERVICE,
    STORE_VARIABLE,
    AmbiguousLogin,
    NotLoggedIn,
    StoredTokens,
    TokenStore,
    TokenStoreError,
    config_dir,
)
from lwa_middleware.core.grants import TokenGrant

API = "https://api.amazon.com"
EU = "https://api.amazon.co.uk"
CLIENT = "amzn1.application-oa2-client.abc"
OTHER = "amzn1.application-oa2-client.other"
ACCESS = "Atza|IwEBIA" + "a" * 360
REFRESH = "Atzr|IwEBIB" + "r" * 360
NOW = 1_800_000_000.0

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def tokens(api: str = API, client: str = CLIENT, access: str = ACCESS) -> StoredTokens:
    return StoredTokens(api, client, access, REFRESH, NOW + 3600, "profile", updated_at=NOW)


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "lwa-middleware" / "tokens.json", keyring=False)


class FakeKeyring(types.ModuleType):
    """A ``keyring`` module in memory (``fail=True``: no usable backend)."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__("keyring")
        self.passwords: dict[tuple[str, str], str] = {}
        self.fail = fail

    def set_password(self, service: str, user: str, password: str) -> None:
        if self.fail:
            raise RuntimeError("No recommended backend was available.")
        self.passwords[(service, user)] = password

    def get_password(self, service: str, user: str) -> str | None:
        return self.passwords.get((service, user))

    def delete_password(self, service: str, user: str) -> None:
        del self.passwords[(service, user)]


@pytest.fixture
def fake_keyring(monkeypatch: pytest.MonkeyPatch) -> FakeKeyring:
    module = FakeKeyring()
    monkeypatch.setitem(sys.modules, "keyring", module)
    monkeypatch.delenv(STORE_VARIABLE, raising=False)
    return module


# Where ---------------------------------------------------------------------------------


def test_config_dir_per_platform(tmp_path: Path) -> None:
    home = tmp_path
    assert config_dir({}, "linux", home) == home / ".config" / "lwa-middleware"
    xdg = {"XDG_CONFIG_HOME": "/x/cfg"}
    assert config_dir(xdg, "linux", home) == Path("/x/cfg/lwa-middleware")
    assert config_dir(xdg, "darwin", home) == Path("/x/cfg/lwa-middleware")
    assert config_dir({"XDG_CONFIG_HOME": "relative"}, "linux", home) == (
        home / ".config" / "lwa-middleware"
    )
    assert config_dir({}, "darwin", home) == (
        home / "Library" / "Application Support" / "lwa-middleware"
    )
    assert config_dir({"APPDATA": "C:/Users/a/AppData/Roaming"}, "win32", home) == Path(
        "C:/Users/a/AppData/Roaming/lwa-middleware"
    )
    assert config_dir({}, "win32", home) == home / "AppData" / "Roaming" / "lwa-middleware"


def test_default_path_follows_xdg_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert TokenStore(keyring=False).path == tmp_path / "lwa-middleware" / "tokens.json"


# The file ------------------------------------------------------------------------------


@posix_only
def test_file_is_0600_in_a_0700_directory(store: TokenStore) -> None:
    old_umask = os.umask(0o022)
    try:
        assert store.save(tokens()) == "file"
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    with store.lock():
        pass
    assert stat.S_IMODE((store.directory / "tokens.lock").stat().st_mode) == 0o600


@posix_only
def test_a_loose_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "lwa-middleware"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    store = TokenStore(directory / "tokens.json", keyring=False)
    store.save(tokens())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_format_and_round_trip(store: TokenStore) -> None:
    store.save(tokens())
    data = json.loads(store.path.read_text())
    assert data["version"] == 1
    entry = data["logins"][f"{API} {CLIENT}"]
    assert entry == {
        "api_base_url": API,
        "client_id": CLIENT,
        "store": "file",
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_at": NOW + 3600,
        "scope": "profile",
        "allow_insecure_http": False,
        "updated_at": NOW,
    }
    assert store.load(API, CLIENT) == tokens()
    assert store.load(API + "/", CLIENT) == tokens()
    assert store.load(EU, CLIENT) is None


def test_writes_are_atomic_and_leave_no_temporary_file(
    store: TokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(tokens())
    before = store.path.read_bytes()

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(TokenStoreError, match="No space left"):
        store.save(tokens(access="Atza|new" + "n" * 380))
    monkeypatch.undo()
    assert store.path.read_bytes() == before  # the old file, whole
    assert sorted(p.name for p in store.directory.iterdir()) == ["tokens.json"]


@posix_only
def test_a_file_others_may_read_is_refused(store: TokenStore) -> None:
    store.save(tokens())
    store.path.chmod(0o644)
    with pytest.raises(TokenStoreError, match="may be read by other users") as caught:
        store.load(API, CLIENT)
    assert ACCESS not in str(caught.value)


@posix_only
def test_a_symlinked_file_is_refused(store: TokenStore, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    store.save(tokens())
    store.path.rename(target)
    store.path.symlink_to(target)
    with pytest.raises(TokenStoreError, match="cannot read"):
        store.logins()


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"version": 2, "logins": {}}', b'{"version": 1, "logins": []}'],
)
def test_a_broken_file_is_an_error(store: TokenStore, content: bytes) -> None:
    store.directory.mkdir(mode=0o700, parents=True)
    fd = os.open(store.path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(TokenStoreError):
        store.logins()


# Logins --------------------------------------------------------------------------------


def test_find_one_several_none(store: TokenStore) -> None:
    with pytest.raises(NotLoggedIn, match="lwa-middleware login"):
        store.find()
    store.save(tokens())
    assert store.find() == tokens()
    assert store.find(CLIENT) == tokens()
    assert store.find(api_base_url=API + "/") == tokens()
    with pytest.raises(NotLoggedIn, match=f"--client-id {OTHER}"):
        store.find(OTHER)
    store.save(tokens(EU))
    store.save(tokens(API, OTHER))
    assert store.logins() == [(EU, CLIENT), (API, CLIENT), (API, OTHER)]
    with pytest.raises(AmbiguousLogin, match="pass --client-id"):
        store.find()
    with pytest.raises(AmbiguousLogin):
        store.find(CLIENT)
    assert store.find(CLIENT, EU) == tokens(EU)
    assert store.find(OTHER) == tokens(API, OTHER)
    assert store.delete(API, OTHER)
    assert not store.delete(API, OTHER)
    assert store.logins() == [(EU, CLIENT), (API, CLIENT)]


def test_refreshed_keeps_the_refresh_token_when_none_came_back() -> None:
    grant = TokenGrant(access_token="Atza|x" + "x" * 380, expires_in=3600)
    refreshed = tokens().refreshed(grant, NOW + 100)
    assert refreshed.refresh_token == REFRESH
    assert refreshed.expires_at == NOW + 3700
    assert refreshed.updated_at == NOW + 100
    rotated = tokens().refreshed(replace_refresh(grant), NOW)
    assert rotated.refresh_token == "Atzr|new"


def replace_refresh(grant: TokenGrant) -> TokenGrant:
    return TokenGrant(grant.access_token, grant.expires_in, refresh_token="Atzr|new")


def test_from_grant_needs_a_refresh_token() -> None:
    with pytest.raises(TokenStoreError):
        StoredTokens.from_grant(
            TokenGrant(ACCESS, 3600), api_base_url=API, client_id=CLIENT, now=NOW
        )


def test_reprs_hold_no_token(store: TokenStore) -> None:
    assert ACCESS not in repr(tokens())
    assert REFRESH not in repr(tokens())
    assert "keyring=False" in repr(store)


def test_the_lock_is_exclusive_between_threads(store: TokenStore) -> None:
    with store.lock():  # nothing stored yet: no directory made, nothing to lock
        assert not store.directory.exists()
    store.save(tokens())
    inside: list[int] = []
    overlaps: list[bool] = []

    def work() -> None:
        for _ in range(20):
            with store.lock():
                inside.append(1)
                overlaps.append(len(inside) > 1)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps and not any(overlaps)


# The keyring ---------------------------------------------------------------------------


def test_keyring_holds_the_tokens_and_the_file_the_index(
    tmp_path: Path, fake_keyring: FakeKeyring
) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    assert store.uses_keyring
    assert store.save(tokens()) == "keyring"
    text = store.path.read_text()
    assert ACCESS not in text and REFRESH not in text
    assert json.loads(text)["logins"][f"{API} {CLIENT}"]["store"] == "keyring"
    secret = json.loads(fake_keyring.passwords[(KEYRING_SERVICE, f"{API} {CLIENT}")])
    assert secret == {"access_token": ACCESS, "refresh_token": REFRESH}
    assert store.find() == tokens()
    assert "OS keyring" in store.describe(tokens())
    assert store.delete(API, CLIENT)
    assert fake_keyring.passwords == {}


def test_a_failing_keyring_falls_back_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "keyring", FakeKeyring(fail=True))
    monkeypatch.delenv(STORE_VARIABLE, raising=False)
    store = TokenStore(tmp_path / "tokens.json")
    assert store.save(tokens()) == "file"
    assert store.find() == tokens()
    assert store.describe(tokens()) == str(store.path)


def test_the_variable_forces_the_file(
    tmp_path: Path, fake_keyring: FakeKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_VARIABLE, "file")
    store = TokenStore(tmp_path / "tokens.json")
    assert not store.uses_keyring
    assert store.save(tokens()) == "file"
    assert fake_keyring.passwords == {}
    assert TokenStore(tmp_path / "tokens.json", keyring=False).find() == tokens()


def test_the_variable_can_require_the_keyring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)  # not importable
    monkeypatch.setenv(STORE_VARIABLE, "keyring")
    with pytest.raises(TokenStoreError, match="pip install keyring"):
        TokenStore(tmp_path / "tokens.json")
    monkeypatch.setenv(STORE_VARIABLE, "auto")
    assert not TokenStore(tmp_path / "tokens.json").uses_keyring
    monkeypatch.setenv(STORE_VARIABLE, "vault")
    with pytest.raises(TokenStoreError, match="file, keyring or auto"):
        TokenStore(tmp_path / "tokens.json")


def test_keyring_tokens_without_the_keyring(
    tmp_path: Path, fake_keyring: FakeKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    TokenStore(tmp_path / "tokens.json").save(tokens())
    # new tokens go to the file, but a login already in the keyring is read from it
    assert TokenStore(tmp_path / "tokens.json", keyring=False).find() == tokens()
    monkeypatch.setitem(sys.modules, "keyring", None)  # uninstalled since
    without = TokenStore(tmp_path / "tokens.json")
    assert without.logins() == [(API, CLIENT)]
    with pytest.raises(TokenStoreError, match="not installed"):
        without.find()
    monkeypatch.setitem(sys.modules, "keyring", fake_keyring)
    fake_keyring.passwords.clear()
    with pytest.raises(NotLoggedIn):
        TokenStore(tmp_path / "tokens.json").find()


def test_moving_from_the_keyring_to_the_file_forgets_the_password(
    tmp_path: Path, fake_keyring: FakeKeyring
) -> None:
    TokenStore(tmp_path / "tokens.json").save(tokens())
    fake_keyring.fail = True
    assert TokenStore(tmp_path / "tokens.json").save(tokens()) == "file"
    fake_keyring.fail = False
    assert fake_keyring.passwords == {}
