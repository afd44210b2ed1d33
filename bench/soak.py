"""The full soak: ``tests/reliability/test_reliability_soak.py`` with a 60 s main phase (the
test suite runs it for 10 s), its figures printed.

    python bench/soak.py                 # 60 s of load (about 75 s in all)
    python bench/soak.py --seconds 300   # longer
    python bench/soak.py --seed 161310   # replay a run's random choices (its first line says)

The soak runs under pytest (``LWA_SOAK_SECONDS``, ``LWA_SOAK_SEED``), so every check the suite
makes holds for the long run too: no misattribution, no 5xx while LWA is healthy, revocations
honoured within ``cache_ttl``, stale answers and the breaker only around fault bursts, the
server's memory flat. pytest's output goes to stderr; the figures (requests, rate,
concurrency, CPU, faults, breaker, revocations, memory, LWA calls) to stdout, one group a
line. The exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = ROOT / "tests" / "reliability" / "test_reliability_soak.py"
DEFAULT_SECONDS = 60.0

#: Where the summary line is cut into lines: before each group of figures.
_GROUPS = re.compile(
    r"(?<!server) (?=(?:rate|concurrency|CPU|misattributions|faults|revoked|rss|verifications)\b"
    r"|server:|breaker opened|breaker=|lwa_calls=)"
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="main phase")
    parser.add_argument("--seed", type=int, default=None, help="replay a run's choices")
    args = parser.parse_args(argv)
    if args.seconds < 5:
        parser.error("--seconds: at least 5 (the checks need a fault burst in the main phase)")
    return args


def command(seconds: float, seed: int | None) -> tuple[list[str], dict[str, str]]:
    """pytest's argv and environment for one soak of ``seconds``."""
    env = {**os.environ, "LWA_SOAK_SECONDS": f"{seconds:g}"}
    if seed is not None:
        env["LWA_SOAK_SEED"] = str(seed)
    argv = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(TEST)]
    return argv, env


def figures(output: str) -> list[str]:
    """The soak's summary line (``soak <n>s seed=...: ...``), one group of figures a line."""
    for line in output.splitlines():
        if line.startswith("soak ") and " seed=" in line:
            return _GROUPS.split(line)
    return []


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cmd, env = command(args.seconds, args.seed)
    print(f"soak: {args.seconds:g} s of load (pytest {TEST.relative_to(ROOT)})", file=sys.stderr)
    # The load is bounded by --seconds; the warm-up, the checks and a slow machine by this.
    timeout = args.seconds * 2 + 180
    try:
        result = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"soak: not over after {timeout:g} s", file=sys.stderr)
        return 1
    sys.stderr.write(result.stdout + result.stderr)
    lines = figures(result.stdout)
    for line in lines:
        print(line)
    if not lines:
        print("soak: no summary line (see pytest's output above)", file=sys.stderr)
        return result.returncode or 1
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
