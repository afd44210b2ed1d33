"""Run every benchmark section; write ``docs/benchmarks.md`` and its chart.

    python bench/run.py                      # every section, then docs/benchmarks.md + .png
    python bench/run.py --quick              # small counts (seconds); prints, writes nothing
    python bench/run.py --quick --out /tmp/benchmarks.md
    python bench/run.py --only servers,cold  # some sections (this writes the page too)
    python bench/run.py soak [--seconds 60]  # the suite's soak, longer, its figures printed

Each section is a function ``(quick) -> Section`` of a module of ``bench/`` (``common.Section``):
it starts the servers it needs on 127.0.0.1 and stops them. Progress goes to stderr, each
section's table to stdout as it finishes. A section that fails (its module missing, an
exception) is reported as failed, its traceback on stderr; the others still run, and the
exit status is then 1. The page is written next to its chart (``--out X.md``: ``X.png``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

from common import Section, markdown_table, print_section, progress

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"

#: Section key -> (module, function), in the page's order.
SECTIONS: dict[str, tuple[str, str]] = {
    "warm": ("bench_warm", "section"),
    "servers": ("bench_http", "section"),
    "cold": ("bench_cold", "section"),
    "flood": ("bench_cold", "flood_section"),
    "client": ("bench_client", "section"),
    "memory": ("bench_memory", "section"),
    "wsgi": ("bench_http", "wsgi_section"),
    "gateway": ("bench_gateway", "section"),
}

#: Anything shaped like an LWA access token; scrubbed from the page and error messages.
_TOKEN = re.compile(r"Atza\|[^\s\"'`<>|]*")


def scrub(text: str) -> str:
    """``text`` with anything that looks like an LWA token replaced by ``<token>``."""
    return _TOKEN.sub("<token>", text)


@dataclass
class Outcome:
    """What running one section gave."""

    key: str
    seconds: float
    section: Section | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the section ran and returned a Section."""
        return self.section is not None


def run_section(key: str, quick: bool) -> Outcome:
    """Import the section's module, call it; on failure, the traceback goes to stderr."""
    module_name, function = SECTIONS[key]
    start = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
        measure = cast("Callable[[bool], object]", getattr(module, function))
        result = measure(quick)
        if not isinstance(result, Section):
            raise TypeError(f"{module_name}.{function} returned {type(result).__name__}")
    except (Exception, SystemExit) as error:  # SystemExit: a part refusing bad figures
        print(scrub(traceback.format_exc()), file=sys.stderr, flush=True)
        message = scrub(f"{type(error).__name__}: {error}".strip())
        return Outcome(key, time.perf_counter() - start, error=message)
    return Outcome(key, time.perf_counter() - start, section=result)


