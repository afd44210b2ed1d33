"""The benchmark still runs: ``bench/bench_warm.py --quick`` exits 0 and reports every variant.

No timing is asserted: the figures depend on the machine. The script starts the emulator
and two uvicorn servers on 127.0.0.1 in child processes and stops them itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "bench_warm.py"

VARIANT_LINES = (
    "bare ASGI app",
    "Starlette AuthenticationMiddleware (dict backend)",
    "LWAMiddleware (warm)",
    "bare WSGI app",
    "LWAWSGIMiddleware (warm)",
    "per-request verification (uvicorn)",
    "LWAMiddleware warm (uvicorn)",
)


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess[str]:
    pytest.importorskip("uvicorn")
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_quick_run_exits_zero(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert quick_run.returncode == 0, quick_run.stderr


@pytest.mark.parametrize("variant", VARIANT_LINES)
def test_reports_every_variant(quick_run: subprocess.CompletedProcess[str], variant: str) -> None:
    rows = [line for line in quick_run.stdout.splitlines() if line.startswith(variant)]
    assert rows, f"no line for {variant!r} in:\n{quick_run.stdout}"
    assert any(char.isdigit() for char in rows[0][len(variant) :])


def test_reports_ratios(quick_run: subprocess.CompletedProcess[str]) -> None:
    out = quick_run.stdout
    assert "LWAMiddleware warm overhead / Starlette AuthenticationMiddleware overhead:" in out
    assert "faster than per-request verification" in out
    assert "dict.get" in out


def test_no_token_in_output(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert "Atza|" not in quick_run.stdout + quick_run.stderr
