"""Many workers, one Redis: two worker processes (uvicorn ``--workers 2``, gunicorn ``-w 2``)
share one verification with zero extra LWA calls; and with Redis killed (SIGKILL) then
restarted, or stopped (SIGSTOP: connections are accepted, nothing is answered) then
continued, in the middle of a stream of requests, no request fails and none takes more
than ``redis_timeout`` (plus a generous margin for a loaded machine) longer than it would
without Redis; Redis is used again once it answers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from lwa_middleware.cache import cache_key
from lwa_middleware.emulator import Emulator
from redis_fixtures import RedisServer, Shell, free_port, redis_server_fixture, shell_fixture

from conftest import bearer

__all__ = ["redis_server_fixture", "shell_fixture"]  # the fixtures, imported to register them

TESTS = Path(__file__).resolve().parent
REDIS_TIMEOUT = 0.25
#: What a loaded 2-core machine may add to a request on its own (generous).
MARGIN = 0.5
BACKOFF = 0.3


class Workers:
    """Two worker processes serving ``redis_worker_app`` on one port of 127.0.0.1."""

    def __init__(self, kind: str, env: dict[str, str], folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bind = ("--host", "127.0.0.1", "--port", str(self.port))
        if kind == "uvicorn":
            command = [
                *(sys.executable, "-m", "uvicorn", "redis_worker_app:asgi", "--workers", "2"),
                *bind,
                *("--lifespan", "on", "--log-level", "warning", "--no-access-log"),
            ]
        else:
            command = [
                *(sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{self.port}"),
                *("--log-level", "warning", "redis_worker_app:wsgi"),
            ]
        path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
        self._log = folder / f"{kind}.log"
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=TESTS,
                env={**os.environ, **env, "PYTHONPATH": path},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped with its workers
            )

    def spread(
        self, path: str, headers: dict[str, str] | None = None, seconds: float = 20.0
    ) -> tuple[set[int], list[dict[str, Any]]]:
        """Requests on new connections, six at a time, until both workers have answered
        (or ``seconds`` pass): the worker pids seen, and every answer's body."""
        pids: set[int] = set()
        bodies: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds

        def one(_: int) -> dict[str, Any] | None:
            try:
                response = httpx.get(
                    self.url + path, headers={**(headers or {}), "connection": "close"}, timeout=5
                )
            except httpx.TransportError:
                return None  # not listening yet
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        with ThreadPoolExecutor(6) as pool:
            while len(pids) < 2 and time.monotonic() < deadline:
                for body in pool.map(one, range(6)):
                    if body is not None:
                        pids.add(body["pid"])
                        bodies.append(body)
                if not bodies:
                    time.sleep(0.1)
        if len(pids) < 2:
            log = self._log.read_text(errors="replace")[-2000:]
            pytest.fail(f"both workers never answered at {self.url}{path}:\n{log}")
        return pids, bodies

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def workers(
    emu: Emulator, emu_url: str, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Callable[[str], Workers]]:
    started: list[Workers] = []
    env = {
        "LWA_CLIENT_IDS": emu.client_id,
        "LWA_API_BASE_URL": emu_url,
        "LWA_REDIS_URL": redis_server.url,
        "LWA_EXCLUDE": "/health",
    }

    def start(kind: str) -> Workers:
        started.append(Workers(kind, env, tmp_path))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_two_worker_processes_share_one_verification(
    workers: Callable[[str], Workers], emu: Emulator, kind: str
) -> None:
    server = workers(kind)
    up, _ = server.spread("/health")  # both workers are serving
    user, token = emu.mint_for(name="Ada")
    first = httpx.get(server.url + "/me", headers=bearer(token), timeout=10).json()
    assert first["user"] == user.user_id
    assert emu.calls == {"tokeninfo": 1, "profile": 1}
    pids, bodies = server.spread("/me", bearer(token))
    assert pids == up and len(pids) == 2  # both worker processes answered for the token
    assert {body["user"] for body in bodies} == {user.user_id}
    assert emu.calls == {"tokeninfo": 1, "profile": 1}  # zero extra LWA calls


