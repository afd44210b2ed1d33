"""Errors that say what was tried: when LWA cannot be asked, the log names the host and the
cause (connection refused, name not resolved, TLS failure, timed out), never a token; the
answer to the client stays generic; ``inspect`` says a wrong URL is wrong, not "try again"."""

from __future__ import annotations

import io
import json
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest

from lwa_middleware.cli import main
from lwa_middleware.core.protocol import cause_of
from lwa_middleware.emulator import Emulator
from test_host_cookie import Certificate, certificate  # noqa: F401 (a fixture)

from conftest import Served, bearer

TOKEN = "Atza|" + "c" * 400


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def tls_port(certificate: Certificate) -> Iterator[int]:  # noqa: F811
    """A TLS server on 127.0.0.1 whose self-signed certificate no client trusts."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(5)


def warnings_of(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.mark.parametrize("where", ["refused", "tls"])
def test_the_log_names_the_host_and_the_cause(
    served: Served,
    caplog: pytest.LogCaptureFixture,
    http: httpx.Client,
    where: str,
    request: pytest.FixtureRequest,
) -> None:
    caplog.set_level(logging.WARNING, logger="lwa_middleware")
    if where == "refused":
        port, expected = closed_port(), "connection refused"
        base = f"http://127.0.0.1:{port}"
    else:
        port, expected = request.getfixturevalue("tls_port"), "TLS failure"
        base = f"https://127.0.0.1:{port}"
    url = served(api_base_url=base, breaker_failures=0)
    answer = http.get(url + "/me", headers=bearer(TOKEN))
    assert answer.status_code == 500
    assert str(port) not in answer.text and "127.0.0.1" not in answer.text  # generic
    logged = warnings_of(caplog)
    assert f"127.0.0.1:{port}: {expected}" in logged, logged
    assert TOKEN not in caplog.text and TOKEN[5:40] not in caplog.text


def test_the_causes_of_wrapped_socket_errors() -> None:
    def wrapped(inner: BaseException, outer: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as exc:
                raise outer from exc
        except BaseException as caught:
            return caught

    resolve = wrapped(socket.gaierror(-2, "Name or service not known"), httpx.ConnectError("x"))
    assert cause_of(resolve, "connect") == "name not resolved"
    refused = wrapped(ConnectionRefusedError(111, "refused"), httpx.ConnectError("x"))
    assert cause_of(refused, "connect") == "connection refused"
    assert cause_of(httpx.ReadTimeout("x"), "timeout") == "timed out"
    assert cause_of(httpx.RemoteProtocolError("x"), "protocol") == (
        "protocol error (RemoteProtocolError)"
    )
    secret = httpx.ConnectError(f"failed for https://h/?access_token={TOKEN}")
    assert TOKEN not in cause_of(secret, "connect")  # never the message


def test_inspect_against_a_wrong_url_says_so(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token = emulator.mint_for(scopes=["profile"])
    monkeypatch.setattr(sys, "stdin", io.StringIO(token))
    base = emulator.url + "/not-the-api"
    code = main(["inspect", "--api-base-url", base, "--client-id", emulator.client_id])
    out = capsys.readouterr().out
    assert code == 2
    assert "the URL is wrong" in out and "try again" not in out
    assert "/not-the-api/auth/o2/tokeninfo answered 404" in out
    assert token not in out


def test_inspect_against_a_closed_port_names_it(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token = emulator.mint_for(scopes=["profile"])
    port = closed_port()
    monkeypatch.setattr(sys, "stdin", io.StringIO(token))
    args = ["--api-base-url", f"http://127.0.0.1:{port}", "--client-id", emulator.client_id]
    assert main(["inspect", *args, "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "unknown"
    monkeypatch.setattr(sys, "stdin", io.StringIO(token))
    assert main(["inspect", *args]) == 2
    assert f"127.0.0.1:{port}: connection refused" in capsys.readouterr().out
