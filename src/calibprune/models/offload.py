"""``--offload``: choose where the weights wait, and open a model accordingly.

Rule of ``auto`` (recorded in the report with its reason), for W bytes of weights in
the run's dtype and F bytes free on the device (the GPU's free memory; the host's
available memory for ``--device cpu``):

* ``none`` when W <= 0.6 F (the rest is room for activations, statistics and, for
  SparseGPT, the Hessians), or when the same run also evaluates the model (perplexity,
  tasks or a study cell keep it in memory, whole);
* else, on a GPU, ``cpu`` when W <= 0.6 x the host's available memory;
* else ``disk`` (the checkpoint's safetensors files, memory-mapped).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import CalibpruneError
from ..options import OptionError, literal
from ..utils.memory import WEIGHTS_SHARE, fits
from .checkpoint import Checkpoint, ShardWriter, checkpoint_folder
from .loading import checkpoint_dtype, load_model, meta_model, parse_dtype
from .placement import OFFLOAD_CHOICES, BlockPlacement, CpuOffload, DiskOffload

FIT_SHARE = WEIGHTS_SHARE  # the budget: calibprune.utils.memory
GIB = 1024**3


def check_offload(value: str) -> str:
    if value not in OFFLOAD_CHOICES:
        raise OptionError(
            "offload",
            f"{{offload}} {literal(repr(value))} is unknown: use one of {', '.join(OFFLOAD_CHOICES)} "
            "(none: whole model on the device; cpu: weights wait in RAM; disk: in the checkpoint files)",
        )
    return value


def weight_bytes(skeleton, dtype: torch.dtype) -> int:
    """Bytes of the model's parameters (tied ones once) in ``dtype``."""
    size = torch.empty((), dtype=dtype).element_size()
    return sum(p.numel() for p in skeleton.parameters()) * size


@dataclass
class OffloadChoice:
    value: str
    reason: str

    def to_dict(self) -> dict:
        return {"offload": self.value, "reason": self.reason}


def choose_offload(
    requested: str, weights: int, device: torch.device, free_device: int, free_host: int, evaluates: bool
) -> OffloadChoice:
    """Apply the module's rule (``requested`` other than ``auto`` is taken as given)."""
    sizes = f"{weights / GIB:.2f} GiB of weights, {free_device / GIB:.1f} GiB free on {device}"
    if requested != "auto":
        return OffloadChoice(requested, f"{requested}, as given ({sizes})")
    if evaluates:
        return OffloadChoice("none", f"auto: the run also evaluates the model, which needs it whole ({sizes})")
    if fits(weights, free_device, FIT_SHARE):
        return OffloadChoice("none", f"auto: {sizes}: fits (<= {FIT_SHARE:.0%})")
    if device.type != "cpu" and fits(weights, free_host, FIT_SHARE):
        host = f"{free_host / GIB:.1f} GiB free on the host"
        return OffloadChoice("cpu", f"auto: {sizes}: too big for the device; {host}")
    return OffloadChoice("disk", f"auto: {sizes}, {free_host / GIB:.1f} GiB free on the host: too big for both")


def run_dtype(resolved: str, config, requested: str | torch.dtype | None) -> torch.dtype:
    """The dtype the weights will have: ``--dtype``, else what ``from_pretrained(dtype="auto")``
    picks (the config's, else the checkpoint's first floating tensor's), else float32."""
    dtype = parse_dtype(requested) or checkpoint_dtype(config)
    if dtype is None:
        try:
            dtype = Checkpoint(checkpoint_folder(resolved)).first_float_dtype()
        except CalibpruneError:
            dtype = None
    return dtype or torch.float32


def open_model(
    resolved: str,
    config,
    offload: str,
    device: torch.device,
    dtype: torch.dtype,
    output_folder=None,
) -> tuple[torch.nn.Module, BlockPlacement]:
    """The model and its placement for ``--offload``. ``disk``: a weightless skeleton whose
    pruned blocks stream into ``output_folder`` (when given) as sharded safetensors."""
    if offload == "none":
        model = load_model(resolved, dtype=dtype, device=device)
        return model, BlockPlacement(model, device)
    if offload == "cpu":
        model = load_model(resolved, dtype=dtype, device="cpu")
        return model, CpuOffload(model, device)
    checkpoint = Checkpoint(checkpoint_folder(resolved))
    model = meta_model(config, dtype)
    placement = DiskOffload(model, device, checkpoint, dtype)
    if output_folder is not None:
        placement.writer = ShardWriter(output_folder, len(placement.blocks) + 1)
    return model, placement
