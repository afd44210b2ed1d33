"""``AsyncLWAClient`` on its default stack (aiohttp used directly) against real servers.

The emulator (uvicorn on 127.0.0.1, the module's own) and small raw TCP servers written
here: success, LWA's errors, the retry policy (aiohttp's own silent resend is off: the
emulator's call counts prove it), refused connections, resets, a trickled answer cut at the
deadline, 50 concurrent calls on one client over at most 50 connections, the cap on an
answer's size, the client's life cycle (closed, bound to one loop, closed with its loop),
proxies taken from the environment, and no token in any error, repr or log record.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
import pytest

from lwa_middleware.core.errors import ConfigurationError, InvalidToken, LWAError, LWAUnavailable
from lwa_middleware.emulator import Emulator
from lwa_middleware.upstream import senders
from lwa_middleware.upstream.client import AsyncLWAClient
from lwa_middleware.upstream.senders import AiohttpSender, HTTPXSender
from lwa_middleware.upstream.transport import MAX_BODY

T = TypeVar("T")

TIMEOUT = 3.0
SLACK = 1.0  # what a loaded test machine may add to a deadline
TIMED_OUT = "Login with Amazon timed out."
UNREACHABLE = "Login with Amazon could not be reached."
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    """The module's emulator with no faults, latency or counts (its users stay)."""
    emulator.clear_faults()
    emulator.reset_counts()
    emulator.trickle_interval = 0.2
    return emulator


@pytest.fixture(autouse=True)
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the machine's environment (tests set their own)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def run(
    url: str, use: Callable[[AsyncLWAClient], Awaitable[T]], **options: Any
) -> tuple[T | LWAError, float]:
    """``use`` a new default client (closed after): ``(result or LWAError, seconds)``."""
    options.setdefault("timeout", TIMEOUT)

    async def main() -> tuple[T | LWAError, float]:
        async with AsyncLWAClient(url, **options) as client:
            assert isinstance(client._http, AiohttpSender), "not the default stack"
            started = time.monotonic()
            try:
                return await use(client), time.monotonic() - started
            except LWAError as error:
                assert_clean(error)
                return error, time.monotonic() - started

    return asyncio.run(main())


def tokeninfo(token: str) -> Callable[[AsyncLWAClient], Awaitable[Any]]:
    return lambda client: client.tokeninfo(token)


def profile(token: str) -> Callable[[AsyncLWAClient], Awaitable[Any]]:
    return lambda client: client.profile(token)


def assert_clean(error: BaseException) -> None:
    """No aiohttp or httpx exception (they carry the request, so the token) in the chain."""
    seen: BaseException | None = error
    while seen is not None:
        assert not isinstance(seen, (aiohttp.ClientError, httpx.HTTPError)), repr(seen)
        seen = seen.__cause__ or seen.__context__


def secret_of(token: str) -> str:
    """The part of a token that must never show (what follows ``Atza|``)."""
    return token.partition("|")[2][:24]


# Raw TCP servers ---------------------------------------------------------------------


class RawServer:
    """A threaded TCP server on 127.0.0.1: ``answer(connection)`` for each connection after
    its request head has been read; counts connections and keeps each request head."""

    def __init__(self, answer: Callable[[socket.socket, RawServer], None]) -> None:
        self.stopping = threading.Event()
        self.heads: list[bytes] = []
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def connections(self) -> int:
        return len(self._threads) - 1

    def _accept(self) -> None:
        self._listener.settimeout(0.05)  # a closed listener does not wake a blocked accept()
        while not self.stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(None)
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.heads.append(head)
            with contextlib.suppress(OSError):
                self._answer(connection, self)

    def close(self) -> None:
        self.stopping.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def body_of(size: int) -> bytes:
    """A valid token-info answer padded with spaces to ``size`` bytes."""
    data = json.dumps({"user_id": "amzn1.account.RAW", "aud": "amzn1.client.raw", "exp": 60})
    return data.encode().ljust(size)


def answer_with(body: bytes) -> Callable[[socket.socket, RawServer], None]:
    def answer(connection: socket.socket, server: RawServer) -> None:
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
        connection.sendall(head.encode() + b"\r\nconnection: close\r\n\r\n" + body)

    return answer


