"""ADMM weight update (and gradual mask selection) for a pruned layer.

Boža, "Fast and Effective Weight Update for Pruned Large Language Models" (TMLR 2024,
arXiv 2401.02938); reference code fmfi-compbio/admm-pruning ``lib/admm.py``
(``AdmmPruner.fasterprune``, called by ``lib/prune.py::prune_admm`` with
``percdamp=0.1`` and its defaults ``iterative_prune=15, iters=20``). It replaces
SparseGPT's OBS step: with G = sum_t x_t x_t^T (the layer's inputs, *not* divided by
the number of samples) and W ``[rows, cols]``, it solves, for each output row,

    min_W' ||X (W' - W)||^2 + lambda ||W' - W||^2   subject to W' = 0 on the mask

in normalised coordinates, by ADMM in scaled form:

1. normalise: d_j = sqrt(G_jj) + 1e-8, G~ = D^-1 G D^-1 (unit diagonal), V = (W D)^T
   (``[cols, rows]``; |V_ji| = |W_ij| ||X_j||, Wanda's score);
2. damp: G~ += lambda I with lambda = percdamp * mean(diag G~) (~ percdamp), then
   B = G~ V (the target of the damped problem) and the fixed inverse
   A = (G~ + rho I)^-1, rho = 1 constant (the reference never changes it);
3. U = 0; for t = 1..iters:
   * while t <= T (``gradual_steps``), re-select the mask from |V + U| at sparsity s_t;
   * Z = (V + U) * keep;   U = U + V - Z;   V = A (B + rho (Z - U));
4. final projection: Z = (V + U) * keep (the last mask), W' = (Z D^-1)^T, exact zeros.

Mask selection (only without a given mask; a given mask is kept for every iteration,
the paper's "ADMM update on a Wanda/any mask"):

* the score is |V + U|: at t = 1 (U = 0) that is Wanda's |W_ij| ||X_j||, compared over
  the whole matrix (``scope="matrix"``, the reference's default) or per output row
  (``"row"``, its ``per_out``); the count pruned is int(numel * s_t) (per matrix) or
  int(cols * s_t) (per row), ties by lower index in W's [rows, cols] order;
* N:M: the candidates are the N lowest |V + U| of every M-group; of them the
  int(numel * s_t) lowest over the matrix are pruned, so at s_T = N/M all candidates;
* s_t = s (1 - (1 - t/T)^3) (``schedule="cubic"``), or s from the first iteration
  (``"full"``). The reference computes s_t everywhere but its default unstructured
  path (per matrix) prunes ``int(numel * sparsity)``, i.e. ``full``; its ``per_out`` and
  N:M paths use the cubic s_t. ``schedule="reference"`` (the default) does as the reference.

The solve runs in fp32 on the weight's device (the reference disables TF32); the
caller casts the result back. Layers sharing one input (q/k/v) share G: stacked as
one matrix they share A, and ``row_groups`` keeps each layer's own mask selection.
"""

from __future__ import annotations

import torch

from ..config import ADMMOptions, SparsityTarget, pruned_count  # ADMMOptions: declared there, torch-free
from ..errors import CalibpruneError
from .masks import check_nm_width, nm_mask, prune_lowest

NORM_EPS = 1e-8  # the reference's: d_j of a dead input is 1e-8, its column of G~ stays 0


def sparsity_at(step: int, steps: int, final: float, schedule: str) -> float:
    """s_t = s (1 - (1 - t/T)^3) for t = 1..T (``cubic``), or s (``full``)."""
    if schedule == "full" or steps == 0:
        return final
    return final - final * (1 - step / steps) ** 3


def select_mask(
    scores: torch.Tensor, target: SparsityTarget, ratio: float, scope: str, row_groups: list[int]
) -> torch.Tensor:
    """The pruned set at sparsity ``ratio`` (<= the target's) from ``scores`` ``[rows, cols]``,
    chosen within each layer of the stack (``row_groups``)."""
    if scope == "row" and not target.is_nm:
        return prune_lowest(scores, pruned_count(scores.shape[1], ratio))
    parts = []
    for part in scores.split(row_groups):
        if target.is_nm:  # only N:M candidates compete; the others can never be pruned
            part = part.masked_fill(~nm_mask(part, target.n, target.m), float("inf"))
        flat = prune_lowest(part.reshape(1, -1), pruned_count(part.numel(), ratio))
        parts.append(flat.reshape(part.shape))
    return torch.cat(parts)


def admm_prune(
    weight: torch.Tensor,
    gram: torch.Tensor,
    target: SparsityTarget,
    options: ADMMOptions = ADMMOptions(),
    mask: torch.Tensor | None = None,
    name: str = "layer",
    row_groups: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``(new_weight, mask, info)`` for W ``[rows, cols]`` and G = sum_t x_t x_t^T
    ``[cols, cols]`` (``InputStatistics``' ``xxt`` sums). ``mask`` (``True`` = pruned):
    update the weights for that mask; ``None``: select it gradually (module doc)."""
    rows, cols = weight.shape
    row_groups = row_groups or [rows]
    if target.is_nm:
        check_nm_width(cols, target.m, name)
    device = weight.device
    g = gram.detach().to(device=device, dtype=torch.float32)
    norm = torch.diagonal(g).sqrt() + NORM_EPS
    g = g / norm.unsqueeze(0) / norm.unsqueeze(1)
    v = (weight.detach().to(torch.float32) * norm).t().contiguous()  # V = (W D)^T, [cols, rows]
    damp = options.percdamp * float(torch.diagonal(g).mean())
    g.diagonal().add_(damp)
    schedule_steps = options.gradual_steps if mask is None else 0  # <= iters (ADMMOptions checks)
    if mask is None and schedule_steps == 0:  # the reference's iterative_prune=0: one Wanda-scored mask
        mask = select_mask(v.abs().t(), target, target.ratio, options.scope, row_groups)
    if options.iters == 0:
        z = v.t() * ~mask
        return (z / norm).contiguous(), mask, {"admm_damping": damp, "admm_iters": 0}
    rho = options.rho
    b = g @ v
    g.diagonal().add_(rho)
    try:
        a = torch.linalg.inv(g)
    except RuntimeError as error:  # G~ + (lambda + rho) I is positive definite unless G holds NaN/inf
        raise CalibpruneError(f"ADMM: the input Gram matrix of {name} cannot be inverted ({error})") from None
    del g
    schedule = options.schedule_for(target)
    keep_t = None if mask is None else (~mask).t()
    u = torch.zeros_like(v)
    for step in range(1, options.iters + 1):
        if step <= schedule_steps:
            ratio = sparsity_at(step, schedule_steps, target.ratio, schedule)
            keep_t = ~select_mask((v + u).abs().t(), target, ratio, options.scope, row_groups).t()
        z = (v + u) * keep_t
        u += v - z
        v = a @ (b + rho * (z - u))
    z = (v + u) * keep_t
    mask = ~keep_t.t()
    new = (z.t() / norm).contiguous()
    info = {"admm_damping": damp, "admm_iters": options.iters, "admm_gradual_steps": schedule_steps}
    return new, mask.contiguous(), info
