"""Shared bench helpers: a real single-node cluster (the test suite's launcher) and stats."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from cluster import Cluster, start_cluster

IMAGE = "bai/python:3.11-debian12"

__all__ = ["IMAGE", "Cluster", "pct", "start_cluster", "summary"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(label: str, values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return (
        f"{label:<28} n={len(ms):<4} p50={statistics.median(ms):8.2f} ms  "
        f"p90={pct(ms, 0.9):8.2f} ms  min={min(ms):8.2f} ms"
    )
