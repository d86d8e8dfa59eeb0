"""Where a model's weights wait while the sequential runner works on one block.

The runner (:mod:`calibprune.models.runner`) asks its placement for three things:
the non-block parts the capture forward needs (embeddings, rotary tables) on the
device during :meth:`BlockPlacement.capture`, block ``i`` on the device between
:meth:`onload` and :meth:`offload`, and the device itself. One runner, three
strategies (``--offload``), as SparseGPT's ``llama.py`` and llm-compressor's
sequential pipeline place blocks:

* ``none`` (:class:`BlockPlacement`): the whole model is on the device; nothing moves.
* ``cpu`` (:class:`CpuOffload`): the weights wait on the CPU; a block is moved to the
  device for its step and back after.
* ``disk`` (:class:`DiskOffload`): the model is a weightless skeleton; a block's tensors
  are read from the checkpoint's safetensors files (memory-mapped) when it is onloaded
  and dropped (back to the meta device) when it is offloaded. Inside :meth:`saving`,
  every block offloaded is first written to the output's shard (streaming save), and
  the blocks never visited and the non-block tensors are copied from the checkpoint
  at the end, so the model is never whole in memory.

Tensors are replaced with ``torch.utils.swap_tensors``, which keeps each Python
parameter object (tied lm_head/embed_tokens stay one parameter) across devices,
meta included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..utils.resources import return_freed_memory
from .checkpoint import Checkpoint, ShardWriter
from .layers import find_decoder_blocks

OFFLOAD_CHOICES = ("auto", "none", "cpu", "disk")


def _replace(tensor: torch.Tensor, new: torch.Tensor) -> None:
    """Give ``tensor`` (a module's parameter or buffer) the storage of ``new``, in place."""
    if isinstance(tensor, nn.Parameter):
        new = nn.Parameter(new, requires_grad=tensor.requires_grad)
    torch.utils.swap_tensors(tensor, new)


def resident_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters that hold real data (not on the meta device)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.device.type != "meta")


class BlockPlacement:
    """``--offload none``: the whole model already sits on ``device``."""

    name = "none"

    def __init__(self, model: nn.Module, device: torch.device | str | None = None):
        self.model = model
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.path, self.blocks = find_decoder_blocks(model)
        self.peak_resident_bytes = 0

    # -- what the runner calls -------------------------------------------------------
    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """The parts outside the blocks that the capture forward runs are on the device."""
        self._bring(self._rest_names())
        self._note_resident()
        try:
            yield
        finally:
            self._send(self._rest_names(), save=False)

    def onload(self, index: int) -> None:
        self._bring(self._block_names(index))
        self._note_resident()

    def offload(self, index: int, save: bool = True) -> None:
        """Block ``index`` is done (``save``: its weights are final) or abandoned."""
        self._send(self._block_names(index), save=save, block=index)

    @contextlib.contextmanager
    def block(self, index: int) -> Iterator[None]:
        """Block ``index`` on the device for the duration of the ``with``."""
        self.onload(index)
        try:
            yield
        except GeneratorExit:  # a generator closed early: the block is done
            self.offload(index)
            raise
        except BaseException:
            self.offload(index, save=False)
            raise
        self.offload(index)

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """Blocks offloaded inside this ``with`` are final (the pruning pass)."""
        yield

    def describe(self) -> dict:
        return {"offload": self.name, "device": str(self.device)}

    # -- how tensors move (overridden by the offloading strategies) ------------------
    def _bring(self, names: list[str]) -> None:
        pass

    def _send(self, names: list[str], save: bool, block: int | None = None) -> None:
        pass

    # -- names -----------------------------------------------------------------------
    def _named_tensors(self) -> dict[str, torch.Tensor]:
        """Parameters (tied ones once, under their first name) and buffers, by dotted name."""
        tensors = dict(self.model.named_parameters())
        tensors.update(self.model.named_buffers())
        return tensors

    def _block_names(self, index: int) -> list[str]:
        prefix = f"{self.path}.{index}."
        return [n for n in self._named_tensors() if n.startswith(prefix)]

    def _rest_names(self) -> list[str]:
        prefix = f"{self.path}."
        return [n for n in self._named_tensors() if not n.startswith(prefix)]

    def _note_resident(self) -> None:
        self.peak_resident_bytes = max(self.peak_resident_bytes, resident_bytes(self.model))


