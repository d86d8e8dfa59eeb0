"""What a result needs to be reproduced: package versions, host, fingerprints."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import sys
from datetime import UTC, datetime

_PACKAGES = ("calibprune", "torch", "transformers", "accelerate", "safetensors", "gguf", "numpy")


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES + tuple(extra):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict:
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "packages": package_versions(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# Instruction-set extensions that pick a different BLAS / oneDNN kernel, and so other float
# rounding: two machines that differ in one of them may give other digits for one cell.
_KERNEL_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2", "bf16", "i8mm",
)  # fmt: skip


def cpu_record() -> dict:
    """The processor a result was computed on: model name, the kernel-relevant instruction
    sets it has, and the number of logical CPUs (from /proc/cpuinfo where there is one)."""
    import os

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model", "hardware") and value.strip():
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags |= set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "machine": platform.machine(),
        "isa": [f for f in _KERNEL_FLAGS if f in flags],
        "logical_cpus": os.cpu_count(),
    }


def platform_record() -> dict:
    """What can move a result's last digits between machines: the CPU (model and
    instruction sets), the torch thread count and the library versions."""
    import torch

    return {"cpu": cpu_record(), "torch_threads": torch.get_num_threads(), "packages": package_versions()}


def platform_signature(record: dict | None) -> str:
    """One line that is equal for two cells exactly when their platforms match (None: unknown)."""
    if not record:
        return "unknown platform"
    cpu = record.get("cpu") or {}
    packages = ", ".join(f"{k} {v}" for k, v in sorted((record.get("packages") or {}).items()) if v)
    return f"{cpu.get('model')} [{' '.join(cpu.get('isa') or [])}], {record.get('torch_threads')} threads, {packages}"


def tensor_fingerprint(tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (first 16 hex digits)."""
    import torch

    digest = hashlib.sha256()
    digest.update(str(tensor.dtype).encode())
    digest.update(str(tuple(tensor.shape)).encode())
    digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
