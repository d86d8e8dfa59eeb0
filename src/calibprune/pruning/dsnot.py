"""DSnoT: training-free prune-and-regrow on top of an initial mask.

Zhang et al., "Dynamic Sparse No Training: Training-Free Fine-tuning for Sparse LLMs"
(ICLR 2024); reference code zyxxmu/DSnoT ``lib/prune.py`` (``prune_DSnoT``). For one
layer with weight W ``[rows, cols]`` fed S calibration samples, with u_j = sum_t x_tj / S
(the reference's per-*sample* units) and v_j the mean of the per-sample variances:

    D_ij = W_ij * u_j                    expected contribution of w_ij to output i
    e_i  = sum_{j pruned} D_ij           reconstruction-error proxy (signed)
    P_ij = D_ij / v_j^p (pruned j; 0 for kept j)        regrowing priority

Per row, two candidate lists are walked from both ends with one pointer per end:

* regrow: all columns sorted by P ascending (stable); if e_i > 0 the next one from the
  end (largest P), else the next one from the start (most negative P);
* prune, unstructured: the kept weights ordered as [D < 0 by Wanda score ascending],
  then [D > 0 by Wanda score descending]; if e_i < 0 the next one from the end, else
  from the start (both: the weight whose contribution pushes e_i towards 0 with the
  lowest Wanda score |W_ij| * ||x_j||); exact zeros of D are replaced by the list's first
  position, as the reference's reordering does;
* prune, N:M: the weight with the lowest *initial-method* score among the not yet
  pruned-by-DSnoT, initially kept weights of the regrown weight's M-group.

Each of at most ``cycles`` rounds proposes one swap (regrow r, prune p) per row,
e' = e + D_ip - D_ir. Acceptance, ``accept="reference"`` (the default, as the code):

* unstructured: a row swaps while |e_i| > threshold (overshoots included); the first
  round where |e_i| <= threshold freezes it for good;
* N:M: additionally sign(e') must equal the sign of the initial e; the first rejection
  freezes the row; the proposed p is marked used even when rejected.

Like the reference, the mask writes of every round go to *all* rows (a frozen row
writes "kept" at p and "pruned" at r, no-ops as long as p is kept and r pruned) and the
pointers of frozen rows keep moving; a row whose candidates run out (the pointer reaches
weights of the other kind) therefore behaves as the reference's does. A pointer that
leaves its list (more cycles than candidates, on tiny layers) makes the reference fail
with an index error; here that row simply stops, writes included.

``accept="improve"`` is this project's variant: a swap is accepted only if it lowers
|e_i| (a rejection does not freeze the row), only real candidates are proposed (a row
whose list runs into weights of the other kind stops), writes touch accepted rows only,
and N:M candidates are marked used only when accepted. Counts per row and N:M
conformance then hold exactly.
"""

from __future__ import annotations

import torch

from ..config import DSnoTOptions


def _signed_order(values: torch.Tensor) -> torch.Tensor:
    """Per row, the positions of negative entries in order, then those of positive
    entries in reverse order; positions holding an exact zero become 0 (the reference's
    ``return_reorder_indice``)."""
    positions = torch.arange(values.shape[1], dtype=torch.float64, device=values.device).expand_as(values)
    inf = float("inf")
    negatives = torch.where(values < 0, positions, inf).sort(dim=1).values
    positives = torch.where(values > 0, positions, inf).sort(dim=1).values.flip(1)
    return (negatives.nan_to_num(posinf=0.0) + positives.nan_to_num(posinf=0.0)).long()