def endless_body(connection: socket.socket, server: RawServer) -> None:
    """A chunked body that never ends, 16 KiB at a time, as fast as the client reads."""
    connection.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
    while not server.stopping.is_set():
        connection.sendall(chunk)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def client_connections(port: int) -> int | None:
    """How many established TCP connections of this machine go to ``port`` on 127.0.0.1
    (``None`` without ``/proc/net/tcp``)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    remote = f"0100007F:{port:04X}"
    return sum(1 for line in lines if line.split()[2] == remote and line.split()[3] == "01")


# Success and LWA's answers -----------------------------------------------------------


def test_tokeninfo_and_profile_succeed(emu: Emulator) -> None:
    user, token = emu.mint_for(name="Grace Hopper", scopes=("profile",))

    async def both(client: AsyncLWAClient) -> tuple[Any, Any]:
        return await asyncio.gather(client.tokeninfo(token), client.profile(token))

    outcome, took = run(emu.url, both)
    assert not isinstance(outcome, LWAError)
    info, found = outcome
    assert info.user_id == found.user_id == user.user_id
    assert info.aud == emu.client_id
    assert found.name == "Grace Hopper"
    assert took < TIMEOUT
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


@pytest.mark.parametrize("call", [tokeninfo, profile])
def test_an_unknown_token_is_invalid_without_retry(
    emu: Emulator, call: Callable[[str], Callable[[AsyncLWAClient], Awaitable[Any]]]
) -> None:
    error, _ = run(emu.url, call("Atza|" + "u" * 400))
    assert type(error) is InvalidToken
    assert sum(emu.calls.values()) == 1


def test_a_5xx_is_retried_once(emu: Emulator) -> None:
    user, token = emu.mint_for()
    emu.fault("500", "tokeninfo", times=1)
    info, _ = run(emu.url, tokeninfo(token))
    assert not isinstance(info, LWAError)
    assert info.user_id == user.user_id
    assert emu.calls["tokeninfo"] == 2
    emu.fault("503", "tokeninfo")
    error, _ = run(emu.url, tokeninfo(token))
    assert type(error) is LWAUnavailable
    assert emu.calls["tokeninfo"] == 4, "one retry per call, no more"


def test_a_reset_is_retried_once_and_only_by_us(emu: Emulator) -> None:
    """aiohttp would resend a GET on a dropped connection by itself: off, or the emulator
    would count four requests for one call."""
    user, token = emu.mint_for()
    emu.fault("reset", "profile")
    error, _ = run(emu.url, profile(token))
    assert isinstance(error, LWAUnavailable)
    assert error.description == UNREACHABLE
    assert emu.calls["profile"] == 2
    emu.clear_faults()
    emu.fault("reset", "profile", times=1)
    found, _ = run(emu.url, profile(token))
    assert not isinstance(found, LWAError)
    assert found.user_id == user.user_id
    assert emu.calls["profile"] == 4


def test_nothing_listening_is_unreachable() -> None:
    error, took = run(f"http://127.0.0.1:{closed_port()}", tokeninfo("Atza|" + "x" * 400))
    assert isinstance(error, LWAUnavailable)
    assert error.description == UNREACHABLE
    assert took < TIMEOUT


def test_a_trickled_answer_is_cut_at_the_deadline(emu: Emulator) -> None:
    """Status line and headers one byte every 0.2 s: each read is quick, the call is not."""
    _, token = emu.mint_for()
    emu.fault("trickle", "tokeninfo")
    error, took = run(emu.url, tokeninfo(token), timeout=0.8)
    assert isinstance(error, LWAUnavailable)
    assert error.description == TIMED_OUT
    assert 0.75 <= took < 0.8 + SLACK
    assert emu.calls["tokeninfo"] == 1, "a timeout spends the budget: no retry"


def test_latency_within_the_deadline_is_waited_for(emu: Emulator) -> None:
    user, token = emu.mint_for()
    emu.latency(0.3, "tokeninfo")
    info, took = run(emu.url, tokeninfo(token), timeout=2.0)
    assert not isinstance(info, LWAError)
    assert info.user_id == user.user_id
    assert 0.3 <= took < 2.0


# Concurrency and connection reuse ------------------------------------------------------


def test_fifty_concurrent_calls_share_one_pool(emu: Emulator) -> None:
    """Two waves of 50 concurrent calls on one client: every call answered, at most 50
    connections opened by the first wave, and none more by the second."""
    user, token = emu.mint_for()
    port = int(emu.url.rpartition(":")[2])
    before = client_connections(port)

    async def waves(client: AsyncLWAClient) -> tuple[list[Any], int | None, int | None]:
        first = await asyncio.gather(*(client.tokeninfo(token) for _ in range(50)))
        after_first = client_connections(port)
        second = await asyncio.gather(*(client.tokeninfo(token) for _ in range(50)))
        return first + second, after_first, client_connections(port)

    outcome, took = run(emu.url, waves, timeout=10.0)
    assert not isinstance(outcome, LWAError)
    infos, after_first, after_second = outcome
    assert {info.user_id for info in infos} == {user.user_id}
    assert emu.calls["tokeninfo"] == 100
    assert took < 10.0
    if before is not None and after_first is not None and after_second is not None:
        opened = after_first - before
        assert 0 < opened <= 50
        assert after_second - before <= opened, "the second wave opened new connections"


# The size cap ------------------------------------------------------------------------


def test_an_answer_within_the_cap_is_read() -> None:
    with RawServer(answer_with(body_of(MAX_BODY))) as server:
        info, _ = run(server.url, tokeninfo("Atza|" + "x" * 400))
    assert not isinstance(info, LWAError)
    assert info.user_id == "amzn1.account.RAW"


def test_an_answer_larger_than_the_cap_is_unusable() -> None:
    """Its ``Content-Length`` says so: no body is read; one retry, as for any bad answer."""
    with RawServer(answer_with(body_of(MAX_BODY + 1))) as server:
        error, took = run(server.url, tokeninfo("Atza|" + "x" * 400))
    assert isinstance(error, LWAUnavailable)
    assert error.description == UNREACHABLE
    assert server.connections == 2
    assert took < TIMEOUT


def test_an_endless_body_stops_at_the_cap_not_the_deadline() -> None:
    with RawServer(endless_body) as server:
        error, took = run(server.url, tokeninfo("Atza|" + "x" * 400), timeout=5.0)
    assert isinstance(error, LWAUnavailable)
    assert error.description == UNREACHABLE
    assert server.connections == 2
    assert took < 2.0, "the cap ends the call long before its 5 s deadline"


# Life cycle --------------------------------------------------------------------------


def test_a_closed_client(emu: Emulator) -> None:
    _, token = emu.mint_for()

    async def main() -> None:
        unused = AsyncLWAClient(emu.url)
        assert not unused.is_closed
        await unused.aclose()
        assert unused.is_closed
        client = AsyncLWAClient(emu.url, timeout=TIMEOUT)
        await client.tokeninfo(token)
        await client.aclose()
        assert client.is_closed
        await client.aclose()  # twice is fine
        with pytest.raises(RuntimeError, match="closed"):
            await client.profile(token)

    asyncio.run(main())
    assert emu.calls["tokeninfo"] == 1
    assert emu.calls["profile"] == 0


def test_a_client_is_bound_to_its_first_loop(emu: Emulator) -> None:
    _, token = emu.mint_for()
    client = AsyncLWAClient(emu.url, timeout=TIMEOUT)

    async def call() -> None:
        await client.tokeninfo(token)

    asyncio.run(call())
    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(call())
    asyncio.run(client.aclose())


def test_an_unclosed_client_closes_with_its_loop(
    emu: Emulator, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    """What the ASGI verifier relies on when it forgets the client of a finished loop:
    the loop's shutdown closes the session, so dropping it later logs and warns nothing."""
    _, token = emu.mint_for()
    gc.collect()  # what earlier tests left for the collector warns now, not below
    recwarn.clear()
    caplog.set_level(logging.DEBUG)
    kept: list[AsyncLWAClient] = []

    async def main() -> None:
        client = AsyncLWAClient(emu.url, timeout=TIMEOUT)
        kept.append(client)
        await client.tokeninfo(token)

    asyncio.run(main())
    sender = kept[0]._http
    assert isinstance(sender, AiohttpSender)
    assert sender._session is not None
    assert sender._session.closed, "asyncio.run's shutdown closed the session"
    kept.clear()
    gc.collect()
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]
    leaks = [str(w.message) for w in recwarn.list if issubclass(w.category, ResourceWarning)]
    assert not leaks


