"""N:M channel permutation: choose which inputs share an M-group before the N:M rule.

RIA's "channel permutation" (Zhang et al., ICLR 2024, sec. 4; reference
biomedical-cybernetics/Relative-importance-and-activation-pruning ``lib/prune.py``,
``prune_ria`` with ``--reallocation`` and ``--lsa``). An N:M mask keeps the M - N best
of every M consecutive inputs of each row; reordering the inputs (the columns of W,
the same order for every row) changes which weights compete, and so how much score
the mask keeps. With ``index`` a permutation of the columns (permuted column p is
original column ``index[p]``) and P = S[:, index]:

1. heuristic allocation: rank the columns by ``column_order`` (ascending), split the
   ranking into M consecutive slices of K = cols / M, and deal slice q to position q
   of the K groups, slices of odd q reversed (a snake: group k gets ranks k, 2K-1-k,
   2K+k, ...), so every group gets a spread of strong and weak channels;
2. linear-sum assignment (optional): for each position c = 0..M-1 in turn, re-deal the
   channels at position c of the K groups: the gain of moving the channel at (g, c)
   into group r, the others of r staying, is

       G[r, g] = sum_i (sum of the M - N largest of {P_i,(r, c') : c' != c} + {P_i,(g, c)})

   and ``scipy.optimize.linear_sum_assignment`` picks the assignment with the largest
   sum. Keeping every channel where it is (g = r) is one of the assignments, so no
   round lowers the kept score: the final kept score is >= the heuristic allocation's.
   It is *not* guaranteed to be >= the plain (unpermuted) N:M mask's: the heuristic
   allocation starts from a ranking, not from the original order (see the tests).
3. the N:M rule on P, and the mask folded back to the original column order:
   ``mask[:, index] = mask_p``.

Folding back means no permutation is stored: the pruned weight in the original order,
W' = W * ~mask, computes exactly the function of the permuted pruned layer
(W' x = W'[:, index] x[index]). The price: the mask is N:M in the *permuted* column
order, not in the stored one, so a checkpoint with it is not hardware 2:4 (sparse
tensor cores, ``to_sparse_semi_structured``) unless the layer's input is permuted by
``index`` too (or the previous layer's output rows, when the layer is fed by one). The
reference does the same when it saves a model (``weight.data[W_mask] = 0`` in the
original order, ``save_pretrained``); only its ``--semi_sparse_acc`` path stores
W[:, index] compressed, and then does not permute the input (its README: "still under
testing").

The gain matrix uses a closed form instead of the reference's sort of every candidate
group: with the others of group r sorted per row, o_1 <= ... <= o_{M-1}, the M - N
largest of {o, v} sum to A_r + max(v, o_N), A_r = o_{N+1} + ... + o_{M-1} (v displaces
o_N if larger, else falls among the N pruned). Same values up to float rounding; M
times less work and no [rows, K, K, M] tensor.
"""

from __future__ import annotations

import torch

from ..config import pruned_count
from ..errors import CalibpruneError
from .masks import check_nm_width, nm_mask, prune_lowest, threshold_mask

GAIN_CHUNK_ELEMENTS = 1 << 24  # bounds the [chunk, K, rows] tensor of the gain matrix


def kept_score(scores: torch.Tensor, mask: torch.Tensor) -> float:
    """Total score of the weights a mask keeps (``mask``: ``True`` = pruned)."""
    return float(scores.masked_fill(mask, 0).sum(dtype=torch.float64))


def lexsort(keys: list[torch.Tensor]) -> torch.Tensor:
    """The reference's ``lexsort``: stable argsort by ``keys[-1]``, ties by the earlier keys."""
    idx = keys[0].argsort(stable=True)
    for key in keys[1:]:
        idx = idx.gather(0, key.gather(0, idx).argsort(stable=True))
    return idx


def column_order(scores: torch.Tensor, rule: str = "sum", ratio: float = 0.5) -> torch.Tensor:
    """Columns from least to most important (the reference's ``--importance_score``):

    * ``sum``: by sum_i S_ij;
    * ``retained_degree_unstructured`` / ``_per_outneuron``: prune at ``ratio`` without
      N:M (one matrix threshold / per row), then by the kept score of the column, ties
      by its number of pruned weights (fewest first).
    Ties by lower column index (the reference's ``torch.sort`` leaves them unspecified).
    """
    if rule == "sum":
        return scores.sum(0).argsort(stable=True)
    if rule == "retained_degree_unstructured":
        mask = threshold_mask(scores, ratio)
    elif rule == "retained_degree_per_outneuron":
        mask = prune_lowest(scores, pruned_count(scores.shape[1], ratio))
    else:
        raise ValueError(f"unknown column order {rule!r}")
    return lexsort([mask.sum(0), scores.masked_fill(mask, 0).sum(0)])


