"""A call's ``timeout`` is a wall-clock deadline, whatever the upstream does.

httpx's timeouts apply per phase and per socket read, so an upstream trickling a byte
just inside the read timeout used to hold a ``timeout=1.0`` call for as long as it liked.
Each test here points both clients (``mode``) with ``timeout=1.0`` at a slow upstream: the
emulator's ``trickle`` faults, a port whose accept queue is full (connect never completes),
a server that accepts and never answers, and raw TCP servers written here that trickle the
status line and headers, trickle a body, or send a body that never ends. Every call must
end in ``LWAUnavailable("Login with Amazon timed out.")`` within the timeout plus slack
(the figure is printed: ``pytest -s``). The sync client's deadline comes from
:class:`~lwa_middleware.upstream.deadlines.DeadlineBackend`, unit-tested at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpcore
import httpx
import pytest

from lwa_middleware.core.errors import LWAUnavailable
from lwa_middleware.emulator import Emulator
from lwa_middleware.upstream import deadlines, transport
from lwa_middleware.upstream.client import AsyncLWAClient, LWAClient

MODES = ["sync", "async"]
ENDPOINTS = ["tokeninfo", "profile"]
TIMEOUT = 1.0
SLACK = 1.0  # what a loaded test machine may add to a deadline
TOKEN = "Atza|" + "x" * 400
TRICKLE = 0.2  # seconds between two bytes of the raw servers: well inside a 1 s read timeout


@pytest.fixture(scope="module")
def served() -> Iterator[Emulator]:
    with Emulator(trickle_interval=0.4) as emulator:
        yield emulator


@pytest.fixture
def emu(served: Emulator) -> Emulator:
    """The module's emulator, reset (it overrides conftest's: trickling at 0.4 s a byte)."""
    served.reset()
    served.trickle_interval = 0.4
    return served


def call(mode: str, url: str, endpoint: str, token: str, **options: Any) -> tuple[Any, float]:
    """One call through a new ``mode`` client: ``(result or LWAError, seconds it took)``."""
    options.setdefault("timeout", TIMEOUT)
    if mode == "sync":
        with LWAClient(url, **options) as client:
            method = client.tokeninfo if endpoint == "tokeninfo" else client.profile
            started = time.monotonic()
            try:
                return method(token), time.monotonic() - started
            except LWAUnavailable as error:
                return error, time.monotonic() - started

    async def main() -> tuple[Any, float]:
        async with AsyncLWAClient(url, **options) as client:
            method = client.tokeninfo if endpoint == "tokeninfo" else client.profile
            started = time.monotonic()
            try:
                return await method(token), time.monotonic() - started
            except LWAUnavailable as error:
                return error, time.monotonic() - started

    return asyncio.run(main())


def assert_timed_out(what: str, outcome: tuple[Any, float], timeout: float = TIMEOUT) -> None:
    """The call failed with the usual timeout error, within the deadline plus slack."""
    error, took = outcome
    print(f"\n{what}: timeout={timeout} s call took {took:.3f} s")
    assert isinstance(error, LWAUnavailable), error
    assert error.description == "Login with Amazon timed out."
    assert timeout - 0.05 <= took < timeout + SLACK


# Raw TCP servers ----------------------------------------------------------------------


Handler = Callable[[socket.socket, int], None]


class RawServer:
    """A threaded TCP server on 127.0.0.1 running ``handler(connection, index)`` for each
    connection (``index`` counts from 0), ``handler`` made by ``make_handler(server)``;
    ``stopping`` is set when it closes."""

    def __init__(self, make_handler: Callable[[RawServer], Handler]) -> None:
        self.stopping = threading.Event()
        self._handler = make_handler(self)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections = 0
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            index, self.connections = self.connections, self.connections + 1
            thread = threading.Thread(target=self._serve, args=(connection, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket, index: int) -> None:
        with connection, contextlib.suppress(OSError):
            read_request(connection)
            self._handler(connection, index)

    def pause(self, seconds: float) -> bool:
        """Sleep unless the server stops meanwhile; whether to go on."""
        return not self.stopping.wait(seconds)

    def close(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_request(connection: socket.socket) -> bytes:
    """Read one request's head (the clients send GETs: no body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-padding: " + b"x" * 200


