"""The ``lwa-middleware`` command: inspect (in-process and as a process), demo, emulator.

Every LWA call goes to a served emulator on 127.0.0.1; the token always travels on
standard input, never on the command line.
"""

from __future__ import annotations

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

import httpx
import pytest

from lwa_middleware.cli import main
from lwa_middleware.emulator import Emulator

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
    assert f"cannot serve the LWA emulator on 127.0.0.1:{port}" in capsys.readouterr().err


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


def test_demo_once() -> None:
    done = subprocess.run(
        python("-m", "lwa_middleware.cli", "demo", "--once"),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=child_env(),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8/8 demo checks passed." in done.stdout
    assert "FAIL" not in done.stdout


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
