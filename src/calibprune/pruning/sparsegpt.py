"""SparseGPT: prune with optimal-brain-surgeon updates of the remaining weights.

Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in
One-Shot" (ICML 2023). For one layer with weight W ``[rows, cols]`` and calibration
Hessian H = 2 X X^T / n:

1. Dead inputs (H_jj = 0) get H_jj = 1 and W[:, j] = 0: they carry no signal.
2. Damping lambda = percdamp * mean(diag H) is added to the diagonal; if the Cholesky
   factorisation still fails, lambda is multiplied by 10 and retried.
3. U = chol(H^-1)^T (upper). Columns are visited in blocks of ``blocksize``; in each
   block the mask is chosen from the saliency w_ij^2 / U_jj^2 (all at once for
   unstructured sparsity, per M-group for N:M, using the already-updated weights);
   then column by column, the pruned weights' error e = w / U_jj is spread over the
   remaining columns of the block, W[:, j:] -= e U[j, j:], and, after the block, over
   all later columns at once (the lazy batch update).

Unstructured masks (``SparseGPTOptions.mask_rule``):

* ``block`` (default, IST-DASLab/sparsegpt ``sparsegpt.py``): the saliencies of the
  whole [rows x block] block are sorted, t = sorted[int(numel * r)], and every weight
  with saliency <= t is pruned, so rows may differ in sparsity (and ties at t are all
  pruned).
* ``row`` (this project's variant): every row of a block prunes the same count,
  floor(end*r) - floor(start*r), so each row ends with exactly floor(cols * r).

The OBS update of a row never reads another row, so layers that share an input (q/k/v)
are solved as one stacked matrix; ``row_groups`` keeps each layer's own block threshold.
"""

from __future__ import annotations

import torch

from ..config import SparseGPTOptions, SparsityTarget, pruned_count
from ..errors import CalibpruneError
from ..options import OptionError
from .masks import check_nm_width, prune_lowest, threshold_mask

SUB_BLOCK = 16


def inverse_cholesky(h: torch.Tensor, percdamp: float, max_retries: int, name: str) -> tuple[torch.Tensor, float]:
    """Upper Cholesky factor of (H + lambda I)^-1, escalating lambda on failure."""
    mean_diag = float(torch.diagonal(h).mean())
    damp = percdamp * mean_diag
    for _ in range(max_retries + 1):
        damped = h.clone()  # + lambda on the diagonal only: no d x d identity (0.45 GiB at d = 11008)
        damped.diagonal().add_(damp)
        lower, info = torch.linalg.cholesky_ex(damped)
        del damped
        if int(info) == 0:
            h_inv = torch.cholesky_inverse(lower)
            upper, info = torch.linalg.cholesky_ex(h_inv, upper=True)
            if int(info) == 0:
                return upper, damp
        damp *= 10.0
    raise OptionError(
        "sparsegpt.percdamp",
        f"SparseGPT: the Hessian of {name} is not positive definite even with damping "
        f"{damp / 10:.3g} ({damp / 10 / max(mean_diag, 1e-30):.3g} x mean diagonal): use more calibration "
        "samples, a larger {sparsegpt.percdamp}, or exclude the layer with {ignore}",
    )


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    target: SparsityTarget,
    options: SparseGPTOptions = SparseGPTOptions(),
    name: str = "layer",
    row_groups: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Return ``(new_weight, mask, info)`` for a ``[rows, cols]`` weight;
    ``row_groups``: row counts of the stacked layers (one block threshold each).

    The solve runs in fp32 on the weight's device whatever the model's dtype (as the
    reference ``sparsegpt.py`` does); the caller casts the new weight back."""
    w = weight.detach().to(torch.float32).clone()
    rows, cols = w.shape
    row_groups = row_groups or [rows]
    blocksize = options.blocksize
    if target.is_nm:
        check_nm_width(cols, target.m, name)
        if blocksize % target.m:
            raise CalibpruneError(f"SparseGPT blocksize {blocksize} must be a multiple of M={target.m}")
    h = hessian.detach().to(torch.float32).clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    u, damp = inverse_cholesky(h, options.percdamp, options.max_damping_retries, name)

    # Work on W^T so that each weight column is a contiguous row: the per-column
    # operations below then touch contiguous memory.
    wt = w.t().contiguous()  # [cols, rows]
    mask_t = torch.zeros_like(wt, dtype=torch.bool)
    # Inside a block, columns are visited in sub-blocks of `sub` columns: rank-1 updates
    # touch only the sub-block, the rest of the block gets one matrix product per
    # sub-block. Same arithmetic as the reference loop, far less memory traffic.
    sub = target.m * max(1, SUB_BLOCK // target.m) if target.is_nm else SUB_BLOCK
    for start in range(0, cols, blocksize):
        end = min(start + blocksize, cols)
        size = end - start
        w_block = wt[start:end]  # a view: updated in place
        u_block = u[start:end, start:end]
        d = torch.diagonal(u_block).unsqueeze(1)
        err_block = torch.empty_like(w_block)
        if target.is_nm:
            block_mask = torch.zeros_like(w_block, dtype=torch.bool)
            scale = torch.zeros_like(w_block)
        else:
            saliency = w_block.square() / d.square()  # [block columns, rows]
            if options.mask_rule == "block":
                parts = saliency.split(row_groups, dim=1)
                block_mask = torch.cat([threshold_mask(p, target.ratio) for p in parts], dim=1)
            else:
                count = pruned_count(end, target.ratio) - pruned_count(start, target.ratio)
                block_mask = prune_lowest(saliency.t(), count).t().contiguous()
            scale = block_mask.float() / d  # err_j = w_j / U_jj where pruned, else 0
        for s0 in range(0, size, sub):
            s1 = min(s0 + sub, size)
            for j in range(s0, s1):
                if target.is_nm and j % target.m == 0:
                    group = slice(j, j + target.m)
                    scores = (w_block[group].square() / d[group].square()).t()
                    block_mask[group] = prune_lowest(scores, target.n).t()
                    scale[group] = block_mask[group].float() / d[group]
                torch.mul(w_block[j], scale[j], out=err_block[j])
                if j + 1 < s1:
                    w_block[j + 1 : s1].addr_(u_block[j, j + 1 : s1], err_block[j], alpha=-1.0)
            if s1 < size:
                w_block[s1:].addmm_(u_block[s0:s1, s1:].t(), err_block[s0:s1], alpha=-1.0)
        w_block.masked_fill_(block_mask, 0.0)  # exact zeros where pruned
        mask_t[start:end] = block_mask
        if end < cols:
            wt[end:].addmm_(u[start:end, end:].t(), err_block, alpha=-1.0)
    return wt.t().contiguous(), mask_t.t().contiguous(), {"damping": damp, "dead_inputs": int(dead.sum())}
