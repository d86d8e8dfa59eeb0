"""RIA: relative importance and activation.

Zhang et al., "Plug-and-Play: An Efficient Post-training Pruning Method for Large
Language Models" (ICLR 2024); reference code biomedical-cybernetics/
Relative-importance-and-activation-pruning ``lib/prune.py::prune_ria``. For a weight W
``[rows, cols]`` (row i = output, column j = input) fed S calibration samples:

    RI_ij = |W_ij| / sum_k |W_kj|  +  |W_ij| / sum_k |W_ik|
            (share of column j's mass)   (share of row i's mass)
    S_ij  = RI_ij * (sqrt(s_j))^a,   s_j = sum_t x_tj^2 / S,   a = 0.5

s_j is the reference's ``scaler_row`` (per-sample units, as Wanda's): sqrt(s_j) is
||X_j||_2 / sqrt(S). Any other unit multiplies every score of the matrix by one
constant, which changes no rank; the per-sample unit is kept so that the arithmetic is
the reference's.

Masks (``RIA`` in :mod:`methods`):

* unstructured: one threshold over the whole matrix (the reference's default,
  ``--per_outneuron`` off): every S_ij <= sorted(S)[int(numel * r)] is pruned
  (:func:`masks.threshold_mask`); ``scope="row"`` is its ``--per_outneuron`` (Wanda's
  per-row rule);
* N:M: the N lowest of every M consecutive inputs of each row, optionally after a
  channel permutation (:mod:`permutation`).
"""

from __future__ import annotations

import torch

from ..config import RIAOptions  # declared with the options (torch-free), re-exported here

__all__ = ["RIAOptions", "relative_importance", "ria_scores"]


def _share(absw: torch.Tensor, dim: int) -> torch.Tensor:
    """|W_ij| / sum along ``dim``; an all-zero line gives 0, not the reference's 0/0 = NaN
    (its weights are all zero: they are pruned or not, at no cost either way)."""
    total = absw.sum(dim=dim, keepdim=True)
    return torch.where(total > 0, absw / total.clamp_min(torch.finfo(absw.dtype).tiny), torch.zeros_like(absw))


def relative_importance(weight: torch.Tensor) -> torch.Tensor:
    """RI_ij = |W_ij| / sum_k |W_kj| + |W_ij| / sum_k |W_ik| (column share + row share)."""
    absw = weight.abs()
    return _share(absw, 0) + _share(absw, 1)


def ria_scores(weight: torch.Tensor, sq_per_sample: torch.Tensor, a: float = 0.5) -> torch.Tensor:
    """S_ij = RI_ij * (sqrt(s_j))^a, with s_j = sum_t x_tj^2 / S (``InputStatistics.sq_per_sample``).
    The sqrt is taken before the power, as the reference writes it."""
    return relative_importance(weight) * sq_per_sample.sqrt().pow(a).unsqueeze(0)
