"""The one sequential block runner: calibration activations, block by block.

Layer-wise pruning (SparseGPT, Wanda and everything built on them) needs, for each
decoder block in turn, the inputs its linear layers see when the *already pruned*
earlier blocks feed it. This module provides exactly that, for any HF decoder-only
model, and nothing about pruning:

1. **Capture.** One genuine ``model(input_ids, use_cache=False)`` call per batch with
   every block's ``forward`` temporarily replaced by a recorder. The recorders keep the
   hidden states entering block 0 and the exact positional and keyword arguments the
   model passes to each block (attention masks, rotary ``position_embeddings``,
   per-layer sliding-window masks, ...), then pass the hidden states through unchanged;
   the last one stops the forward, so neither the blocks nor the LM head run. Nothing
   is rebuilt by hand, so new transformers versions and architectures keep working.
   Any cache object is dropped from the captured arguments: a KV cache carried into
   the per-batch block calls would let attention see earlier samples.
2. **Observe.** :meth:`BlockStep.observe` runs the block over all batches with
   forward-pre-hooks on chosen linear layers and hands each *distinct* input tensor to
   a callback once (q/k/v share one input; gate/up another). The forward stops as soon
   as every observed layer has seen its input, so the block's last matmul is skipped.
3. **Advance.** :meth:`BlockStep.advance` recomputes the block's outputs with its
   current (pruned) weights; they become the next block's inputs. A caller that will
   not change the block (a dense pass) asks ``observe(..., advance=True)`` instead:
   one full forward both observes and produces the outputs.

Hidden states of all samples wait between blocks in an :class:`ActivationStore`; the
disk store keeps resident memory flat in the number of samples.

Where the weights wait is the runner's :class:`~calibprune.models.placement.BlockPlacement`
(``--offload none|cpu|disk``): the runner onloads each block before its step and
offloads it after, and asks for the non-block parts only during the capture. The
runner computes on the placement's device; everything else is the same code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import RunnerOptions
from ..errors import CalibpruneError
from ..utils.io import pid_alive
from ..utils.memory import ACTIVATIONS_SHARE, fits
from .layers import find_decoder_blocks
from .placement import BlockPlacement

InputCallback = Callable[[str, torch.Tensor], None]


class _StopForward(Exception):
    """Raised from a hook to end a forward pass early; never escapes this module."""


# --------------------------------------------------------------------------- stores

STORE_PREFIX = "calibprune-acts-"


def sweep_stale_stores(root: str | Path | None = None) -> list[Path]:
    """Remove activation stores whose process is gone (killed with -9, power loss...).

    A store is ``calibprune-acts-<pid>-<random>`` in the temporary directory; only the
    folders whose ``<pid>`` no longer runs are removed, so concurrent runs are safe.
    Returns the removed folders."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for folder in root.glob(f"{STORE_PREFIX}*"):
        pid = folder.name[len(STORE_PREFIX) :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class ActivationStore:
    """Hidden states of every calibration batch between two blocks."""

    def write(self, index: int, tensor: torch.Tensor) -> None:
        raise NotImplementedError

    def read(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemoryStore(ActivationStore):
    """In memory: where the tensors are (``memory``: the device), or in ``home`` and
    brought to ``device`` on read (``cpu``: host RAM for a GPU run whose activations do
    not fit next to the block)."""

    def __init__(self, home: torch.device | str | None = None, device: torch.device | str | None = None):
        self.home = torch.device(home) if home is not None else None
        self.device = torch.device(device) if device is not None else None
        self._tensors: dict[int, torch.Tensor] = {}

    def write(self, index, tensor):
        tensor = tensor.detach()
        self._tensors[index] = tensor.to(self.home) if self.home is not None else tensor

    def read(self, index):
        tensor = self._tensors[index]
        return tensor.to(self.device) if self.device is not None else tensor

    def close(self):
        self._tensors.clear()


STORE_FIT_SHARE = ACTIVATIONS_SHARE  # the budget: calibprune.utils.memory


def choose_activation_store(
    requested: str, activation_bytes: int, device: torch.device, free_device: int, free_host: int
) -> tuple[str, str]:
    """``--activation-store`` (value, reason). ``auto``: ``disk`` on a CPU run (resident
    memory stays flat in the number of samples; the files cost little next to CPU compute);
    on a GPU ``memory`` when the block inputs and outputs (``activation_bytes``) take at most
    half the device's free memory, else ``cpu`` when they take at most half the host's
    available memory, else ``disk``."""
    gib = 1024**3
    size = f"{activation_bytes / gib:.2f} GiB of block inputs and outputs"
    if requested != "auto":
        return requested, f"{requested}, as given ({size})"
    if device.type == "cpu":
        return "disk", f"auto: a CPU run keeps activations on disk ({size})"
    if fits(activation_bytes, free_device, STORE_FIT_SHARE):
        return "memory", f"auto: {size}, {free_device / gib:.1f} GiB free on {device}"
    if fits(activation_bytes, free_host, STORE_FIT_SHARE):
        return "cpu", f"auto: {size}: too big for {device}; {free_host / gib:.1f} GiB free on the host"
    return "disk", f"auto: {size}: too big for {device} and the host"


def activation_bytes(model: nn.Module, input_ids: torch.Tensor) -> int:
    """Bytes of one block's inputs plus outputs for every calibration sample."""
    width = model.get_input_embeddings().embedding_dim
    element = next(model.parameters()).element_size()
    return 2 * input_ids.numel() * width * element


def resolve_activation_store(model: nn.Module, input_ids: torch.Tensor, requested: str, device) -> tuple[str, str]:
    """:func:`choose_activation_store` with the model's sizes and the memory free now."""
    from ..utils.device import free_memory_bytes

    device = torch.device(device)
    needed = activation_bytes(model, input_ids)
    if requested != "auto" or device.type == "cpu":
        return choose_activation_store(requested, needed, device, 0, 0)
    return choose_activation_store(
        requested, needed, device, free_memory_bytes(device), free_memory_bytes(torch.device("cpu"))
    )


class DiskStore(ActivationStore):
    """One raw file per batch. Plain reads (no mmap), so the pages are not counted in
    this process's resident memory once the tensor is freed. Tensors go through the
    CPU on their way to the file and come back on ``device``."""

    def __init__(self, folder: Path, device: torch.device | str = "cpu"):
        self.folder = folder
        self.device = torch.device(device)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._meta: dict[int, tuple[torch.dtype, tuple[int, ...]]] = {}

    def write(self, index, tensor):
        tensor = tensor.detach().to("cpu").contiguous()
        self._meta[index] = (tensor.dtype, tuple(tensor.shape))
        tensor.view(-1).view(torch.uint8).numpy().tofile(self.folder / f"{index}.bin")

    def read(self, index):
        dtype, shape = self._meta[index]
        raw = np.fromfile(self.folder / f"{index}.bin", dtype=np.uint8)
        return torch.from_numpy(raw).view(dtype).view(shape).to(self.device)

    def close(self):
        shutil.rmtree(self.folder, ignore_errors=True)


# --------------------------------------------------------------------------- capture


@dataclass
class BlockCall:
    """How the model calls one block: the arguments besides the hidden states."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    hidden_as_keyword: bool = False

    def __call__(self, block: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        if self.hidden_as_keyword:
            out = block(*self.args, hidden_states=hidden, **self.kwargs)
        else:
            out = block(hidden, *self.args, **self.kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out


def _without_cache(value):
    """Replace KV-cache objects by None and turn caching flags off."""
    try:
        from transformers.cache_utils import Cache
    except ImportError:  # pragma: no cover
        Cache = ()  # type: ignore[assignment]
    return None if isinstance(value, Cache) else value


_CACHE_KEYS = ("past_key_value", "past_key_values", "cache", "layer_past")


def _sanitize_call(args: tuple, kwargs: dict) -> BlockCall:
    hidden_as_keyword = not args
    rest = tuple(_without_cache(a) for a in (args[1:] if args else args))
    clean = {}
    for key, value in kwargs.items():
        if key == "hidden_states" and hidden_as_keyword:
            continue
        if key in _CACHE_KEYS:
            value = None
        elif key == "use_cache":
            value = False
        clean[key] = _without_cache(value)
    return BlockCall(args=rest, kwargs=clean, hidden_as_keyword=hidden_as_keyword)


@contextlib.contextmanager
def _recording_blocks(blocks: nn.ModuleList, record_calls: bool):
    """Replace each block's forward by a pass-through recorder (see module docstring)."""
    record = {"first_input": None, "calls": []}
    last = len(blocks) - 1 if record_calls else 0
    passed: list[torch.Tensor | None] = [None]

    def make(index: int):
        def recorder(*args, **kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            if index == 0:
                record["first_input"] = hidden.detach()
            elif hidden is not passed[0]:
                raise CalibpruneError(
                    "could not capture block arguments: the model post-processes each block's output "
                    "(older tuple-returning decoder layers?); calibprune needs transformers >= 5"
                )
            if record_calls:
                record["calls"].append(_sanitize_call(args, kwargs))
            if index == last:
                raise _StopForward
            passed[0] = hidden
            return hidden

        return recorder

    for index, block in enumerate(blocks):
        block.forward = make(index)
    try:
        yield record
    finally:
        for block in blocks:
            del block.forward  # drop the instance attribute: the class forward is back


# --------------------------------------------------------------------------- runner


class SequentialRunner:
    """Iterate over decoder blocks with calibration activations flowing through them.

    >>> runner = SequentialRunner(model, input_ids, RunnerOptions(batch_size=4))
    >>> for step in runner:
    ...     step.observe(layers, on_input)   # statistics from the block's real inputs
    ...     ...                              # change the block's weights
    ...     step.advance()                   # recompute outputs with the new weights
    """

    def __init__(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        options: RunnerOptions = RunnerOptions(),
        placement: BlockPlacement | None = None,
    ):
        if input_ids.ndim != 2 or input_ids.shape[0] == 0:
            raise CalibpruneError(
                f"calibration input must be [nsamples, seqlen] with nsamples >= 1, got {tuple(input_ids.shape)}"
            )
        self.model = model
        self.input_ids = input_ids
        self.options = options
        self.path, self.blocks = find_decoder_blocks(model)
        self.placement = placement or BlockPlacement(model)
        self.store, self.store_reason = resolve_activation_store(
            model, input_ids, options.activation_store, self.placement.device
        )
        n = input_ids.shape[0]
        size = options.batch_size
        self.batches = [slice(start, min(start + size, n)) for start in range(0, n, size)]
        self._calls: dict[int, list[BlockCall]] = {}  # batch size -> one BlockCall per block
        self._tmp: Path | None = None
        self._inputs: ActivationStore | None = None

    # -- stores ------------------------------------------------------------------
    def _new_store(self, tag: str) -> ActivationStore:
        if self.store == "memory":
            return MemoryStore()
        if self.store == "cpu":
            return MemoryStore(home="cpu", device=self.placement.device)
        if self._tmp is None:
            sweep_stale_stores()
            self._tmp = Path(tempfile.mkdtemp(prefix=f"{STORE_PREFIX}{os.getpid()}-"))
        return DiskStore(self._tmp / tag, self.placement.device)

    def close(self) -> None:
        if self._inputs is not None:
            self._inputs.close()
            self._inputs = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- capture -----------------------------------------------------------------
    @torch.no_grad()
    def _capture(self) -> None:
        store = self._new_store("in-0")
        with self.placement.capture():
            for index, batch in enumerate(self.batches):
                ids = self.input_ids[batch].to(self.placement.device)
                need_calls = ids.shape[0] not in self._calls
                with _recording_blocks(self.blocks, record_calls=need_calls) as record:
                    try:
                        self.model(input_ids=ids, use_cache=False)
                    except _StopForward:
                        pass
                if record["first_input"] is None:
                    raise CalibpruneError("the model's forward never reached its first decoder block")
                store.write(index, record["first_input"])
                if need_calls:
                    self._calls[ids.shape[0]] = record["calls"]
        self._inputs = store

    def call_for(self, block_index: int, batch_size: int) -> BlockCall:
        return self._calls[batch_size][block_index]

    def __iter__(self) -> Iterator[BlockStep]:
        current = None  # the block on the device, if any
        try:
            self._capture()
            for index, block in enumerate(self.blocks):
                self.placement.onload(index)
                current = index
                step = BlockStep(self, index, block)
                yield step
                if not step.advanced:
                    step.advance()
                current = None
                self.placement.offload(index)
        except GeneratorExit:  # the caller stopped after this block (nothing later to prune): it is done
            if current is not None:
                current, done = None, current
                self.placement.offload(done)
            raise
        finally:
            if current is not None:  # an error: the block is abandoned, not saved
                self.placement.offload(current, save=False)
            self.close()

    def __len__(self) -> int:
        return len(self.blocks)


class _InputObserver:
    """Forward-pre-hook state of :meth:`BlockStep.observe`.

    During the first batch, inputs are kept alive so that storage identity (same data
    pointer, shape, strides and version) proves that two layers got the same tensor;
    that grouping is then reused for every later batch.
    """

    def __init__(self, expected: int, on_input: InputCallback, stop_early: bool):
        self.expected = expected
        self.stop_early = stop_early
        self.on_input = on_input
        self.leader_of: dict[str, str] = {}
        self.grouping_known = False
        self.fired: set[str] = set()
        self.alive: list[tuple[str, torch.Tensor, int]] = []

    def start_batch(self) -> None:
        self.fired = set()

    def end_batch(self) -> None:
        self.grouping_known = True
        self.alive.clear()

    def _leader(self, name: str, x: torch.Tensor) -> str:
        for leader, ref, version in self.alive:
            same = ref.data_ptr() == x.data_ptr() and ref.shape == x.shape and ref.stride() == x.stride()
            if same and version == x._version:
                return leader
        self.alive.append((name, x, x._version))
        return name

    def hook(self, name: str):
        def pre_hook(module, args):
            x = args[0]
            if not self.grouping_known:
                self.leader_of[name] = self._leader(name, x)
            if self.leader_of[name] == name:
                self.on_input(name, x)
            self.fired.add(name)
            if self.stop_early and len(self.fired) == self.expected:
                raise _StopForward  # every observed layer has its input: skip the rest of the block

        return pre_hook


class BlockStep:
    """One decoder block, with the calibration inputs that reach it."""

    def __init__(self, runner: SequentialRunner, index: int, block: nn.Module):
        self.runner = runner
        self.index = index
        self.block = block
        self.name = f"{runner.path}.{index}"
        self.advanced = False

    def _batches(self) -> Iterator[tuple[int, torch.Tensor, BlockCall]]:
        for b in range(len(self.runner.batches)):
            hidden = self.runner._inputs.read(b)
            yield b, hidden, self.runner.call_for(self.index, hidden.shape[0])

    @torch.no_grad()
    def observe(self, layers: dict[str, nn.Module], on_input: InputCallback, advance: bool = False) -> dict[str, str]:
        """Run the block over all batches, passing each distinct linear-layer input to
        ``on_input(leader_name, x)`` once per batch.

        Layers fed the very same tensor (q/k/v, gate/up) form a group whose first member
        in execution order is the *leader*; the callback only sees leaders. Returns
        ``{layer_name: leader_name}`` for every observed layer.

        ``advance=True`` promises that the block's weights will not change: the forward
        then runs to the end and its outputs feed the next block (what :meth:`advance`
        would compute), saving a second pass over the block.
        """
        observer = _InputObserver(len(layers), on_input, stop_early=not advance)
        outputs = self.runner._new_store(f"in-{self.index + 1}") if advance and not self._is_last else None
        handles = [module.register_forward_pre_hook(observer.hook(name)) for name, module in layers.items()]
        try:
            for b, hidden, call in self._batches():
                observer.start_batch()
                try:
                    out = call(self.block, hidden)
                    if outputs is not None:
                        outputs.write(b, out)
                except _StopForward:
                    pass
                missing = set(layers) - observer.fired
                if missing:
                    raise CalibpruneError(f"layers {sorted(missing)} of {self.name} were never called in its forward")
                observer.end_batch()
        except BaseException:
            if outputs is not None:
                outputs.close()
            raise
        finally:
            for handle in handles:
                handle.remove()
        if advance:
            self._replace_inputs(outputs)
        return observer.leader_of

    @property
    def _is_last(self) -> bool:
        return self.index == len(self.runner.blocks) - 1

    def _replace_inputs(self, outputs: ActivationStore | None) -> None:
        """This block's outputs become the runner's current inputs (the next block's)."""
        self.advanced = True
        if outputs is None:  # the last block: nothing consumes its outputs
            return
        self.runner._inputs.close()
        self.runner._inputs = outputs

    @torch.no_grad()
    def advance(self) -> None:
        """Recompute this block's outputs with its current weights; they feed the next block.

        A no-op for the last block: nothing consumes its outputs."""
        if self.advanced:
            return
        if self._is_last:
            self._replace_inputs(None)
            return
        outputs = self.runner._new_store(f"in-{self.index + 1}")
        for b, hidden, call in self._batches():
            outputs.write(b, call(self.block, hidden))
        self._replace_inputs(outputs)

    @torch.no_grad()
    def outputs(self) -> Iterator[torch.Tensor]:
        """This block's outputs per batch with its current weights (not stored)."""
        for _, hidden, call in self._batches():
            yield call(self.block, hidden)
