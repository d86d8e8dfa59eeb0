"""The pruning engine: one loop over decoder blocks for every method.

source windows -> block inputs (runner) -> input statistics -> mask (+ weight update)
-> pruned block -> its outputs feed the next block.

Blocks are pruned in order, each calibrated on inputs that come from the already
pruned earlier blocks (the sequential scheme of SparseGPT and Wanda). All layers of a
block are calibrated from one pass over the block before any of them is pruned, as in
the reference Wanda code. Methods that need no statistics (magnitude) skip the
forward passes altogether.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from tqdm.auto import tqdm

from ..calibration import CalibrationSet
from ..config import PruneConfig
from ..errors import CalibpruneError
from ..models.layers import LayerSelection, all_block_layers, block_layers, find_decoder_blocks, input_width, weight_matrix
from ..models.runner import SequentialRunner
from .masks import check_nm_width, nm_conformance
from .methods import PruningMethod, get_method
from .stats import InputStatistics

log = logging.getLogger(__name__)


def validate(model: nn.Module, config: PruneConfig) -> dict[str, nn.Module]:
    """Check a config against a model (a meta-device copy is enough): method name,
    layer patterns, N:M divisibility. Returns the layers that will be pruned."""
    get_method(config.method)
    layers = all_block_layers(model, LayerSelection(config.targets, config.ignore))
    if config.target.is_nm:
        for name, layer in layers.items():
            check_nm_width(input_width(layer), config.target.m, name)
        if config.method == "sparsegpt" and config.sparsegpt.blocksize % config.target.m:
            raise CalibpruneError(
                f"SparseGPT blocksize {config.sparsegpt.blocksize} must be a multiple of M={config.target.m}"
            )
    return layers


def _group_by_leader(leader_of: dict[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name, leader in leader_of.items():
        groups.setdefault(leader, []).append(name)
    return groups


def _prune_group(method: PruningMethod, layers: dict[str, nn.Module], names: list[str],
                 stats: InputStatistics | None, config: PruneConfig) -> dict[str, dict]:
    views = [weight_matrix(layers[n]) for n in names]
    results = method.prune([v.float() for v in views], stats, config.target, config, names)
    records = {}
    for name, view, result in zip(names, views, results):
        if result.weight is not None:
            view.copy_(result.weight)
        view.masked_fill_(result.mask, 0)
        records[name] = layer_record(view, result.mask, config, result.info)
    return records


def layer_record(weight: torch.Tensor, mask: torch.Tensor, config: PruneConfig, info: dict) -> dict:
    target = config.target
    pruned = int(mask.sum())
    record = {
        "shape": list(weight.shape),
        "target_sparsity": target.ratio,
        "pruned": pruned,
        "sparsity": pruned / mask.numel(),
        "zeros": int((weight == 0).sum()) / weight.numel(),
    }
    if target.is_nm:
        record["nm_conformance"] = nm_conformance(weight, target.n, target.m)
    if info:
        record.update(info)
    return record


@torch.no_grad()
def prune_model(model: nn.Module, calibration: CalibrationSet | None, config: PruneConfig,
                progress: bool = True) -> dict:
    """Prune ``model`` in place. Returns the per-layer and global part of the report."""
    method = get_method(config.method)
    validate(model, config)
    selection = LayerSelection(config.targets, config.ignore)
    path, blocks = find_decoder_blocks(model)
    records: dict[str, dict] = {}
    bar = tqdm(total=len(blocks), desc=f"{method.name} {config.target.describe()}", unit="block", disable=not progress)

    if not method.needs:
        for index, block in enumerate(blocks):
            layers = block_layers(block, f"{path}.{index}", selection)
            for name in layers:
                records.update(_prune_group(method, layers, [name], None, config))
            bar.update()
    else:
        if calibration is None:
            raise CalibpruneError(f"method {method.name!r} needs calibration data: pass --calib")
        # blocks after the last one with selected layers need no forward passes at all
        last = max(i for i, block in enumerate(blocks) if block_layers(block, f"{path}.{i}", selection))
        runner = SequentialRunner(model, calibration.input_ids, config.runner)
        for step in runner:
            layers = block_layers(step.block, step.name, selection)
            if layers:
                stats: dict[str, InputStatistics] = {}

                def on_input(leader: str, x: torch.Tensor) -> None:
                    if leader not in stats:
                        stats[leader] = InputStatistics(x.shape[-1], method.needs)
                    stats[leader].update(x)

                leader_of = step.observe(layers, on_input)
                for leader, names in _group_by_leader(leader_of).items():
                    records.update(_prune_group(method, layers, names, stats[leader], config))
                del stats
            bar.update(len(blocks) - step.index if step.index == last else 1)
            if step.index == last:
                break
            step.advance()
    bar.close()
    return {"layers": records, "summary": summarize(model, records)}


def summarize(model: nn.Module, records: dict[str, dict]) -> dict:
    """Global sparsity over the pruned layers, over all block linear layers and over
    every parameter of the model (embeddings and lm_head included)."""
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
