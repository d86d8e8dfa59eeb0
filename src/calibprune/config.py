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
                raise CalibpruneError(f"pattern {pattern!r} is not of the form N:M: use e.g. --pattern 2:4")
            return cls.nm(int(match.group(1)), int(match.group(2)))
        if sparsity is None:
            raise CalibpruneError("no sparsity given: pass --sparsity R (0 <= R < 1) or --pattern N:M")
        return cls.unstructured(sparsity)

    def describe(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.ratio:.0%} unstructured"

    def explain(self) -> str:
        """The resolved meaning of ``--pattern N:M`` in words, and, where the "N kept of M"
        reading (hardware sparsity) would give another sparsity, how to get that one."""
        if not self.is_nm:
            return f"sparsity {self.ratio:g}: prune {self.ratio:.0%} of the weights of each row (unstructured)"
        n, m = self.n, self.m
        line = (
            f"{n}:{m} - prune {n} of every {m} consecutive inputs in each row (keep {m - n}), {self.ratio:.0%} sparsity"
        )
        if n != m - n:
            line += (
                f". Here N counts pruned weights (the Wanda/SparseGPT code's convention); read as "
                f'"{n} kept of {m}" (hardware N:M sparsity) it would be {(m - n) / m:.0%} sparsity: '
                f"for that, pass --pattern {m - n}:{m}"
            )
        return line

    def to_dict(self) -> dict:
        return {"kind": "nm" if self.is_nm else "unstructured", **asdict(self)}


def pruned_count(width: int, ratio: float) -> int:
    """Number of weights pruned out of ``width`` at ``ratio``: floor(width * ratio).

    The published code uses ``int(width * ratio)``; the epsilon keeps products such as
    100 * 0.57 = 56.999999... from losing a weight to floating point.
    """
    return int(math.floor(width * ratio + 1e-9))


SPARSEGPT_MASK_RULES = ("block", "row")


@dataclass(frozen=True)
class SparseGPTOptions:
    """Reference defaults of SparseGPT (Frantar & Alistarh, 2023).

    ``mask_rule`` for unstructured sparsity: ``block`` (the reference's adaptive mask:
    one threshold over each [rows x blocksize] column block, so rows may differ in
    sparsity) or ``row`` (this project's variant: exactly floor(cols * r) per row).
    """

    blocksize: int = 128
    percdamp: float = 0.01
    max_damping_retries: int = 6
    mask_rule: str = "block"

    def __post_init__(self):
        if self.blocksize <= 0:
            raise CalibpruneError(
                f"SparseGPT blocksize {self.blocksize} must be a positive number of columns, e.g. 128"
            )
        if not 0.0 < self.percdamp < 10.0:
            raise CalibpruneError(
                f"SparseGPT damping {self.percdamp} must be a positive fraction of the mean Hessian diagonal, e.g. 0.01"
            )
        if self.mask_rule not in SPARSEGPT_MASK_RULES:
            raise CalibpruneError(
                f"SparseGPT mask rule {self.mask_rule!r} is unknown: use 'block' (one threshold per column block, "
                "the reference, default) or 'row' (the same count in every row)"
            )


ACTIVATION_STORES = ("disk", "memory", "cpu", "auto")


@dataclass(frozen=True)
class RunnerOptions:
    """How calibration activations move through the model, block by block.

    ``batch_size`` samples go through a block per call. ``activation_store`` decides where
    the hidden states of all samples wait between blocks: ``disk`` (a temporary folder;
    resident memory does not grow with the number of samples), ``memory`` (on the device
    the blocks run on), ``cpu`` (host RAM, moved to the device batch by batch) or ``auto``
    (whichever fits: :func:`calibprune.models.runner.choose_activation_store`).
    """

    batch_size: int = 4
    activation_store: str = "disk"

    def __post_init__(self):
        if self.batch_size <= 0:
            raise CalibpruneError(f"batch size {self.batch_size} must be >= 1")
        if self.activation_store not in ACTIVATION_STORES:
            raise CalibpruneError(
                f"activation store {self.activation_store!r} is unknown: use one of {', '.join(ACTIVATION_STORES)}"
            )


@dataclass(frozen=True)
class OWLOptions:
    """OWL (Yin et al., 2024) layer-wise sparsity; reference defaults M=5, lambda=0.08.

    ``hyper_m`` (M): a score is an outlier when above M x the block's mean score.
    ``lam`` (lambda): outlier ratios are normalised to [0, 2 lambda] and centred on the
    target, so every block's sparsity stays within target +/- 2 lambda.
    ``mixed_nm``: for N:M patterns, give each block its own N (the published OWL
    structured variant), with ratios normalised to [0, ``nm_lambda``] in units of N.
    """

    hyper_m: float = 5.0
    lam: float = 0.08
    mixed_nm: bool = False
    nm_lambda: float = 1.0

    def __post_init__(self):
        if not self.hyper_m > 0:
            raise CalibpruneError(f"OWL M={self.hyper_m} must be > 0 (outliers are scores above M x mean; default 5)")
        if not self.lam >= 0:
            raise CalibpruneError(f"OWL lambda={self.lam} must be >= 0 (default 0.08)")
        if not self.nm_lambda >= 0:
            raise CalibpruneError(f"OWL N:M lambda={self.nm_lambda} must be >= 0 (default 1)")


