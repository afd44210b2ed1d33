"""A flood of distinct bogus tokens against a slow LWA, through real servers: the worker
stays responsive, a legitimate first sign-in sent at any moment of the flood (or after it)
is verified within ``timeout`` + 1 s, the circuit breaker never opens (the flood's refusals
are not LWA's failures), and no request waits on LWA longer than ``timeout``.

The flood is sent from a thread with raw asyncio sockets (one HTTP/1.1 request per
connection): an HTTP client library would spend more CPU than the server under test, in
the same process. Bounds are generous (CI machines are slow); the measured figures are
printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from lwa_middleware import LWAMiddleware, LWAOptions, LWAWSGIMiddleware
from lwa_middleware.emulator import Emulator, serve, serve_wsgi

from conftest import bearer, inner_app, wsgi_whoami

FLOOD = 600
LATENCY = 0.3
TIMEOUT = 2.0


@dataclass
class Blast:
    """Outcomes of a flood: ``(status, seconds)`` per request, filled by a thread."""

    results: list[tuple[int, float]] = field(default_factory=list)
    retry_after: int = 0
    started: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for status, _ in self.results:
            counts[status] = counts.get(status, 0) + 1
        return counts


async def _one(host: str, port: int, request: bytes, blast: Blast) -> None:
    start = time.monotonic()
    status = 0
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status = int(head.split(b" ", 2)[1])
        if b"\r\nretry-after: 1\r\n" in head.lower():
            blast.retry_after += 1
        writer.close()
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        status = -1
    blast.results.append((status, time.monotonic() - start))


def flood(url: str, count: int = FLOOD) -> Blast:
    """Start ``count`` concurrent requests to ``url`` + ``/me``, each with its own bogus (but
    well-formed) token; returns at once, the thread fills ``Blast.results``."""
    host, port = url.removeprefix("http://").split(":")
    requests = [
        (
            f"GET /me HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"Authorization: Bearer Atza|{secrets.token_urlsafe(300)}\r\n\r\n"
        ).encode()
        for _ in range(count)
    ]
    blast = Blast()

    async def main() -> None:
        blast.started.set()
        await asyncio.gather(*(_one(host, int(port), r, blast) for r in requests))

    blast.thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    blast.thread.start()
    blast.started.wait()
    return blast


@pytest.fixture(scope="module")
def slow_lwa() -> Iterator[Emulator]:
    with Emulator() as emu:
        emu.latency(LATENCY)
        yield emu


Flooded = tuple[str, LWAMiddleware | LWAWSGIMiddleware]


@pytest.fixture(params=["asgi", "wsgi"])
def flooded_app(request: pytest.FixtureRequest, slow_lwa: Emulator) -> Iterator[Flooded]:
    """The whoami app behind one shell's middleware, with the defaults (the circuit breaker
    on) plus ``timeout=2.0`` and an excluded ``/health``."""
    options: LWAOptions = {
        "client_ids": [slow_lwa.client_id],
        "api_base_url": slow_lwa.url,
        "exclude": ["/health"],
        "timeout": TIMEOUT,
    }
    if request.param == "asgi":
        app = LWAMiddleware(inner_app(), **options)
        handle = serve(app, lifespan="on")
        yield handle.url, app
        handle.stop()
    else:
        middleware = LWAWSGIMiddleware(wsgi_whoami, **options)
        handle = serve_wsgi(middleware)
        yield handle.url, middleware
        handle.stop()
        middleware.close()


#: When (seconds into the flood) a legitimate first sign-in (and ``/health``) is sent:
#: while the slots and the queue are full, as the queued requests run out of time (slots
#: that came too late used to time out in flight then, and open the breaker), and once
#: the flood is over (the breaker, had it opened, would still refuse for 10 s).
SIGN_INS = (0.4, 1.2, 2.1)


def test_flood_of_bogus_tokens(flooded_app: Flooded, slow_lwa: Emulator) -> None:
    url, middleware = flooded_app
    _, regular = slow_lwa.mint_for(name="Bob")
    legit = [slow_lwa.mint_for(name=f"Ada {i}")[1] for i, _ in enumerate(SIGN_INS)]
    sign_ins: list[tuple[float, int, float]] = []
    healths: list[float] = []
    with httpx.Client(timeout=30) as http:
        assert http.get(url + "/me", headers=bearer(regular)).status_code == 200  # cached
        slow_lwa.reset_counts()
        blast = flood(url)
        began = time.monotonic()
        for at, token in zip(SIGN_INS, legit, strict=True):
            time.sleep(max(0.0, began + at - time.monotonic()))
            start = time.monotonic()
            health = http.get(url + "/health")
            assert health.status_code == 200
            healths.append(time.monotonic() - start)
            if at == SIGN_INS[0]:
                start = time.monotonic()
                cached = http.get(url + "/me", headers=bearer(regular))
                cached_seconds = time.monotonic() - start
            start = time.monotonic()
            signed_in = http.get(url + "/me", headers=bearer(token))
            seconds = time.monotonic() - start
            assert signed_in.status_code == 200, (at, signed_in.text)
            assert signed_in.json()["user"] is not None
            sign_ins.append((at, signed_in.status_code, seconds))
        assert blast.thread is not None
        blast.thread.join(60)
    durations = sorted(seconds for _, seconds in blast.results)
    calls = slow_lwa.calls
    breaker = middleware.verifier.stats()["breaker"]
    print(
        f"\n[{url}] flood of {FLOOD} bogus tokens, LWA latency {LATENCY} s, timeout {TIMEOUT} s:"
        " /health " + ", ".join(f"{seconds * 1000:.0f}" for seconds in healths) + " ms,"
        f" cached token {cached_seconds * 1000:.0f} ms, legitimate cold tokens "
        + ", ".join(f"at {at} s: {seconds * 1000:.0f} ms" for at, _, seconds in sign_ins)
        + f"; flood statuses {blast.statuses()}, {blast.retry_after} with Retry-After; flood"
        f" durations median {statistics.median(durations):.2f} s, max {durations[-1]:.2f} s;"
        f" LWA calls {calls}; breaker opened {breaker['opens']} time(s)"
    )
    assert max(healths) < 1.0  # an excluded path stays fast
    assert cached.status_code == 200
    assert cached_seconds < 1.0
    # Each legitimate first sign-in, whenever it came, was verified within timeout + 1 s.
    assert all(seconds < TIMEOUT + 1.0 for _, _, seconds in sign_ins), sign_ins
    # Requests refused by the fan-out limit, out of time in its queue, or with too little
    # time left to be sent never counted against LWA: the breaker never opened.
    assert breaker["opens"] == 0, breaker
    assert breaker["state"] == "closed"
    assert len(blast.results) == FLOOD
    statuses = blast.statuses()
    # Every bogus token was refused: LWA's invalid_token, or ServerError with Retry-After:
    # no slot in time, or a slot too late to call LWA (not sent). None reached the app,
    # none was dropped.
    assert set(statuses) <= {400, 500}, statuses
    assert 0 < blast.retry_after <= statuses.get(500, 0)
    # No request waited on LWA (or for a slot) much longer than its deadline.
    assert durations[-1] < TIMEOUT + 2.0
    # The cap held: far fewer upstream calls than requests.
    assert calls["tokeninfo"] < FLOOD
