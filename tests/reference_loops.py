"""Transcriptions of the reference repositories' pruning loops, for the parity tests.

Each function re-expresses, loop for loop, what the published code does, so that the
project's vectorised, batched engine can be compared with it on a tiny model:

* ``WrappedLayer``          — locuslab/wanda & zyxxmu/DSnoT ``lib/layerwrapper.py``
                              (+ the Hessian of IST-DASLab/sparsegpt ``sparsegpt.py``)
* ``magnitude``             — locuslab/wanda ``lib/prune.py::prune_magnitude``
* ``wanda``                 — locuslab/wanda ``lib/prune.py::prune_wanda``
* ``sparsegpt``             — IST-DASLab/sparsegpt ``sparsegpt.py::fasterprune`` + ``llama.py``
* ``owl_wanda``             — luuyin/OWL ``lib/prune_all.py::prune_wanda_outlier``
* ``dsnot``                 — zyxxmu/DSnoT ``lib/prune.py::prune_DSnoT``
* ``ria``                   — biomedical-cybernetics/Relative-importance-and-activation-pruning
                              ``lib/prune.py::prune_ria`` (+ its ``lexsort``, ``lsa``)
* ``admm``                  — fmfi-compbio/admm-pruning ``lib/admm.py::AdmmPruner`` +
                              ``lib/prune.py::prune_admm``
* ``mink_plus_plus``        — zjysteven/mink-plus-plus ``run.py``
* ``selfgen_prompt``        — Dereck0602/calibration_data ``generate_data.py``

Like the references, the loops push one calibration sample per forward through each
decoder layer, calibrate all of a layer's linear sublayers from one pass, prune them,
then recompute the layer's outputs for the next layer. One deliberate difference: where
the references call ``torch.topk(..., largest=False)``, whose order among equal values
is unspecified (and differs between CPU and GPU), these take the lowest index first,
the tie rule the project uses.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def lowest_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k lowest entries of each row, ties by lower index."""
    return torch.sort(values, dim=1, stable=True).indices[:, :k]


class WrappedLayer:
    """Running statistics of one linear layer's inputs, updated once per forward call."""

    def __init__(self, layer: nn.Linear, hessian: bool = False, gram: bool = False):
        self.layer = layer
        columns = layer.weight.shape[1]
        self.columns = columns
        self.nsamples = 0
        self.ntokens = 0
        self.scaler_row = torch.zeros(columns)
        self.sum_metric_row = torch.zeros(columns)
        self.mean = torch.zeros(columns, 1)
        self.var = torch.zeros(columns, 1)
        self.H = torch.zeros(columns, columns) if hessian else None
        self.XX = torch.zeros(columns, columns) if gram else None  # admm-pruning's AdmmPruner.XX

    def add_batch(self, inp: torch.Tensor) -> None:
        if inp.dim() == 2:
            inp = inp.unsqueeze(0)
        batch = inp.shape[0]
        x = inp.reshape(-1, inp.shape[-1]).t().float()  # [columns, tokens]
        if self.H is not None:
            self.H *= self.nsamples / (self.nsamples + batch)
        count = x.shape[1]
        var = torch.var(x, dim=1, unbiased=False, keepdim=True)
        mean = torch.mean(x, dim=1, keepdim=True)
        if self.ntokens == 0:
            self.var, self.mean = var, mean
        else:
            self.var = (self.var * self.ntokens + var * count) / (self.ntokens + count)
            self.mean = (self.mean * self.ntokens + mean * count) / (self.ntokens + count)
        self.ntokens += count
        self.scaler_row *= self.nsamples / (self.nsamples + batch)
        self.sum_metric_row *= self.nsamples / (self.nsamples + batch)
        self.nsamples += batch
        self.scaler_row += torch.norm(x, p=2, dim=1) ** 2 / self.nsamples
        self.sum_metric_row += torch.sum(x, dim=1) / self.nsamples
        if self.H is not None:
            scaled = math.sqrt(2 / self.nsamples) * x
            self.H += scaled.matmul(scaled.t())
        if self.XX is not None:
            self.XX += x.matmul(x.t())  # X.T @ X with X = [tokens, columns]: no scaling at all


