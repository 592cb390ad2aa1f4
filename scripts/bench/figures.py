"""One row of the results table: hookstream's runs, the anchor's runs, their ratio against the target."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return float(sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))])


@dataclass
class Row:
    """A figure measured on hookstream and on its anchor in the same run."""

    workload: str
    metric: str
    unit: str
    anchor: str
    target: str
    # "higher": hookstream/anchor should be >= the target; "lower": <= the target; "absolute": hookstream's
    # own figure should be <= the target; "none": reported for context only.
    better: str
    target_ratio: float
    ours: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str = ""
    anchor_skipped: str = ""
    # A side that could not take the offered load: its latencies cover only what it accepted.
    saturated: bool = False
    anchor_saturated: bool = False

    @property
    def ratio(self) -> float | None:
        if not self.ours or not self.theirs or median(self.theirs) == 0:
            return None
        return median(self.ours) / median(self.theirs)

    @property
    def verdict(self) -> str:
        if self.better == "absolute":
            if not self.ours:
                return "-"
            return "meets" if median(self.ours) <= self.target_ratio else "MISSES"
        ratio = self.ratio
        if ratio is None or self.better == "none":
            return "-"
        if self.saturated:
            return "saturated, both" if self.anchor_saturated else "MISSES (saturated)"
        met = ratio >= self.target_ratio if self.better == "higher" else ratio <= self.target_ratio
        return "meets" if met else "MISSES"


def figure(values: list[float], unit: str, skipped: str = "") -> str:
    if skipped:
        return skipped
    if not values:
        return "-"
    mid = median(values)
    return f"{_fmt(mid)} {unit} ({_fmt(min(values))}–{_fmt(max(values))}, n={len(values)})"


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Row]) -> str:
    """The results as a Markdown table: median (min–max, runs) for each side, the ratio and the verdict."""
    lines = [
        "| workload | metric | hookstream | anchor | anchor figure | ratio | target | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row.ratio
        lines.append(
            f"| {row.workload} | {row.metric} | {figure(row.ours, row.unit, row.skipped)} | {row.anchor} "
            f"| {figure(row.theirs, row.unit, row.anchor_skipped)} | {'-' if ratio is None else f'{ratio:.2f}'} "
            f"| {row.target} | {row.verdict} |"
        )
    notes = [f"- {row.workload} / {row.metric}: {note}" for row in rows for note in row.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)
