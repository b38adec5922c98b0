"""Benchmark results: figures with their samples, the machine they ran on, the table and results.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured figure: every sample (one per repeated run or per event), or why there is none."""

    name: str
    unit: str
    what: str
    target: str = ""
    samples: list[float] = field(default_factory=list)
    na: str | None = None  # a sentence: why this figure was not measured
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def p99(self) -> float | None:
        return percentile(self.samples, 0.99) if self.samples else None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "what": self.what,
            "target": self.target,
            "median": _rounded(self.median),
            "p99": _rounded(self.p99),
            "runs": len(self.samples),
            "samples": [round(s, 4) for s in self.samples],
            "na": self.na,
            "extra": self.extra,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile (p99 of 10 samples is the largest)."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), -(-int(fraction * 1000) * len(ordered) // 1000)))
    return ordered[rank - 1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(figures: list[Figure]) -> str:
    """A Markdown table: figure, median, p99, runs, target (n/a rows say why)."""
    lines = ["| figure | median | p99 | runs | unit | target |", "|---|---:|---:|---:|---|---|"]
    for figure in figures:
        if figure.na is not None:
            lines.append(f"| `{figure.name}` | n/a | | | | {figure.target} — {figure.na} |")
            continue
        lines.append(
            f"| `{figure.name}` | {_number(figure.median)} | {_number(figure.p99)} | {len(figure.samples)} "
            f"| {figure.unit} | {figure.target} |"
        )
    return "\n".join(lines)


def write_results(path: Path, figures: list[Figure], *, mode: str, seconds: float) -> dict[str, Any]:
    document = {
        "machine": machine(),
        "mode": mode,
        "seconds": round(seconds, 1),
        "figures": [figure.as_json() for figure in figures],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return document
