"""Keep/drop decisions on a pool of texts from one score per text.

* :func:`drop_above_percentile` — the paper's perplexity filter (``sample_ppl.py``):
  t = the (1 - fraction) percentile of the scores (linear interpolation, numpy's
  default) and a text is kept iff its score < t; ``fraction = 0`` keeps everything.
* :func:`keep_top_fraction` (detection keeps the highest Min-K%++) drops an exact
  count, floor(n * (1 - keep)), lowest scores first; among equal scores the text with
  the lower index goes first.

A NaN score (a text too short to score) is always dropped.
"""

from __future__ import annotations

import math

import torch

from ..config import pruned_count
from ..options import OptionError, check_values
from ..utils.selection import lowest_mask


def check_filter_top(fraction: float) -> None:
    """By :class:`~.strategies.synthetic.GenerationOptions`' declaration of ``filter_top``."""
    from .strategies.synthetic import GenerationOptions

    try:
        check_values(GenerationOptions, filter_top=fraction)
    except OptionError as error:
        raise error.within("generation") from None


def check_keep_top(fraction: float) -> None:
    """By :class:`~.strategies.detect.DetectOptions`' declaration of ``keep_top``."""
    from .strategies.detect import DetectOptions

    check_values(DetectOptions, keep_top=fraction)


PERCENTILE_RULE = (
    "kept iff perplexity < the (1 - filter_top) percentile of the pool's perplexities (NaN excluded, "
    "linear interpolation, numpy's default; sample_ppl.py); NaN always dropped; filter_top 0 keeps all"
)


def percentile_threshold(scores: list[float], fraction: float) -> float | None:
    """t of :func:`drop_above_percentile`: the (1 - fraction) percentile of the non-NaN
    scores; None where no threshold applies (``fraction = 0``, or no finite score)."""
    check_filter_top(fraction)
    values = torch.tensor(scores, dtype=torch.float64)
    finite = values[~values.isnan()]
    if fraction == 0 or finite.numel() == 0:
        return None
    return float(torch.quantile(finite, 1.0 - fraction, interpolation="linear"))


def drop_above_percentile(scores: list[float], fraction: float) -> list[bool]:
    """Keep flags: score < the (1 - fraction) percentile of the scores (NaN: dropped)."""
    threshold = percentile_threshold(scores, fraction)
    values = torch.tensor(scores, dtype=torch.float64)
    if threshold is None:
        return (~values.isnan()).tolist()
    return (values < threshold).tolist()  # NaN < t is False


def keep_top_fraction(scores: list[float], keep: float) -> list[bool]:
    """Keep flags: the floor(n * (1 - keep)) lowest scores (NaN = lowest) are dropped."""
    check_keep_top(keep)
    values = torch.tensor([-math.inf if math.isnan(s) else s for s in scores], dtype=torch.float64)
    if values.numel() == 0:
        return []
    dropped = lowest_mask(values, pruned_count(values.numel(), 1.0 - keep))
    return (~dropped).tolist()