def test_a_callers_transport_is_driven_by_httpx() -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    assert isinstance(AsyncLWAClient("http://lwa.test", transport=mock)._http, HTTPXSender)
    assert isinstance(AsyncLWAClient("http://lwa.test")._http, AiohttpSender)


def test_aiohttp_still_has_the_switch_for_its_own_resend() -> None:
    """Fails loudly if aiohttp renames the attribute that turns its silent resend off."""
    assert "_retry_connection" in aiohttp.ClientSession.ATTRS


# Proxies from the environment --------------------------------------------------------


def test_the_environment_proxy_is_used(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """``HTTP_PROXY`` is read when the client is built: requests go to it, absolute-form."""
    body = body_of(200)
    with RawServer(answer_with(body)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        info, _ = run(emu.url, tokeninfo("Atza|" + "p" * 400))
    assert not isinstance(info, LWAError)
    assert info.user_id == "amzn1.account.RAW"
    assert proxy.heads[0].startswith(f"GET {emu.url}/auth/o2/tokeninfo HTTP/1.1".encode())
    assert emu.calls["tokeninfo"] == 0


@pytest.mark.parametrize(
    ("variables", "url", "expected"),
    [
        ({}, "https://api.amazon.com", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.amazon.com", "http://proxy:3128"),
        ({"HTTPS_PROXY": "proxy:3128"}, "https://api.amazon.com", "http://proxy:3128"),
        ({"HTTP_PROXY": "http://proxy:3128"}, "https://api.amazon.com", None),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://127.0.0.1:9", "http://proxy:3128"),
        ({"ALL_PROXY": "http://all:1"}, "https://api.amazon.com", "http://all:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "amazon.com"}, "https://api.amazon.com", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".amazon.com"}, "https://api.amazon.com", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://api.amazon.com", None),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "zon.com"},
            "https://api.amazon.com",
            "http://p:1",
        ),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1"}, "http://127.0.0.1:9", None),
    ],
)
def test_environment_proxy(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert senders.environment_proxy(url) == expected


def test_a_socks_proxy_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:hunter2@proxy:1080")
    with pytest.raises(ConfigurationError) as caught:
        AsyncLWAClient()
    assert "hunter2" not in str(caught.value)
    mock = httpx.MockTransport(lambda request: httpx.Response(503))
    assert AsyncLWAClient(transport=mock) is not None, "an httpx transport is the way out"


# No token anywhere -------------------------------------------------------------------


def test_no_token_in_errors_reprs_or_logs(
    emu: Emulator, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    _, good = emu.mint_for()
    unknown = "Atza|" + "IwEBIunknownSecretValue" * 18
    secrets = [secret_of(good), secret_of(unknown)]
    produced: list[object] = []

    async def calls(client: AsyncLWAClient) -> None:
        for token in (good, unknown):
            for call in (client.tokeninfo, client.profile):
                try:
                    produced.append(await call(token))
                except LWAError as error:
                    assert_clean(error)
                    produced.append(error)
        produced.append(client)

    run(emu.url, calls)
    for kind in ("500", "reset", "non_json", "trickle"):
        emu.fault(kind)
        produced.append(run(emu.url, calls, timeout=0.5)[0])
        emu.clear_faults()
    with RawServer(endless_body) as server:
        produced.append(run(server.url, calls)[0])
    produced.append(run(f"http://127.0.0.1:{closed_port()}", calls)[0])
    assert any(isinstance(item, LWAError) for item in produced)
    captured = capsys.readouterr()
    texts = [caplog.text, captured.out, captured.err]
    for item in produced:
        texts += [repr(item), str(item)]
        if isinstance(item, LWAError):
            texts += [item.description, repr(item.args)]
    for text in texts:
        for secret in secrets:
            assert secret not in text
