"""Section "flood" of ``bench/run.py``: a flood of bogus tokens must not lock anyone out.

The hardening issue's setup: one uvicorn worker running ``LWAMiddleware`` with its defaults
plus ``timeout=2.0`` (``bench_servers.py``, kind ``flood``), the LWA emulator answering
every call after 300 ms, and 600 concurrent requests each carrying a distinct bogus (but
well-formed) token. While the flood runs, and after it, a legitimate first sign-in (a token
the server has never seen) and a request to the excluded ``/health`` are sent at fixed
moments, each on a connection of its own; their latency is timed from this process (not the
server's). The server's circuit breaker is read from its ``/_stats`` afterwards: the
flood's refusals (the fan-out limit, a queue wait that ran out, a slot too late to call
LWA) must never count against LWA, so it must never open. The same flood against
``breaker_failures=0`` is the reference: the breaker off, only the fan-out limit at work.

The load generator is raw asyncio sockets (one HTTP/1.1 request per connection); tokens are
never printed.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field

import httpx
from bench_http import EmulatorControl
from bench_report import Section, print_section, progress
from bench_servers import FLOOD_TIMEOUT, ServerProcess

FLOOD = 600
LATENCY = 0.3
#: Seconds into the flood at which a legitimate first sign-in and /health are sent.
MOMENTS = (0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
#: A legitimate first sign-in must be verified within this (``timeout`` + 1 s).
SIGN_IN_BOUND = FLOOD_TIMEOUT + 1.0
IO_TIMEOUT = 30.0


def _request(port: int, path: str, token: str | None = None) -> bytes:
    auth = "" if token is None else f"Authorization: Bearer {token}\r\n"
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{auth}\r\n"
    ).encode()


async def _send(port: int, request: bytes) -> tuple[int, float, bool]:
    """``(status, seconds, Retry-After present)`` of one request on its own connection
    (status -1: the connection failed)."""
    start = time.perf_counter()
    status, retry_after = -1, False
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
        status = int(head.split(b" ", 2)[1])
        retry_after = b"\r\nretry-after:" in head.lower()
        writer.close()
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        pass
    return status, time.perf_counter() - start, retry_after


@dataclass
class Round:
    """One flood: its statuses, and the timed sign-ins and /health requests."""

    statuses: dict[int, int] = field(default_factory=dict)
    retry_after: int = 0
    seconds: float = 0.0
    sign_ins: list[tuple[float, int, float]] = field(default_factory=list)
    health: list[tuple[float, int, float]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    breaker: dict[str, object] = field(default_factory=dict)


async def flood_round(port: int, tokens: list[str]) -> Round:
    """600 bogus tokens at once; a sign-in (one of ``tokens``) and /health at each moment."""
    result = Round()
    bogus = [_request(port, "/me", f"Atza|{secrets.token_urlsafe(300)}") for _ in range(FLOOD)]
    began = time.perf_counter()
    flood = asyncio.gather(*(_send(port, request) for request in bogus))
    flood_done: list[tuple[int, float, bool]] = []

    async def whole_flood() -> None:
        flood_done.extend(await flood)

    async def at(moment: float, request: bytes, into: list[tuple[float, int, float]]) -> None:
        await asyncio.sleep(max(0.0, began + moment - time.perf_counter()))
        status, seconds, _ = await _send(port, request)
        into.append((moment, status, seconds))

    timed = [
        at(moment, _request(port, "/me", token), result.sign_ins)
        for moment, token in zip(MOMENTS, tokens, strict=True)
    ]
    timed += [at(moment, _request(port, "/health"), result.health) for moment in MOMENTS]
    await asyncio.wait_for(asyncio.gather(whole_flood(), *timed), IO_TIMEOUT * 2)
    answers = flood_done
    result.seconds = max(seconds for _, seconds, _ in answers)
    for status, _, retry_after in answers:
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.retry_after += retry_after
    result.sign_ins.sort()
    result.health.sort()
    return result


def run_config(
    lwa_url: str,
    client_id: str,
    control: EmulatorControl,
    breaker_failures: int | None,
    rounds: int,
) -> list[Round]:
    """Start a server with these options, flood it ``rounds`` times, stop it."""
    options = [] if breaker_failures is None else ["--breaker-failures", str(breaker_failures)]
    server = ServerProcess("flood", "--lwa", lwa_url, "--client-id", client_id, *options)
    try:
        url = server.ready()
        port = int(url.rpartition(":")[2])
        results = []
        with httpx.Client(base_url=url, timeout=IO_TIMEOUT) as http:
            for number in range(rounds):
                progress(f"  flood {number + 1}/{rounds} (breaker_failures={breaker_failures})")
                tokens = [control.mint() for _ in MOMENTS]
                control.reset_calls()
                result = asyncio.run(flood_round(port, tokens))
                result.calls = control.calls()
                result.breaker = dict(http.get("/_stats").json())
                results.append(result)
                time.sleep(0.5)  # the last answers written, the loop idle again
        return results
    finally:
        server.stop()


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms, worst {max(values) * 1000:.0f} ms"


def _row(label: str, results: list[Round]) -> list[str]:
    statuses: dict[int, int] = {}
    for result in results:
        for status, count in result.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    sign_ins = [s for r in results for s in r.sign_ins]
    verified = sum(status == 200 for _, status, _ in sign_ins)
    health = [h for r in results for h in r.health]
    opens = sum(int(str(r.breaker.get("opens", 0))) for r in results)
    return [
        label,
        f"{len(results)} x {FLOOD}",
        ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
        + f" ({sum(r.retry_after for r in results)} with Retry-After)",
        str(max(r.calls.get("tokeninfo", 0) for r in results)),
        f"{verified}/{len(sign_ins)} verified; {_ms([s for _, _, s in sign_ins])}",
        _ms([s for _, _, s in health]),
        str(opens),
    ]


def section(quick: bool) -> Section:
    """The flood against the defaults (breaker on) and, unless quick, the breaker off."""
    rounds = 1 if quick else 3
    configs: list[tuple[str, int | None]] = [("defaults (breaker on), timeout=2.0", None)]
    if not quick:
        configs.append(("breaker_failures=0, timeout=2.0", 0))
    emulator = ServerProcess("emulator")
    control: EmulatorControl | None = None
    measured: dict[str, list[Round]] = {}
    try:
        lwa_url = emulator.ready()
        control = EmulatorControl(lwa_url)
        client_id = control.client_id()
        control.set_latency(LATENCY)
        for label, failures in configs:
            measured[label] = run_config(lwa_url, client_id, control, failures, rounds)
    finally:
        if control is not None:
            control.close()
        emulator.stop()
    default = measured[configs[0][0]]
    sign_ins = [s for r in default for s in r.sign_ins]
    worst = max(seconds for _, _, seconds in sign_ins)
    all_verified = all(status == 200 for _, status, _ in sign_ins)
    opens = sum(int(str(r.breaker.get("opens", 0))) for r in default)
    health_worst = max(seconds for r in default for _, _, seconds in r.health)
    per_moment = ", ".join(
        f"{moment:g} s: {seconds * 1000:.0f} ms" for moment, _, seconds in default[-1].sign_ins
    )
    method = (
        f"One uvicorn server (its own process) runs `LWAMiddleware` with its defaults "
        f"(`max_concurrent_verifications=32`, `max_queued_verifications=256`, "
        f"`breaker_failures=5`) plus `timeout={FLOOD_TIMEOUT:g}`; the LWA emulator (another "
        f"process) answers every call after {LATENCY * 1000:.0f} ms. {FLOOD} requests, each "
        "with its own bogus `Atza|` token, are written at once, one connection each (raw "
        "asyncio sockets in the benchmark's process). At "
        + ", ".join(f"{m:g}" for m in MOMENTS)
        + " s into the flood a legitimate first sign-in (a token minted for a new user, "
        "never seen by the server) and a `GET /health` (an excluded path) are sent, each on a "
        "connection of its own, and timed from the benchmark's process. `breaker opened` is "
        "the server's count (`stats()['breaker']['opens']`) after the flood. "
        + (
            "The reference row turns the breaker off (`breaker_failures=0`): only the "
            "fan-out limit at work."
            if not quick
            else ""
        )
    )
    meaning = [
        "Only LWA's own failures count toward the circuit breaker: a request refused by the "
        "fan-out limit, one that ran out of time in its queue, or one whose slot came with "
        "less than half of `timeout` left (not sent) is never taken for LWA failing, so an "
        f"attacker's flood cannot open it: it opened {opens} time(s) here.",
        f"A legitimate first sign-in sent at any moment of the flood was verified within "
        f"{worst * 1000:.0f} ms (worst over {len(sign_ins)}; bound: `timeout` + 1 s = "
        f"{SIGN_IN_BOUND:g} s); last round, by moment: {per_moment}.",
        f"An excluded `/health` answered within {health_worst * 1000:.0f} ms at worst "
        "during the flood.",
        "The flood itself is refused: LWA's `invalid_token` for the requests that got a slot "
        "in time, `ServerError` with `Retry-After` for the others, and at most "
        "`max_concurrent_verifications` calls to LWA at once.",
    ]
    targets = {
        "legitimate sign-in during a flood": (
            all_verified and worst < SIGN_IN_BOUND,
            f"all {len(sign_ins)} verified: {all_verified}, worst {worst * 1000:.0f} ms vs "
            f"{SIGN_IN_BOUND * 1000:.0f} ms",
        ),
        "breaker never opened by a flood": (opens == 0, f"opened {opens} time(s) vs 0"),
    }
    return Section(
        key="flood",
        title="A flood of bogus tokens (uvicorn + LWAMiddleware)",
        method=method,
        headers=[
            "configuration",
            "floods x requests",
            "flood statuses",
            "LWA token-info calls (most in a flood)",
            "legitimate first sign-ins",
            "/health",
            "breaker opened",
        ],
        rows=[_row(label, results) for label, results in measured.items()],
        meaning=meaning,
        chart={
            "legitimate first sign-in during a flood, worst": worst * 1000,
            "/health during a flood, worst": health_worst * 1000,
        },
        chart_unit="milliseconds",
        targets=targets,
    )


if __name__ == "__main__":
    print_section(section("--quick" in sys.argv[1:]))  # run.py runs it with the others
