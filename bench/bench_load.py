"""A bounded HTTP load: up to ``total`` requests at fixed concurrency with one httpx.AsyncClient,
stopped early after ``max_seconds`` (the rate stays exact: completed requests / elapsed)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
from bench_apps import PATH


@dataclass(frozen=True)
class LoadResult:
    """One batch: wall time, requests sent, non-200 answers, CPU the load generator used."""

    seconds: float
    requests: int
    failures: int
    client_cpu: float

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


async def load(
    url: str, token: str, total: int, concurrency: int, max_seconds: float = 10.0
) -> LoadResult:
    """``GET /me`` up to ``total`` times from ``concurrency`` workers (connections opened
    first); workers take no new request once ``max_seconds`` have passed."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60.0
    ) as client:
        await asyncio.gather(*(client.get(PATH) for _ in range(concurrency)))
        remaining = iter(range(total))
        done = failures = 0
        cpu = time.process_time()
        start = time.perf_counter()
        deadline = start + max_seconds

        async def worker() -> None:
            nonlocal done, failures
            for _ in remaining:
                if time.perf_counter() > deadline:
                    return
                response = await client.get(PATH)
                done += 1
                if response.status_code != 200:
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        return LoadResult(seconds, done, failures, time.process_time() - cpu)
