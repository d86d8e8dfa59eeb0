"""Which platforms a study's results were computed on, and a warning when they mix.

A cell's metrics are bit-identical on rerun only on the same CPU kernels, thread count
and library versions (see :func:`calibprune.utils.provenance.platform_record`); cells
from two platforms differ by more than their seeds do in the collapsed regime. Cells
written before platforms were recorded count as one "unknown platform" (with their
recorded thread count), so a study that mixes them with new cells is warned about too.
"""

from __future__ import annotations

from collections import Counter

from ..results import StageRecord
from ..utils.provenance import platform_signature


def cell_platform(cell: StageRecord) -> str:
    if cell.platform:
        return platform_signature(cell.platform)
    return f"unknown platform, {cell.threads or '?'} threads"


def platforms(cells: list[StageRecord]) -> Counter:
    """Platform signature -> number of successful cells computed on it."""
    return Counter(cell_platform(c) for c in cells if c.ok)


def mixing_warning(cells: list[StageRecord]) -> str | None:
    """One sentence when the study's cells come from more than one platform, else None."""
    counts = platforms(cells)
    if len(counts) < 2:
        return None
    listed = "; ".join(f"{n} on {name}" for name, n in counts.most_common())
    return (
        f"the cells were computed on {len(counts)} platforms ({listed}): metrics can differ between them by more "
        "than between seeds; rerun them on one machine at one thread count (resources.threads) to compare them"
    )