def trickle_head(server: RawServer) -> Handler:
    """The status line and headers, one byte every ``TRICKLE`` seconds (never complete in
    time): what httpx's per-read timeout cannot catch."""

    def handler(connection: socket.socket, index: int) -> None:
        for byte in HEAD:
            connection.sendall(bytes([byte]))
            if not server.pause(TRICKLE):
                return

    return handler


def trickle_body(server: RawServer) -> Handler:
    """Status and headers at once, then a 10 kB body (within the clients' 64 KiB cap on an
    answer) one byte every ``TRICKLE`` seconds."""

    def handler(connection: socket.socket, index: int) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 10000\r\n\r\n{")
        while server.pause(TRICKLE):
            connection.sendall(b" ")

    return handler


def endless_body(server: RawServer) -> Handler:
    """A chunked body that never ends: 1 kB chunks every 20 ms (fast, so no read waits; slow
    enough that a 1 s call reads less than the clients' 64 KiB cap on an answer, which
    ``test_client_stack`` tests)."""

    def handler(connection: socket.socket, index: int) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"400\r\n" + b" " * 0x400 + b"\r\n"
        while server.pause(0.02):
            connection.sendall(chunk)

    return handler


def silent(server: RawServer) -> Handler:
    """Accept the connection and the request, never answer."""

    def handler(connection: socket.socket, index: int) -> None:
        server.stopping.wait(30)

    return handler


RAW_SERVERS = {
    "head_trickled": trickle_head,
    "body_trickled": trickle_body,
    "endless_body": endless_body,
    "silent": silent,
}


@contextlib.contextmanager
def unaccepted_port() -> Iterator[str]:
    """A port whose accept queue is full: a new connection's SYN is dropped, the connect
    never completes (the slow connect)."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(64):
            filler = socket.socket()
            filler.settimeout(0.2)
            try:
                filler.connect(address)
            except OSError:
                filler.close()
                break
            fillers.append(filler)
        else:
            pytest.skip("could not fill the accept queue of a listening socket")
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# The deadline against slow upstreams -------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("kind", ["trickle", "trickle_body"])
def test_emulator_trickle_is_cut_at_the_deadline(
    mode: str, endpoint: str, kind: str, emu: Emulator
) -> None:
    _, token = emu.mint_for(scopes=("profile",))
    emu.fault(kind, endpoint)
    assert_timed_out(f"{mode} {endpoint} emulator {kind}", call(mode, emu.url, endpoint, token))
    assert emu.calls[endpoint] == 1, "a timeout spends the budget: no retry"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(RAW_SERVERS))
def test_raw_slow_servers_are_cut_at_the_deadline(mode: str, name: str) -> None:
    with RawServer(RAW_SERVERS[name]) as server:
        outcome = call(mode, server.url, "tokeninfo", TOKEN)
    assert_timed_out(f"{mode} raw server, {name}", outcome)
    assert server.connections == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_connect_that_never_completes_is_cut_at_the_deadline(mode: str) -> None:
    with unaccepted_port() as url:
        outcome = call(mode, url, "profile", TOKEN)
    assert_timed_out(f"{mode} connect never accepted", outcome)


@pytest.mark.parametrize("mode", MODES)
def test_the_per_call_timeout_is_the_deadline(mode: str, emu: Emulator) -> None:
    """``timeout=`` on the call overrides the client's default (here 30 s)."""
    _, token = emu.mint_for()
    emu.fault("trickle", "tokeninfo")
    if mode == "sync":
        with LWAClient(emu.url, timeout=30.0) as client:
            started = time.monotonic()
            with pytest.raises(LWAUnavailable) as caught:
                client.tokeninfo(token, timeout=0.5)
            took = time.monotonic() - started
    else:

        async def main() -> float:
            async with AsyncLWAClient(emu.url, timeout=30.0) as client:
                started = time.monotonic()
                with pytest.raises(LWAUnavailable) as caught:
                    await client.tokeninfo(token, timeout=0.5)
                assert caught.value.description == "Login with Amazon timed out."
                return time.monotonic() - started

        took = asyncio.run(main())
    print(f"\n{mode} per-call timeout=0.5 s call took {took:.3f} s")
    assert 0.45 <= took < 0.5 + SLACK
    if mode == "sync":
        assert caught.value.description == "Login with Amazon timed out."


@pytest.mark.parametrize("mode", MODES)
def test_retries_share_the_deadline(mode: str, emu: Emulator) -> None:
    """A 500 after 0.7 s is retried; the retry (trickled) gets what is left, not 1 s more."""
    _, token = emu.mint_for()
    emu.latency(0.7, "tokeninfo")
    emu.fault("500", "tokeninfo", times=1)
    emu.fault("trickle", "tokeninfo")
    error, took = call(mode, emu.url, "tokeninfo", token)
    print(f"\n{mode} 500 after 0.7 s, then trickle: timeout=1.0 s call took {took:.3f} s")
    assert isinstance(error, LWAUnavailable)
    assert error.description == "Login with Amazon timed out."
    assert emu.calls["tokeninfo"] == 2
    assert 0.95 <= took < 1.5  # an unshared budget would take 1.7 s at least


def test_async_deadline_under_anyio(emu: Emulator) -> None:
    """The async client driven by ``anyio.run`` (its cancel scope nests in ours)."""
    _, token = emu.mint_for()
    emu.fault("trickle_body", "profile")

    async def main() -> float:
        async with AsyncLWAClient(emu.url, timeout=TIMEOUT) as client:
            started = time.monotonic()
            with pytest.raises(LWAUnavailable):
                await client.profile(token)
            return time.monotonic() - started

    took = anyio.run(main)
    print(f"\nasync under anyio.run, trickle_body: call took {took:.3f} s")
    assert TIMEOUT - 0.05 <= took < TIMEOUT + SLACK


# Normal calls are untouched ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_normal_calls_still_succeed(mode: str, emu: Emulator) -> None:
    user, token = emu.mint_for()
    for endpoint in ENDPOINTS:
        result, took = call(mode, emu.url, endpoint, token)
        assert result.user_id == user.user_id
        assert took < TIMEOUT
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


def test_a_pooled_connection_outlives_the_deadline_of_its_first_call(emu: Emulator) -> None:
    """The deadline is the current call's, read at each socket operation: a kept-alive
    connection opened by a call whose deadline has passed serves the next call."""
    user, token = emu.mint_for()
    with LWAClient(emu.url, timeout=0.3) as client:
        assert client.tokeninfo(token).user_id == user.user_id
        time.sleep(0.35)
        assert client.profile(token).user_id == user.user_id
        assert client.tokeninfo(token, timeout=2.0).user_id == user.user_id


def test_a_latency_within_the_deadline_is_waited_for(emu: Emulator) -> None:
    user, token = emu.mint_for()
    emu.latency(0.5)
    result, took = call("sync", emu.url, "tokeninfo", token)
    assert result.user_id == user.user_id
    assert 0.5 <= took < TIMEOUT


# The sync client's deadline backend ---------------------------------------------------


def test_the_sync_client_runs_on_the_deadline_backend() -> None:
    """Fails loudly if httpx stops keeping its pool where ``hold_to_deadlines`` looks."""
    with LWAClient("http://127.0.0.1:9") as client:
        pools = deadlines._pools(client._http)
        assert pools
        assert all(isinstance(pool._network_backend, deadlines.DeadlineBackend) for pool in pools)
        assert deadlines.hold_to_deadlines(client._http) is client._http  # idempotent
        backend = pools[0]._network_backend
        assert isinstance(backend, deadlines.DeadlineBackend)
        assert not isinstance(backend._backend, deadlines.DeadlineBackend)


def test_environment_proxies_run_on_the_deadline_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "localhost")
    with LWAClient() as client:
        pools = deadlines._pools(client._http)
        assert len(pools) == 2, "the transport's pool and the proxy's"
        assert all(isinstance(pool._network_backend, deadlines.DeadlineBackend) for pool in pools)