def linear_layers(block: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}


def first_layer_inputs(model, calib_ids: torch.Tensor) -> tuple[list[torch.Tensor], dict]:
    """The hidden states entering layer 0 for each sample, and the keyword arguments the
    model passes to its layers (the references' ``Catcher``)."""
    captured: list[torch.Tensor] = []
    kwargs: dict = {}

    class Stop(Exception):
        pass

    def hook(module, args, kw):
        captured.append(args[0] if args else kw["hidden_states"])
        kwargs.update({k: v for k, v in kw.items() if k != "hidden_states"})
        raise Stop

    handle = model.model.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for row in calib_ids:
            try:
                model(row.unsqueeze(0), use_cache=False)
            except Stop:
                pass
    finally:
        handle.remove()
    kwargs.pop("past_key_values", None)
    kwargs["use_cache"] = False
    return captured, kwargs


def _run(layer, inputs, kwargs):
    outs = []
    for inp in inputs:
        out = layer(inp, **kwargs)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return outs


def sequential(
    model, calib_ids, prune_layer, hessian: bool = False, stats_out: dict | None = None, gram: bool = False
) -> None:
    """The references' outer loop: per decoder layer, calibrate its linear sublayers on
    one sample per forward, ``prune_layer(index, {name: (module, wrapped)})``, recompute."""
    inputs, kwargs = first_layer_inputs(model, calib_ids)
    with torch.no_grad():
        for index, layer in enumerate(model.model.layers):
            subset = linear_layers(layer)
            wrapped = {name: WrappedLayer(m, hessian, gram) for name, m in subset.items()}
            handles = [
                m.register_forward_hook(lambda mod, inp, out, w=wrapped[name]: w.add_batch(inp[0].data))
                for name, m in subset.items()
            ]
            _run(layer, inputs, kwargs)
            for h in handles:
                h.remove()
            if stats_out is not None:
                stats_out[index] = wrapped
            prune_layer(index, {name: (subset[name], wrapped[name]) for name in subset})
            inputs = _run(layer, inputs, kwargs)


def _nm_mask(metric: torch.Tensor, n: int, m: int) -> torch.Tensor:
    mask = torch.zeros_like(metric, dtype=torch.bool)
    for ii in range(0, metric.shape[1], m):
        mask.scatter_(1, ii + lowest_k(metric[:, ii : ii + m].float(), n), True)
    return mask


def magnitude(model, sparsity: float = 0.0, n: int = 0, m: int = 0) -> None:
    with torch.no_grad():
        for layer in model.model.layers:
            for module in linear_layers(layer).values():
                w = module.weight.data
                metric = torch.abs(w)
                if n:
                    mask = _nm_mask(metric, n, m)
                else:
                    threshold = torch.sort(metric.flatten())[0][int(w.numel() * sparsity)]
                    mask = metric <= threshold
                w[mask] = 0


def _wanda_mask(metric: torch.Tensor, sparsity: float, n: int, m: int) -> torch.Tensor:
    if n:
        return _nm_mask(metric, n, m)
    mask = torch.zeros_like(metric, dtype=torch.bool)
    indices = torch.sort(metric, dim=-1, stable=True)[1][:, : int(metric.shape[1] * sparsity)]
    return mask.scatter_(1, indices, True)


def wanda(model, calib_ids, sparsity: float = 0.0, n: int = 0, m: int = 0, per_layer_sparsity=None) -> None:
    def prune_layer(index, layers):
        ratio = sparsity if per_layer_sparsity is None else per_layer_sparsity[index]
        for module, wrapped in layers.values():
            metric = torch.abs(module.weight.data) * torch.sqrt(wrapped.scaler_row.reshape(1, -1))
            module.weight.data[_wanda_mask(metric, ratio, n, m)] = 0

    sequential(model, calib_ids, prune_layer)


