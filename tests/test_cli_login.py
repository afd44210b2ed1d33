"""``lwa-middleware login``, ``token`` and ``logout``: in-process against the emulator with
the fake clock (the commands' ``clock`` and ``sleep`` seams), then the README's commands as
subprocesses (``login`` approved through the emulator's control endpoint while it polls,
``curl -H @<(printf 'Authorization: Bearer %s\\n' "$(lwa-middleware token)")`` against a
protected app, as docs/clients.md shows it).
The file store is forced (``LWA_MIDDLEWARE_TOKEN_STORE=file``) in a temporary
``XDG_CONFIG_HOME``."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from lwa_middleware.callers.token_store import STORE_VARIABLE, TokenStore
from lwa_middleware.cli import build_parser, device_login, main, stored_tokens
from lwa_middleware.core.device import CodePair, Wait
from lwa_middleware.emulator import Emulator
from lwa_middleware.upstream.client import LWAClient

from conftest import FakeClock, ServeProtected

SECOND = "amzn1.application-oa2-client.second"
BIN = Path(sys.executable).parent
EXE = str(BIN / "lwa-middleware")


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv(STORE_VARIABLE, "file")
    return tmp_path


@pytest.fixture
def store(config_home: Path) -> TokenStore:
    return TokenStore(keyring=False)


class Approver:
    """The commands' sleep: moves the fake clock; at the ``at``-th sleep, ``act`` (approve,
    by default) the newest code pair."""

    def __init__(self, emu: Emulator, clock: FakeClock, at: int = 2) -> None:
        self.emu = emu
        self.clock = clock
        self.at = at
        self.calls = 0
        self.act: Callable[[str], None] = emu.approve_code_pair

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        self.clock.advance(seconds)
        if self.calls == self.at:
            *_, newest = self.emu.code_pairs  # the pair of the login running now
            self.act(newest)


@pytest.fixture
def approver(
    emu: Emulator, clock: FakeClock, config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Approver:
    emu.device_interval = 1
    sleeper = Approver(emu, clock)
    monkeypatch.setattr(device_login, "clock", clock)
    monkeypatch.setattr(device_login, "sleep", sleeper)
    monkeypatch.setattr(stored_tokens, "clock", clock)
    return sleeper


def login(emu_url: str, client_id: str, *extra: str) -> int:
    return main(["login", "--client-id", client_id, "--api-base-url", emu_url, *extra])


def token_of(out: str) -> str:
    assert out.endswith("\n") and out.count("\n") == 1, out
    return out[:-1]


# login, token, logout in-process --------------------------------------------------------------


def test_login_then_token(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    approver: Approver,
    store: TokenStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert login(emu_url, emu.client_id) == 0
    out, err = capsys.readouterr()
    (user_code,) = emu.code_pairs
    assert f"    {emu_url}/activate\n" in out
    assert f"    {user_code}\n" in out
    assert f"stored in {store.path}" in out
    assert "Waiting for approval (the code expires in 10:00; checking every 1 s)..." in err
    stored = store.find()
    for secret in (stored.access_token, stored.refresh_token):
        assert secret not in out + err
    assert (stored.api_base_url, stored.client_id, stored.scope) == (
        emu_url,
        emu.client_id,
        "profile",
    )
    if os.name == "posix":
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700

    assert main(["token"]) == 0
    out, err = capsys.readouterr()
    assert token_of(out) == stored.access_token
    assert err == ""
    with LWAClient(emu_url) as client:
        assert client.tokeninfo(token_of(out), now=clock()).aud == emu.client_id
    assert emu.token_calls["refresh_token"] == 0


def test_token_refreshes_a_token_that_expires_soon(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    approver: Approver,
    store: TokenStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert login(emu_url, emu.client_id) == 0
    before = store.find()
    clock.advance(3600 - 59)  # within the 60 s margin
    capsys.readouterr()
    assert main(["token", "--client-id", emu.client_id]) == 0
    fresh = token_of(capsys.readouterr().out)
    assert fresh != before.access_token
    assert emu.token_calls["refresh_token"] == 1
    after = store.find()
    assert after.access_token == fresh
    assert after.refresh_token == before.refresh_token  # none came back (no secret): kept
    assert after.expires_at == pytest.approx(clock() + 3600, abs=5)
    with LWAClient(emu_url) as client:
        assert client.tokeninfo(fresh, now=clock()).aud == emu.client_id
    assert main(["token", "--min-valid", "0"]) == 0
    assert token_of(capsys.readouterr().out) == fresh
    assert emu.token_calls["refresh_token"] == 1


def test_not_logged_in(config_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "not logged in: run `lwa-middleware login --client-id ID` first" in err


def test_a_revoked_refresh_token_says_login_again(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    approver: Approver,
    store: TokenStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert login(emu_url, emu.client_id) == 0
    emu.revoke_refresh_token(store.find().refresh_token)
    clock.advance(3600)
    capsys.readouterr()
    assert main(["token"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "refused the stored refresh token (invalid_grant" in err
    assert f"run `lwa-middleware login --client-id {emu.client_id}`" in err


def test_lwa_down_while_refreshing_is_status_2(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    approver: Approver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert login(emu_url, emu.client_id) == 0
    emu.fault("500", "oauth_token")
    clock.advance(3600)
    capsys.readouterr()
    assert main(["token"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "could not refresh the access token" in err


def test_several_logins_and_logout(
    emu: Emulator,
    emu_url: str,
    approver: Approver,
    store: TokenStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu.register_client(SECOND)
    assert login(emu_url, emu.client_id) == 0
    approver.calls = 0
    assert login(emu_url, SECOND, "--scope", "profile:user_id") == 0
    capsys.readouterr()
    assert main(["token"]) == 2
    assert "several logins are stored" in capsys.readouterr().err
    assert main(["token", "--client-id", SECOND]) == 0
    assert token_of(capsys.readouterr().out) == store.find(SECOND).access_token
    assert store.find(SECOND).scope == "profile:user_id"
    assert main(["logout"]) == 2
    assert "--all" in capsys.readouterr().err
    assert main(["logout", "--client-id", SECOND]) == 0
    assert f"forgot the tokens of {SECOND} at {emu_url}" in capsys.readouterr().err
    assert main(["token"]) == 0  # the only one left
    assert token_of(capsys.readouterr().out) == store.find().access_token
    assert main(["logout", "--all"]) == 0
    assert store.logins() == []
    assert main(["logout"]) == 0
    assert "nothing to forget" in capsys.readouterr().err
    assert main(["token"]) == 1


@pytest.mark.parametrize("outcome", ["denied", "expired"])
def test_login_denied_or_expired(
    emu: Emulator,
    emu_url: str,
    approver: Approver,
    store: TokenStore,
    capsys: pytest.CaptureFixture[str],
    outcome: str,
) -> None:
    if outcome == "denied":
        approver.act = emu.deny_code_pair
    else:
        emu.code_pair_lifetime = 5
        approver.at = 0  # never approved
    assert login(emu_url, emu.client_id) == 1
    err = capsys.readouterr().err
    expected = "sign-in was denied" if outcome == "denied" else "code expired before"
    assert expected in err
    assert "run `lwa-middleware login` again" in err
    assert store.logins() == []


def test_an_unusable_store_is_refused_before_a_code_is_shown(
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))  # the store's directory cannot exist
    monkeypatch.setenv(STORE_VARIABLE, "file")
    pairs = emulator.calls["codepair"]
    args = ["login", "--client-id", emulator.client_id, "--api-base-url", emulator.url]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert "the tokens could not be stored" in err
    assert "code" not in out.lower()  # no code was shown, nobody is asked to approve
    assert emulator.calls["codepair"] == pairs  # LWA was never asked for one


def test_login_unknown_client(
    emu: Emulator, emu_url: str, approver: Approver, capsys: pytest.CaptureFixture[str]
) -> None:
    assert login(emu_url, "amzn1.nobody") == 1
    assert "does not know the client ID amzn1.nobody" in capsys.readouterr().err


def test_login_lwa_down(
    emu: Emulator, emu_url: str, approver: Approver, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.fault("503", "codepair")
    assert login(emu_url, emu.client_id) == 2
    assert "could not ask for a code pair" in capsys.readouterr().err


def test_plain_http_only_to_loopback(config_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://lwa.example.com"
    assert main(["login", "--client-id", "x", "--api-base-url", url]) == 2
    assert "plain http:// to a host that is not loopback" in capsys.readouterr().err


def test_keyring_unless_no_keyring(
    emu: Emulator,
    emu_url: str,
    approver: Approver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    passwords: dict[tuple[str, str], str] = {}
    keyring = types.ModuleType("keyring")
    keyring.set_password = lambda s, u, p: passwords.__setitem__((s, u), p)  # type: ignore[attr-defined]
    keyring.get_password = lambda s, u: passwords.get((s, u))  # type: ignore[attr-defined]
    keyring.delete_password = lambda s, u: passwords.pop((s, u))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", keyring)
    monkeypatch.delenv(STORE_VARIABLE)
    assert login(emu_url, emu.client_id) == 0
    assert "stored in the OS keyring" in capsys.readouterr().out
    assert len(passwords) == 1
    assert main(["token"]) == 0
    assert token_of(capsys.readouterr().out).startswith("Atza|")
    approver.calls = 0
    assert login(emu_url, emu.client_id, "--no-keyring") == 0
    assert "stored in the OS keyring" not in capsys.readouterr().out
    assert passwords == {}  # moved to the file
    assert main(["logout"]) == 0


def test_a_token_on_the_command_line_is_refused_unseen(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "Atza|IwEBIA" + "s" * 360
    assert main(["token", secret]) == 2
    out, err = capsys.readouterr()
    assert secret not in out + err


@pytest.mark.parametrize("command", ["login", "token", "logout"])
def test_help_shows_every_default(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in commands.choices[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help is not None
        assert "default: " in action.help or "(required)" in action.help, action.dest
    assert main([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: lwa-middleware {command} ")


def test_no_token_in_any_log(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    approver: Approver,
    store: TokenStore,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "lwa_middleware"):
        caplog.set_level(logging.DEBUG, logger=name)
    assert login(emu_url, emu.client_id) == 0
    first = store.find()
    clock.advance(3600)
    assert main(["token"]) == 0
    second = store.find()
    assert any(r.name.startswith("httpx") for r in caplog.records)
    logged = caplog.text + " ".join(repr(r.args) for r in caplog.records)
    (user_code,) = emu.code_pairs
    pairs = getattr(emu.device, "_pairs", {})  # the device codes (no public view holds them)
    device_codes = [pair.device_code for pair in pairs.values()]
    assert device_codes
    for secret in (
        first.access_token,
        first.refresh_token,
        second.access_token,
        *device_codes,
    ):
        for piece in (secret, secret[5:21], secret[-16:]):
            assert piece not in logged
    assert user_code  # shown to the person (stdout), which is no log


# The countdown ------------------------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def a_pair(now: float) -> CodePair:
    return CodePair("ABC123", "dc", "https://amazon.com/us/code", 120, 5, received_at=now)


def test_countdown_on_a_terminal_rewrites_one_line() -> None:
    clock = FakeClock()
    stream = FakeTTY()
    countdown = device_login.Countdown(a_pair(clock()), stream, clock=clock, sleep=clock.advance)
    countdown.on_wait(Wait(3, 5, 120, 0))
    countdown.sleep(3)
    countdown.on_wait(Wait(10, 10, 117, 1))
    countdown.sleep(2)
    countdown.end()
    text = stream.getvalue()
    assert "Waiting for approval (the code expires in 2:00; checking every 5 s)...\n" in text
    assert text.count("\r\x1b[2KWaiting for approval... the code expires in ") == 4 + 3
    assert "\r\x1b[2KWaiting for approval... the code expires in 2:00  (Ctrl-C to cancel)" in text
    assert "Login with Amazon asked to check less often: every 10 s.\n" in text
    assert text.endswith("\r\x1b[2K")


def test_countdown_elsewhere_prints_plain_lines() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    countdown = device_login.Countdown(a_pair(clock()), stream, clock=clock, sleep=clock.advance)
    countdown.on_wait(Wait(5, 5, 120, 0))
    for _ in range(20):
        countdown.sleep(5)
    countdown.end()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Waiting for approval (the code expires in 2:00; checking every 5 s)..."
    assert lines[1:] == ["Still waiting: the code expires in 1:00."]
    assert "\r" not in stream.getvalue()


# The README's commands, as subprocesses -------------------------------------------------------


@pytest.fixture
def shell_env(config_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(config_home),
        STORE_VARIABLE: "file",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@pytest.fixture
def login_process(
    emu: Emulator, emu_url: str, shell_env: dict[str, str]
) -> Iterator[subprocess.Popen[str]]:
    emu.device_interval = 1
    args = [EXE, "login", "--client-id", emu.client_id, "--api-base-url", emu_url]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=shell_env
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def read_user_code(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Read the login's standard output up to the code; ``(code, what was read)``."""
    assert process.stdout is not None
    read = ""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        read += line
        if found := re.fullmatch(r" {4}([A-Z0-9]{6})\n", line):
            return found.group(1), read
        if not line:
            break
    pytest.fail(f"no user code in the login's output: {read!r}")


