"""The benchmark runner still runs: ``bench/run.py --quick --out <tmp>`` writes the page.

No timing is asserted: the figures depend on the machine. The runner starts the emulator,
uvicorn and gunicorn servers on 127.0.0.1 in child processes and stops them itself; wrk is
the load generator of two sections (installed with apt-get when missing, else skipped).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
RUNNER = BENCH / "run.py"

#: Every section of the page, in order.
SECTIONS = ["warm", "servers", "cold", "flood", "client", "memory", "wsgi", "gateway"]

#: The sections that need wrk (``bench_http.py``); without it they say why they were skipped.
NEED_WRK = {"servers", "wsgi"}


@dataclass(frozen=True)
class Run:
    process: subprocess.CompletedProcess[str]
    markdown: str
    png: Path


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    pytest.importorskip("uvicorn")
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("bench") / "benchmarks.md"
    # Never apt-get from a test (CI installs wrk in .ci/run; without it two sections skip).
    env = {**os.environ, "BENCH_NO_APT": "1"}
    process = subprocess.run(
        [sys.executable, str(RUNNER), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        cwd=BENCH.parent,
        env=env,
    )
    markdown = out.read_text() if out.is_file() else ""
    return Run(process, markdown, out.with_suffix(".png"))


def chunks(markdown: str) -> dict[str, str]:
    """Each section's part of the page, by key (the runner marks each with a comment)."""
    parts = re.split(r"^<!-- section: (\w+) -->$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_exits_zero(quick_run: Run) -> None:
    assert quick_run.process.returncode == 0, quick_run.process.stderr[-5000:]


@pytest.mark.parametrize("key", SECTIONS)
def test_section_has_a_table(quick_run: Run, key: str) -> None:
    part = chunks(quick_run.markdown).get(key)
    assert part is not None, f"no {key!r} section in the page; stderr:\n{quick_run.process.stderr}"
    assert part.lstrip().startswith("## ")
    assert re.search(r"^\|(---\|)+$", part, flags=re.MULTILINE), part
    if key in NEED_WRK and shutil.which("wrk") is None:
        assert f"{key}: skipped: wrk is not installed" in quick_run.process.stderr
    else:
        assert f"{key} ok" in quick_run.process.stderr


def test_page_says_where_and_how(quick_run: Run) -> None:
    page = quick_run.markdown
    assert page.startswith("# Benchmarks")
    assert "- command: `python bench/run.py --quick --out " in page
    assert "- measured: " in page
    assert "cores" in page
    assert "Python " in page
    # The chart: the wide one, and the narrow one on a phone (390 px: the width).
    assert '<img src="benchmarks.png" alt="Benchmark figures' in page
    assert '<source media="(max-width: 600px)" srcset="benchmarks-narrow.png">' in page


def test_writes_a_png(quick_run: Run) -> None:
    assert quick_run.png.is_file(), quick_run.process.stderr
    assert quick_run.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_narrow_chart_is_readable_at_390_px(quick_run: Run) -> None:
    """One panel a row, drawn at twice the resolution of 390 px (a phone's 2x screen) and
    no wider than that: shown at 390 px, its 8.5-point text stays about 12 px tall."""
    narrow = quick_run.png.with_name("benchmarks-narrow.png")
    data = narrow.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert 700 <= width <= 800, width  # 3.9 in at 200 dpi
    assert height > width  # the panels one under the other


def test_prints_each_table(quick_run: Run) -> None:
    titles = re.findall(r"^## (.+)$", quick_run.markdown, flags=re.MULTILINE)
    for title in titles:
        if title != "Targets":
            assert f"== {title} ==" in quick_run.process.stdout


def test_no_token_anywhere(quick_run: Run) -> None:
    for text in (quick_run.process.stdout, quick_run.process.stderr, quick_run.markdown):
        assert "Atza|" not in text


def load_runner(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_run_under_test", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_quick_writes_nothing_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = load_runner(monkeypatch)
    assert runner.parse_args(["--quick"]).out is None
    assert runner.parse_args([]).out == runner.DEFAULT_OUT
    assert runner.parse_args(["--quick", "--out", "x.md"]).out == Path("x.md")
    assert runner.parse_args(["--only", "wsgi,warm"]).keys == ["warm", "wsgi"]
    with pytest.raises(SystemExit):
        runner.parse_args(["--only", "nosuchsection"])


def test_scrubs_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = load_runner(monkeypatch)
    assert runner.scrub("Bearer Atza|IwEB-x_y.z done") == "Bearer <token> done"