def test_a_transport_of_the_callers_is_left_alone() -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(503))
    with LWAClient("http://lwa.test", transport=mock) as client:
        assert client._http._transport is mock
        with pytest.raises(deadlines.HTTPXShapeError):
            deadlines.hold_to_deadlines(client._http)


class FakeStream(httpcore.NetworkStream):
    """Records the timeout of each operation."""

    def __init__(self) -> None:
        self.timeouts: list[tuple[str, float | None]] = []

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.timeouts.append(("read", timeout))
        return b"x"

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.timeouts.append(("write", timeout))

    def close(self) -> None:
        self.timeouts.append(("close", None))

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self.timeouts.append(("start_tls", timeout))
        return self

    def get_extra_info(self, info: str) -> Any:
        return f"extra {info}"


class FakeBackend(httpcore.NetworkBackend):
    """Hands out one :class:`FakeStream`; connecting to an address of ``slow`` fails after
    its delay (``ConnectError``), or times out when the delay outlasts the timeout."""

    def __init__(self, slow: dict[str, float] | None = None) -> None:
        self.stream = FakeStream()
        self.slow = slow or {}
        self.connects: list[tuple[str, float | None]] = []

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, *_: Any, **__: Any
    ) -> httpcore.NetworkStream:
        self.connects.append((host, timeout))
        delay = self.slow.get(host)
        if delay is not None:
            if timeout is not None and delay >= timeout:
                time.sleep(timeout)
                raise httpcore.ConnectTimeout("slow")
            time.sleep(delay)
            raise httpcore.ConnectError("refused")
        return self.stream


