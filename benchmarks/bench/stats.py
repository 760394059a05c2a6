"""Small statistics helpers of ``doorguard bench``: spreads over repeats and percentiles."""

from __future__ import annotations

import statistics

import numpy as np


def spread(values: list[float]) -> dict[str, float] | None:
    """Median, min and max of repeated figures (None when there are none)."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt(s: dict[str, float] | None, digits: int = 1, unit: str = "") -> str:
    """'12.3 (11.9-13.0)' for a spread; 'not measured' for None."""
    if not s:
        return "not measured"
    f = f"{{:.{digits}f}}"
    u = f" {unit}" if unit else ""
    if s.get("n", 1) == 1 or s["min"] == s["max"]:
        return f"{f.format(s['median'])}{u}"
    return f"{f.format(s['median'])}{u} ({f.format(s['min'])}-{f.format(s['max'])})"


def pct(samples: list[float], ps=(50, 90, 99)) -> dict[int, float]:
    if not samples:
        return {}
    arr = np.asarray(samples, np.float64)
    return {p: float(np.percentile(arr, p)) for p in ps}
