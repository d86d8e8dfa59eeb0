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

from dataclasses import dataclass

import torch

PERMUTATIONS = ("none", "heuristic", "lsa")
COLUMN_ORDERS = ("sum", "retained_degree_unstructured", "retained_degree_per_outneuron")


@dataclass(frozen=True)
class RIAOptions:
    """RIA's knobs, with the reference's defaults (``main.py``).

    ``a``: activation exponent (``--a``). ``scope``: how unstructured scores are
    compared, ``matrix`` (default) or ``row`` (``--per_outneuron``). ``permutation`` (N:M only): ``none``;
    ``heuristic`` (``--reallocation``: columns ranked by ``column_order``, dealt to the
    M-groups in a snake order); ``lsa`` (``--reallocation --lsa``: then M rounds of
    linear-sum assignment). ``column_order``: ``--importance_score``. ``lsa_blocks``:
    1, or the reference's ``--fast`` (the assignment is solved in that many independent
    slices of the permuted columns; the reference picks 4/8/16 by layer name).
    """

    a: float = 0.5
    scope: str = "matrix"
    permutation: str = "none"
    column_order: str = "sum"
    lsa_blocks: int = 1

    def __post_init__(self):
        if self.scope not in ("row", "matrix"):
            raise ValueError(f"RIA scope {self.scope!r} is not 'row' or 'matrix'")
        if self.permutation not in PERMUTATIONS:
            raise ValueError(f"RIA permutation {self.permutation!r} is not one of {PERMUTATIONS}")
        if self.column_order not in COLUMN_ORDERS:
            raise ValueError(f"RIA column order {self.column_order!r} is not one of {COLUMN_ORDERS}")
        if self.lsa_blocks < 1:
            raise ValueError(f"RIA lsa_blocks must be >= 1, not {self.lsa_blocks}")


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
