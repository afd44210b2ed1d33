"""The shared-cache benchmark still runs: ``bench/bench_redis.py --quick`` exits 0 and
reports every row (an L2 hit beside an LWA call, the cold start of the workers with and
without Redis, the lock's verdict), and prints no token.

No figure is asserted but the LWA calls per token, which do not depend on the machine's
speed: each worker verifies each token once without Redis; with Redis and the lock, the
workers share one verification per token.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "bench_redis.py"

ROWS = (
    "L2 hit (Redis), Verifier",
    "L2 hit (Redis), AsyncVerifier",
    "LWA call (emulator), Verifier",
    "LWA call (emulator), AsyncVerifier",
    "no Redis, spread",
    "no Redis, simultaneous",
    "Redis, spread",
    "Redis, simultaneous",
    "Redis + lock, spread",
    "Redis + lock, simultaneous",
)


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_quick_run_exits_zero(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert quick_run.returncode == 0, quick_run.stderr


def test_reports_every_row(quick_run: subprocess.CompletedProcess[str]) -> None:
    lines = quick_run.stdout.splitlines()
    for row in ROWS:
        found = [line for line in lines if re.match(re.escape(row) + r"\s+\d", line)]
        assert found, f"no line for {row!r} in:\n{quick_run.stdout}"
    out = quick_run.stdout
    assert "Redis memory of one cached identity:" in out
    assert re.search(r"lock \(simultaneous cold requests.*fewer LWA calls per token", out)


def test_lwa_calls_per_token(quick_run: subprocess.CompletedProcess[str]) -> None:
    calls = {
        match[1]: float(match[2])
        for match in re.finditer(
            r"^(.+?, (?:spread|simultaneous))\s+([\d.]+)", quick_run.stdout, re.M
        )
    }
    assert calls["no Redis, spread"] == calls["no Redis, simultaneous"] == 2.0  # 2 workers
    assert calls["Redis + lock, simultaneous"] == 1.0
    assert calls["Redis + lock, spread"] <= 1.5


def test_no_token_in_output(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert "Atza|" not in quick_run.stdout + quick_run.stderr