def bearer_curl(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """docs/clients.md's ``curl -H @<(printf 'Authorization: Bearer %s\\n' "$(lwa-middleware
    token)") URL`` in bash (or the same with httpx when there is no curl)."""
    if shutil.which("curl") is not None:
        script = (
            "curl -sS --fail-with-body "
            '-H @<(printf \'Authorization: Bearer %s\\n\' "$(lwa-middleware token)") "$1"'
        )
        return subprocess.run(
            ["bash", "-c", script, "bash", url], capture_output=True, text=True, env=env, timeout=30
        )
    token = subprocess.run(
        [EXE, "token"], capture_output=True, text=True, env=env, check=True, timeout=30
    ).stdout.strip()
    answer = httpx.get(url, headers={"authorization": f"Bearer {token}"})
    return subprocess.CompletedProcess(["httpx"], 0 if answer.is_success else 22, answer.text, "")


def test_the_readme_commands(
    emu: Emulator,
    emu_url: str,
    protected: ServeProtected,
    login_process: subprocess.Popen[str],
    shell_env: dict[str, str],
    store: TokenStore,
) -> None:
    user = emu.add_user(name="Shell User", email="shell@example.com")
    user_code, shown = read_user_code(login_process)
    assert f"{emu_url}/activate" in shown
    if sys.platform == "linux":  # what `ps` sees: our arguments, no token
        cmdline = Path(f"/proc/{login_process.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[-5:] == [
            b"--client-id",
            emu.client_id.encode(),
            b"--api-base-url",
            emu_url.encode(),
            b"",
        ]
    time.sleep(1.5)  # let it poll (pending) at least once
    approved = httpx.post(
        f"{emu_url}/_emulator/codepair/approve",
        json={"user_code": user_code, "user_id": user.user_id},
    )
    assert approved.status_code == 200, approved.text
    out, err = login_process.communicate(timeout=30)
    assert login_process.returncode == 0, err
    assert "Logged in" in out
    assert "Waiting for approval" in err
    assert emu.code_pairs[user_code].polls >= 2
    first = store.find()
    for secret in (first.access_token, first.refresh_token):
        assert secret not in shown + out + err

    url = protected()
    answer = bearer_curl(f"{url}/whoami", shell_env)
    assert answer.returncode == 0, answer.stderr + answer.stdout
    body = json.loads(answer.stdout)
    assert (body["user"], body["name"]) == (user.user_id, "Shell User")

    # the stored token is about to expire: `token` refreshes it, and curl still works
    store.save(replace(first, expires_at=time.time() + 30))
    emu.expire(first.access_token)
    answer = bearer_curl(f"{url}/whoami", shell_env)
    assert answer.returncode == 0, answer.stderr + answer.stdout
    assert emu.token_calls["refresh_token"] == 1
    assert store.find().access_token != first.access_token

    logout = subprocess.run([EXE, "logout"], capture_output=True, text=True, env=shell_env)
    assert logout.returncode == 0
    token = subprocess.run([EXE, "token"], capture_output=True, text=True, env=shell_env)
    assert (token.returncode, token.stdout) == (1, "")
    assert "run `lwa-middleware login" in token.stderr
