"""Many workers, one Redis: two worker processes (uvicorn ``--workers 2``, gunicorn ``-w 2``)
share one verification with zero extra LWA calls; values planted in Redis (a victim's
identity without the fleet's MAC, with a bad one, re-signed with another secret, or dated
ten years ahead with a good one) never sign anyone in on either worker, and an entry whose
end and expiry are ten years ahead leaves each worker's memory ``cache_ttl`` after its key
is deleted; and with Redis killed (SIGKILL) then
restarted, or stopped (SIGSTOP: connections are accepted, nothing is answered) then
continued, in the middle of a stream of requests, no request fails and none takes more
than ``redis_timeout`` (plus a generous margin for a loaded machine) longer than it would
without Redis; Redis is used again once it answers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from lwa_middleware.emulator import Emulator
from redis_fixtures import (
    SECRET,
    AppProcess,
    RedisServer,
    Shell,
    l2_key,
    redis_server_fixture,
    shell_fixture,
    signed,
)

from conftest import assert_error, bearer

__all__ = ["redis_server_fixture", "shell_fixture"]  # the fixtures, imported to register them

REDIS_TIMEOUT = 0.25
#: What a loaded 2-core machine may add to a request on its own (generous).
MARGIN = 0.5
BACKOFF = 0.3
#: The header naming the worker of every response (``redis_worker_app.PID_HEADER``).
PID_HEADER = "x-worker-pid"


class Workers(AppProcess):
    """Two worker processes serving ``redis_worker_app`` on one port of 127.0.0.1."""

    def __init__(self, kind: str, env: dict[str, str], folder: Path) -> None:
        app = ("redis_worker_app", "asgi_named", "wsgi_named")
        super().__init__(kind, app, env, folder / f"{kind}.log", workers=2)

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
            log = self.log.read_text(errors="replace")[-2000:]
            pytest.fail(f"both workers never answered at {self.url}{path}:\n{log}")
        return pids, bodies

    def each_worker(
        self, path: str, headers: dict[str, str], before: Callable[[], object] | None = None
    ) -> dict[int, list[httpx.Response]]:
        """Requests on new connections, one at a time (``before`` runs before each), until
        both workers have answered twice: every response, by the pid of its worker."""
        seen: dict[int, list[httpx.Response]] = {}
        for _ in range(60):
            if before is not None:
                before()
            response = httpx.get(
                self.url + path, headers={**headers, "connection": "close"}, timeout=10
            )
            seen.setdefault(int(response.headers[PID_HEADER]), []).append(response)
            if len(seen) == 2 and all(len(answers) >= 2 for answers in seen.values()):
                return seen
        pytest.fail(f"both workers never answered {path} twice in 60 requests: {list(seen)}")


@pytest.fixture
def workers(
    emu: Emulator, emu_url: str, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Callable[..., Workers]]:
    started: list[Workers] = []
    env = {
        "LWA_CLIENT_IDS": emu.client_id,
        "LWA_API_BASE_URL": emu_url,
        "LWA_REDIS_URL": redis_server.url,
        "LWA_SECRET_KEY": SECRET,
        "LWA_EXCLUDE": "/health /l2",
    }

    def start(kind: str, **more: str) -> Workers:
        started.append(Workers(kind, {**env, **more}, tmp_path))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_two_worker_processes_share_one_verification(
    workers: Callable[..., Workers], emu: Emulator, kind: str
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


# Values planted in Redis -----------------------------------------------------------------

VICTIM = "amzn1.account.VICTIM"
DECADE = 10 * 365 * 86400.0


def _victim(aud: str, at: float, *, ends: float | None = None) -> dict[str, Any]:
    """A victim's identity in the value format, this app's ``aud``, dated ``at``."""
    ends = at + 300 if ends is None else ends
    info = {"user_id": VICTIM, "aud": aud, "app_id": None, "iss": "https://www.amazon.com"}
    return {
        "v": 2,
        "k": "i",
        "at": at,
        "d": ends,
        "token_info": {**info, "expires_at": max(ends, at + 3600), "issued_at": at},
        "profile": {"user_id": VICTIM, "name": "Victim", "email": "victim@example.com"},
    }


def _forged(kind: str, key: bytes, aud: str) -> bytes:
    body = _victim(aud, time.time())
    if kind == "no_mac":
        return json.dumps(body).encode()
    if kind == "bad_mac":
        return b"A" * 43 + json.dumps(body).encode()
    if kind == "wrong_secret":  # re-signed with a key that is not the fleet's
        return signed(key, body, secret="not-the-fleets-secret-at-all")
    assert kind == "dated_ahead"  # the fleet's MAC, ten years ahead (a clock, or a leak)
    return signed(key, _victim(aud, time.time() + DECADE))


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_planted_values_never_sign_anyone_in_on_any_worker(
    workers: Callable[..., Workers],
    emu: Emulator,
    emu_url: str,
    redis_server: RedisServer,
    kind: str,
) -> None:
    """Issue 17's attack on two worker processes: each value is planted (again before every
    request: no TTL) under the key of a token LWA never issued, and every request on every
    worker is verified with LWA, which refuses it; the victim never answers. Then
    :func:`_no_entry_outlives_cache_ttl` on the same workers."""
    server = workers(kind, LWA_NEGATIVE_TTL="0", LWA_CACHE_TTL="1")
    server.spread("/health")
    client = redis_server.client()
    forgeries = ("no_mac", "bad_mac", "wrong_secret", "dated_ahead")
    for n, forgery in enumerate(forgeries):
        token = f"Atza|IwEBI-never-issued-{n}-" + "x" * 300
        key = l2_key(emu_url, token)
        calls = emu.calls["tokeninfo"]
        plant = partial(client.set, key, _forged(forgery, key, emu.client_id))
        seen = server.each_worker("/me", bearer(token), plant)
        answers = [response for responses in seen.values() for response in responses]
        for response in answers:
            assert_error(response, "invalid_token", 400)
            assert VICTIM not in response.text
        assert emu.calls["tokeninfo"] == calls + len(answers)  # LWA asked every time
    counts = {
        body["pid"]: body["l2"]
        for responses in server.each_worker("/l2", {}).values()
        for body in [responses[0].json()]
    }
    assert len(counts) == 2
    for l2 in counts.values():
        assert l2["hits"] == 0
        assert l2["unauthenticated"] >= 2 * 3 and l2["future"] >= 2
    _no_entry_outlives_cache_ttl(server, emu, emu_url, redis_server)


def _no_entry_outlives_cache_ttl(
    server: Workers, emu: Emulator, emu_url: str, redis_server: RedisServer
) -> None:
    """A value with the fleet's MAC whose end (``d``) and token expiry are ten years ahead:
    each worker takes it for ``cache_ttl`` (1 s) from its own clock, so once the key is
    deleted from Redis, both workers ask LWA (which refuses the token) within that."""
    token = "Atza|IwEBI-long-lived-" + "y" * 300
    key = l2_key(emu_url, token)
    client = redis_server.client()
    client.set(key, signed(key, _victim(emu.client_id, time.time(), ends=time.time() + DECADE)))
    for responses in server.each_worker("/me", bearer(token)).values():
        assert {r.json()["user"] for r in responses} == {VICTIM}  # the fleet's MAC: believed
    client.delete(key)
    deleted = time.monotonic()
    last_ok = deleted
    refused: set[int] = set()
    while len(refused) < 2:
        assert time.monotonic() - deleted < 5, "a worker kept the entry past cache_ttl"
        response = httpx.get(server.url + "/me", headers={**bearer(token), "connection": "close"})
        if response.status_code == 200:
            last_ok = time.monotonic()
        else:
            assert_error(response, "invalid_token", 400)
            refused.add(int(response.headers[PID_HEADER]))
    assert last_ok - deleted < 1.0 + MARGIN  # cache_ttl, plus a loaded machine's margin
    assert client.get(key) is None


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
    key = l2_key(emu_url, token)
    deadline = time.monotonic() + 5
    with httpx.Client(base_url=url, timeout=10) as http:
        while True:
            assert http.get("/me", headers=bearer(token)).json()["user"] == user.user_id
            if server.client().get(key) is not None:
                return
            assert time.monotonic() < deadline, "Redis never used again"
            time.sleep(BACKOFF)
            user, token = emu.mint_for(name="After")
            key = l2_key(emu_url, token)


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
