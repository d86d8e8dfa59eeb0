"""Keep/drop decisions on a pool of texts from one score per text.

Both filters drop an exact count, floor(n * fraction), chosen by a deterministic rank:
highest score first for :func:`drop_top_fraction` (perplexity filter), lowest first for
:func:`keep_top_fraction` (detection keeps the highest Min-K%++); among equal scores
the text with the lower index goes first; a NaN score (a text too short to score) is
always dropped first.
"""

from __future__ import annotations

import math

import torch

from ..config import pruned_count
from ..errors import CalibpruneError
from ..utils.selection import lowest_mask


def check_filter_top(fraction: float) -> None:
    if not 0 <= fraction < 1:
        raise CalibpruneError(
            f"--filter-top {fraction} must be in [0, 1): the fraction of most perplexing texts dropped (paper: 0.2)"
        )


def check_keep_top(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise CalibpruneError(f"--keep-top {fraction} must be in (0, 1]: the fraction of highest-scoring texts kept")


def drop_top_fraction(scores: list[float], fraction: float) -> list[bool]:
    """Keep flags: the floor(n * fraction) highest scores (NaN = highest) are dropped."""
    check_filter_top(fraction)
    values = torch.tensor([math.inf if math.isnan(s) else s for s in scores], dtype=torch.float64)
    if values.numel() == 0:
        return []
    dropped = lowest_mask(-values, pruned_count(values.numel(), fraction))
    return (~dropped).tolist()


def keep_top_fraction(scores: list[float], keep: float) -> list[bool]:
    """Keep flags: the floor(n * (1 - keep)) lowest scores (NaN = lowest) are dropped."""
    check_keep_top(keep)
    values = torch.tensor([-math.inf if math.isnan(s) else s for s in scores], dtype=torch.float64)
    if values.numel() == 0:
        return []
    dropped = lowest_mask(values, pruned_count(values.numel(), 1.0 - keep))
    return (~dropped).tolist()
