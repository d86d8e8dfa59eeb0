"""Deterministic "k lowest" selection, shared by pruning masks and text filters."""

from __future__ import annotations

import torch


def lowest_mask(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Mask of the ``count`` lowest entries along the last dimension (ties: lower index first).

    Linear time: the ``count``-th smallest value v comes from ``kthvalue``; everything
    below v is selected, and the entries equal to v fill the remaining places in index
    order. Equivalent to taking the first ``count`` positions of a stable sort.
    """
    width = scores.shape[-1]
    if count <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if count >= width:
        return torch.ones_like(scores, dtype=torch.bool)
    kth = scores.kthvalue(count, dim=-1, keepdim=True).values
    below = scores < kth
    ties = scores == kth
    room = count - below.sum(-1, keepdim=True)
    return below | (ties & (ties.cumsum(-1) <= room))
