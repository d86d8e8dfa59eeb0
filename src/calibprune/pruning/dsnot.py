"""DSnoT: training-free prune-and-regrow on top of an initial mask.

Zhang et al., "Dynamic Sparse No Training: Training-Free Fine-tuning for Sparse LLMs"
(ICLR 2024). For one layer with weight W ``[rows, cols]`` and calibration inputs with
per-column mean mu_j and variance var_j:

    D_ij = W_ij * mu_j                  expected contribution of w_ij to output i
    e_i  = sum_{j pruned} D_ij          expected output lost to pruning (signed)

Each cycle, in every row whose |e_i| is above ``threshold``, one pruned weight is
regrown and one kept weight is pruned, so the number of pruned weights per row never
changes:

* regrow: if e_i > 0, the pruned weight with the largest D_ij / var_j^p (> 0); if
  e_i < 0, the one with the most negative; candidates are visited in that order.
* prune (unstructured): a kept weight whose contribution has the sign that pushes e_i
  towards 0 (D_ij < 0 if e_i > 0, else D_ij > 0), lowest Wanda score |W_ij|*||x_j|| first.
* prune (N:M): the kept weight with the lowest Wanda score *in the regrown weight's
  M-group*, so every group keeps exactly N pruned.

The swap is applied only if it lowers |e_i|. Every weight changes state at most once
(regrow candidates are the initially pruned, prune candidates the initially kept).
Differences from the reference code: the reference also accepts swaps that overshoot
(|e| grows) in unstructured mode, and its candidate lists can run into weights of the
other kind at their ends; both are excluded here so that counts and N:M always hold.
"""

from __future__ import annotations

import torch

from ..config import DSnoTOptions

_EPS = 1e-12


def _ordered(key: torch.Tensor, valid: torch.Tensor, descending: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: column indices of ``valid`` entries sorted by ``key``, and how many there are."""
    fill = float("-inf") if descending else float("inf")
    order = torch.sort(key.masked_fill(~valid, fill), dim=1, descending=descending, stable=True).indices
    return order, valid.sum(1)


def dsnot_refine(
    weight: torch.Tensor,
    mask: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    importance: torch.Tensor,
    options: DSnoTOptions = DSnoTOptions(),
    nm_m: int | None = None,
) -> tuple[torch.Tensor, dict]:
    """Refine ``mask`` (``True`` = pruned). ``weight`` holds the dense values; ``importance``
    is the Wanda score; ``nm_m`` is M for N:M masks (swaps stay inside M-groups)."""
    rows, cols = weight.shape
    mask = mask.clone()
    contrib = weight * mean.unsqueeze(0)
    error = (contrib * mask).sum(1)
    proxy_before = float(error.abs().sum())
    priority = contrib / var.clamp_min(_EPS).pow(options.var_power).unsqueeze(0)

    grow_up, n_grow_up = _ordered(priority, mask & (priority > 0), descending=True)  # used when e > 0
    grow_down, n_grow_down = _ordered(priority, mask & (priority < 0), descending=False)  # used when e < 0
    if nm_m is None:
        kept = ~mask
        cut_up, n_cut_up = _ordered(importance, kept & (contrib < 0), descending=False)  # e > 0: prune D < 0
        cut_down, n_cut_down = _ordered(importance, kept & (contrib > 0), descending=False)  # e < 0: prune D > 0
    else:
        group_key = importance.masked_fill(mask, float("inf"))  # initially kept, not yet pruned
        offsets = torch.arange(nm_m)

    index = torch.arange(rows)
    ptr_up = torch.zeros(rows, dtype=torch.long)
    ptr_down = torch.zeros(rows, dtype=torch.long)
    active = torch.ones(rows, dtype=torch.bool)
    swaps, cycles_run = 0, 0
    for _ in range(options.cycles):
        active &= error.abs() > options.threshold
        active &= torch.where(error > 0, ptr_up < n_grow_up, ptr_down < n_grow_down)
        if not active.any():
            break
        cycles_run += 1
        up = error > 0
        ptr = torch.where(up, ptr_up, ptr_down).clamp(max=cols - 1).unsqueeze(1)
        grow = torch.where(up, grow_up.gather(1, ptr).squeeze(1), grow_down.gather(1, ptr).squeeze(1))
        if nm_m is None:
            active &= torch.where(up, ptr_up < n_cut_up, ptr_down < n_cut_down)
            cut = torch.where(up, cut_up.gather(1, ptr).squeeze(1), cut_down.gather(1, ptr).squeeze(1))
        else:
            group = (grow - grow % nm_m).unsqueeze(1) + offsets
            best, arg = group_key.gather(1, group).min(1)
            active &= torch.isfinite(best)
            cut = group[:, 0] + arg
        new_error = error + contrib[index, cut] - contrib[index, grow]
        accept = active & (new_error.abs() < error.abs())
        mask[index[accept], grow[accept]] = False
        mask[index[accept], cut[accept]] = True
        if nm_m is not None:
            group_key[index[accept], cut[accept]] = float("inf")
        error = torch.where(accept, new_error, error)
        ptr_up += (active & up).long()
        ptr_down += (active & ~up).long()
        swaps += int(accept.sum())
    return mask, {
        "dsnot_swaps": swaps,
        "dsnot_cycles": cycles_run,
        "dsnot_proxy_before": proxy_before,
        "dsnot_proxy_after": float(error.abs().sum()),
    }