DSNOT_ACCEPT = ("reference", "improve")


@dataclass(frozen=True)
class DSnoTOptions:
    """DSnoT (Zhang et al., 2024) prune-and-regrow; reference defaults.

    ``cycles``: swap rounds per layer (50); ``threshold``: a row stops once its
    reconstruction-error proxy |e| is at most this (0.1, in the reference's per-sample
    units: sums over a sample's tokens); ``var_power``: regrowing priority is the
    expected contribution / Var[x]^power (1); ``skip``: glob patterns on names inside a
    block whose layers keep their initial mask (MLP sublayers); ``accept``: which swaps
    are taken, ``reference`` (the published code's rules) or ``improve`` (this project's
    variant: only swaps that lower |e|), see :mod:`calibprune.pruning.dsnot`.
    """

    cycles: int = 50
    threshold: float = 0.1
    var_power: float = 1.0
    skip: tuple[str, ...] = ("mlp.*",)
    accept: str = "reference"

    def __post_init__(self):
        if self.cycles < 0:
            raise CalibpruneError(f"DSnoT cycles={self.cycles} must be >= 0 (default 50)")
        if not self.threshold >= 0:
            raise CalibpruneError(f"DSnoT update threshold={self.threshold} must be >= 0 (default 0.1)")
        if not self.var_power >= 0:
            raise CalibpruneError(f"DSnoT variance power={self.var_power} must be >= 0 (default 1)")
        if self.accept not in DSNOT_ACCEPT:
            raise CalibpruneError(
                f"DSnoT accept rule {self.accept!r} is unknown: use 'reference' (the published rules, default) "
                "or 'improve' (only swaps that lower the error proxy)"
            )


ALLOCATIONS = ("uniform", "owl")
REFINEMENTS = ("none", "dsnot")


@dataclass(frozen=True)
class PruneConfig:
    """Everything that decides the mask, apart from the model and the calibration data.

    Pruning is scorer (``method``) x ``allocation`` (uniform | owl) x pattern
    (``target``) x ``refine`` (none | dsnot); :meth:`check_combination` refuses the
    combinations that do not make sense, with the reason.
    """

    method: str
    target: SparsityTarget
    targets: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    allocation: str = "uniform"
    refine: str = "none"
    sparsegpt: SparseGPTOptions = field(default_factory=SparseGPTOptions)
    owl: OWLOptions = field(default_factory=OWLOptions)
    dsnot: DSnoTOptions = field(default_factory=DSnoTOptions)
    runner: RunnerOptions = field(default_factory=RunnerOptions)

    def __post_init__(self):
        if self.allocation not in ALLOCATIONS:
            raise CalibpruneError(f"unknown allocation {self.allocation!r}: use one of {', '.join(ALLOCATIONS)}")
        if self.refine not in REFINEMENTS:
            raise CalibpruneError(f"unknown refinement {self.refine!r}: use one of {', '.join(REFINEMENTS)}")
        self.check_combination()

    def check_combination(self) -> None:
        target, owl = self.target, self.owl
        if self.allocation == "owl":
            if target.is_nm and not owl.mixed_nm:
                raise CalibpruneError(
                    f"--allocation owl with --pattern {target.n}:{target.m}: OWL varies the sparsity per block, "
                    "which one fixed N:M pattern cannot express; pass --owl-mixed-nm for a per-block N "
                    "(the published OWL structured variant) or drop --allocation owl"
                )
            if not target.is_nm and owl.mixed_nm:
                raise CalibpruneError("--owl-mixed-nm applies to N:M patterns only: pass --pattern N:M or drop it")
            if target.is_nm:
                spread = round(owl.nm_lambda)  # shifts are rounded values in [-lambda, lambda]
                down = 2 if spread == 1 else spread  # the reference turns a shift of 1 into 2
                if target.n - down < 1 or target.n + spread > target.m - 1:
                    raise CalibpruneError(
                        f"OWL N:M lambda={owl.nm_lambda} can move N={target.n} by up to {spread}, outside "
                        f"1..{target.m - 1} for {target.n}:{target.m}: lower --owl-nm-lambda or use a wider M"
                    )
            elif target.ratio - 2 * owl.lam < 0 or target.ratio + 2 * owl.lam >= 1:
                raise CalibpruneError(
                    f"OWL lambda={owl.lam} is too large for sparsity {target.ratio}: block sparsities span "
                    f"target +/- 2*lambda = [{target.ratio - 2 * owl.lam:.3f}, {target.ratio + 2 * owl.lam:.3f}], "
                    "which must stay inside [0, 1); lower --owl-lambda"
                )
        if self.refine == "dsnot" and self.method == "sparsegpt":
            raise CalibpruneError(
                "--refine dsnot with --method sparsegpt: DSnoT swaps weights in and out of a mask while keeping the "
                "surviving weights' values; SparseGPT rewrites those values (OBS updates), so a regrown weight would "
                "have no consistent value. Use DSnoT on a wanda or magnitude mask"
            )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["target"] = self.target.to_dict()
        return out

    def describe(self) -> str:
        """E.g. ``wanda + owl + dsnot 60% unstructured``."""
        parts = [self.method] + [x for x in (self.allocation, self.refine) if x not in ("uniform", "none")]
        return f"{' + '.join(parts)} {self.target.describe()}"
