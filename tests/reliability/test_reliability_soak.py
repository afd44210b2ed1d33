"""The soak: ``LWA_SOAK_SECONDS`` (default 10 in the suite; ``python bench/run.py soak`` runs
the full 60 s and prints its figures) at concurrency 64 over 1,000 users through
uvicorn (one worker, in a subprocess: ``soak_server.py``) with ``LWAMiddleware`` against an
emulator of this module's own on the real clock, ``cache_ttl`` 5 s (the first pass is paced
over 5 s, so about 200 entries expire and are re-verified every second), ~5 % of the tokens
revoked during the run and LWA failing ~10 % of the time (a ``503`` or ``reset`` fault on
every endpoint, in bursts of 0.5-1 s, 3-5 s apart once the last one's recovery is seen: one
in the warm-up, then at least one in the main phase however short), stale-if-error (10 s)
and the circuit breaker (5 failures, 1 s) on. ``LWA_SOAK_SEED`` replays a run's random choices.

The load comes from this process: 64 tasks, each with its own keep-alive connection
(``Connection``: httpx could not keep 64 requests on the wire here), each sending its next
request as soon as the last is answered. Every request is recorded (start, end, token,
status, what the app saw); every fault burst and revocation is timestamped on the same
clock (``time.monotonic``), and so is every breaker change (the server's ``BreakerLog``;
the monotonic clock is system-wide). During each burst three newcomers' tokens (never
verified) are sent on a 65th connection; after it, one more once the breaker's window has
passed. Then:

- no 200 names another user than the token's (the app echoes ``user_id``);
- no 5xx for a request made while LWA was healthy: one whose whole life (start to answer:
  the server saw it in between) missed every burst and the ``POST_MARGIN`` after it, and
  every interval the breaker was not closed; no stale answer for such a request either;
  the breaker opened only during a burst (or within ``POST_MARGIN``) and was closed at
  the end; with bursts, some answers were stale and the breaker opened;
- a newcomer's token during a burst is the documented 500 (nothing to serve stale); after
  it, one is verified within the breaker's window + ``RECOVERY`` (the probe closes it);
- every 400 is ``invalid_token`` for a token revoked before it ended; a revoked token is
  accepted ``cache_ttl`` (+``ACCEPT_MARGIN``) at most after its revocation, or
  ``cache_ttl + stale_if_error`` when the answer was stale; once the run is over and LWA
  healthy, every revoked token is refused and the others (newcomers too) accepted;
- no transport error; 64 requests in flight (mean ≥ 90 %) on 64 connections, never
  reopened, all 64 established at the server; at least 20 requests a second;
- the server's RSS grew less than 10 % between the end of the warm-up and the end.

The summary line is printed (run with ``-s``) and recorded with ``record_property``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from lwa_middleware.emulator import Emulator

HERE = Path(__file__).parent
#: The main phase. 10 s in the suite still sees a fault burst or two, revocations and every
#: check below; the full soak (60 s, ``bench/run.py soak``) is what the figures come from.
SOAK_SECONDS = float(os.environ.get("LWA_SOAK_SECONDS", "10"))
SEED = int(os.environ.get("LWA_SOAK_SEED", str(random.randrange(1_000_000))))
WARMUP_SECONDS = 4.0  # after the first pass over every token; RSS baseline at its end
USERS = 1000
CONCURRENCY = 64
REVOKED = USERS // 20  # 5 %

CACHE_TTL = 5.0
STALE_WINDOW = 10.0
BREAKER_FAILURES = 5
BREAKER_WINDOW = 1.0
TIMEOUT = 3.0
OPTIONS = {
    "cache_ttl": CACHE_TTL,
    "stale_if_error": STALE_WINDOW,
    "breaker_failures": BREAKER_FAILURES,
    "breaker_open_seconds": BREAKER_WINDOW,
    "timeout": TIMEOUT,
}

#: From the end of a burst's recovery check to the next burst. The first burst is over and
#: its recovery seen 4.3 s after the start at the latest, so the second begins 9.3 s after
#: it at the latest and still ends, with its recovery, within a 10 s main phase.
HEALTHY_GAP = (3.0, 5.0)
FAULT_BURST = (0.5, 1.0)
FAULT_KINDS = ("503", "reset")
#: Both ends of a burst are stamped on the safe side (``began`` before ``emu.fault``,
#: ``ended`` after ``clear_faults``) and a request is judged by its whole life, so none
#: is needed before a burst.
PRE_MARGIN = 0.0
#: After a burst: calls made during it still failing, requests waiting on them. Whenever the
#: breaker is not closed (its own log, ``BreakerLog``, on the same monotonic clock) is
#: excluded too: half open, only the probe reaches LWA, and the probe is the first
#: verification after the window, which may come later than the window's end.
POST_MARGIN = 1.5
#: After a burst, a newcomer's token is verified (200) within the breaker's window and this.
RECOVERY = 2.5
ACCEPT_MARGIN = 1.5
COLD_PER_BURST = 3
RSS_GROWTH = 0.10


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def established(port: int) -> int:
    """Established TCP connections whose local end is ``port`` (the server's side)."""
    wanted = f":{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(wanted) and fields[3] == "01":
            count += 1
    return count


@pytest.fixture(scope="module")
def soak_emulator() -> Iterator[Emulator]:
    """This module's own emulator, real clock, served by uvicorn in a thread."""
    with Emulator() as emu:
        yield emu


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def soak_server(
    soak_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``soak_server.py`` in a subprocess on a socket bound here (no port race)."""
    log = tmp_path_factory.mktemp("soak") / "server.log"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    argv = [
        sys.executable,
        str(HERE / "soak_server.py"),
        str(sock.fileno()),
        soak_emulator.url,
        soak_emulator.client_id,
        json.dumps(OPTIONS),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, pass_fds=[sock.fileno()], stdout=out, stderr=subprocess.STDOUT, cwd=HERE
        )
    sock.close()
    server = Server(url, process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"soak server exited ({process.returncode}):\n{server.log_tail()}")
            try:
                if httpx.get(url + "/_soak/stats", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"soak server not serving after 30 s:\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass(slots=True)
class Record:
    start: float
    end: float
    index: int
    status: int  # 0: transport error
    user: str | None = None  # a 200's user when it is not the token's (else None)
    misattributed: bool = False
    stale: Any = None
    error: str | None = None

    def said(self) -> tuple[Any, str | None, str | None]:
        """What the server answered: ``stale``, ``error``, the wrong ``user``."""
        return self.stale, self.error, self.user


REQUEST = b"GET /me HTTP/1.1\r\nhost: soak\r\nauthorization: Bearer %s\r\n\r\n"


class Connection:
    """One keep-alive HTTP/1.1 connection to the server: ``GET /me`` with a bearer token,
    one request at a time, the answer read by its ``Content-Length`` (or chunks).

    httpx costs this process about a millisecond a request: with the emulator in the same
    process it could not keep more than ~12 requests on the wire (its pool shrank to 12-14
    connections, the rest idle past their keep-alive). This costs a few tens of µs, so each
    of the 64 connections always carries one request and the server is the bottleneck."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0

    async def get(self, token: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
        assert self.reader is not None
        try:
            self.writer.write(REQUEST % token)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            fields = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip().lower()
            if b"content-length" in fields:
                body = await self.reader.readexactly(int(fields[b"content-length"]))
            elif fields.get(b"transfer-encoding") == b"chunked":
                chunks = []
                while size := int((await self.reader.readuntil(b"\r\n"))[:-2], 16):
                    chunks.append(await self.reader.readexactly(size))
                    await self.reader.readexactly(2)
                await self.reader.readexactly(2)
                body = b"".join(chunks)
            else:
                raise ConnectionError(f"no length in {head!r}")
            if fields.get(b"connection") == b"close":
                self.close()
            return status, body
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    faults: list[tuple[float, float, str]] = field(default_factory=list)
    revoked_at: dict[int, float] = field(default_factory=dict)
    rss: list[tuple[float, int]] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    inflight: int = 0
    max_inflight: int = 0
    main_start: float = 0.0
    end: float = 0.0
    rss_base: int = 0
    rss_end: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    server_main: dict[str, Any] = field(default_factory=dict)
    final_refused: int = 0
    final_accepted: int = 0
    final_bad: list[str] = field(default_factory=list)
    exceptions: Counter[str] = field(default_factory=Counter)
    opened: int = 0  # connections the load opened (64: none was ever dropped)
    cold: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    recovery: list[float | None] = field(default_factory=list)  # per burst: end -> 200
    breaker: list[tuple[float, float]] = field(default_factory=list)  # not closed


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def soak(emu: Emulator, server: Server) -> Run:
    rng = random.Random(SEED)
    minted = [emu.mint_for(name=f"User {i}", email=f"u{i}@example.com") for i in range(USERS)]
    user_ids = [user.user_id for user, _ in minted]
    tokens = [token for _, token in minted]
    raw_tokens = [token.encode() for token in tokens]
    run = Run()
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    connections = [Connection(host, port) for _ in range(CONCURRENCY)]
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for connection in connections:
        free.put_nowait(connection)

    async def one(connection: Connection, index: int) -> Record:
        start = time.monotonic()
        run.inflight += 1
        run.max_inflight = max(run.max_inflight, run.inflight)
        try:
            status, raw = await asyncio.wait_for(connection.get(raw_tokens[index]), 20)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ValueError) as exc:  # fmt: skip
            run.exceptions[type(exc).__name__] += 1
            return Record(start, time.monotonic(), index, 0)
        finally:
            run.inflight -= 1
        record = Record(start, time.monotonic(), index, status)
        try:
            body = json.loads(raw)
        except ValueError:
            record.error = "not json"
            return record
        if status == 200:
            record.stale = body.get("stale")
            if body.get("user") != user_ids[index]:
                record.user, record.misattributed = body.get("user"), True
        else:
            record.error = body.get("error")
        return record

    async def pooled(index: int) -> Record:
        connection = await free.get()
        try:
            return await one(connection, index)
        finally:
            free.put_nowait(connection)

    # The first pass: every token verified once (LWA healthy), paced over ``cache_ttl`` so
    # the entries expire (and are re-verified) all along the run, not in one herd every
    # 5 s that a burst could miss.
    async def paced(index: int) -> Record:
        await asyncio.sleep(index * CACHE_TTL / USERS)
        return await pooled(index)

    for record in await asyncio.gather(*(paced(i) for i in range(USERS))):
        assert record.status == 200 and not record.misattributed, record
    run.max_inflight = 0

    begin = time.monotonic()
    run.main_start = begin + WARMUP_SECONDS
    run.end = run.main_start + SOAK_SECONDS

    async def worker(connection: Connection, seed: int) -> None:
        pick = random.Random(seed)
        while time.monotonic() < run.end:
            run.records.append(await one(connection, pick.randrange(USERS)))

    async def cold_requests() -> None:
        """Newcomers' tokens, never verified, sent (outside the 64) while a burst is on:
        nothing to serve stale, so each must be the documented 500."""
        for _ in range(COLD_PER_BURST):
            user, token = emu.mint_for(name="Newcomer")
            response = await control.get("/me", headers={"authorization": f"Bearer {token}"})
            error = response.json().get("error") if response.status_code != 200 else None
            run.cold.append((token, user.user_id, response.status_code, error))

    async def recovered(ended: float) -> None:
        """Once the window has passed, a newcomer is verified (the probe): 200, own user."""
        await asyncio.sleep(max(0.0, ended + BREAKER_WINDOW + 0.1 - time.monotonic()))
        user, token = emu.mint_for(name="Newcomer")
        while time.monotonic() < ended + BREAKER_WINDOW + RECOVERY:
            response = await control.get("/me", headers={"authorization": f"Bearer {token}"})
            if response.status_code == 200 and response.json()["user"] == user.user_id:
                run.recovery.append(time.monotonic() - ended)
                return
            await asyncio.sleep(0.1)
        run.recovery.append(None)

    async def faults() -> None:
        gap = rng.uniform(1.0, 2.0)  # the first burst within the warm-up
        try:
            while True:
                await asyncio.sleep(gap)
                gap = rng.uniform(*HEALTHY_GAP)
                burst = rng.uniform(*FAULT_BURST)
                if time.monotonic() + burst + BREAKER_WINDOW + RECOVERY > run.end:
                    return  # no burst whose recovery would outlast the load
                kind = rng.choice(FAULT_KINDS)
                began = time.monotonic()
                emu.fault(kind)
                try:
                    await asyncio.sleep(0.1)
                    await cold_requests()  # the burst lasts at least until they are answered
                    await asyncio.sleep(max(0.0, began + burst - time.monotonic()))
                finally:
                    emu.clear_faults()
                    run.faults.append((began, time.monotonic(), kind))
                await recovered(run.faults[-1][1])
        finally:
            emu.clear_faults()

    async def revocations() -> None:
        chosen = rng.sample(range(USERS), REVOKED)
        span = (run.main_start + 0.05 * SOAK_SECONDS, run.main_start + 0.75 * SOAK_SECONDS)
        for when, index in sorted((rng.uniform(*span), i) for i in chosen):
            await asyncio.sleep(max(0.0, when - time.monotonic()))
            emu.revoke(tokens[index])
            run.revoked_at[index] = time.monotonic()

    async def memory() -> None:
        while time.monotonic() < run.end:
            run.rss.append((time.monotonic(), rss_kb(server.process.pid)))
            if time.monotonic() > run.main_start:
                run.connections.append(established(port))
            await asyncio.sleep(1.0)

    async with httpx.AsyncClient(base_url=server.url, timeout=20) as control:  # the 65th

        async def warmed() -> None:
            await asyncio.sleep(max(0.0, run.main_start - time.monotonic()))
            run.rss_base = rss_kb(server.process.pid)
            run.cpu = {"server": cpu_seconds(server.process.pid), "here": time.process_time()}
            await control.post("/_soak/reset")  # the server counts the main phase only

        await asyncio.gather(
            *(worker(c, SEED + n) for n, c in enumerate(connections)),
            faults(),
            revocations(),
            memory(),
            warmed(),
        )
        span = time.monotonic() - run.main_start
        run.rss_end = rss_kb(server.process.pid)
        run.cpu = {
            "server": (cpu_seconds(server.process.pid) - run.cpu["server"]) / span,
            "here": (time.process_time() - run.cpu["here"]) / span,
        }
        run.server_main = (await control.get("/_soak/stats")).json()

    run.opened = sum(connection.opened for connection in connections)
    for connection in connections:
        connection.close()  # the final checks open their own (these may have gone idle)

    # Afterwards, LWA healthy and past any breaker window: revoked tokens refused, others
    # accepted as their own user.
    emu.clear_faults()
    # ...and past the cache life of the last revoked token's identity (a short soak revokes
    # within cache_ttl of its end): then LWA is asked again and refuses it.
    settled = max(run.revoked_at.values(), default=0.0) + CACHE_TTL + 0.2
    await asyncio.sleep(max(BREAKER_WINDOW + 0.5, settled - time.monotonic()))
    others = rng.sample([i for i in range(USERS) if i not in run.revoked_at], 100)
    for token, user_id, _, _ in run.cold:  # the newcomers, verified now LWA is back
        raw_tokens.append(token.encode())
        user_ids.append(user_id)
        others.append(len(raw_tokens) - 1)
    for index in [*run.revoked_at, *others]:
        record = await pooled(index)
        revoked = index in run.revoked_at
        if revoked and record.status == 400 and record.error == "invalid_token":
            run.final_refused += 1
        elif not revoked and record.status == 200 and not record.misattributed:
            run.final_accepted += 1
        else:
            run.final_bad.append(f"{'revoked' if revoked else 'valid'}: {record}")
    for connection in connections:
        connection.close()
    return run


def breaker_not_closed(changes: list[tuple[float, str]]) -> list[tuple[float, float]]:
    """The intervals the breaker was open or half open, from its log."""
    intervals: list[tuple[float, float]] = []
    since: float | None = None
    for when, state in sorted(changes):
        if state != "closed" and since is None:
            since = when
        elif state == "closed" and since is not None:
            intervals.append((since, when))
            since = None
    if since is not None:
        intervals.append((since, float("inf")))
    return intervals


def near_fault(run: Run, record: Record) -> bool:
    """Whether the server may have handled ``record`` during a burst or within
    ``POST_MARGIN`` after it, or while the breaker was not closed: the server saw the
    request somewhere between its start and its end (this loaded process may take a while
    to send it and to read the answer)."""
    return any(
        record.start <= ended + POST_MARGIN and record.end >= began - PRE_MARGIN
        for began, ended, _ in run.faults
    ) or any(record.start <= ended and record.end >= began for began, ended in run.breaker)


def test_soak(soak_emulator: Emulator, soak_server: Server, record_property: Any) -> None:
    run = asyncio.run(soak(soak_emulator, soak_server))
    records = run.records
    assert soak_server.process.poll() is None, soak_server.log_tail()
    changes = [(when, state) for when, state in run.server_main["breaker_changes"]]
    run.breaker = breaker_not_closed(changes)
    # The breaker opens only while LWA fails (a burst, or calls made during it).
    opened_while_healthy = [
        when
        for when, state in changes
        if state == "open"
        and not any(began <= when <= ended + POST_MARGIN for began, ended, _ in run.faults)
    ]

    codes = Counter(str(r.status or "exception") for r in records)
    misattributed = [r for r in records if r.misattributed]
    healthy_5xx = [r for r in records if r.status >= 500 and not near_fault(run, r)]
    stale = [r for r in records if r.status == 200 and r.stale is True]
    stale_while_healthy = [r for r in stale if not near_fault(run, r)]
    not_stale_flag = [r for r in records if r.status == 200 and r.stale not in (True, False)]
    bad_500 = [r for r in records if r.status == 500 and r.error != "ServerError"]
    unexpected = [r for r in records if r.status not in (200, 400, 500)]
    bad_400 = [
        r
        for r in records
        if r.status == 400
        and (
            r.error != "invalid_token"
            or r.index not in run.revoked_at
            or r.end < run.revoked_at[r.index]
        )
    ]
    late_accepts: list[tuple[Record, float]] = []
    accept_delay = {"fresh": 0.0, "stale": 0.0}
    first_refusal: dict[int, float] = {}
    for r in records:
        revoked = run.revoked_at.get(r.index)
        if revoked is None or r.start <= revoked:
            continue
        delay = r.start - revoked
        if r.status == 200:
            kind = "stale" if r.stale is True else "fresh"
            accept_delay[kind] = max(accept_delay[kind], delay)
            allowed = CACHE_TTL + ACCEPT_MARGIN + (STALE_WINDOW if kind == "stale" else 0)
            if delay > allowed:
                late_accepts.append((r, delay))
        elif r.status == 400 and r.index not in first_refusal:
            first_refusal[r.index] = delay

    span = run.end - run.main_start
    main = [r for r in records if r.start >= run.main_start]
    busy = sum(min(r.end, run.end) - max(r.start, run.main_start) for r in main)
    mean_concurrency = busy / span
    fault_seconds = sum(
        min(e, run.end) - max(b, run.main_start) for b, e, _ in run.faults if e > run.main_start
    )
    growth = (run.rss_end - run.rss_base) / run.rss_base
    server = run.server_main
    stats = server.get("stats") or {}
    summary = (
        f"soak {SOAK_SECONDS:g}s seed={SEED}: requests={len(main)} (+{len(records) - len(main)}"
        f" warm-up) rate={len(main) / span:.0f}/s concurrency client max={run.max_inflight}"
        f" mean={mean_concurrency:.1f} over {run.opened} connections; server: connections"
        f" {min(run.connections, default=0)}-{max(run.connections, default=0)},"
        f" inside the app max={server.get('max_inflight')}"
        f" mean={server.get('mean_inflight', 0):.1f}; CPU server={run.cpu['server']:.0%}"
        f" test process={run.cpu['here']:.0%}"
        f" misattributions={len(misattributed)} codes={dict(sorted(codes.items()))}"
        f" healthy_5xx={len(healthy_5xx)} stale={len(stale)}"
        f" faults={len(run.faults)} ({fault_seconds / span:.0%} of the time)"
        f" cold-tokens-during-faults={Counter(status for _, _, status, _ in run.cold)}"
        f" breaker opened {sum(state == 'open' for _, state in changes)}x, not closed"
        f" {sum(min(e, run.end) - b for b, e in run.breaker):.1f}s, recovered (200) after"
        f" burst end in max {max((d or 99 for d in run.recovery), default=0):.2f}s"
        f" revoked={len(run.revoked_at)} accepted-after-revocation max"
        f" fresh={accept_delay['fresh']:.2f}s stale={accept_delay['stale']:.2f}s"
        f" first-refusal max={max(first_refusal.values(), default=0):.2f}s"
        f" ({len(first_refusal)} refused during the run,"
        f" {run.final_refused}/{len(run.revoked_at)} after)"
        f" rss={run.rss_base}kB->{run.rss_end}kB ({growth:+.1%},"
        f" peak {max((kb for _, kb in run.rss), default=0)}kB)"
        f" lwa_calls={soak_emulator.calls} server lwa_calls={stats.get('lwa_calls')}"
        f" breaker={stats.get('breaker')}"
        f" verifications={stats.get('verifications')}"
    )
    print("\n" + summary)
    record_property("soak", summary)

    def show(bad: list[Record]) -> str:
        """The first few offenders and the bursts, in seconds from the main phase's start."""
        t0 = run.main_start
        rows = [
            (round(r.start - t0, 2), round(r.end - t0, 2), r.index, r.status, *r.said())
            for r in bad[:5]
        ]
        bursts = [(round(b - t0, 2), round(e - t0, 2), kind) for b, e, kind in run.faults]
        columns = "(start, end, token, status, stale, error, user)"
        return f"{len(bad)}, e.g. {columns} {rows}; bursts {bursts}"

    assert not run.exceptions, run.exceptions
    assert not misattributed, show(misattributed)
    assert not healthy_5xx, show(healthy_5xx)
    assert not stale_while_healthy, show(stale_while_healthy)
    assert not not_stale_flag, show(not_stale_flag)
    assert not bad_500, show(bad_500)
    assert not unexpected, show(unexpected)
    assert not bad_400, show(bad_400)
    assert not late_accepts, (show([r for r, _ in late_accepts]), late_accepts[:5])
    assert not run.final_bad, run.final_bad[:5]
    assert run.final_refused == len(run.revoked_at) == REVOKED
    assert run.final_accepted == 100 + len(run.cold)
    cold_answers = [(status, error) for _, _, status, error in run.cold]
    assert cold_answers == [(500, "ServerError")] * len(run.cold)
    assert len(run.cold) == COLD_PER_BURST * len(run.faults)
    assert not opened_while_healthy, (opened_while_healthy, run.faults)
    assert None not in run.recovery, (run.recovery, run.faults, changes)
    assert run.breaker[-1][1] < run.end if run.breaker else True, changes  # closed at the end
    if fault_seconds >= 0.5:  # ~200 entries expire a second: many during a burst
        assert stale, "no stale answer while LWA was failing"
        assert any(state == "open" for _, state in changes), "the breaker never opened"
    assert run.max_inflight == CONCURRENCY
    assert run.opened == CONCURRENCY  # 64 connections, each kept for the whole run
    assert min(run.connections) >= CONCURRENCY, run.connections  # all open at the server
    assert mean_concurrency >= 0.9 * CONCURRENCY, mean_concurrency
    assert len(main) >= 20 * span, f"{len(main)} requests in {span:.0f} s"
    assert growth < RSS_GROWTH, (run.rss_base, run.rss_end, run.rss)
