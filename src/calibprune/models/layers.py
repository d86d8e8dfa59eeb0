"""Find decoder blocks and their prunable linear layers in any HF decoder-only model.

Two kinds of linear layer exist in Hugging Face models: ``nn.Linear`` (weight stored
``[out, in]``) and GPT-2's ``Conv1D`` (weight stored transposed, ``[in, out]``). Every
algorithm in calibprune works on an ``[out, in]`` matrix; :func:`weight_matrix` returns
that orientation as a *view*, so writing into it writes into the module.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CalibpruneError
from ..options import OptionError, literal

try:  # transformers keeps Conv1D here in every 4.x/5.x release
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover - only without transformers
    Conv1D = ()  # type: ignore[assignment]

LINEAR_TYPES = (nn.Linear,) + ((Conv1D,) if isinstance(Conv1D, type) else ())


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, LINEAR_TYPES)


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The weight as ``[out_features, in_features]``; a view of the parameter's data."""
    if isinstance(module, nn.Linear):
        return module.weight.data
    if LINEAR_TYPES[1:] and isinstance(module, LINEAR_TYPES[1:]):
        return module.weight.data.t()
    raise TypeError(f"{type(module).__name__} is not a linear layer")


def input_width(module: nn.Module) -> int:
    return weight_matrix(module).shape[1]


def _num_layers(config) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def find_decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ``ModuleList`` holding the decoder blocks, and its dotted path.

    Generic rule: the ``ModuleList`` whose length is the config's layer count and whose
    children are all of one class containing linear layers; if several qualify, the one
    holding the most parameters (the decoder stack, not e.g. a list of norms).
    """
    expected = _num_layers(getattr(model, "config", None)) if hasattr(model, "config") else None
    candidates = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if expected is not None and len(module) != expected:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        if not any(is_linear(m) for m in module[0].modules()):
            continue
        size = sum(p.numel() for p in module.parameters())
        candidates.append((size, name, module))
    if not candidates:
        raise CalibpruneError(
            f"could not find the decoder blocks of {type(model).__name__}: calibprune expects a "
            "decoder-only model with a ModuleList of identical blocks (num_hidden_layers long)"
        )
    _, name, module = max(candidates, key=lambda c: c[0])
    return name, module


@dataclass(frozen=True)
class LayerSelection:
    """Which linear layers inside the decoder blocks to prune (fnmatch patterns).

    Patterns match the layer's full dotted name (``model.layers.3.mlp.down_proj``) or its
    name inside the block (``mlp.down_proj``). Empty ``targets`` means every linear layer
    in every block; ``ignore`` removes layers from that.
    """

    targets: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    def selects(self, full_name: str, local_name: str) -> bool:
        def hit(patterns):
            return any(fnmatch.fnmatchcase(full_name, p) or fnmatch.fnmatchcase(local_name, p) for p in patterns)

        if self.targets and not hit(self.targets):
            return False
        return not hit(self.ignore)


def block_layers(block: nn.Module, prefix: str, selection: LayerSelection = LayerSelection()) -> dict[str, nn.Module]:
    """Selected linear layers of one block, by full dotted name, in definition order."""
    layers = {}
    for local, module in block.named_modules():
        if local and is_linear(module):
            full = f"{prefix}.{local}"
            if selection.selects(full, local):
                layers[full] = module
    return layers


def all_block_layers(model: nn.Module, selection: LayerSelection = LayerSelection()) -> dict[str, nn.Module]:
    """Selected layers of all blocks; refuses patterns that match nothing or reach outside the blocks."""
    path, blocks = find_decoder_blocks(model)
    every: dict[str, str] = {}  # full name -> name inside its block
    for index, block in enumerate(blocks):
        prefix = f"{path}.{index}"
        every.update({full: full[len(prefix) + 1 :] for full in block_layers(block, prefix)})
    for pattern in selection.targets:
        outside = [
            name
            for name, module in model.named_modules()
            if is_linear(module) and name not in every and fnmatch.fnmatchcase(name, pattern)
        ]
        if outside:
            raise OptionError(
                "targets",
                f"{{targets}} {literal(repr(pattern))} matches {literal(', '.join(outside))} outside the decoder "
                "blocks: "
                "calibprune prunes only linear layers inside decoder blocks (lm_head and embeddings stay dense)",
            )
        if not any(
            fnmatch.fnmatchcase(full, pattern) or fnmatch.fnmatchcase(local, pattern) for full, local in every.items()
        ):
            raise OptionError(
                "targets",
                f"{{targets}} {literal(repr(pattern))} matches no linear layer inside the decoder blocks; "
                f"names look like {literal(repr(next(iter(every))))} or {literal(repr(next(iter(every.values()))))}",
            )
    layers: dict[str, nn.Module] = {}
    for index, block in enumerate(blocks):
        layers.update(block_layers(block, f"{path}.{index}", selection))
    if not layers:
        raise OptionError("targets", "the {targets}/{ignore} patterns leave no layer to prune")
    return layers