def snake_allocation(order: torch.Tensor, m: int) -> torch.Tensor:
    """Deal ranked columns to the K = cols / M groups: ``index[q::m]`` is the q-th slice of
    ``order``, reversed for odd q (the reference's heuristic channel reallocation)."""
    k = order.numel() // m
    index = torch.empty_like(order)
    for q in range(m):
        part = order[q * k : (q + 1) * k]
        index[q::m] = part.flip(0) if q % 2 else part
    return index


def assignment_gains(permuted: torch.Tensor, n: int, m: int, column: int) -> torch.Tensor:
    """G[r, g]: kept score of group r (of ``permuted``'s K groups) if its channel at
    position ``column`` is replaced by group g's, summed over rows (see module doc)."""
    rows, width = permuted.shape
    k = width // m
    groups = permuted.reshape(rows, k, m)
    others = torch.cat([groups[..., :column], groups[..., column + 1 :]], dim=-1).sort(dim=-1).values
    base = others[..., n:].sum(dim=(-1, 0))  # A_r summed over rows, [K]
    pivot = others[..., n - 1].t()  # o_N, [K, rows]
    moved = groups[..., column].t()  # the candidates v_g, [K, rows]
    gains = torch.empty(k, k, dtype=torch.float64, device=permuted.device)
    chunk = max(1, GAIN_CHUNK_ELEMENTS // max(k * rows, 1))
    for r0 in range(0, k, chunk):
        r1 = min(r0 + chunk, k)
        best = torch.maximum(moved.unsqueeze(0), pivot[r0:r1].unsqueeze(1))  # [chunk, K(g), rows]
        gains[r0:r1] = best.sum(-1, dtype=torch.float64) + base[r0:r1].unsqueeze(1).double()
    return gains


def lsa_round(scores: torch.Tensor, index: torch.Tensor, n: int, m: int, column: int, blocks: int = 1) -> torch.Tensor:
    """One linear-sum-assignment round at position ``column``: the new ``index``. With
    ``blocks`` > 1 each of that many consecutive slices of the permuted columns is
    re-dealt on its own (the reference's ``--fast``)."""
    from scipy.optimize import linear_sum_assignment

    index = index.clone()
    size = index.numel() // blocks
    for b in range(blocks):
        part = index[b * size : (b + 1) * size]
        gains = assignment_gains(scores[:, part], n, m, column)
        _, source = linear_sum_assignment(gains.cpu().numpy(), maximize=True)
        source = torch.as_tensor(source, device=index.device)
        targets = torch.arange(size // m, device=index.device) * m + column
        moved = part.clone()
        moved[targets] = part[source * m + column]
        index[b * size : (b + 1) * size] = moved
    return index


def permuted_nm_mask(
    scores: torch.Tensor,
    n: int,
    m: int,
    permutation: str = "lsa",
    order: str = "sum",
    lsa_blocks: int = 1,
    name: str = "layer",
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``(mask, index, info)``: the N:M mask of ``scores[:, index]`` folded back to the
    original column order (``mask[:, index]`` is N:M), the permutation, and the kept
    scores: ``nm_kept_score_plain`` (no permutation), ``nm_kept_score_rounds`` (after the
    allocation, then after each assignment round), ``nm_kept_score`` (the result)."""
    rows, width = scores.shape
    check_nm_width(width, m, name)
    if permutation == "lsa" and (width // m) % lsa_blocks:
        raise CalibpruneError(
            f"{name}: {width // m} groups of {m} cannot be split into {lsa_blocks} equal assignment blocks"
        )
    scores = scores.float()
    rounds = []
    index = snake_allocation(column_order(scores, order, n / m), m)
    rounds.append(kept_score(scores[:, index], nm_mask(scores[:, index], n, m)))
    if permutation == "lsa":
        for column in range(m):
            index = lsa_round(scores, index, n, m, column, lsa_blocks)
            rounds.append(kept_score(scores[:, index], nm_mask(scores[:, index], n, m)))
    elif permutation != "heuristic":
        raise ValueError(f"unknown permutation {permutation!r}")
    mask = torch.empty_like(scores, dtype=torch.bool)
    mask[:, index] = nm_mask(scores[:, index], n, m)
    info = {
        "nm_permutation": permutation,
        "nm_kept_score_plain": kept_score(scores, nm_mask(scores, n, m)),
        "nm_kept_score_rounds": rounds,
        "nm_kept_score": rounds[-1],
    }
    return mask, index, info
