"""Live progress of a sweep: stages done / failed / pending per kind, and an ETA.

The cell counts are the plan's from the first line on: cells found done or failed by an
earlier sweep (and not rerun) count as done / failed, the cells this sweep runs as pending
until they finish; the final summary gives the same numbers.

The ETA charges each pending stage the mean wall time of the finished stages of its
kind (or, for a kind with none finished yet, of all finished stages), divided by the
executor's parallelism.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.total: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.parallel = 1
        self.started = time.perf_counter()
        self.before = {"done": 0, "failed": 0}  # cells an earlier sweep finished, not run again

    def start(self, totals: dict[str, int], parallelism: int, before: dict[str, int] | None = None) -> None:
        """``totals``: the stages to run, per kind; ``before``: cells already done / failed."""
        self.before = {"done": 0, "failed": 0} | (before or {})
        self.total = dict(totals)
        self.done = dict.fromkeys(totals, 0)
        self.failed = dict.fromkeys(totals, 0)
        self.seconds = dict.fromkeys(totals, 0.0)
        self.parallel = max(1, parallelism)
        self.started = time.perf_counter()
        self._print("start")

    def eta_s(self) -> float | None:
        finished = {k: self.done[k] + self.failed[k] for k in self.total}
        count = sum(finished.values())
        if count == 0:
            return None
        overall = sum(self.seconds.values()) / count
        remaining = 0.0
        for kind, total in self.total.items():
            mean = self.seconds[kind] / finished[kind] if finished[kind] else overall
            remaining += (total - finished[kind]) * mean
        return remaining / self.parallel

    def line(self) -> str:
        done, failed = self.done.get("cell", 0), self.failed.get("cell", 0)
        pending = self.total.get("cell", 0) - done - failed
        cells = f"cells {self.before['done'] + done} done / {self.before['failed'] + failed} failed / {pending} pending"
        others = ", ".join(
            f"{k} {self.done[k]}/{self.total[k]}" for k in ("pool", "calib", "dense") if self.total.get(k)
        )
        eta = self.eta_s()
        elapsed = time.perf_counter() - self.started
        return (
            f"{cells}"
            + (f" | {others}" if others else "")
            + f" | elapsed {_hms(elapsed)} | ETA "
            + (_hms(eta) if eta is not None else "?")
        )

    def update(self, kind: str, ok: bool, seconds: float, label: str) -> None:
        (self.done if ok else self.failed)[kind] += 1
        self.seconds[kind] += seconds
        self._print(f"{'ok' if ok else 'FAILED'} {label} ({seconds:.1f}s)")

    def finish(self) -> None:
        self._print("finished")

    def _print(self, what: str) -> None:
        if self.enabled:
            print(f"[sweep] {self.line()} -- {what}", file=self.stream, flush=True)


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