def owl_wanda(model, calib_ids, sparsity: float, hyper_m: float = 5.0, lam: float = 0.08) -> list[float]:
    """OWL's dense outlier pass, its allocation formula, then Wanda at the block sparsities."""
    ratios = []

    def measure(index, layers):
        metrics = [
            torch.abs(module.weight.data) * torch.sqrt(wrapped.scaler_row.reshape(1, -1))
            for module, wrapped in layers.values()
        ]
        flat = torch.cat([torch.flatten(x) for x in metrics])
        ratios.append(float((flat > torch.mean(flat) * hyper_m).sum().item()) / flat.numel() * 100)

    sequential(model, calib_ids, measure)  # changes no weight: a dense pass
    r = np.array(ratios)
    r = (r - r.min()) * (1 / (r.max() - r.min()) * lam * 2)
    density = r - np.mean(r) + (1 - sparsity)
    block_sparsity = [1 - d for d in density]
    wanda(model, calib_ids, per_layer_sparsity=block_sparsity)
    return block_sparsity


def _fasterprune(module, H, sparsity, prunen=0, prunem=0, blocksize=128, percdamp=0.01) -> None:
    W = module.weight.data.clone().float()
    columns = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if prunen == 0:
            tmp = W1**2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            mask1 = tmp <= thresh
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i : i + prunem] ** 2 / (torch.diag(Hinv1)[i : i + prunem].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + lowest_k(tmp, prunen), True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    module.weight.data = W.reshape(module.weight.shape).to(module.weight.dtype)


def sparsegpt(model, calib_ids, sparsity: float = 0.0, n: int = 0, m: int = 0, blocksize: int = 128) -> None:
    def prune_layer(index, layers):
        for module, wrapped in layers.values():
            _fasterprune(module, wrapped.H, sparsity, n, m, blocksize)

    sequential(model, calib_ids, prune_layer, hessian=True)


def _signed_reorder(values: torch.Tensor) -> torch.Tensor:
    """DSnoT's ``return_reorder_indice``."""
    positive_indices = torch.arange(values.shape[1]).to(torch.float64).repeat(values.shape[0], 1)
    negative_indices = positive_indices.clone()
    positive_indices[~(values > 0)] = float("inf")
    negative_indices[~(values < 0)] = float("inf")
    positive_value = torch.flip(torch.sort(positive_indices, dim=1)[0], dims=[1])
    negative_value = torch.sort(negative_indices, dim=1)[0]
    negative_value[negative_value == float("inf")] = 0
    positive_value[positive_value == float("inf")] = 0
    return (positive_value + negative_value).to(torch.int64)


def _dsnot_layer(W, wrapped, initial_metric, sparsity, n, m, cycles, threshold, var_power, skip):
    """One layer of ``prune_DSnoT`` (``without_same_sign=True``, its default): the mask."""
    metric = W * wrapped.sum_metric_row.reshape((1, -1))
    weight_mask = torch.zeros_like(initial_metric, dtype=torch.bool)
    rows = W.shape[0]
    if n:
        if skip:
            return _nm_mask(initial_metric, n, m)
        prune_idx, keep_idx = [], []
        for ii in range(0, initial_metric.shape[1], m):
            order = torch.sort(initial_metric[:, ii : ii + m].float(), dim=1, stable=True)[1] + ii
            prune_idx.append(order[:, :n])
            keep_idx.append(order[:, n:])
            weight_mask.scatter_(1, order[:, :n], True)
        keep_idx = torch.cat(keep_idx, dim=1)
        regrow_metric = metric.clone()
        regrow_metric.scatter_(1, keep_idx, 0)
        error = torch.sum(regrow_metric, dim=1, keepdim=True)
        initial_sign = torch.sign(error)
        if var_power:
            regrow_metric /= torch.pow(wrapped.var.reshape((1, -1)), var_power)
        regrow_order = torch.sort(regrow_metric, dim=1, stable=True)[1]
        pointers = torch.zeros((rows, 2), dtype=torch.long)
        pointers[:, 1] = regrow_order.shape[1] - 1
        steps = torch.ones((rows, 2), dtype=torch.long)
        steps[:, 1] = -1
        key = initial_metric.clone()
        key.scatter_(1, torch.cat(prune_idx, dim=1), float("inf"))
        used = torch.max(key, dim=1, keepdim=True)[0] + 1
        update = torch.ones_like(error, dtype=torch.bool)
        cycle = 1
        while not (torch.all(~update) or cycle > cycles):
            cycle += 1
            side = (error > 0).long()
            position = torch.gather(pointers, 1, side)
            grow = torch.gather(regrow_order, 1, position)
            grow_metric = metric.gather(1, grow)
            start = grow - grow % m
            group = torch.arange(m).repeat(start.shape[1], 1) + start
            cut = start + lowest_k(torch.gather(key, 1, group), 1)
            cut_metric = metric.gather(1, cut)
            after = error + cut_metric - grow_metric
            update = update & (initial_sign == torch.sign(after)) & (abs(error) > threshold)
            key.scatter_(1, cut, used)
            weight_mask.scatter_(1, cut, update)
            weight_mask.scatter_(1, grow, ~update)
            error += torch.where(update, cut_metric, torch.zeros_like(cut_metric))
            error -= torch.where(update, grow_metric, torch.zeros_like(grow_metric))
            pointers.scatter_(1, side, position + steps.gather(1, side))
        return weight_mask

    order = torch.sort(initial_metric, dim=-1, stable=True)[1]
    count = int(initial_metric.shape[1] * sparsity)
    prune_idx, keep_idx = order[:, :count], order[:, count:]
    weight_mask.scatter_(1, prune_idx, True)
    if skip:
        return weight_mask
    regrow_metric = metric.clone()
    wanda_metric = torch.abs(W) * torch.sqrt(wrapped.scaler_row.reshape((1, -1)))
    regrow_metric.scatter_(1, keep_idx, 0)
    error = torch.sum(regrow_metric, dim=1, keepdim=True)
    if var_power:
        regrow_metric /= torch.pow(wrapped.var.reshape((1, -1)), var_power)
    regrow_order = torch.sort(regrow_metric, dim=1, stable=True)[1]
    wanda_metric.scatter_(1, prune_idx, float("inf"))
    kept_by_wanda = torch.sort(wanda_metric, dim=1, stable=True)[1][:, : initial_metric.shape[1] - count]
    prune_order = torch.gather(kept_by_wanda, 1, _signed_reorder(torch.gather(metric, 1, kept_by_wanda)))

    def ends(length):
        pointers = torch.zeros((rows, 2), dtype=torch.long)
        pointers[:, 1] = length - 1
        return pointers

    grow_pointers, cut_pointers = ends(regrow_order.shape[1]), ends(prune_order.shape[1])
    steps = torch.ones((rows, 2), dtype=torch.long)
    steps[:, 1] = -1
    update = torch.ones_like(error, dtype=torch.bool)
    cycle = 0
    while not (torch.all(~update) or cycle >= cycles):
        cycle += 1
        side = (error > 0).long()
        position = torch.gather(grow_pointers, 1, side)
        grow = torch.gather(regrow_order, 1, position)
        grow_metric = metric.gather(1, grow)
        grow_pointers.scatter_(1, side, position + steps.gather(1, side))
        side = (error < 0).long()
        position = torch.gather(cut_pointers, 1, side)
        cut = torch.gather(prune_order, 1, position)
        cut_metric = metric.gather(1, cut)
        cut_pointers.scatter_(1, side, position + steps.gather(1, side))
        update = update & (abs(error) > threshold)
        weight_mask.scatter_(1, cut, update)
        weight_mask.scatter_(1, grow, ~update)
        error += torch.where(update, cut_metric, torch.zeros_like(cut_metric))
        error -= torch.where(update, grow_metric, torch.zeros_like(grow_metric))
    return weight_mask


def dsnot(
    model,
    calib_ids,
    initial: str = "wanda",
    sparsity: float = 0.0,
    n: int = 0,
    m: int = 0,
    cycles: int = 50,
    threshold: float = 0.1,
    var_power: float = 1.0,
    skip_layer: str = "mlp",
) -> None:
    def prune_layer(index, layers):
        for name, (module, wrapped) in layers.items():
            W = module.weight.data
            if initial == "wanda":
                initial_metric = torch.abs(W) * torch.sqrt(wrapped.scaler_row.reshape((1, -1)))
            else:
                initial_metric = torch.abs(W)
            skip = name.split(".")[0] == skip_layer
            mask = _dsnot_layer(W, wrapped, initial_metric, sparsity, n, m, cycles, threshold, var_power, skip)
            W[mask] = 0

    sequential(model, calib_ids, prune_layer)


def _ria_lexsort(keys, dim=-1):
    idx = keys[0].argsort(dim=dim, stable=True)
    for k in keys[1:]:
        idx = idx.gather(dim, k.gather(dim, idx).argsort(dim=dim, stable=True))
    return idx


def _ria_lsa(W_metric, lsa_column, shape, rows, prune_n, prune_m, num_parallel=1):
    """``prune_ria``'s inner ``lsa``: one column position re-dealt. ``num_parallel`` is
    its own knob (1 there; any divisor of ``shape`` computes the same score matrix)."""
    from scipy.optimize import linear_sum_assignment

    score_matrix = torch.zeros(shape, shape)
    for row in range(shape // num_parallel):
        strip_idx = torch.zeros(num_parallel, shape, prune_m).long()
        block_columns = torch.arange(prune_m)
        block_columns = block_columns[block_columns != lsa_column]
        strip_idx[:, :, 0] = (rows * prune_m).reshape(1, -1) + lsa_column
        strip_idx[:, :, 1:] = (
            block_columns.reshape(1, 1, -1)
            + torch.arange(row * num_parallel, (row + 1) * num_parallel).reshape(-1, 1, 1) * prune_m
        )
        tmp = W_metric[:, strip_idx].transpose(1, 0).transpose(2, 1)
        W_mask = torch.zeros_like(tmp)
        tmp_index = torch.sort(tmp, dim=-1, stable=True)[1]
        W_mask.scatter_(dim=-1, index=tmp_index[:, :, :, :prune_n], value=1)
        score_matrix[:, row * num_parallel : (row + 1) * num_parallel] = torch.sum(
            torch.sum((tmp * (W_mask == 0)), dim=-1), dim=-1
        ).transpose(1, 0)
    score_matrix = score_matrix.transpose(1, 0)
    col_indices = torch.LongTensor(linear_sum_assignment(score_matrix, maximize=True)[1])
    idx = torch.arange(W_metric.shape[1]).long()
    idx[rows * prune_m + lsa_column] = col_indices * prune_m + lsa_column
    return idx


def _ria_layer_mask(
    W_metric, sparsity, prune_n, prune_m, per_outneuron, reallocation, lsa, importance_score, blocks, num_parallel=1
):
    """``prune_ria``'s mask for one layer (the ``--gptq`` / ``--reconstruction`` /
    ``--semi_sparse_acc`` branches left out); returns the mask in the original order."""
    W_mask = torch.zeros_like(W_metric) == 1
    if prune_n == 0:
        if per_outneuron:
            indices = torch.sort(W_metric, dim=-1, stable=True)[1][:, : int(W_metric.shape[1] * sparsity)]
            W_mask.scatter_(1, indices, True)
        else:
            thresh = torch.sort(W_metric.flatten())[0][int(W_metric.shape[0] * W_metric.shape[1] * sparsity)]
            W_mask = W_metric <= thresh
        return W_mask
    if not reallocation:
        return _nm_mask(W_metric, prune_n, prune_m)
    if importance_score == "sum":
        sorted_idx = torch.sort(torch.sum(W_metric, dim=0), stable=True)[1]
    elif importance_score == "retained_degree_unstructured":
        thresh = torch.sort(W_metric.flatten())[0][int(W_metric.shape[0] * W_metric.shape[1] * sparsity)]
        W_mask = W_metric <= thresh
        sorted_idx = _ria_lexsort([torch.sum(W_mask, dim=0), torch.sum((W_mask == 0) * W_metric, dim=0)])
    else:  # retained_degree_per_outneuron
        indices = torch.sort(W_metric, dim=-1, stable=True)[1][:, : int(W_metric.shape[1] * sparsity)]
        W_mask = torch.zeros_like(W_metric) == 1
        W_mask.scatter_(1, indices, True)
        sorted_idx = _ria_lexsort([torch.sum(W_mask, dim=0), torch.sum((W_mask == 0) * W_metric, dim=0)])
    index = torch.zeros_like(sorted_idx)
    for ii in range(1, prune_m + 1):
        part = sorted_idx[int(W_metric.shape[1] * (ii - 1) / prune_m) : int(W_metric.shape[1] * ii / prune_m)]
        index[ii - 1 :: prune_m] = part if ii % 2 == 1 else part.flip(0)
    W_mask_permute = _nm_mask(W_metric[:, index].clone(), prune_n, prune_m)
    if lsa:
        shape = W_metric.shape[1] // prune_m // blocks
        rows = torch.arange(shape)
        for lsa_column in torch.arange(prune_m):
            for ii in range(blocks):
                index_tmp = index[ii * len(index) // blocks : (ii + 1) * len(index) // blocks]
                permute_idx = _ria_lsa(W_metric[:, index_tmp], lsa_column, shape, rows, prune_n, prune_m, num_parallel)
                index[ii * len(index) // blocks : (ii + 1) * len(index) // blocks] = index_tmp[permute_idx]
            W_mask_permute = _nm_mask(W_metric[:, index], prune_n, prune_m)
    W_mask = torch.zeros_like(W_metric) == 1
    W_mask[:, index] = W_mask_permute
    return W_mask


def ria(
    model,
    calib_ids,
    sparsity: float = 0.5,
    n: int = 0,
    m: int = 0,
    a: float = 0.5,
    per_outneuron: bool = False,
    reallocation: bool = False,
    lsa: bool = False,
    importance_score: str = "sum",
    blocks: int = 1,
    num_parallel: int = 1,
) -> None:
    def prune_layer(index, layers):
        for module, wrapped in layers.values():
            W = module.weight.data.clone()
            W_metric = (
                torch.abs(W) / torch.sum(torch.abs(W), dim=0)
                + torch.abs(W) / torch.sum(torch.abs(W), dim=1).reshape(-1, 1)
            ) * (torch.sqrt(wrapped.scaler_row.reshape((1, -1)))) ** a
            mask = _ria_layer_mask(
                W_metric, sparsity, n, m, per_outneuron, reallocation, lsa, importance_score, blocks, num_parallel
            )
            module.weight.data[mask] = 0

    sequential(model, calib_ids, prune_layer)


def _admm_fasterprune(module, XX, sparsity, prune_n=0, prune_m=0, percdamp=0.1, iterative_prune=15, iters=20,
                      per_out=False) -> None:  # fmt: skip
    """``AdmmPruner.fasterprune``, its hard-coded groups of 4 (2 kept) and N:M sparsity 0.5 included."""
    norm = torch.diag(XX).sqrt() + 1e-8
    XX = XX / norm
    XX = (XX.T / norm).T
    W = (module.weight.float().detach() * norm).T
    rho0 = percdamp * torch.diag(XX).mean()
    diag = torch.arange(XX.shape[0])
    XX[diag, diag] += rho0
    if iterative_prune == 0:
        if prune_n != 0:
            WT = W.T.reshape((W.shape[1] * W.shape[0] // 4, 4)).abs()
            mask = torch.zeros_like(WT)
            sort_inds = WT.sort(dim=1, stable=True)[1]
            mask[torch.arange(WT.shape[0]), sort_inds[:, 2]] = 1
            mask[torch.arange(WT.shape[0]), sort_inds[:, 3]] = 1
            mask = mask.reshape(W.T.shape).T
        elif per_out:
            thres = (W).abs().sort(dim=0)[0][int(W.shape[0] * sparsity)]
            mask = (W).abs() >= thres.unsqueeze(0)
        else:
            indices = lowest_k(W.abs().flatten().unsqueeze(0), int(W.numel() * sparsity))[0]
            mask = torch.ones(W.numel(), dtype=torch.bool)
            mask[indices] = 0
            mask = mask.reshape(W.shape)
    if iters == 0:
        Z = (W) * mask
        module.weight.data = (Z.T / norm).reshape(module.weight.shape).to(module.weight.data.dtype)
        return
    rho = 1
    XY = XX.matmul(W)
    XX[diag, diag] += rho
    XXinv = torch.inverse(XX)
    U = torch.zeros_like(W)
    for itt in range(iters):
        if iterative_prune > 0 and itt < iterative_prune:
            if prune_n != 0:
                sparsity = 0.5
                cur_sparsity = sparsity - sparsity * (1 - (itt + 1) / iterative_prune) ** 3
                WT = (W + U).T.reshape((W.shape[1] * W.shape[0] // 4, 4)).abs()
                mask = torch.zeros(WT.shape, dtype=torch.bool)
                sort_inds = WT.sort(dim=1, stable=True)[1]
                mask[torch.arange(WT.shape[0]), sort_inds[:, 2]] = 1
                mask[torch.arange(WT.shape[0]), sort_inds[:, 3]] = 1
                mask = mask.reshape(W.T.shape).T
                Z2 = (W + U).abs()
                Z2[mask] = torch.inf
                thres = Z2.flatten().kthvalue(int(W.numel() * cur_sparsity) + 1)[0]
                mask = Z2 >= thres
            else:
                cur_sparsity = sparsity - sparsity * (1 - (itt + 1) / iterative_prune) ** 3
                if per_out:
                    thres = (W + U).abs().sort(dim=0)[0][int(W.shape[0] * cur_sparsity)]
                    mask = (W + U).abs() >= thres.unsqueeze(0)
                else:  # the reference's topk takes `sparsity`, not `cur_sparsity`
                    indices = lowest_k((W + U).abs().flatten().unsqueeze(0), int(W.numel() * sparsity))[0]
                    mask = torch.ones(W.numel(), dtype=torch.bool)
                    mask[indices] = 0
                    mask = mask.reshape(W.shape)
        Z = (W + U) * mask
        U = U + (W - Z)
        W = XXinv.matmul(XY + rho * (Z - U))
    Z = (W + U) * mask
    module.weight.data = (Z.T / norm).reshape(module.weight.shape).to(module.weight.data.dtype)


def admm(model, calib_ids, sparsity: float = 0.5, n: int = 0, m: int = 0, **options) -> None:
    """``prune_admm``: every linear layer of a block calibrated, then each pruned in turn
    (``percdamp=0.1`` as it passes it)."""

    def prune_layer(index, layers):
        for module, wrapped in layers.values():
            _admm_fasterprune(module, wrapped.XX, sparsity, n, m, **options)

    sequential(model, calib_ids, prune_layer, gram=True)


def mink_plus_plus(model, input_ids: list[int], ratio: float = 0.2) -> float:
    ids = torch.tensor(input_ids).unsqueeze(0)
    with torch.no_grad():
        logits = model(ids).logits
    targets = ids[0][1:].unsqueeze(-1)
    probs = F.softmax(logits[0, :-1], dim=-1)
    log_probs = F.log_softmax(logits[0, :-1], dim=-1)
    token_log_probs = log_probs.gather(dim=-1, index=targets).squeeze(-1)
    mu = (probs * log_probs).sum(-1)
    sigma = (probs * torch.square(log_probs)).sum(-1) - torch.square(mu)
    scores = (token_log_probs - mu) / sigma.sqrt()
    k_length = int(len(scores) * ratio)
    return float(np.mean(np.sort(scores.numpy())[:k_length]))


def selfgen_prompt(tokenizer, text: str, length: int = 2) -> list[int]:
    """``generate_data.py``: the tokenizer's default encoding, truncated to 2 tokens."""
    return tokenizer(text)["input_ids"][:length]