def test_outside_a_deadline_the_backend_passes_timeouts_through() -> None:
    inner = FakeBackend()
    stream = deadlines.DeadlineBackend(inner).connect_tcp("lwa.test", 443, timeout=5.0)
    stream.write(b"GET", timeout=4.0)
    assert stream.read(10, timeout=3.0) == b"x"
    assert stream.start_tls(transport.ssl_context(), "lwa.test", timeout=2.0) is not None
    assert stream.get_extra_info("is_readable") == "extra is_readable"
    stream.close()
    assert inner.connects == [("lwa.test", 5.0)]
    assert inner.stream.timeouts == [
        ("write", 4.0),
        ("read", 3.0),
        ("start_tls", 2.0),
        ("close", None),
    ]


def test_inside_a_deadline_every_operation_is_clamped_then_refused() -> None:
    inner = FakeBackend()
    stream = deadlines.DeadlineBackend(inner).connect_tcp("127.0.0.1", 443, timeout=5.0)
    with deadlines.deadline(time.monotonic() + 0.2):
        stream.read(10, timeout=5.0)
        stream.write(b"GET", timeout=None)
        stream.read(10, timeout=0.01)
        time.sleep(0.25)
        with pytest.raises(httpcore.ReadTimeout):
            stream.read(10, timeout=5.0)
        with pytest.raises(httpcore.WriteTimeout):
            stream.write(b"GET", timeout=5.0)
        with pytest.raises(httpcore.ConnectTimeout):
            stream.start_tls(transport.ssl_context(), "lwa.test", timeout=5.0)
        with pytest.raises(httpcore.ConnectTimeout):
            deadlines.DeadlineBackend(inner).connect_tcp("127.0.0.1", 443, timeout=5.0)
    (_, first), (_, second), (_, third) = inner.stream.timeouts
    assert first is not None and 0 < first <= 0.2
    assert second is not None and 0 < second <= 0.2
    assert third == 0.01, "a shorter httpx timeout is kept"
    assert len(inner.connects) == 1, "no connect once the deadline is spent"
    stream.read(10, timeout=5.0)  # outside the deadline again
    assert inner.stream.timeouts[-1] == ("read", 5.0)


def test_each_address_gets_what_is_left_not_the_whole_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host with several addresses: the attempts share the deadline (``socket.create_connection``
    would give each the whole timeout)."""
    addresses = [("192.0.2.1", 443), ("192.0.2.2", 443), ("192.0.2.3", 443)]
    found = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", address) for address in addresses]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: found)

    inner = FakeBackend(slow={"192.0.2.1": 10.0, "192.0.2.2": 10.0})
    started = time.monotonic()
    with deadlines.deadline(started + 0.3), pytest.raises(httpcore.ConnectTimeout):
        deadlines.DeadlineBackend(inner).connect_tcp("lwa.test", 443, timeout=0.3)
    assert time.monotonic() - started < 0.3 + 0.2
    assert [host for host, _ in inner.connects] == ["192.0.2.1"], "the first took it all"

    inner = FakeBackend(slow={"192.0.2.1": 0.2})
    with deadlines.deadline(time.monotonic() + 0.5):
        stream = deadlines.DeadlineBackend(inner).connect_tcp("lwa.test", 443, timeout=0.5)
    assert stream.get_extra_info("x") == "extra x"
    (first_host, first), (second_host, second) = inner.connects
    assert (first_host, second_host) == ("192.0.2.1", "192.0.2.2")
    assert first is not None and 0.45 < first <= 0.5
    assert second is not None and second <= 0.31, "the second address gets what is left"
