"""Visit the decoder blocks that have layers to prune, with their input statistics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

from ..calibration import CalibrationSet
from ..config import PruneConfig
from ..models.layers import LayerSelection, block_layers, find_decoder_blocks
from ..models.placement import BlockPlacement
from ..models.runner import SequentialRunner
from ..options import OptionError
from .stats import InputStatistics, StatisticsCollector


def _group_by_leader(leader_of: dict[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name, leader in leader_of.items():
        groups.setdefault(leader, []).append(name)
    return groups


@dataclass
class BlockWork:
    """One block's selected layers, grouped by shared input, with their statistics."""

    index: int
    prefix: str
    layers: dict[str, nn.Module]
    groups: dict[str, list[str]]  # leader -> layers fed the same input
    stats: dict[str, InputStatistics] | None  # leader -> statistics (None: nothing needed)


def iterate_blocks(
    model: nn.Module,
    calibration: CalibrationSet | None,
    config: PruneConfig,
    needs: frozenset[str],
    read_only: bool = False,
    placement: BlockPlacement | None = None,
) -> Iterator[BlockWork]:
    """Yield every block with selected layers, in order, after collecting ``needs``.

    Without statistics the blocks are just visited. Otherwise the sequential runner
    feeds each block the outputs of the blocks before it *as the caller left them*:
    the engine prunes a block before asking for the next one (sequential pruning); the
    OWL pass changes nothing (a dense pass) and says so with ``read_only=True``: each
    block then runs once, its observed forward doubling as the one that feeds the next
    block. Blocks after the last one with selected layers are never run.

    ``placement`` (``--offload``) puts each yielded block on the device for the time
    the caller holds it (default: the model stays where it is).
    """
    selection = LayerSelection(config.targets, config.ignore)
    path, blocks = find_decoder_blocks(model)
    placement = placement or BlockPlacement(model)
    if not needs:
        for index, block in enumerate(blocks):
            layers = block_layers(block, f"{path}.{index}", selection)
            if layers:
                with placement.block(index):
                    yield BlockWork(index, f"{path}.{index}", layers, {n: [n] for n in layers}, None)
        return
    if calibration is None:
        raise OptionError(
            "calibration.source",
            f"{{method={config.method}}}, {{allocation={config.allocation}}}, {{refine={config.refine}}} looks at "
            "activations and needs calibration data: pass {calibration.source}",
        )
    last = max(i for i, block in enumerate(blocks) if block_layers(block, f"{path}.{i}", selection))
    runner = SequentialRunner(model, calibration.input_ids, config.runner, placement)
    with contextlib.closing(iter(runner)) as steps:  # stopping early offloads (and saves) the last block now
        for step in steps:
            layers = block_layers(step.block, step.name, selection)
            if layers:
                collector = StatisticsCollector(needs)
                leader_of = step.observe(layers, collector, advance=read_only)
                yield BlockWork(step.index, step.name, layers, _group_by_leader(leader_of), collector.stats)
            if step.index == last:
                break
            step.advance()
