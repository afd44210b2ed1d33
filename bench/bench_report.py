"""What every part of ``bench/run.py`` hands back: a :class:`Section` of the report.

A part measures, prints its progress and its table as it goes, and returns a ``Section``;
``run.py`` writes them all into ``docs/benchmarks.md`` (tables, the method, what the figures
mean for a deployment) and draws the chart from each section's ``chart`` figures.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Section:
    """One part of the report."""

    #: Short stable id ("warm", "servers", "cold", "memory", "wsgi", "client").
    key: str
    #: The heading in docs/benchmarks.md.
    title: str
    #: How it is measured (Markdown, a paragraph or a list).
    method: str
    #: The table: column headings, then rows of already formatted cells.
    headers: list[str]
    rows: list[list[str]]
    #: What the figures mean for a deployment, one Markdown sentence each.
    meaning: list[str] = field(default_factory=list)
    #: Figures for the chart: label -> value, all in ``chart_unit`` (empty: no chart panel).
    chart: dict[str, float] = field(default_factory=dict)
    chart_unit: str = ""
    #: Targets met or not: name -> (met, "figure vs target" text).
    targets: dict[str, tuple[bool, str]] = field(default_factory=dict)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-style Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table for a terminal: columns padded, first left-aligned, others right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [str(first).ljust(widths[0])]
            + [str(c).rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        )

    return "\n".join([line(headers), *(line(row) for row in rows)])


def progress(message: str) -> None:
    """A progress line on stderr (the report goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def print_section(section: Section) -> None:
    """The section's table (and targets) on stdout."""
    print(f"\n== {section.title} ==")
    print(text_table(section.headers, section.rows))
    for name, (met, text) in section.targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'} ({text})")