# The machine --------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model from ``/proc/cpuinfo`` (``platform.processor()`` otherwise)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(package: str) -> str | None:
    """An installed distribution's version, or ``None``."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> list[str]:
    """The machine and software the figures come from, as Markdown list items."""
    packages = (
        "lwa-middleware",
        "starlette",
        "uvicorn",
        "httptools",
        "uvloop",
        "httpx",
        "httpcore",
        "aiohttp",
        "gunicorn",
    )
    found = [f"{name} {v}" for name in packages if (v := version(name)) is not None]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores ({platform.machine()})",
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}",
        "packages: " + ", ".join(found),
        f"load average when the run started: {load}",
    ]


# The page -----------------------------------------------------------------------------

_INTRO = """\
What LWA verification costs, measured by `bench/run.py` on one machine: the in-process warm
path, real servers under load, new tokens (single flight, a cold cache), the HTTP client,
memory, and WSGI under gunicorn. Every server runs on 127.0.0.1 in its own process, with
the LWA emulator playing Amazon (another process). This page and its chart are generated:
re-run the command below rather than editing them. Absolute figures depend on the machine
(and on what else runs on it: this one is shared); ratios measured in the same run move
much less."""


def render(
    outcomes: Sequence[Outcome],
    *,
    command: str,
    started: datetime,
    quick: bool,
    chart: str | None,
) -> str:
    """The Markdown page."""
    lines = ["# Benchmarks", "", _INTRO, ""]
    lines += [f"- measured: {started:%Y-%m-%d %H:%M} UTC", f"- command: `{command}`"]
    lines += [f"- {item}" for item in machine()]
    if quick:
        lines.append("- **quick run**: small counts, figures are rough")
    lines.append("")
    if chart:  # the narrow chart on a phone (a <picture>: the page's own image otherwise)
        narrow = narrow_path(Path(chart)).name
        lines += [
            "<picture>",
            f'  <source media="(max-width: 600px)" srcset="{narrow}">',
            f'  <img src="{chart}" alt="Benchmark figures, one panel per section">',
            "</picture>",
            "",
        ]
    target_rows = [
        [outcome.section.title, name, "met" if met else "**not met**", text]
        for outcome in outcomes
        if outcome.section is not None
        for name, (met, text) in outcome.section.targets.items()
    ]
    if target_rows:
        lines += ["## Targets", ""]
        lines += [markdown_table(["section", "target", "verdict", "figure"], target_rows), ""]
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if failed:
        lines += ["Not measured in this run (the section failed):", ""]
        lines += [f"- `{o.key}`: {o.error}" for o in failed]
        lines.append("")
    for outcome in outcomes:
        if outcome.section is None:
            continue
        s = outcome.section
        lines += [f"<!-- section: {outcome.key} -->", f"## {s.title}", ""]
        lines += ["**How it is measured.**", "", s.method.strip(), ""]
        lines += [markdown_table(s.headers, s.rows), ""]
        if s.meaning:
            lines += ["**What it means for a deployment.**", ""]
            lines += [f"- {sentence}" for sentence in s.meaning]
            lines.append("")
        if s.targets:
            lines += ["**Targets.**", ""]
            lines += [
                f"- {name}: {'met' if met else '**not met**'} ({text})"
                for name, (met, text) in s.targets.items()
            ]
            lines.append("")
        lines += [f"*Section time: {outcome.seconds:.0f} s.*", ""]
    return scrub("\n".join(lines).rstrip() + "\n")


def _label(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def narrow_path(path: Path) -> Path:
    """Where the narrow chart of ``path`` goes (``benchmarks.png`` → ``benchmarks-narrow.png``)."""
    return path.with_name(f"{path.stem}-narrow{path.suffix}")


def write_chart(sections: Sequence[Section], path: Path, *, narrow: bool = False) -> None:
    """A PNG with one horizontal bar panel per section that has chart figures.

    ``narrow``: the same figures for a phone (390 px wide): each label above its bar rather
    than beside it, the panels one under the other, drawn at twice the resolution so that
    the text stays about 13 px tall at that width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [s for s in sections if s.chart]
    per_bar, extra, width, font = (0.62, 1.0, 3.9, 8.5) if narrow else (0.45, 1.1, 9.5, 8)
    heights = [per_bar * len(s.chart) + extra for s in panels] or [1.5]
    figure, axes = plt.subplots(
        len(heights),
        1,
        figsize=(width, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    if not panels:
        axes[0][0].text(0.5, 0.5, "no chart figures in this run", ha="center", va="center")
        axes[0][0].set_axis_off()
    for (axis,), s in zip(axes, panels, strict=False):
        labels, values = list(s.chart), list(s.chart.values())
        if narrow:
            bars = axis.barh(range(len(values)), values, height=0.4, color="#4a7ab5")
            for row, label in enumerate(labels):  # above the bar: the full width is the bar's
                axis.annotate(
                    label,
                    (0, row - 0.27),
                    xytext=(3, 0),
                    textcoords="offset points",
                    fontsize=font,
                    va="bottom",
                    ha="left",
                )
            axis.set_yticks([])
            axis.set_ylim(len(values) - 0.5, -0.9)
            axis.set_title(textwrap.fill(s.title, 34), fontsize=font + 1.5, loc="left")
        else:
            bars = axis.barh(labels, values, color="#4a7ab5")
            axis.invert_yaxis()
            axis.set_title(s.title, fontsize=10, loc="left")
        axis.bar_label(bars, labels=[_label(v) for v in values], padding=3, fontsize=font)
        axis.set_xlabel(s.chart_unit, fontsize=font)
        axis.tick_params(labelsize=font)
        axis.margins(x=0.22 if narrow else 0.15)
        for side in ("top", "right"):
            axis.spines[side].set_visible(False)
    figure.tight_layout(pad=1.2 if narrow else 1.08)
    figure.savefig(path, dpi=200 if narrow else 100, metadata={"Software": None})
    plt.close(figure)


# The soak -------------------------------------------------------------------------------

_SOAK_DOC = """The full soak: ``tests/reliability/test_reliability_soak.py`` with a 60 s main phase
(the test suite runs it for 10 s), its figures printed.

    python bench/run.py soak                 # 60 s of load (about 75 s in all)
    python bench/run.py soak --seconds 300   # longer
    python bench/run.py soak --seed 161310   # replay a run's random choices (its first line says)

The soak runs under pytest (``LWA_SOAK_SECONDS``, ``LWA_SOAK_SEED``), so every check the suite
makes holds for the long run too: no misattribution, no 5xx while LWA is healthy, revocations
honoured within ``cache_ttl``, stale answers and the breaker only around fault bursts, the
server's memory flat. pytest's output goes to stderr; the figures (requests, rate,
concurrency, CPU, faults, breaker, revocations, memory, LWA calls) to stdout, one group a
line. The exit status is pytest's.
"""

SOAK_TEST = ROOT / "tests" / "reliability" / "test_reliability_soak.py"
SOAK_SECONDS = 60.0

#: Where the summary line is cut into lines: before each group of figures.
_GROUPS = re.compile(
    r"(?<!server) (?=(?:rate|concurrency|CPU|misattributions|faults|revoked|rss|verifications)\b"
    r"|server:|breaker opened|breaker=|lwa_calls=)"
)


def soak_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``soak``'s options."""
    parser = argparse.ArgumentParser(prog="run.py soak", description=_SOAK_DOC)
    parser.add_argument("--seconds", type=float, default=SOAK_SECONDS, help="main phase")
    parser.add_argument("--seed", type=int, default=None, help="replay a run's choices")
    args = parser.parse_args(argv)
    if args.seconds < 5:
        parser.error("--seconds: at least 5 (the checks need a fault burst in the main phase)")
    return args


def soak_command(seconds: float, seed: int | None) -> tuple[list[str], dict[str, str]]:
    """pytest's argv and environment for one soak of ``seconds``."""
    env = {**os.environ, "LWA_SOAK_SECONDS": f"{seconds:g}"}
    if seed is not None:
        env["LWA_SOAK_SEED"] = str(seed)
    argv = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(SOAK_TEST)]
    return argv, env


def soak_figures(output: str) -> list[str]:
    """The soak's summary line (``soak <n>s seed=...: ...``), one group of figures a line."""
    for line in output.splitlines():
        if line.startswith("soak ") and " seed=" in line:
            return _GROUPS.split(line)
    return []


def soak_main(argv: Sequence[str] | None = None) -> int:
    """``python bench/run.py soak``: run the soak, print its figures; pytest's status."""
    args = soak_args(argv)
    cmd, env = soak_command(args.seconds, args.seed)
    print(
        f"soak: {args.seconds:g} s of load (pytest {SOAK_TEST.relative_to(ROOT)})", file=sys.stderr
    )
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
    lines = soak_figures(result.stdout)
    for line in lines:
        print(line)
    if not lines:
        print("soak: no summary line (see pytest's output above)", file=sys.stderr)
        return result.returncode or 1
    return result.returncode


# Command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: the smoke test")
    parser.add_argument(
        "--only", help=f"comma-separated sections to run, of: {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the Markdown page to write, its chart beside it as .png "
        "(default docs/benchmarks.md; with --quick, none unless given)",
    )
    args = parser.parse_args(argv)
    keys = list(SECTIONS)
    if args.only:
        wanted = [key.strip() for key in args.only.split(",") if key.strip()]
        unknown = [key for key in wanted if key not in SECTIONS]
        if unknown or not wanted:
            parser.error(f"--only takes sections of {', '.join(SECTIONS)}; not {unknown}")
        keys = [key for key in SECTIONS if key in wanted]
    args.keys = keys
    if args.out is None and not args.quick:
        args.out = DEFAULT_OUT
    if args.out is not None and args.out.suffix != ".md":
        parser.error("--out must name a .md file (the chart is written beside it)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sections, print them, write the page; 1 if any section failed (``soak``:
    run the soak instead)."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["soak"]:
        return soak_main(words[1:])
    args = parse_args(argv)
    words = sys.argv[1:] if argv is None else list(argv)
    command = scrub(shlex.join(["python", "bench/run.py", *words]))
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    outcomes: list[Outcome] = []
    for number, key in enumerate(args.keys, 1):
        progress(f"[{number}/{len(args.keys)}] {key} ({'quick' if args.quick else 'full'})")
        outcome = run_section(key, args.quick)
        outcomes.append(outcome)
        if outcome.section is not None:
            print_section(outcome.section)
            sys.stdout.flush()
            progress(f"[{number}/{len(args.keys)}] {key}: done in {outcome.seconds:.1f} s")
        else:
            progress(f"[{number}/{len(args.keys)}] {key}: FAILED ({outcome.error})")
    if args.out is not None:
        out: Path = args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        png = out.with_suffix(".png")
        measured = [o.section for o in outcomes if o.section is not None]
        write_chart(measured, png)
        write_chart(measured, narrow_path(png), narrow=True)
        page = render(outcomes, command=command, started=started, quick=args.quick, chart=png.name)
        out.write_text(page)
        progress(f"wrote {out}, {png} and {narrow_path(png)}")
    else:
        progress("--quick without --out: nothing written")
    failed = [o.key for o in outcomes if not o.ok]
    summary = ", ".join(f"{o.key} {'ok' if o.ok else 'FAILED'}" for o in outcomes)
    progress(f"sections: {summary}; {time.perf_counter() - clock:.0f} s in all")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
