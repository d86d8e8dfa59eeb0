"""``--device`` and what a report says about it.

``auto`` is the one place that asks ``torch.cuda.is_available()``: every algorithm
takes its device from the tensors it is given, so the CPU and GPU paths are the same
code. A CUDA device that is not there is refused before any work, with the fix.
"""

from __future__ import annotations

import re

import torch

from ..options import OptionError, literal

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def resolve_device(value: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) -> the first CUDA device when one is visible, else the CPU."""
    if isinstance(value, torch.device):
        value = str(value)
    text = (value or "auto").strip().lower()
    match = _DEVICE_RE.match(text)
    if not match or (match.group(2) is not None and match.group(1) != "cuda"):
        raise OptionError("device", f"{{device}} {literal(repr(value))} is unknown: use one of {DEVICE_CHOICES}")
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise OptionError(
            "device",
            f"{{device={literal(value)}}}: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False, "
            f"torch {torch.__version__}): pass {{device=cpu}} (or auto), or install a CUDA build of PyTorch",
        )
    number = int(index or 0)
    if number >= torch.cuda.device_count():
        raise OptionError(
            "device",
            f"{{device={literal(value)}}}: only {torch.cuda.device_count()} CUDA device(s) are visible "
            f"(cuda:0..cuda:{torch.cuda.device_count() - 1}): pick one of those",
        )
    return torch.device("cuda", number)


def free_memory_bytes(device: torch.device) -> int:
    """Memory a new allocation can take on ``device`` now: the GPU's free memory, or the
    host's available memory (page cache counts as available) for the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def device_record(device: torch.device, dtype: torch.dtype | None = None) -> dict:
    """What a report says about where a run computed: device, dtype, GPU name and memory."""
    record: dict = {"device": str(device)}
    if dtype is not None:
        record["dtype"] = str(dtype).replace("torch.", "")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        record.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 1024**3, 2))
        record["cuda"] = torch.version.cuda
    return record
