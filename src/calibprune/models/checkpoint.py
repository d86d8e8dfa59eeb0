"""A model's safetensors files, read and written a few tensors at a time.

:class:`Checkpoint` reads named tensors from the (possibly sharded) safetensors files of
a model folder through ``safetensors.safe_open`` (memory-mapped): only the tensors
asked for are read, and the files are closed after each read, so their pages are not
kept mapped (and counted in resident memory) between blocks.

:class:`ShardWriter` writes a model as the standard sharded layout that
``from_pretrained`` loads: ``model-0000k-of-0000N.safetensors`` files and a
``model.safetensors.index.json`` mapping every tensor to its file, one shard per
decoder block (written as soon as the block is done) plus one for everything else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from ..options import OptionError, literal

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def checkpoint_folder(resolved: str) -> Path:
    """The local folder holding ``resolved``'s files (a hub id: its cached snapshot,
    fetched like ``from_pretrained`` would)."""
    folder = Path(resolved).expanduser()
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(resolved, allow_patterns=["*.json", "*.safetensors"]))


class Checkpoint:
    """Tensor name -> file of a model folder's safetensors checkpoint."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = self.folder / INDEX_FILE
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
        elif (self.folder / SINGLE_FILE).exists():
            from safetensors import safe_open

            with safe_open(self.folder / SINGLE_FILE, framework="pt") as f:
                weight_map = dict.fromkeys(f.keys(), SINGLE_FILE)
        else:
            found = sorted(p.name for p in self.folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf"))
            raise OptionError(
                "offload",
                f"{{offload=disk}} reads weights from safetensors files, and {literal(self.folder)} has none "
                f"({literal(', '.join(found) or 'no weight files')}): re-save the model with save_pretrained "
                "(safetensors is its default), or pass {offload=cpu}",
            )
        self.files: dict[str, str] = weight_map

    def __contains__(self, name: str) -> bool:
        return name in self.files

    @property
    def names(self) -> list[str]:
        return list(self.files)

    def first_float_dtype(self) -> torch.dtype | None:
        """dtype of the first floating-point tensor (what ``dtype="auto"`` falls back to)."""
        for name in self.files:
            tensor = self.read([name])[name]
            if tensor.is_floating_point():
                return tensor.dtype
        return None

    def read(self, names: Iterable[str], device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
        """``{name: tensor}`` on ``device``; floating-point tensors cast to ``dtype`` (if
        given). Each tensor is copied out of the mapped file, which is closed after."""
        from safetensors import safe_open

        names = list(names)
        missing = [n for n in names if n not in self.files]
        if missing:
            raise OptionError(
                "offload",
                f"{literal(self.folder)} has no tensor {literal(repr(missing[0]))}: {{offload=disk}} needs a "
                "checkpoint whose tensor names are the model's own (one written by save_pretrained of this "
                "architecture); pass {offload=cpu}",
            )
        by_file: dict[str, list[str]] = {}
        for name in names:
            by_file.setdefault(self.files[name], []).append(name)
        out = {}
        for file, group in by_file.items():
            with safe_open(self.folder / file, framework="pt", device="cpu") as f:
                for name in group:
                    tensor = f.get_tensor(name)
                    cast = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
                    # copy=True: never keep a view into the mapped file once it is closed
                    out[name] = tensor.to(device=device, dtype=cast, copy=True)
        return out


class ShardWriter:
    """Streams a model into ``folder`` as ``shards`` safetensors files plus the index.

    ``write(index, tensors)`` writes shard ``index`` (0-based) at once; ``finish()``
    writes the index once every shard is there. Tensors are moved to the CPU first."""

    def __init__(self, folder: str | Path, shards: int):
        self.folder = Path(folder)
        self.shards = shards
        self.weight_map: dict[str, str] = {}
        self.total_size = 0
        self.written: set[int] = set()

    def file_name(self, index: int) -> str:
        return f"model-{index + 1:05d}-of-{self.shards:05d}.safetensors"

    def write(self, index: int, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        if index in self.written:
            raise RuntimeError(f"shard {index} was already written")
        if not self.folder.is_dir():  # the output was abandoned (an error removed it): nothing to keep
            return
        name = self.file_name(index)
        cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(cpu, self.folder / name, metadata={"format": "pt"})
        for key, tensor in cpu.items():
            self.weight_map[key] = name
            self.total_size += tensor.numel() * tensor.element_size()
        self.written.add(index)

    def finish(self) -> Path:
        missing = sorted(set(range(self.shards)) - self.written)
        if missing:
            raise RuntimeError(f"shards {missing} were never written")
        index = {"metadata": {"total_size": self.total_size}, "weight_map": dict(sorted(self.weight_map.items()))}
        path = self.folder / INDEX_FILE
        path.write_text(json.dumps(index, indent=2) + "\n")
        return path
