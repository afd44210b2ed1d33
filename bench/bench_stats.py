"""Summaries of interleaved measurements: median and p10/p90, paired overheads, a text table."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (linear interpolation between ranks)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """Median and p10/p90 of one variant's per-round figures."""

    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """The summary of ``values`` (one figure per round)."""
        return cls(statistics.median(values), percentile(values, 0.1), percentile(values, 0.9))


def paired_differences(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """``values[i] - baseline[i]`` per round: the overhead, with round-to-round drift removed."""
    return [value - base for value, base in zip(values, baseline, strict=True)]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])
