"""The pruning engine: one loop over decoder blocks for every method.

source windows -> [allocation: a dense pass for OWL] -> block inputs (runner) -> input
statistics -> mask (+ weight update) -> [refinement: DSnoT] -> pruned block -> its
outputs feed the next block. Every scorer x allocation x pattern x refinement runs
through this one loop; nothing here is specific to a method: what varies (scorer,
allocation, refinement) is looked up in its registry and asked (``needs``,
``validate``, ``needs_calibration``).

Blocks are pruned in order, each calibrated on inputs that come from the already
pruned earlier blocks (the sequential scheme of SparseGPT and Wanda). All layers of a
block are calibrated from one pass over the block before any of them is pruned, as in
the reference Wanda code. Methods that need no statistics (magnitude) skip the
forward passes altogether.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from tqdm.auto import tqdm

from ..calibration import CalibrationSet
from ..config import PruneConfig, SparsityTarget
from ..models.layers import (
    LayerSelection,
    all_block_layers,
    find_decoder_blocks,
    input_width,
    weight_matrix,
)
from ..models.placement import BlockPlacement
from ..models.runner import resolve_activation_store
from .allocation import allocate, get_allocation
from .blocks import BlockWork, iterate_blocks
from .masks import check_nm_width, nm_conformance
from .methods import PruningMethod, Refiner, build_method, get_refiner


def validate(model: nn.Module, config: PruneConfig) -> dict[str, nn.Module]:
    """Check a config against a model (a meta-device copy is enough): method, refinement
    and allocation names, layer patterns, N:M divisibility, then the method's own checks
    (:meth:`PruningMethod.validate`). Returns the layers that will be pruned."""
    method = build_method(config)
    get_refiner(config.refine)
    get_allocation(config.allocation)
    layers = all_block_layers(model, LayerSelection(config.targets, config.ignore))
    if config.target.is_nm:
        for name, layer in layers.items():
            check_nm_width(input_width(layer), config.target.m, name)
    method.validate(config)
    return layers


def _prune_group(
    work: BlockWork,
    names: list[str],
    target: SparsityTarget,
    config: PruneConfig,
    method: PruningMethod,
    refiner: Refiner | None,
) -> dict[str, dict]:
    stats = work.stats[names[0]] if work.stats is not None else None
    views = [weight_matrix(work.layers[n]) for n in names]
    scope = refiner.initial_scope if refiner is not None else None
    results = method.prune([v.float() for v in views], stats, target, config, names, scope=scope)
    records = {}
    for name, view, result in zip(names, views, results, strict=True):
        mask, info = result.mask, dict(result.info)
        if refiner is not None and refiner.applies(name[len(work.prefix) + 1 :], config):
            # `view` still holds the dense weights: score-based methods only return masks
            dense = view.float()
            mask, refined = refiner.refine(dense, mask, stats, target, config, method.scores(dense, stats))
            info.update(refined)
        if result.weight is not None:
            view.copy_(result.weight)
        view.masked_fill_(mask, 0)
        records[name] = layer_record(view, mask, target, info)
    return records


def layer_record(weight: torch.Tensor, mask: torch.Tensor, target: SparsityTarget, info: dict) -> dict:
    pruned = int(mask.sum())
    record = {
        "shape": list(weight.shape),
        "target_sparsity": target.ratio,
        "pruned": pruned,
        "sparsity": pruned / mask.numel(),
        "zeros": int((weight == 0).sum()) / weight.numel(),
    }
    if target.is_nm:
        record["nm_pattern"] = f"{target.n}:{target.m}"
        record["nm_conformance"] = nm_conformance(weight, target.n, target.m)
    if info:
        record.update(info)
    return record


@torch.no_grad()
def prune_model(
    model: nn.Module,
    calibration: CalibrationSet | None,
    config: PruneConfig,
    progress: bool = True,
    placement: BlockPlacement | None = None,
) -> dict:
    """Prune ``model`` in place: allocation -> per block: statistics -> mask (+ update)
    -> refinement. Returns the per-layer, allocation and global part of the report.

    ``placement`` (``--offload``) decides where the weights wait and the device blocks
    are computed on; default: the model stays where it is. The pruning pass runs in
    its :meth:`~BlockPlacement.saving` scope: with ``--offload disk`` each finished
    block goes straight to the output's shards."""
    method = build_method(config)
    refiner = get_refiner(config.refine)
    validate(model, config)
    placement = placement or BlockPlacement(model)
    activations = None
    if calibration is not None:  # resolve ``auto`` once, for every runner of this run (OWL's included)
        store, reason = resolve_activation_store(
            model, calibration.input_ids, config.runner.activation_store, placement.device
        )
        config = replace(config, runner=replace(config.runner, activation_store=store))
        activations = {"store": store, "reason": reason}
    block_targets, allocation = allocate(model, calibration, config, progress, placement)
    needs = method.needs | (refiner.needs if refiner else frozenset())
    _, blocks = find_decoder_blocks(model)
    bar = tqdm(total=len(blocks), desc=config.describe(), unit="block", disable=not progress)
    records: dict[str, dict] = {}
    with placement.saving():
        for work in iterate_blocks(model, calibration, config, needs, placement=placement):
            for names in work.groups.values():
                records.update(_prune_group(work, names, block_targets[work.index], config, method, refiner))
            bar.update(work.index + 1 - bar.n)
    bar.update(len(blocks) - bar.n)
    bar.close()
    return {
        "layers": records,
        "allocation": allocation,
        "summary": summarize(model, records),
        "batching": batching_record(config, calibration is not None and needs),
        "activations": activations,
    }


def batching_record(config: PruneConfig, calibrated: bool) -> dict:
    """How close the run is to the reference loops' arithmetic. They push one sample per
    forward; another batch size computes the same quantities with other float rounding
    (batched matmuls, statistics summed in other chunks), which can flip near-tied scores,
    and the sequential scheme carries a flip down the blocks."""
    size = config.runner.batch_size
    return {
        "batch_size": size,
        "reference_batching": size == 1 or not calibrated,
        "note": "the reference code runs one calibration sample per forward (batch size 1); other batch sizes "
        "round differently and may move a fraction of a percent of mask positions (README, Fidelity)",
    }


def summarize(model: nn.Module, records: dict[str, dict]) -> dict:
    """Global sparsity over the pruned layers and over every parameter of the model
    (embeddings and lm_head included)."""
    pruned = sum(r["pruned"] for r in records.values())
    in_layers = sum(r["shape"][0] * r["shape"][1] for r in records.values())
    all_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    summary = {
        "layers_pruned": len(records),
        "weights_in_pruned_layers": in_layers,
        "pruned_weights": pruned,
        "sparsity_pruned_layers": pruned / in_layers if in_layers else 0.0,
        "sparsity_all_parameters": pruned / all_params if all_params else 0.0,
    }
    nm = [r["nm_conformance"] for r in records.values() if "nm_conformance" in r]
    if nm:
        summary["nm_conformant_layers"] = sum(c == 1.0 for c in nm)
        summary["nm_conformance_min"] = min(nm)
    return summary
