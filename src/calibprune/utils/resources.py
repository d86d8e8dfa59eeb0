"""Wall time, CPU time and peak resident memory, per named stage.

CPU time (user + system, all threads) is reported next to wall time because on shared
machines wall time also counts the time other tenants hold the cores; ratios of CPU
times between two runs are the steadier comparison.

Peak memory comes from the kernel's high-water mark (``VmHWM``), which Linux lets a
process reset by writing ``5`` to ``/proc/self/clear_refs``; so each stage reports its
own peak, not the peak of everything before it. Where that is not allowed the peak
is the process-wide one (``ru_maxrss``) and the report says so.

On a CUDA device each stage also reports the GPU's peak allocated memory
(``torch.cuda.max_memory_allocated``, reset at the start of the stage).
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

GIB = 1024**3


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        import psutil

        return psutil.Process().memory_info().rss


def _read_hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS. Returns False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def return_freed_memory() -> bool:
    """Hand the C heap's free pages back to the kernel (glibc ``malloc_trim(0)``).

    glibc keeps freed heap memory for reuse, and tensors of changing sizes fragment it,
    so a process that loads and frees one block after another grows by a little every
    block (measured: +85 MB over 50 blocks of 6 MB) unless the heap is trimmed.
    Returns False where there is no glibc."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def peak_rss_bytes() -> int:
    hwm = _read_hwm_bytes()
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class StageTracker:
    """Collects ``{stage: {wall_s, peak_rss_gib, ...}}`` for reports and benchmarks."""

    stages: dict = field(default_factory=dict)
    device: object = None  # a torch.device; CUDA adds peak_gpu_gib per stage

    def _cuda(self):
        if self.device is None or getattr(self.device, "type", None) != "cuda":
            return None
        import torch

        return torch.cuda

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict]:
        per_stage = reset_peak_rss()
        cuda = self._cuda()
        if cuda is not None:
            cuda.synchronize(self.device)
            cuda.reset_peak_memory_stats(self.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        record: dict = {}
        try:
            yield record
        finally:
            record.update(
                wall_s=round(time.perf_counter() - start, 3),
                cpu_s=round(time.process_time() - cpu_start, 3),
                peak_rss_gib=round(peak_rss_bytes() / GIB, 4),
                peak_scope="stage" if per_stage else "process",
            )
            if cuda is not None:
                cuda.synchronize(self.device)
                record["peak_gpu_gib"] = round(cuda.max_memory_allocated(self.device) / GIB, 4)
            self.stages[name] = record

    def to_dict(self) -> dict:
        return dict(self.stages)
