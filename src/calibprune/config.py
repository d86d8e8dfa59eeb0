"""Validated specifications: what to prune, how much, and with which data.

Everything here is checked when it is built, so bad input fails before any model
is loaded. Values that can only be checked against a model (input widths,
maximum sequence length) are checked by :func:`calibprune.pruning.engine.plan`
against the model's config and a weightless (meta-device) copy of it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

from .options import Namer, OptionError, Rule, check_fields, option, python_name, render
from .utils.keys import KEYED_WHEN_SET

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
            raise OptionError(
                "sparsity",
                f"{{sparsity}} {ratio!r} is outside [0, 1): pass the fraction of weights to prune, "
                "e.g. {sparsity=0.5} for 50%",
            )
        return cls(ratio=float(ratio))

    @classmethod
    def nm(cls, n: int, m: int) -> SparsityTarget:
        if m <= 0 or n <= 0 or n >= m:
            raise OptionError(
                "pattern",
                f"{{pattern}} {n}:{m} is invalid: N (pruned per group) must satisfy 0 < N < M; "
                "use e.g. {pattern=2:4} (prune 2 of every 4 inputs)",
            )
        return cls(ratio=n / m, n=n, m=m)

    @classmethod
    def parse(cls, sparsity: float | None = None, pattern: str | None = None) -> SparsityTarget:
        """Build a target from a ``sparsity`` / ``pattern`` pair (exactly one given)."""
        if pattern is not None and sparsity is not None:
            raise OptionError(
                "pattern",
                f"both {{sparsity={sparsity}}} and {{pattern={pattern}}} were given: pass only one "
                "(an N:M pattern fixes the sparsity at N/M)",
            )
        if pattern is not None:
            match = _PATTERN_RE.match(str(pattern))
            if not match:
                raise OptionError(
                    "pattern", f"{{pattern}} {pattern!r} is not of the form N:M: use e.g. {{pattern=2:4}}"
                )
            return cls.nm(int(match.group(1)), int(match.group(2)))
        if sparsity is None:
            raise OptionError("sparsity", "no sparsity given: pass {sparsity=R} (0 <= R < 1) or {pattern=N:M}")
        return cls.unstructured(sparsity)

    def describe(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.ratio:.0%} unstructured"

    def explain(self, name: Namer = python_name) -> str:
        """The resolved meaning of a pattern N:M in words, and, where the "N kept of M"
        reading (hardware sparsity) would give another sparsity, how to get that one
        (``name``: how the front end names the pattern option)."""
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
                f"for that, pass {{pattern={m - n}:{m}}}"
            )
        return render(line, name)

    def to_dict(self) -> dict:
        return {"kind": "nm" if self.is_nm else "unstructured", **asdict(self)}


def pruned_count(width: int, ratio: float) -> int:
    """Number of weights pruned out of ``width`` at ``ratio``: floor(width * ratio).

    The published code uses ``int(width * ratio)``; the epsilon keeps products such as
    100 * 0.57 = 56.999999... from losing a weight to floating point.
    """
    return int(math.floor(width * ratio + 1e-9))


SPARSEGPT_MASK_RULES = ("block", "row")


def _positive(what: str):
    return lambda v: None if v > 0 else f"{{}} {v} must be > 0 ({what})"


def _at_least_zero(what: str):
    return lambda v: None if v >= 0 else f"{{}} {v} must be >= 0 ({what})"


SPARSEGPT_ONLY = Rule(
    lambda c: c.method == "sparsegpt",
    lambda c: f"with {{method={c.method}}}: they are SparseGPT's; drop them or pass {{method=sparsegpt}}",
)


@dataclass(frozen=True)
class SparseGPTOptions:
    """Reference defaults of SparseGPT (Frantar & Alistarh, 2023).

    ``mask_rule`` for unstructured sparsity: ``block`` (the reference's adaptive mask:
    one threshold over each [rows x blocksize] column block, so rows may differ in
    sparsity) or ``row`` (this project's variant: exactly floor(cols * r) per row).
    """

    blocksize: int = option(
        128,
        help="SparseGPT column block size.",
        check=_positive("a number of columns, e.g. 128"),
        applies=SPARSEGPT_ONLY,
    )
    percdamp: float = option(
        0.01,
        help="SparseGPT damping, fraction of the mean Hessian diagonal.",
        check=lambda v: (
            None if 0.0 < v < 10.0 else f"{{}} {v} must be a positive fraction of the mean Hessian diagonal, e.g. 0.01"
        ),
        applies=SPARSEGPT_ONLY,
    )
    max_damping_retries: int = option(
        6,
        help="SparseGPT: how often the damping is multiplied by 10 when the Hessian is not positive definite.",
        check=_at_least_zero("a number of retries"),
        applies=SPARSEGPT_ONLY,
    )
    mask_rule: str = option(
        "block",
        help="SparseGPT unstructured mask: block (one threshold per column block, reference) | row.",
        choices=SPARSEGPT_MASK_RULES,
        applies=Rule(
            lambda c: c.method == "sparsegpt" and not c.target.is_nm,
            lambda c: (
                "with {pattern}: N:M masks are chosen per M-group"
                if c.method == "sparsegpt"
                else SPARSEGPT_ONLY.explain(c)
            ),
        ),
    )

    def __post_init__(self):
        check_fields(self)


ACTIVATION_STORES = ("disk", "memory", "cpu", "auto")


def _calibrated(config) -> bool:
    from .pruning.catalog import needs_calibration

    return needs_calibration(config)


CALIBRATED = Rule(
    _calibrated,
    lambda c: (
        f"with {{method={c.method}}}: it reads only the weights (|W|), no calibration data is used; drop "
        "them, or add {allocation=owl} / {refine=dsnot}, which do use calibration data"
    ),
)


@dataclass(frozen=True)
class RunnerOptions:
    """How calibration activations move through the model, block by block.

    ``batch_size`` samples go through a block per call. ``activation_store`` decides where
    the hidden states of all samples wait between blocks: ``disk`` (a temporary folder;
    resident memory does not grow with the number of samples), ``memory`` (on the device
    the blocks run on), ``cpu`` (host RAM, moved to the device batch by batch) or ``auto``
    (whichever fits: :func:`calibprune.models.runner.choose_activation_store`).
    """

    batch_size: int = option(
        4,
        help="Calibration samples per block call.",
        check=lambda v: None if v >= 1 else f"{{}} {v} must be >= 1",
        applies=CALIBRATED,
    )
    activation_store: str = option(
        "disk",
        help="Where hidden states wait between blocks: disk | memory (on the device) | cpu (host RAM) | auto "
        "(disk on the CPU; on a GPU the device, else the host, else disk, whichever fits).",
        choices=ACTIVATION_STORES,
        applies=CALIBRATED,
    )

    def __post_init__(self):
        check_fields(self)


WITH_OWL = Rule(lambda c: c.allocation == "owl", "without {allocation=owl}: drop it or pass {allocation=owl}")


@dataclass(frozen=True)
class OWLOptions:
    """OWL (Yin et al., 2024) layer-wise sparsity; reference defaults M=5, lambda=0.08.

    ``hyper_m`` (M): a score is an outlier when above M x the block's mean score.
    ``lam`` (lambda): outlier ratios are normalised to [0, 2 lambda] and centred on the
    target, so every block's sparsity stays within target +/- 2 lambda.
    ``mixed_nm``: for N:M patterns, give each block its own N (the published OWL
    structured variant), with ratios normalised to [0, ``nm_lambda``] in units of N.
    """

    hyper_m: float = option(
        5.0,
        help="OWL outlier threshold M (scores above M x mean).",
        check=_positive("outliers are scores above M x mean; default 5"),
        applies=WITH_OWL,
    )
    lam: float = option(
        0.08,
        help="OWL lambda: block sparsities within target +/- 2 lambda.",
        check=_at_least_zero("default 0.08"),
        applies=Rule(
            lambda c: c.allocation == "owl" and not c.target.is_nm,
            "unless {allocation=owl} with {sparsity} (not {pattern})",
        ),
    )
    mixed_nm: bool = option(
        False,
        help="With a pattern and OWL allocation: a per-block N (mixed N:M).",
        applies=WITH_OWL,
    )
    nm_lambda: float = option(
        1.0,
        help="OWL mixed N:M spread, in units of N.",
        check=_at_least_zero("default 1"),
        applies=Rule(
            lambda c: c.allocation == "owl" and c.target.is_nm,
            "unless {allocation=owl} {owl.mixed_nm=true} with {pattern}",
        ),
    )

    def __post_init__(self):
        check_fields(self)


DSNOT_ACCEPT = ("reference", "improve")
WITH_DSNOT = Rule(lambda c: c.refine == "dsnot", "without {refine=dsnot}: drop them or pass {refine=dsnot}")


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

    cycles: int = option(
        50, help="DSnoT swap cycles per layer.", check=_at_least_zero("default 50"), applies=WITH_DSNOT
    )
    threshold: float = option(
        0.1,
        help="DSnoT stops a row once |error proxy| <= this.",
        check=_at_least_zero("DSnoT's update threshold; default 0.1"),
        applies=WITH_DSNOT,
    )
    var_power: float = option(
        1.0,
        help="DSnoT regrow priority: contribution / variance^power.",
        check=_at_least_zero("DSnoT's variance power; default 1"),
        applies=WITH_DSNOT,
    )
    skip: tuple[str, ...] = option(
        ("mlp.*",),
        help="Layers (globs inside a block) DSnoT leaves alone; 'none' for none.",
        applies=WITH_DSNOT,
    )
    accept: str = option(
        "reference",
        help="DSnoT swaps taken: reference (the published rules) | improve (only those lowering |error|).",
        choices=DSNOT_ACCEPT,
        applies=WITH_DSNOT,
    )

    def __post_init__(self):
        check_fields(self)


RIA_SCOPES = ("matrix", "row")
RIA_PERMUTATIONS = ("none", "heuristic", "lsa")
RIA_COLUMN_ORDERS = ("sum", "retained_degree_unstructured", "retained_degree_per_outneuron")


def uses_ria(config) -> bool:
    """Whether RIA's scores make the mask: ``method=ria``, or ADMM on RIA's mask."""
    return config.method == "ria" or (config.method == "admm" and config.admm.mask == "ria")


def _not_ria(c) -> str:
    if c.method == "admm":
        return (
            f"with {{admm.mask={c.admm.mask}}}: they are RIA's; drop them, or pass {{method=ria}} or {{admm.mask=ria}}"
        )
    return f"with {{method={c.method}}}: they are RIA's; drop them or pass {{method=ria}}"


RIA_ONLY = Rule(uses_ria, _not_ria)


def _permuted_rule(which: tuple[str, ...], fix: str) -> Rule:
    return Rule(
        lambda c: uses_ria(c) and c.ria.permutation in which,
        lambda c: (
            _not_ria(c) if not uses_ria(c) else f"with {{ria.permutation={c.ria.permutation}}}: drop them or pass {fix}"
        ),
    )


@dataclass(frozen=True)
class RIAOptions:
    """RIA (Zhang et al., ICLR 2024) with the reference's defaults (biomedical-cybernetics/
    Relative-importance-and-activation-pruning, ``main.py``):
    S_ij = (|W_ij| / sum_k |W_kj| + |W_ij| / sum_k |W_ik|) * (||X_j||_2 / sqrt(S))^a.

    ``a``: the activation exponent (``--a``, 0.5). ``scope``: how unstructured scores are
    compared, ``matrix`` (one threshold over the matrix, the reference's default) or ``row``
    (``--per_outneuron``, Wanda's rule). ``permutation`` (N:M only): ``none`` (default);
    ``heuristic`` (``--reallocation``: columns ranked by ``column_order``, dealt to the
    M-groups in a snake order); ``lsa`` (``--reallocation --lsa``: then M rounds of
    linear-sum assignment); the mask is folded back to the stored column order
    (:mod:`calibprune.pruning.permutation`). ``column_order``: ``--importance_score``
    (``sum``). ``lsa_blocks``: 1, or the reference's ``--fast`` (the assignment is solved
    in that many independent slices of the permuted columns; the reference picks 4/8/16
    by layer name).
    """

    a: float = option(0.5, help="RIA activation exponent a: scores x ||X_j||^a.", applies=RIA_ONLY)
    scope: str = option(
        "matrix",
        help="RIA unstructured mask: matrix (one threshold per matrix, reference) | row (per output row).",
        choices=RIA_SCOPES,
        applies=Rule(
            lambda c: uses_ria(c) and not c.target.is_nm,
            lambda c: "with {pattern}: N:M masks are chosen per M-group" if uses_ria(c) else _not_ria(c),
        ),
    )
    permutation: str = option(
        "none",
        help="RIA N:M channel permutation: none | heuristic (reallocation) | lsa (reallocation + "
        "linear-sum assignment); folded back, so the checkpoint is dense-with-zeros.",
        choices=RIA_PERMUTATIONS,
        applies=RIA_ONLY,
    )
    column_order: str = option(
        "sum",
        help="RIA permutation: how channels are ranked before the reallocation.",
        choices=RIA_COLUMN_ORDERS,
        applies=_permuted_rule(("heuristic", "lsa"), "{ria.permutation=heuristic} or {ria.permutation=lsa}"),
    )
    lsa_blocks: int = option(
        1,
        help="RIA linear-sum assignment in this many independent column slices (1: one assignment).",
        check=lambda v: None if v >= 1 else f"{{}} {v} must be >= 1 (1: one assignment over all groups)",
        applies=_permuted_rule(("lsa",), "{ria.permutation=lsa}"),
    )

    def __post_init__(self):
        check_fields(self)


ADMM_MASKS = ("gradual", "magnitude", "wanda", "ria")
ADMM_SCHEDULES = ("reference", "cubic", "full")
ADMM_SCOPES = ("matrix", "row")

ADMM_ONLY = Rule(
    lambda c: c.method == "admm",
    lambda c: f"with {{method={c.method}}}: they are ADMM's; drop them or pass {{method=admm}}",
)


def _gradual(c) -> bool:
    return c.method == "admm" and c.admm.mask == "gradual"


def _not_gradual(c) -> str:
    if c.method != "admm":
        return ADMM_ONLY.explain(c)
    return (
        f"with {{admm.mask={c.admm.mask}}}: that method's mask is kept as it is, only the weights are updated; "
        "drop them or pass {admm.mask=gradual}"
    )


ADMM_GRADUAL = Rule(_gradual, _not_gradual)


@dataclass(frozen=True)
class ADMMOptions:
    """ADMM reconstruction (Boža, 2024) with the reference's defaults (fmfi-compbio/
    admm-pruning ``lib/admm.py::AdmmPruner.fasterprune`` as ``lib/prune.py::prune_admm``
    calls it): per output row, min ||X (W' - W)||^2 + lambda ||W' - W||^2 with W' = 0 on the
    mask, in coordinates normalised by d_j = ||X_j||, lambda = ``percdamp`` x mean diag
    (0.1), ADMM penalty ``rho`` (1) for ``iters`` (20) iterations.

    ``mask``: ``gradual`` (the reference: the mask is re-selected from the ADMM iterate
    during the first ``gradual_steps`` (15) iterations, starting from Wanda's score
    |W_ij| ||X_j||, at s_t = s (1 - (1 - t/T)^3)), or a mask method's mask, kept fixed
    (``magnitude``, ``wanda``, ``ria``: the paper's "ADMM update on any mask").
    ``schedule``: ``reference`` (as the reference: full sparsity from the first iteration on
    its default unstructured per-matrix path, the cubic s_t on its per-row and N:M paths),
    ``cubic`` or ``full`` everywhere. ``scope``: unstructured masks compared over the
    ``matrix`` (reference default) or per output ``row`` (its ``per_out``).
    See :mod:`calibprune.pruning.admm`.
    """

    percdamp: float = option(
        0.1,
        help="ADMM damping lambda, fraction of the mean normalised Gram diagonal.",
        check=_at_least_zero("a fraction of the mean diagonal; default 0.1"),
        applies=ADMM_ONLY,
    )
    rho: float = option(1.0, help="ADMM penalty rho.", check=_positive("ADMM's penalty; default 1"), applies=ADMM_ONLY)
    iters: int = option(20, help="ADMM iterations.", check=_at_least_zero("default 20"), applies=ADMM_ONLY)
    mask: str = option(
        "gradual",
        help="ADMM mask: gradual (re-selected from the iterate, reference) | magnitude | wanda | ria (that "
        "method's mask, fixed; only the weights are updated).",
        choices=ADMM_MASKS,
        applies=ADMM_ONLY,
    )
    gradual_steps: int = option(
        15,
        help="ADMM: iterations over which the gradual mask reaches the target sparsity (0: one Wanda mask).",
        check=_at_least_zero("default 15"),
        applies=ADMM_GRADUAL,
    )
    schedule: str = option(
        "reference",
        help="ADMM gradual sparsity schedule: reference | cubic (s (1 - (1 - t/T)^3)) | full (s from the start).",
        choices=ADMM_SCHEDULES,
        applies=ADMM_GRADUAL,
    )
    scope: str = option(
        "matrix",
        help="ADMM gradual unstructured mask: matrix (one threshold per matrix, reference) | row.",
        choices=ADMM_SCOPES,
        applies=Rule(
            lambda c: _gradual(c) and not c.target.is_nm,
            lambda c: "with {pattern}: N:M candidates are chosen per M-group" if _gradual(c) else _not_gradual(c),
        ),
    )

    def __post_init__(self):
        check_fields(self)
        if self.gradual_steps > self.iters:
            raise OptionError(
                "gradual_steps",
                f"{{gradual_steps}} {self.gradual_steps} is more than {{iters}} {self.iters}: the mask must reach "
                "the target sparsity by the last iteration; lower {gradual_steps} or raise {iters}",
            )

    def schedule_for(self, target: SparsityTarget) -> str:
        """``cubic`` or ``full``: what ``reference`` means for ``target`` (module docstring)."""
        if self.schedule != "reference":
            return self.schedule
        return "full" if not target.is_nm and self.scope == "matrix" else "cubic"


REFINEMENTS = ("none", "dsnot")


def _registered(registry, name: str) -> str | None:
    """None if ``name`` is in ``registry``, else the problem (a check's template)."""
    if name in registry:
        return None
    return f"{{}} {name!r} is unknown: use one of {', '.join(registry.names())}"


def _known_method(name: str) -> str | None:
    from .pruning.catalog import METHODS

    return _registered(METHODS, name)


def _known_allocation(name: str) -> str | None:
    from .pruning.catalog import ALLOCATIONS

    return _registered(ALLOCATIONS, name)


@dataclass(frozen=True)
class PruneConfig:
    """Everything that decides the mask, apart from the model and the calibration data.

    Pruning is scorer (``method``) x ``allocation`` (uniform | owl) x pattern
    (``target``) x ``refine`` (none | dsnot); :meth:`check_combination` refuses the
    combinations that do not make sense, with the reason. Each method's own options are
    nested under its name (``sparsegpt``, ``ria``, ``admm``), each refinement's and
    allocation's under theirs (``dsnot``, ``owl``).
    """

    method: str = option(
        "wanda", help="Pruning method: magnitude | wanda | sparsegpt | ria | admm.", check=_known_method
    )
    # required (None is refused): how much to prune, from sparsity= or pattern= (SparsityTarget.parse);
    # a default only so that `method` can have one and both stay positional
    target: SparsityTarget | None = None
    targets: tuple[str, ...] = option((), help="Only prune layers matching these globs (comma-separated).")
    ignore: tuple[str, ...] = option((), help="Never prune layers matching these globs.")
    allocation: str = option("uniform", help="Per-block sparsity: uniform | owl.", check=_known_allocation)
    refine: str = option("none", help="Mask refinement: none | dsnot.", choices=REFINEMENTS)
    sparsegpt: SparseGPTOptions = field(default_factory=SparseGPTOptions)
    owl: OWLOptions = field(default_factory=OWLOptions)
    dsnot: DSnoTOptions = field(default_factory=DSnoTOptions)
    runner: RunnerOptions = field(default_factory=RunnerOptions)
    # added after study cells were keyed: left out of the stage key while at their default (to_dict)
    ria: RIAOptions = field(default_factory=RIAOptions, metadata=KEYED_WHEN_SET)
    admm: ADMMOptions = field(default_factory=ADMMOptions, metadata=KEYED_WHEN_SET)

    def __post_init__(self):
        if self.target is None:
            raise OptionError("sparsity", "no sparsity given: pass {sparsity=R} (0 <= R < 1) or {pattern=N:M}")
        check_fields(self)
        self.check_combination()

    def check_combination(self) -> None:
        target, owl = self.target, self.owl
        if self.allocation == "owl":
            if target.is_nm and not owl.mixed_nm:
                raise OptionError(
                    "allocation",
                    f"{{allocation=owl}} with {{pattern={target.n}:{target.m}}}: OWL varies the sparsity per block, "
                    "which one fixed N:M pattern cannot express; pass {owl.mixed_nm=true} for a per-block N "
                    "(the published OWL structured variant) or drop {allocation=owl}",
                )
            if not target.is_nm and owl.mixed_nm:
                raise OptionError(
                    "owl.mixed_nm", "{owl.mixed_nm=true} applies to N:M patterns only: pass {pattern=N:M} or drop it"
                )
            if target.is_nm:
                spread = round(owl.nm_lambda)  # shifts are rounded values in [-lambda, lambda]
                down = 2 if spread == 1 else spread  # the reference turns a shift of 1 into 2
                if target.n - down < 1 or target.n + spread > target.m - 1:
                    raise OptionError(
                        "owl.nm_lambda",
                        f"OWL N:M lambda={owl.nm_lambda} can move N={target.n} by up to {spread}, outside "
                        f"1..{target.m - 1} for {target.n}:{target.m}: lower {{owl.nm_lambda}} or use a wider M",
                    )
            elif target.ratio - 2 * owl.lam < 0 or target.ratio + 2 * owl.lam >= 1:
                raise OptionError(
                    "owl.lam",
                    f"OWL lambda={owl.lam} is too large for sparsity {target.ratio}: block sparsities span "
                    f"target +/- 2*lambda = [{target.ratio - 2 * owl.lam:.3f}, {target.ratio + 2 * owl.lam:.3f}], "
                    "which must stay inside [0, 1); lower {owl.lam}",
                )
        if self.refine == "dsnot" and self.method in ("sparsegpt", "admm"):
            sparsegpt = self.method == "sparsegpt"
            who, what = ("SparseGPT", "OBS updates") if sparsegpt else ("ADMM", "least-squares updates")
            raise OptionError(
                "refine",
                f"{{refine=dsnot}} with {{method={self.method}}}: DSnoT swaps weights in and out of a mask while "
                f"keeping the surviving weights' values; {who} rewrites those values ({what}), so a regrown weight "
                "would have no consistent value. Use DSnoT on a wanda, ria or magnitude mask",
            )
        permutation = self.ria.permutation
        if uses_ria(self) and permutation != "none":
            if not target.is_nm:
                raise OptionError(
                    "ria.permutation",
                    f"{{ria.permutation={permutation}}} with {{sparsity={target.ratio:g}}}: channel permutation "
                    "chooses which inputs share an M-group, so it applies to N:M patterns only; pass "
                    "{pattern=N:M} (e.g. {pattern=2:4}) or drop it",
                )
            if self.refine != "none":
                raise OptionError(
                    "ria.permutation",
                    f"{{ria.permutation={permutation}}} with {{refine={self.refine}}}: the mask is N:M in the "
                    "permuted column order, and DSnoT swaps weights within the M-groups of the stored order, which "
                    "would break it; drop one of them",
                )

    def to_dict(self) -> dict:
        """The resolved options, as reports and stage keys record them. A field added after
        study cells were keyed (:data:`~calibprune.utils.keys.KEYED_WHEN_SET`: ``ria``,
        ``admm``) is left out while it holds its default and the method does not use it, so
        the keys of every existing cell stay what they were; a run that uses them records
        them (and its key changes with their defaults)."""
        out = asdict(self)
        out["target"] = self.target.to_dict()
        used = {"ria": uses_ria(self), "admm": self.method == "admm"}
        for f in fields(self):
            if (
                f.metadata.get("keyed_when_set")
                and not used.get(f.name)
                and getattr(self, f.name) == f.default_factory()
            ):
                del out[f.name]
        return out

    def describe(self) -> str:
        """E.g. ``wanda + owl + dsnot 60% unstructured``."""
        label = self.method
        if self.method == "admm" and self.admm.mask != "gradual":
            label = f"admm on {self.admm.mask}"
        if uses_ria(self) and self.ria.permutation != "none":
            label += f" ({self.ria.permutation} permutation)"
        parts = [label] + [x for x in (self.allocation, self.refine) if x not in ("uniform", "none")]
        return f"{' + '.join(parts)} {self.target.describe()}"
