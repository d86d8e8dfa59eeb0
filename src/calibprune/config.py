"""Validated specifications: what to prune, how much, and with which data.

Everything here is checked when it is built, so bad input fails before any model
is loaded. Values that can only be checked against a model (input widths,
maximum sequence length) are checked by :func:`calibprune.pruning.engine.plan`
against the model's config and a weightless (meta-device) copy of it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from .errors import CalibpruneError

_PATTERN_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class SparsityTarget:
    """How many weights to prune in a matrix.

    Either *unstructured* (``ratio`` in [0, 1): that fraction of the weights compared
    together is pruned) or *N:M* (``n`` and ``m`` set): **N of every M consecutive
    inputs are pruned** in each output row, so M - N are kept. With this convention
    2:4 and 4:8 are both 50% sparse, 1:4 is 25% and 3:4 is 75%.
    (Some papers write "N:M" for *kept* weights; here N always counts pruned ones.)
    """

    ratio: float
    n: int | None = None
    m: int | None = None

    @property
    def is_nm(self) -> bool:
        return self.m is not None

    @classmethod
    def unstructured(cls, ratio: float) -> SparsityTarget:
        if not isinstance(ratio, (int, float)) or math.isnan(ratio) or not 0.0 <= ratio < 1.0:
            raise CalibpruneError(
                f"sparsity {ratio!r} is outside [0, 1): pass the fraction of weights to prune, "
                "e.g. --sparsity 0.5 for 50%"
            )
        return cls(ratio=float(ratio))

    @classmethod
    def nm(cls, n: int, m: int) -> SparsityTarget:
        if m <= 0 or n <= 0 or n >= m:
            raise CalibpruneError(
                f"pattern {n}:{m} is invalid: N (pruned per group) must satisfy 0 < N < M; "
                "use e.g. --pattern 2:4 (prune 2 of every 4 inputs)"
            )
        return cls(ratio=n / m, n=n, m=m)

    @classmethod
    def parse(cls, sparsity: float | None = None, pattern: str | None = None) -> SparsityTarget:
        """Build a target from the CLI's ``--sparsity`` / ``--pattern`` pair (exactly one)."""
        if pattern is not None and sparsity is not None:
            raise CalibpruneError(
                f"both --sparsity {sparsity} and --pattern {pattern} were given: pass only one "
                "(an N:M pattern fixes the sparsity at N/M)"
            )
        if pattern is not None:
            match = _PATTERN_RE.match(str(pattern))
            if not match:
                raise CalibpruneError(
                    f"pattern {pattern!r} is not of the form N:M: use e.g. --pattern 2:4"
                )
            return cls.nm(int(match.group(1)), int(match.group(2)))
        if sparsity is None:
            raise CalibpruneError("no sparsity given: pass --sparsity R (0 <= R < 1) or --pattern N:M")
        return cls.unstructured(sparsity)

    def describe(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.ratio:.0%} unstructured"

    def to_dict(self) -> dict:
        return {"kind": "nm" if self.is_nm else "unstructured", **asdict(self)}


def pruned_count(width: int, ratio: float) -> int:
    """Number of weights pruned out of ``width`` at ``ratio``: floor(width * ratio).

    The published code uses ``int(width * ratio)``; the epsilon keeps products such as
    100 * 0.57 = 56.999999... from losing a weight to floating point.
    """
    return int(math.floor(width * ratio + 1e-9))


@dataclass(frozen=True)
class SparseGPTOptions:
    """Reference defaults of SparseGPT (Frantar & Alistarh, 2023)."""

    blocksize: int = 128
    percdamp: float = 0.01
    max_damping_retries: int = 6

    def __post_init__(self):
        if self.blocksize <= 0:
            raise CalibpruneError(f"SparseGPT blocksize {self.blocksize} must be a positive number of columns, e.g. 128")
        if not 0.0 < self.percdamp < 10.0:
            raise CalibpruneError(
                f"SparseGPT damping {self.percdamp} must be a positive fraction of the mean Hessian diagonal, e.g. 0.01"
            )


@dataclass(frozen=True)
class RunnerOptions:
    """How calibration activations move through the model, block by block.

    ``batch_size`` samples go through a block per call. ``activation_store`` decides where
    the hidden states of all samples wait between blocks: ``disk`` (a temporary folder;
    resident memory does not grow with the number of samples) or ``memory``.
    """

    batch_size: int = 4
    activation_store: str = "disk"

    def __post_init__(self):
        if self.batch_size <= 0:
            raise CalibpruneError(f"batch size {self.batch_size} must be >= 1")
        if self.activation_store not in ("disk", "memory"):
            raise CalibpruneError(
                f"activation store {self.activation_store!r} is unknown: use 'disk' or 'memory'"
            )


@dataclass(frozen=True)
class PruneConfig:
    """Everything that decides the mask, apart from the model and the calibration data."""

    method: str
    target: SparsityTarget
    targets: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    sparsegpt: SparseGPTOptions = field(default_factory=SparseGPTOptions)
    runner: RunnerOptions = field(default_factory=RunnerOptions)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["target"] = self.target.to_dict()
        return out