class CpuOffload(BlockPlacement):
    """``--offload cpu``: weights wait on the CPU; each block visits the device for its step."""

    name = "cpu"

    def _move(self, names: list[str], device: torch.device) -> None:
        tensors = self._named_tensors()
        for name in names:
            if tensors[name].device != device:
                _replace(tensors[name], tensors[name].to(device))

    def _bring(self, names):
        self._move(names, self.device)

    def _send(self, names, save, block=None):
        self._move(names, torch.device("cpu"))


class DiskOffload(BlockPlacement):
    """``--offload disk``: ``model`` is a skeleton (:func:`~calibprune.models.loading.meta_model`);
    weights come from ``checkpoint`` in ``dtype`` when needed and go back to the meta
    device after. ``writer`` (optional) receives each finished block (streaming save)."""

    name = "disk"

    def __init__(self, model, device, checkpoint: Checkpoint, dtype: torch.dtype, writer: ShardWriter | None = None):
        super().__init__(model, device)
        self.checkpoint = checkpoint
        self.dtype = dtype
        self.writer = writer
        self._writing = False
        # what is saved: the checkpoint's tensors that the model has (keys it would ignore when
        # loading, and a tied lm_head stored twice, are left out, as save_pretrained leaves them)
        known = set(self._named_tensors())
        self._saved_keys = [k for k in checkpoint.names if k in known]
        prefix = f"{self.path}."
        self._rest_keys = [k for k in self._saved_keys if not k.startswith(prefix)]

    def _bring(self, names):
        tensors = self._named_tensors()
        params = {n for n, _ in self.model.named_parameters()}
        stored = [n for n in names if n in self.checkpoint]
        for name, value in self.checkpoint.read(stored, self.device, self.dtype).items():
            _replace(tensors[name], value)
        for name in names:  # buffers computed at construction (rotary tables) are not in the checkpoint
            if name not in params and name not in self.checkpoint and tensors[name].device != self.device:
                _replace(tensors[name], tensors[name].to(self.device))
        unread = [n for n in names if n in params and tensors[n].device.type == "meta"]
        if unread:
            self.checkpoint.read(unread[:1])  # raises the one-line error naming the tensor

    def _send(self, names, save, block=None):
        if save and self._writing and block is not None:
            self._write_block(block)
        tensors = self._named_tensors()
        params = {n for n, _ in self.model.named_parameters()}
        for name in names:
            tensor = tensors[name]
            if name in params:
                _replace(tensor, torch.empty(tensor.shape, dtype=tensor.dtype, device="meta"))
            elif tensor.device.type != "cpu":
                _replace(tensor, tensor.to("cpu"))
        return_freed_memory()  # else the C heap keeps each block's pages and grows with the depth

    # -- streaming save ----------------------------------------------------------------
    def _block_keys(self, index: int) -> list[str]:
        prefix = f"{self.path}.{index}."
        return [k for k in self._saved_keys if k.startswith(prefix)]

    def _write_block(self, index: int) -> None:
        """Block ``index``'s checkpoint tensors as the model holds them now, to its shard."""
        if self.writer is None or index in self.writer.written:
            return
        tensors = self._named_tensors()
        self.writer.write(index, {k: tensors[k] for k in self._block_keys(index)})

    @contextlib.contextmanager
    def saving(self):
        """Stream each finished block to the writer; at the end copy what was never
        onloaded (blocks after the last pruned one, embeddings, norm, lm_head) from the
        checkpoint in ``dtype``, one shard at a time, and write the index."""
        self._writing = self.writer is not None
        try:
            yield
        finally:
            self._writing = False
        if self.writer is None:
            return
        for index in range(len(self.blocks)):
            if index not in self.writer.written:
                self.writer.write(index, self.checkpoint.read(self._block_keys(index), dtype=self.dtype))
        self.writer.write(len(self.blocks), self.checkpoint.read(self._rest_keys, dtype=self.dtype))
        self.writer.finish()

    def describe(self):
        record = super().describe()
        record["peak_resident_weight_gib"] = round(self.peak_resident_bytes / 1024**3, 4)
        return record
