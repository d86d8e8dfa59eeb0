"""The scores' parameter rules, torch-free: declared options (Min-K%++'s ``k`` of detection
and of ``analyze membership``) check by these, and so do the scoring functions themselves."""

from __future__ import annotations

from ..options import OptionError, in_interval

MINK_K = 0.2  # Min-K%++'s default (zjysteven/mink-plus-plus: the lowest 20% of tokens)

# k: the fraction of lowest-scoring tokens averaged
mink_fraction = in_interval(0, 1, "(]", "e.g. 0.2 for the lowest 20% of tokens")


def check_k(k: float) -> None:
    """Refuse a Min-K% fraction outside (0, 1] (the rule the ``k`` options declare)."""
    problem = mink_fraction(k)
    if problem:
        raise OptionError("k", problem.replace("{}", "{k}"))
