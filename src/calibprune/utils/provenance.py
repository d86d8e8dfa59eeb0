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


def tensor_fingerprint(tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (first 16 hex digits)."""
    import torch

    digest = hashlib.sha256()
    digest.update(str(tensor.dtype).encode())
    digest.update(str(tuple(tensor.shape)).encode())
    digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
