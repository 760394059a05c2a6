"""The PNG plots of ``doorguard bench`` (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    """matplotlib.pyplot on the headless Agg backend (the bench runs without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_stages(stage_rows: list[dict[str, Any]], path: Path, title: str) -> None:
    plt = _pyplot()
    rows = [r for r in stage_rows if r["p50"] is not None]
    labels = [r["label"] for r in rows][::-1]
    p50 = np.maximum(np.array([r["p50"] for r in rows][::-1]), 6e-4)
    p90 = np.array([r["p90"] for r in rows][::-1])
    p99 = np.array([r["p99"] for r in rows][::-1])
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(rows) + 1.4), dpi=90)
    y = np.arange(len(rows))
    ax.barh(y, p50, color="#4878a8", label="p50")
    ax.errorbar(p50, y, xerr=[np.zeros_like(p50), p90 - p50], fmt="none", ecolor="black", capsize=3,
                label="to p90")
    ax.plot(p99, y, "r|", markersize=10, label="p99")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(left=5e-4)
    ax.set_xlabel("ms per call (log scale)")
    ax.set_title(title, fontsize=9, pad=22)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.06), ncol=3, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    _save(plt, fig, path)


def plot_faces(buckets: list[dict[str, Any]], per_frame: list[dict[str, Any]], path: Path, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=90)
    labels = [b["faces"] for b in buckets]

    def slot(k: int) -> int | None:
        for i, lab in enumerate(labels):
            lo, _, hi = lab.rstrip("+").partition("-")
            top = 10**6 if lab.endswith("+") else int(hi or lo)
            if int(lo) <= k <= top:
                return i
        return None

    rng = np.random.default_rng(0)
    pts = [(slot(r["faces"]), 1000.0 / r["busy"]) for r in per_frame if r.get("busy")]
    pts = [(i + rng.uniform(-0.15, 0.15), v) for i, v in pts if i is not None]
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.25, color="#888888",
                   label="single frames")
    xs = list(range(len(buckets)))
    if buckets:
        ax.plot(xs, [b["fps"] for b in buckets], "o-", color="#c0392b", label="median per bucket")
        det = [1000.0 / b["detect_ms"] if b["detect_ms"] else np.nan for b in buckets]
        ax.plot(xs, det, "s--", color="#4878a8", label="detector stages alone (preprocess+invoke+decode)")
        ax.set_xticks(xs, [f"{lab}\n({b['frames']} fr.)" for lab, b in zip(labels, buckets)])
    ax.set_xlabel("faces detected in the frame")
    ax.set_ylabel("FPS (1000 / processing ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_ylim(bottom=0)
    _save(plt, fig, path)


def plot_peers(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    plt = _pyplot()
    rows = [r for r in rows if r.get("fps")]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.4), dpi=90)
    y = np.arange(len(rows))
    med = [r["fps"]["median"] for r in rows]
    lo = [r["fps"]["median"] - r["fps"]["min"] for r in rows]
    hi = [r["fps"]["max"] - r["fps"]["median"] for r in rows]
    ax.barh(y, med, xerr=[lo, hi], color="#6a9f58", capsize=3)
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("FPS (median of repeats, whiskers min-max)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    _save(plt, fig, path)
