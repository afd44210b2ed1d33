"""Part 2: per-request verification vs ``LWAMiddleware`` warm, both served by uvicorn."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from bench_load import LoadResult, load
from bench_servers import ServerProcess
from bench_stats import Summary, table

PER_REQUEST = "per-request verification (uvicorn)"
WARM_SERVED = "LWAMiddleware warm (uvicorn)"


@dataclass
class Served:
    """One measured server and what its batches gave (CPU in µs per request)."""

    server: ServerProcess
    url: str
    results: list[LoadResult] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    emulator_cpu: list[float] = field(default_factory=list)


def _cpu(server: ServerProcess, emulator: ServerProcess) -> tuple[float, float] | None:
    app, lwa = server.cpu_seconds(), emulator.cpu_seconds()
    return None if app is None or lwa is None else (app, lwa)


async def measure_throughput(
    servers: dict[str, Served],
    emulator: ServerProcess,
    token: str,
    *,
    requests: int,
    concurrency: int,
    rounds: int,
    seconds: float,
) -> None:
    """Fill each :class:`Served` with ``rounds`` batches, the order alternating each round."""
    for served in servers.values():  # warm-up: connections, caches, the first verification
        await load(served.url, token, min(requests, 4 * concurrency), concurrency, seconds)
    names = list(servers)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            served = servers[name]
            before = _cpu(served.server, emulator)
            result = await load(served.url, token, requests, concurrency, seconds)
            after = _cpu(served.server, emulator)
            served.results.append(result)
            if before is not None and after is not None and result.requests:
                served.server_cpu.append((after[0] - before[0]) * 1e6 / result.requests)
                served.emulator_cpu.append((after[1] - before[1]) * 1e6 / result.requests)


def _median(values: list[float]) -> str:
    return f"{Summary.of(values).median:.0f}" if values else "n/a"


def report_throughput(servers: dict[str, Served]) -> None:
    """Print part 2: a row per server, the speed-up and the server-side CPU per request."""
    rows = []
    for name, served in servers.items():
        rps = [r.rps for r in served.results]
        rows.append(
            [
                name,
                f"{Summary.of(rps).median:.0f}",
                f"{min(rps):.0f}..{max(rps):.0f}",
                str(sum(r.requests for r in served.results)),
                str(sum(r.failures for r in served.results)),
                _median(served.server_cpu),
                _median(served.emulator_cpu),
                f"{max(r.client_cpu / r.seconds for r in served.results):.0%}",
            ]
        )
    header = ["variant", "req/s", "range", "requests", "non-200"]
    print(table([*header, "app CPU µs/req", "LWA CPU µs/req", "client CPU"], rows))
    cold, warm = servers[PER_REQUEST], servers[WARM_SERVED]
    cold_rps = Summary.of([r.rps for r in cold.results]).median
    warm_rps = Summary.of([r.rps for r in warm.results]).median
    print(f"warm is {warm_rps / cold_rps:.1f}x faster than per-request verification")
    if cold.server_cpu and warm.server_cpu:
        cold_cpu = Summary.of(cold.server_cpu).median + Summary.of(cold.emulator_cpu).median
        warm_cpu = Summary.of(warm.server_cpu).median + Summary.of(warm.emulator_cpu).median
        print(
            f"server-side CPU per request (app + LWA): per-request verification "
            f"{cold_cpu:.0f} µs, warm {warm_cpu:.0f} µs ({cold_cpu / warm_cpu:.1f}x)"
        )
    print(
        "('client CPU' is the load generator's, 100% = one core: near 100% means its "
        "req/s is the client's limit, not the server's)"
    )
    if importlib.util.find_spec("sniffio") is None:
        print(
            "note: sniffio is not installed, so httpcore retries `import sniffio` on every "
            "async request: the load generator and AsyncLWAClient pay for failed imports"
        )