class _TwoEndedList:
    """Per-row candidate lists read from either end: ``take(from_end)`` returns the
    current candidate of each row and moves the pointers of the rows in ``move``."""

    def __init__(self, order: torch.Tensor):
        self.order = order
        rows = order.shape[0]
        self.head = torch.zeros(rows, dtype=torch.long, device=order.device)
        self.tail = torch.full((rows,), order.shape[1] - 1, dtype=torch.long, device=order.device)

    def peek(self, from_end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's current candidate, and whether its pointer is still inside the list."""
        pointer = torch.where(from_end, self.tail, self.head)
        inside = (pointer >= 0) & (pointer < self.order.shape[1])
        candidate = self.order.gather(1, pointer.clamp(0, self.order.shape[1] - 1).unsqueeze(1)).squeeze(1)
        return candidate, inside

    def advance(self, from_end: torch.Tensor, move: torch.Tensor) -> None:
        self.head += (move & ~from_end).long()
        self.tail -= (move & from_end).long()


def _lowest_in_group(key: torch.Tensor, start: torch.Tensor, m: int) -> torch.Tensor:
    """Column of the lowest ``key`` in each row's M-group starting at ``start``
    (ties: the lower column, also when the whole group is used up)."""
    group = start.unsqueeze(1) + torch.arange(m, device=start.device)
    return start + key.gather(1, group).argmin(1)


def dsnot_refine(
    weight: torch.Tensor,
    mask: torch.Tensor,
    input_sum: torch.Tensor,
    variance: torch.Tensor,
    wanda_score: torch.Tensor,
    initial_score: torch.Tensor,
    options: DSnoTOptions = DSnoTOptions(),
    nm_m: int | None = None,
) -> tuple[torch.Tensor, dict]:
    """Refine ``mask`` (``True`` = pruned) of the dense fp32 ``weight``.

    ``input_sum`` is u (per-sample units), ``variance`` v, ``wanda_score`` orders the
    unstructured prune candidates, ``initial_score`` (the initial method's score) the
    N:M ones; ``nm_m`` is M for N:M masks."""
    reference = options.accept == "reference"
    rows, cols = weight.shape
    index = torch.arange(rows, device=weight.device)
    mask = mask.clone()
    contrib = weight.float() * input_sum.unsqueeze(0)
    priority = contrib.masked_fill(~mask, 0.0)
    error = priority.sum(1)
    initial_sign = error.sign()
    proxy_before = float(error.abs().sum())
    if options.var_power:
        priority = priority / variance.pow(options.var_power).unsqueeze(0)
    regrow = _TwoEndedList(torch.sort(priority, dim=1, stable=True).indices)
    if nm_m is None:
        kept_count = cols - int(mask[0].sum())
        if bool((mask.sum(1) != cols - kept_count).any()):
            raise ValueError("DSnoT (unstructured) needs the same number of pruned weights in every row")
        kept_by_score = torch.sort(wanda_score.masked_fill(mask, float("inf")), dim=1, stable=True).indices
        kept_by_score = kept_by_score[:, :kept_count]
        prune = _TwoEndedList(kept_by_score.gather(1, _signed_order(contrib.gather(1, kept_by_score))))
    else:
        group_key = initial_score.float().masked_fill(mask, float("inf"))

    active = torch.ones(rows, dtype=torch.bool, device=weight.device)
    swaps = cycles_run = 0
    for _ in range(options.cycles):
        if not active.any():
            break
        cycles_run += 1
        up = error > 0
        grow, inside = regrow.peek(up)
        if nm_m is None:
            down = error < 0
            cut, cut_inside = prune.peek(down)
            inside &= cut_inside
        else:
            cut = _lowest_in_group(group_key, grow - grow % nm_m, nm_m)
        grow_contrib, cut_contrib = contrib[index, grow], contrib[index, cut]
        after = error + cut_contrib - grow_contrib
        if reference:
            active &= inside & (error.abs() > options.threshold)
            if nm_m is not None:
                active &= initial_sign == after.sign()
            accept = active
            rows = index[inside]  # every row is written, frozen ones too (see the module docstring)
            if nm_m is not None:
                group_key[rows, cut[inside]] = float("inf")
            mask[rows, cut[inside]] = accept[inside]
            mask[rows, grow[inside]] = ~accept[inside]
            regrow.advance(up, torch.ones_like(up))
            if nm_m is None:
                prune.advance(down, torch.ones_like(down))
        else:
            active &= inside & (error.abs() > options.threshold)
            active &= mask[index, grow] & torch.where(up, priority[index, grow] > 0, priority[index, grow] < 0)
            if nm_m is None:
                active &= ~mask[index, cut] & torch.where(down, contrib[index, cut] > 0, contrib[index, cut] < 0)
            else:
                active &= torch.isfinite(group_key[index, cut])
            accept = active & (after.abs() < error.abs())
            mask[index[accept], cut[accept]] = True
            mask[index[accept], grow[accept]] = False
            if nm_m is not None:
                group_key[index[accept], cut[accept]] = float("inf")
            regrow.advance(up, active)
            if nm_m is None:
                prune.advance(down, active)
        # two separate updates, as the reference accumulates them (same rounding)
        error = error + torch.where(accept, cut_contrib, 0.0)
        error = error - torch.where(accept, grow_contrib, 0.0)
        swaps += int(accept.sum())
    return mask, {
        "dsnot_swaps": swaps,
        "dsnot_cycles": cycles_run,
        "dsnot_proxy_before": proxy_before,
        "dsnot_proxy_after": float(error.abs().sum()),
    }
