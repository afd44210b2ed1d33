"""``bench/run.py soak`` runs the suite's soak for 60 s (the suite runs it for 10 s) and prints
its figures: the command it runs and how it cuts the summary line into figures.

The long run itself is not run here (it takes over a minute); the suite's own soak
(``tests/reliability/test_reliability_soak.py``) runs the same test, shorter.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPT = BENCH / "run.py"

SUMMARY = (
    "soak 60s seed=161310: requests=69393 (+36762 warm-up) rate=6939/s concurrency client"
    " max=64 mean=63.9 over 64 connections; server: connections 65-65, inside the app max=39"
    " mean=4.5; CPU server=31% test process=28% misattributions=0 codes={'200': 105016}"
    " healthy_5xx=0 stale=1513 faults=2 (7% of the time) cold-tokens-during-faults=Counter()"
    " breaker opened 2x, not closed 2.0s, recovered (200) after burst end in max 1.15s"
    " revoked=50 accepted-after-revocation max fresh=4.59s stale=0.00s first-refusal"
    " max=5.12s (47 refused during the run, 50/50 after) rss=50504kB->51308kB (+1.6%, peak"
    " 51308kB) lwa_calls={'tokeninfo': 3779} server lwa_calls={'tokeninfo': {}}"
    " breaker={'state': 'closed'} verifications={'ok': 104505}"
)


@pytest.fixture
def soak(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_soak_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_runs_the_suites_soak_for_60_seconds(soak: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LWA_SOAK_SEED", raising=False)
    args = soak.soak_args([])
    assert args.seconds == 60
    argv, env = soak.soak_command(args.seconds, None)
    assert argv[1:3] == ["-m", "pytest"]
    assert Path(argv[-1]) == SCRIPT.parent.parent / "tests/reliability/test_reliability_soak.py"
    assert env["LWA_SOAK_SECONDS"] == "60"
    assert "LWA_SOAK_SEED" not in env  # a new seed each run, printed on its first line
    _, env = soak.soak_command(300, 161310)
    assert (env["LWA_SOAK_SECONDS"], env["LWA_SOAK_SEED"]) == ("300", "161310")
    with pytest.raises(SystemExit):
        soak.soak_args(["--seconds", "1"])


def test_prints_the_summary_as_figures(soak: Any) -> None:
    lines = soak.soak_figures(f"....\n{SUMMARY}\n.\n1 passed in 75.0s\n")
    assert " ".join(lines) == SUMMARY  # nothing lost
    assert lines[0] == "soak 60s seed=161310: requests=69393 (+36762 warm-up)"
    assert [line.split("=")[0].split(" ")[0] for line in lines[1:]] == [
        "rate", "concurrency", "server:", "CPU", "misattributions", "faults", "breaker",
        "revoked", "rss", "lwa_calls", "breaker", "verifications",
    ]  # fmt: skip
    assert soak.soak_figures("1 failed in 3.0s\n") == []