# Redis killed or stopped in the middle of a stream of requests ---------------------------


def stream(
    url: str, emu: Emulator, seconds: float, events: list[tuple[float, Callable[[], object]]]
) -> list[tuple[int, float]]:
    """Four client threads send requests for ``seconds`` (every other one a new token, the
    rest known ones), while ``events`` run at their times; every ``(status, seconds)``."""
    known = [emu.mint_for(name=f"Known {i}")[1] for i in range(4)]
    with httpx.Client(base_url=url, timeout=10) as http:
        for token in known:
            assert http.get("/me", headers=bearer(token)).status_code == 200
    results: list[tuple[int, float]] = []
    done = threading.Event()

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            n = 0
            while not done.is_set():
                n += 1
                token = emu.mint_for(name=f"U{index}.{n}")[1] if n % 2 else known[n % 4]
                start = time.perf_counter()
                response = http.get("/me", headers=bearer(token))
                results.append((response.status_code, time.perf_counter() - start))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        for at, event in events:
            time.sleep(max(0.0, began + at - time.monotonic()))
            event()
        time.sleep(max(0.0, began + seconds - time.monotonic()))
    finally:
        done.set()
        for thread in threads:
            thread.join(20)
    return results


def assert_unharmed(results: list[tuple[int, float]]) -> None:
    assert len(results) > 40, "too few requests to tell"
    assert [status for status, _ in results] == [200] * len(results)  # no request lost
    slowest = max(seconds for _, seconds in results)
    assert slowest < REDIS_TIMEOUT + MARGIN, f"slowest request took {slowest:.3f} s"


def assert_recovered(url: str, emu: Emulator, emu_url: str, server: RedisServer) -> None:
    """Once the back-off has passed, a new token's verdict is in Redis again."""
    time.sleep(BACKOFF + 0.05)
    user, token = emu.mint_for(name="After")
    key = b"lwa:v1:" + cache_key(emu_url, token).hex().encode()
    deadline = time.monotonic() + 5
    with httpx.Client(base_url=url, timeout=10) as http:
        while True:
            assert http.get("/me", headers=bearer(token)).json()["user"] == user.user_id
            if server.client().get(key) is not None:
                return
            assert time.monotonic() < deadline, "Redis never used again"
            time.sleep(BACKOFF)
            user, token = emu.mint_for(name="After")
            key = b"lwa:v1:" + cache_key(emu_url, token).hex().encode()


def test_redis_killed_and_restarted_mid_run(
    shell: Shell, emu: Emulator, emu_url: str, redis_server: RedisServer
) -> None:
    url, middleware = shell(
        redis_url=redis_server.url, redis_timeout=REDIS_TIMEOUT, redis_backoff=BACKOFF
    )
    results = stream(url, emu, 2.2, [(0.6, redis_server.kill), (1.3, redis_server.restart)])
    assert_unharmed(results)
    assert middleware.verifier.authority.l2.stats.errors >= 1  # the outage was seen
    assert_recovered(url, emu, emu_url, redis_server)


def test_redis_stopped_mid_run(
    shell: Shell, emu: Emulator, emu_url: str, redis_server: RedisServer
) -> None:
    url, middleware = shell(
        redis_url=redis_server.url, redis_timeout=REDIS_TIMEOUT, redis_backoff=BACKOFF
    )
    results = stream(url, emu, 2.4, [(0.6, redis_server.stop), (1.8, redis_server.cont)])
    assert_unharmed(results)
    counts = middleware.verifier.authority.l2.stats
    assert counts.errors >= 1 and counts.skipped >= 1  # timed out, then backed off
    slow = [seconds for _, seconds in results if seconds >= REDIS_TIMEOUT * 0.9]
    assert slow, "no request waited on the stopped Redis: the test proved nothing"
    assert_recovered(url, emu, emu_url, redis_server)
