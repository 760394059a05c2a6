"""Markdown tables for the benchmarks' reports (standard library only: ``make bench-arm``
runs on the host without numpy)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence


def row(cells: Iterable[Any]) -> str:
    """One table line: ``| a | b |``; an empty cell is ``| |``."""
    return "|" + "".join(f" {c} |" if str(c) else " |" for c in cells)


def table(header: Sequence[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """The lines of a table: the header, the rule under it, one line per row."""
    return [row(header), "|" + "---|" * len(header), *(row(r) for r in rows)]
