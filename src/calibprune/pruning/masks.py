"""Masks from scores: which weights to prune (``True`` = pruned).

Two rules, each the one its reference code uses:

* per output row (Wanda, SparseGPT's N:M, DSnoT's initial mask): the ``k`` lowest of
  each row or M-group, through :func:`prune_lowest`; among equal scores the lower input
  index is pruned first. Dequantized 4-bit weights tie often, so this tie rule is what
  makes the same inputs give the same mask on every run.
* over a whole matrix or block (magnitude, SparseGPT's unstructured blocks):
  :func:`threshold_mask`, t = sorted(scores)[int(numel * r)] and every score <= t
  pruned, so int(numel * r) + 1 weights at least and every tie at t.
"""

from __future__ import annotations

import torch

from ..config import SparsityTarget, pruned_count
from ..options import OptionError
from ..utils.selection import lowest_mask as prune_lowest

SCOPES = ("row", "matrix")


def threshold_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """The reference threshold rule over all of ``scores``: prune every entry <= the
    int(numel * ratio)-th smallest (0-based), i.e. ``W_metric <= sort(flat)[int(n * r)]``
    in Wanda's ``prune_magnitude`` and SparseGPT's ``fasterprune``."""
    flat = scores.reshape(-1)
    threshold = flat.kthvalue(min(int(flat.numel() * ratio), flat.numel() - 1) + 1).values
    return scores <= threshold


def unstructured_mask(scores: torch.Tensor, ratio: float, scope: str = "row") -> torch.Tensor:
    """Prune ``floor(width * ratio)`` weights per output row (``scope="row"``, Wanda) or
    by the reference threshold over the whole matrix (``"matrix"``, magnitude)."""
    if scope == "row":
        return prune_lowest(scores, pruned_count(scores.shape[-1], ratio))
    if scope == "matrix":
        return threshold_mask(scores, ratio)
    raise ValueError(f"scope {scope!r} is not one of {SCOPES}")


def check_nm_width(width: int, m: int, name: str = "layer") -> None:
    if width % m != 0:
        raise OptionError(
            "pattern",
            f"{name} has {width} inputs, not divisible by M={m}: N:M groups must tile the input "
            f"dimension; pick an M that divides {width} or exclude the layer with {{ignore}}",
        )


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """In each output row, prune the ``n`` lowest of every ``m`` consecutive inputs."""
    rows, width = scores.shape
    check_nm_width(width, m)
    return prune_lowest(scores.reshape(rows, width // m, m), n).reshape(rows, width)


def target_mask(scores: torch.Tensor, target: SparsityTarget, scope: str = "row") -> torch.Tensor:
    if target.is_nm:
        return nm_mask(scores, target.n, target.m)
    return unstructured_mask(scores, target.ratio, scope)


def nm_conformance(weight: torch.Tensor, n: int, m: int) -> float:
    """Fraction of ``m``-groups (along inputs, per row) holding at least ``n`` zeros."""
    rows, width = weight.shape
    if width % m:
        return 0.0
    zeros = (weight.reshape(rows, width // m, m) == 0).sum(-1)
    return float((zeros >= n).float().mean())
