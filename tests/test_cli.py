"""The ``lwa-middleware`` command: inspect (in-process and as a process), demo, emulator.

Every LWA call goes to a served emulator on 127.0.0.1; the token always travels on
standard input, never on the command line.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from lwa_middleware.cli import build_parser, main
from lwa_middleware.cli.demo import _loopback_url
from lwa_middleware.cli.serving import emulator_banner
from lwa_middleware.emulator import Emulator
from readme_install import as_installed_by, installed_by, readme_demo_extras

SUBPROCESS_TIMEOUT = 30


def run_inspect(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stdin: str,
    *args: str,
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["inspect", *args])
    out, err = capsys.readouterr()
    return code, out, err


def inspect_args(emulator: Emulator, *extra: str) -> list[str]:
    return ["--api-base-url", emulator.url, *extra]


def test_inspect_accepts_a_good_token(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    user, token = emulator.mint_for(name="Ada", scopes=["profile", "postal_code"])
    code, out, _ = run_inspect(
        monkeypatch,
        capsys,
        f"  {token}\n",
        *inspect_args(emulator, "--client-id", emulator.client_id),
    )
    assert code == 0
    assert user.user_id in out
    assert "Audience  accepted: aud" in out
    assert "expires in   " in out
    assert "Scopes granted  postal_code profile profile:user_id" in out
    assert "Verdict: ACCEPTED" in out
    assert token not in out
    assert token.split("|")[1][:40] not in out
    # token-info first, then the audience verdict, then the profile
    assert out.index("Token info") < out.index("Audience") < out.index("Profile")


def test_inspect_json(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    user, token = emulator.mint_for(name="Ada", scopes=["profile"], lifetime=600)
    code, out, _ = run_inspect(
        monkeypatch,
        capsys,
        token,
        *inspect_args(emulator, "--client-id", emulator.client_id, "--json"),
    )
    assert code == 0
    report = json.loads(out)
    assert report["verdict"] == "accepted"
    assert report["token_info"]["aud"] == emulator.client_id
    assert report["token_info"]["user_id"] == user.user_id
    assert 0 < report["token_info"]["expires_in"] <= 600
    assert report["audience"] == {
        "accepted": True,
        "matched": "aud",
        "client_ids": [emulator.client_id],
        "app_ids": [],
    }
    assert report["profile"]["name"] == "Ada"
    assert report["scopes"] == ["profile", "profile:user_id"]
    assert token not in out


def test_inspect_reads_the_token_as_the_middleware_does(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token = emulator.mint_for(scopes=["profile"])
    encoded = "Bearer " + token.replace("|", "%7C")
    args = inspect_args(emulator, "--client-id", emulator.client_id)
    code, out, _ = run_inspect(monkeypatch, capsys, encoded, *args)
    assert code == 0, out
    assert "Verdict: ACCEPTED" in out


def test_inspect_refuses_another_clients_token(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token = emulator.mint_for(scopes=["profile"])
    code, out, _ = run_inspect(
        monkeypatch,
        capsys,
        token,
        *inspect_args(emulator, "--client-id", "amzn1.application-oa2-client.mine"),
    )
    assert code == 1
    assert "Audience  REFUSED" in out
    assert "Verdict: REFUSED (the token was issued to another client)" in out
    assert "Ada Lovelace" in out  # the profile is still shown


def test_inspect_accepts_a_matching_app_id(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token = emulator.mint_for(scopes=["profile"])
    args = ["--client-id", "amzn1.application-oa2-client.web", "--app-id", emulator.app_id]
    code, out, _ = run_inspect(monkeypatch, capsys, token, *inspect_args(emulator, *args))
    assert code == 0
    assert "Audience  accepted: app_id" in out


def test_inspect_prints_lwa_errors(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token = emulator.mint_for(scopes=["profile"])
    emulator.revoke(token)
    code, out, _ = run_inspect(
        monkeypatch,
        capsys,
        token,
        *inspect_args(emulator, "--client-id", emulator.client_id),
    )
    assert code == 1
    assert "invalid_token: The access token provided is expired, revoked" in out
    assert "Verdict: REFUSED (token-info: invalid_token; profile: invalid_token)" in out


def test_inspect_lwa_unavailable_is_exit_2(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token = emulator.mint_for(scopes=["profile"])
    emulator.fault("500")
    try:
        code, out, _ = run_inspect(
            monkeypatch,
            capsys,
            token,
            *inspect_args(emulator, "--client-id", emulator.client_id, "--json"),
        )
    finally:
        emulator.clear_faults()
    assert code == 2
    report = json.loads(out)
    assert report["verdict"] == "unknown"
    assert report["token_info_error"]["error"] == "ServerError"
    assert report["profile_error"]["error"] == "ServerError"


def test_inspect_malformed_token_is_refused_without_calling_lwa(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.reset_counts()
    code, out, _ = run_inspect(
        monkeypatch,
        capsys,
        "Atza|not a token",
        *inspect_args(emulator, "--client-id", emulator.client_id),
    )
    assert code == 1
    assert "invalid_request" in out
    assert emulator.calls == {"tokeninfo": 0, "profile": 0}


def test_inspect_refuses_an_empty_token(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_inspect(
        monkeypatch, capsys, " \n\t", *inspect_args(emulator, "--client-id", "x")
    )
    assert code == 2
    assert out == ""
    assert "no access token on standard input" in err


def test_inspect_usage_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No token argument exists: a token on the command line is a usage error.
    code, _, err = run_inspect(monkeypatch, capsys, "", "--client-id", "x", "Atza|abc")
    assert code == 2
    assert "unrecognized arguments" in err
    code, _, err = run_inspect(monkeypatch, capsys, "Atza|abc")
    assert code == 2
    assert "--client-id" in err
    code, _, err = run_inspect(
        monkeypatch, capsys, "Atza|abc", "--client-id", "x", "--api-base-url", "ftp://nope"
    )
    assert code == 2
    assert "api_base_url" in err


def test_serving_commands_need_uvicorn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` fail
    assert main(["emulator", "--port", "0"]) == 2
    assert main(["demo", "--once"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'lwa-middleware[emulator]'" in err


def test_emulator_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["emulator", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot serve the LWA emulator on 127.0.0.1:{port}" in err
    assert "--port 0" in err  # says how to get a free one


# Usage errors and their messages ------------------------------------------------------------


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


@pytest.mark.parametrize(
    "args",
    [
        ["emulator", "--port", "70000"],
        ["emulator", "--port", "65536"],
        ["emulator", "--port", "-1"],
        ["emulator", "--port", "http"],
        ["demo", "--port", "70000"],
        ["demo", "--emulator-port", "-1"],
    ],
)
def test_out_of_range_ports_are_refused(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # 70000 used to listen on 4464 (70000 - 65536) without a word.
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: lwa-middleware {args[0]} ")
    assert "expected a port number from 0 to 65535 (0: any free port)" in err
    assert repr(args[-1]) in err


def test_port_zero_and_65535_are_ports() -> None:
    parser = build_parser()
    assert parser.parse_args(["emulator", "--port", "0"]).port == 0  # any free port
    assert parser.parse_args(["demo", "--port", "65535", "--emulator-port", "0"]).port == 65535


@pytest.mark.parametrize(
    "args",
    [
        ["emulator", "--bogus"],
        ["demo", "--once", "--bogus", "1"],
        ["inspect", "--client-id", "x", "--bogus"],
        ["inspect", "--client-id", "x", "--timeout", "soon"],
        ["emulator", "--host"],
        ["inspect"],
    ],
)
def test_usage_errors_show_the_subcommands_usage(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: lwa-middleware {args[0]} ")
    assert f"lwa-middleware {args[0]}: error: " in err
    assert "Traceback" not in err


def test_a_token_on_the_command_line_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "Atza|IwEBIExampleTokenText"
    code, out, err = run_inspect(monkeypatch, capsys, "", "--client-id", "x", "--json", token)
    assert code == 2
    assert "unrecognized arguments: 1 positional argument (not shown)" in err
    assert "standard input" in err
    assert token not in out + err
    assert "IwEB" not in out + err


@pytest.mark.parametrize("command", ["emulator", "demo", "inspect"])
@pytest.mark.parametrize("flag", ["--client-id", "--app-id"])
@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_an_empty_id_is_refused_before_any_server_starts(
    command: str,
    flag: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("a server was started")

    monkeypatch.setattr(Emulator, "start", no_server)
    monkeypatch.setattr(sys, "stdin", io.StringIO("Atza|abc"))
    args = [command, flag, value]
    if command == "inspect" and flag == "--app-id":
        args += ["--client-id", "x"]
    assert main([*args, "--once"] if command == "demo" else args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: lwa-middleware {command} ")
    assert f"argument {flag}: expected a non-empty ID, got {value!r}" in err


@pytest.mark.parametrize("text", ["abc", "nan", "NaN", "inf", "-inf", "0", "-1", ""])
def test_inspect_timeout_must_be_positive_and_finite(
    text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_inspect(
        monkeypatch, capsys, "Atza|abc", "--client-id", "x", f"--timeout={text}"
    )
    assert code == 2
    assert out == ""
    assert f"--timeout: expected a positive number of seconds, got {text!r}" in err


@pytest.mark.parametrize("command", ["emulator", "demo", "inspect"])
def test_help_shows_every_default(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = subcommands()[command]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help is not None
        assert "default: " in action.help or "(required)" in action.help, action.dest
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lwa-middleware {command} ")
    assert "(default: 127.0.0.1)" in out or command == "inspect"


def test_help_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 8765)" in out
    assert "default: amzn1.application-oa2-client.emulator" in out
    assert main(["inspect", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 5.0)" in out
    assert "(default: https://api.amazon.com" in out


# The inspect prompt ---------------------------------------------------------------------


class FakeTTY(io.StringIO):
    """A terminal on standard input whose reads are at end of input (Ctrl-D)."""

    def isatty(self) -> bool:
        return True


def like_getpass(prompt: str = "Password: ", stream: io.TextIOBase | None = None) -> str:
    """``getpass.getpass`` reading the (fake) terminal: end of input is ``EOFError``."""
    (stream or sys.stderr).write(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def interrupted(prompt: str = "", stream: object = None) -> str:
    raise KeyboardInterrupt


def entered_nothing(prompt: str = "", stream: object = None) -> str:
    return ""


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (like_getpass, "no access token entered at the prompt (end of input)"),
        (interrupted, "interrupted at the prompt; no access token read"),
        (entered_nothing, "no access token entered at the prompt"),
    ],
)
def test_inspect_prompt_without_a_token_exits_2(
    prompt: object,
    message: str,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(getpass, "getpass", prompt)
    monkeypatch.setattr(sys, "stdin", FakeTTY(""))
    assert sys.stdin.isatty() and sys.stdin.read() == ""
    emulator.reset_counts()
    code = main(["inspect", *inspect_args(emulator, "--client-id", emulator.client_id)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert f"lwa-middleware: error: {message}" in err
    assert "Traceback" not in err
    assert emulator.calls == {"tokeninfo": 0, "profile": 0}


def test_inspect_prompt_reads_the_token(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token = emulator.mint_for(scopes=["profile"])
    monkeypatch.setattr(getpass, "getpass", like_getpass)
    monkeypatch.setattr(sys, "stdin", FakeTTY(f"Bearer {token}\n"))
    code = main(["inspect", *inspect_args(emulator, "--client-id", emulator.client_id)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Access token (not echoed): " in err
    assert token not in out + err


# Plain http -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://lwa.example.com", "http://10.0.0.5:8765"])
def test_inspect_refuses_plain_http_beyond_loopback(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = io.StringIO("Atza|abc")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["inspect", "--client-id", "x", "--api-base-url", url]) == 2
    err = capsys.readouterr().err
    assert "--api-base-url: plain http:// to a host that is not loopback" in err
    assert "--allow-insecure-http" in err
    assert stdin.tell() == 0  # refused before the token was read


@pytest.mark.skipif(sys.platform == "win32", reason="0.0.0.0 reaches loopback on POSIX only")
def test_inspect_allow_insecure_http(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token = emulator.mint_for(scopes=["profile"])
    url = emulator.url.replace("127.0.0.1", "0.0.0.0")
    args = ["--client-id", emulator.client_id, "--api-base-url", url]
    code, _, err = run_inspect(monkeypatch, capsys, token, *args)
    assert code == 2
    assert "--allow-insecure-http" in err
    code, out, err = run_inspect(monkeypatch, capsys, token, *args, "--allow-insecure-http")
    assert code == 0, err
    assert "Verdict: ACCEPTED" in out


def test_demo_refuses_a_host_beyond_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--once", "--host", "192.0.2.1"]) == 2
    err = capsys.readouterr().err
    assert "demo --host 192.0.2.1: the demo app calls the emulator over plain http" in err


def test_demo_reaches_a_wildcard_emulator_on_loopback() -> None:
    assert _loopback_url("http://0.0.0.0:8765") == "http://127.0.0.1:8765"
    assert _loopback_url("http://[::]:8765") == "http://[::1]:8765"
    assert _loopback_url("http://127.0.0.1:8765") == "http://127.0.0.1:8765"
    assert _loopback_url("http://localhost:1") == "http://localhost:1"


class BannerEmulator:
    client_id = "amzn1.application-oa2-client.emulator"
    app_id = "amzn1.application.emulator"

    def __init__(self, url: str) -> None:
        self.url = url


def test_emulator_banner_says_when_an_app_must_allow_http() -> None:
    local = emulator_banner(BannerEmulator("http://127.0.0.1:8765"), "Atza|x")  # type: ignore[arg-type]
    assert "LWA_ALLOW_INSECURE_HTTP" not in local
    wide = emulator_banner(BannerEmulator("http://0.0.0.0:8765"), "Atza|x")  # type: ignore[arg-type]
    assert wide.rstrip().endswith("LWA_ALLOW_INSECURE_HTTP=true")


# As processes -------------------------------------------------------------------------------


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_inspect_as_a_process(emulator: Emulator) -> None:
    _, token = emulator.mint_for(name="Ada", scopes=["profile"])
    args = ["inspect", "--client-id", emulator.client_id, "--api-base-url", emulator.url]
    done = subprocess.run(
        python("-m", "lwa_middleware.cli", *args),
        input=token,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=child_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Verdict: ACCEPTED" in done.stdout
    assert token not in done.stdout + done.stderr


def test_a_closed_pipe_ends_quietly(emulator: Emulator) -> None:
    """``inspect --json | head -1``: the reader goes away; no BrokenPipeError traceback."""
    _, token = emulator.mint_for(name="Ada", scopes=["profile"])
    args = ["inspect", "--json", "--client-id", emulator.client_id]
    read, write = os.pipe()
    os.close(read)  # a reader that has already gone
    try:
        done = subprocess.run(
            python("-m", "lwa_middleware.cli", *args, "--api-base-url", emulator.url),
            input=token.encode(),
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=SUBPROCESS_TIMEOUT,
            env=child_env(),
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr


def test_python_dash_m_package() -> None:
    done = subprocess.run(
        python("-m", "lwa_middleware", "--version"),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("lwa-middleware ")


def test_demo_once_as_the_readme_installs_it(tmp_path: Path) -> None:
    """``demo --once`` in a child that can import only what the README's demo install
    (``pip install -e '.[emulator]'``, extras read from pyproject.toml) brings: every
    check passes, ``/metrics`` (prometheus_client) and the friendly signed-out page too."""
    extras = readme_demo_extras()
    command, env = as_installed_by(
        extras, tmp_path / "site", "lwa_middleware.cli", "demo", "--once"
    )
    assert "prometheus-client" in installed_by(extras)
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "16/16 demo checks passed." in done.stdout
    assert "FAIL" not in done.stdout
    assert "PASS  GET /metrics (no token)" in done.stdout
    assert done.stdout.count("PASS  sign-in:") == 7


def read_until(lines: queue.Queue[str], marker: str) -> list[str]:
    """Lines of the child's output up to the one containing ``marker``."""
    seen = []
    while True:
        line = lines.get(timeout=SUBPROCESS_TIMEOUT)
        seen.append(line)
        if marker in line:
            return seen
        if line == "":
            raise AssertionError("the process ended early:\n" + "".join(seen))


def test_emulator_command() -> None:
    process = subprocess.Popen(
        python("-m", "lwa_middleware.cli", "emulator", "--port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    try:
        banner = read_until(lines, "Point an app at it")
        url = banner[0].split("running at ")[1].split()[0]
        export = next(line for line in banner if "export TOKEN=" in line)
        token = shlex.split(export.strip())[1].removeprefix("TOKEN=")
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
            bad = http.get("/auth/o2/tokeninfo?access_token=Atza%7Cnope")
            assert bad.status_code == 400
            assert bad.json()["error"] == "invalid_token"
            missing = http.get("/user/profile")
            assert missing.status_code == 400
            assert missing.json()["error"] == "invalid_request"
            info = http.get("/auth/o2/tokeninfo", headers={"x-amz-access-token": token})
            assert info.status_code == 200
            assert info.json()["aud"] == "amzn1.application-oa2-client.emulator"
            profile = http.get("/user/profile", headers={"Authorization": f"Bearer {token}"})
            assert profile.json()["name"] == "Test Customer"
            assert profile.json()["postal_code"] == "98101"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=SUBPROCESS_TIMEOUT) == 0
        tail = read_until(lines, "LWA emulator stopped.")
        assert not any("Traceback" in line for line in tail)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
