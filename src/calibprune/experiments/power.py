"""Seeds by power: how many seeds resolve an effect of the paper's size, and what effect a
study's seeds can resolve (issue 20, point 6).

**Measured** (:func:`measure`): from a run folder's committed cells, per model, every arm
(a strategy x setting of the study's primary metric) with its seed mean and seed standard
deviation on the log scale (perplexities: their seed noise is multiplicative), and, for
arms whose sets share their texts (:func:`~.claims.evidence.blocks_of`: a source's one set
at every setting, the filter arms of one generated pool), the mean correlation of their seed
values (clipped to [0, 0.95]).

**Simulated** (:func:`power`): synthetic cells drawn like the measured ones, log value =
null level of the arm's context (the mean of the context's arm means: every strategy alike)
+ the claim's effect of the paper's size (:data:`PAPER`, times a multiplier m) + the arm's
seed SD x (sqrt(rho) z_block + sqrt(1 - rho) z_arm); a generated arm also gets the
between-pool component (``pool_sd``: each seed now generates its own pool, which the
committed cells, cut from one pool per strategy, leave out), common to the arms of one
block (the filter arms filter the same pool). The claim's own :meth:`~.claims.Claim.effects`
and :func:`~.claims.verdict` (Holm at 2.5 % one-sided per direction) read the cells, so
the power is that of the statistic the report uses, exactly. Power is the share of
simulated studies whose verdict is the claim's direction ("replicated"; for C2, whose
paper claim is a null, "not replicated": a gap of the paper's size closing).

:func:`seeds_for` finds the fewest seeds with power >= 80 % at m = 1; :func:`mde` the m
with 80 % power at a given number of seeds (bisection, common random numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .aggregate import CALIB_ATTRS, by_seed, rows_of
from .claims import Evidence, claim, primary_metric, verdict
from .claims.evidence import blocks_of

TARGET = 0.8

# log-perplexity per point of task accuracy: Table 2, DCLM-7B, Wanda 60 %, the four sources:
# accuracy 62.12 (Wiki) .. 64.37 (DCLM), a range of 2.25 points; Alpaca perplexity 9.99 .. 9.54,
# a log range of log(9.99 / 9.54) = 0.0461
KAPPA = math.log(9.99 / 9.54) / (64.37 - 62.12)


def _log(ratio: float) -> float:
    return math.log(ratio)


@dataclass(frozen=True)
class PaperSize:
    """The paper's effect for one claim: where it is quoted from, and each arm's quality on
    the log-perplexity scale (``shift(attrs, params) -> float``, higher = better, i.e. lower
    perplexity by that log ratio)."""

    source: str  # the quote and its table / figure
    translation: str  # how it becomes the shift
    shift: Callable[[dict, dict], float]
    direction: str = "replicated"  # the verdict that detects it


def _method(attrs: dict) -> str:
    if attrs.get("refine") == "dsnot" or str(attrs.get("setting", "")).startswith("dsnot"):
        return "dsnot"
    if attrs.get("allocation") == "owl" or str(attrs.get("setting", "")).startswith("owl"):
        return "owl"
    return "wanda"


def _setting(attrs: dict) -> str:
    """``30%`` .. ``65%`` for unstructured settings, else the N:M pattern."""
    pattern = attrs.get("pattern", "unstructured")
    return f"{round(100 * attrs['sparsity'])}%" if pattern == "unstructured" else pattern


def _interp(table: dict[float, float], sparsity: float) -> float:
    """Linear in sparsity between the quoted points (clamped at the ends)."""
    points = sorted(table.items())
    if sparsity <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if sparsity <= x1:
            return y0 + (y1 - y0) * (sparsity - x0) / (x1 - x0)
    return points[-1][1]


def _range_at(attrs: dict, unstructured: dict[float, float], patterns: dict[str, float]) -> float:
    pattern = attrs.get("pattern", "unstructured")
    if pattern == "unstructured":
        return _interp(unstructured, attrs["sparsity"])
    return patterns.get(pattern, max(patterns.values()))


# C1: the range across the four sources (accuracy points): section 3.2 / Figure 2 ("less than
# 0.1%" at low sparsity, "0.5% ... at 50% ... to 2.3% at 60%", structured "1.5% to 1.8%") and
# Table 3 (DCLM-7B, Wanda: 65 % range 58.14 - 53.97 = 4.17)
C1_RANGE = {0.3: 0.1, 0.5: 0.5, 0.6: 2.3, 0.65: 4.17}
C1_PATTERN = {"4:8": 1.5, "2:4": 1.8}


def _spread(sources: list[str], source: str, width: float) -> float:
    """Source ``source``'s effect: the sources equally spaced over ``width`` (label order)."""
    j, k = sources.index(source), len(sources)
    return width * (j / (k - 1) - 0.5) if k > 1 else 0.0


def _c1(attrs: dict, params: dict) -> float:
    width = KAPPA * _range_at(attrs, C1_RANGE, C1_PATTERN)
    return _spread(params["_sources"], attrs["calib"], width)


def _c2(attrs: dict, params: dict) -> float:
    # the gap at 2:4 (1.8 points) at the smallest amount, closed at the largest
    width = KAPPA * C1_PATTERN["2:4"] if attrs["nsamples"] == params["_smallest"] else 0.0
    return _spread(params["_sources"], attrs["calib"], width)


def _c3(attrs: dict, params: dict) -> float:
    return KAPPA * 1.3 if attrs["calib"] == params.get("better") else 0.0


# C4: Table 2, DCLM-7B, Alpaca perplexity of Syn against Wiki (its source) and against C4
C4_VS_SOURCE = {"wanda": _log(9.99 / 9.40), "dsnot": _log(10.16 / 9.40), "owl": _log(9.96 / 9.20)}
C4_VS_OTHER = {"wanda": _log(9.67 / 9.40), "dsnot": _log(9.81 / 9.40), "owl": _log(9.52 / 9.20)}
# C5: Table 3, DCLM-7B, Wanda, accuracy of Syn minus Wiki (its source) and minus C4 by setting
C5_VS_SOURCE = {0.5: 69.64 - 69.07, 0.65: 58.11 - 53.97}
C5_VS_SOURCE_PATTERN = {"4:8": 67.02 - 64.82, "2:4": 63.61 - 61.03}
C5_VS_OTHER = {0.5: 69.64 - 69.43, 0.65: 58.11 - 57.22}
C5_VS_OTHER_PATTERN = {"4:8": 67.02 - 66.27, "2:4": 63.61 - 62.52}


def _versus(attrs: dict, params: dict, vs_source: Callable, vs_other: Callable) -> float:
    """0 for the generated strategy; minus the paper's advantage for each arm it should beat."""
    if attrs["calib"] == params.get("strategy"):
        return 0.0
    if attrs["calib"] not in params.get("over", []):
        return 0.0
    own = attrs.get("source") == params.get("_source")
    return -(vs_source if own else vs_other)(attrs)


def _c4(attrs: dict, params: dict) -> float:
    return _versus(attrs, params, lambda a: C4_VS_SOURCE[_method(a)], lambda a: C4_VS_OTHER[_method(a)])


def _c5(attrs: dict, params: dict) -> float:
    return _versus(
        attrs,
        params,
        lambda a: KAPPA * _range_at(a, C5_VS_SOURCE, C5_VS_SOURCE_PATTERN),
        lambda a: KAPPA * _range_at(a, C5_VS_OTHER, C5_VS_OTHER_PATTERN),
    )


# C6: Figure 4 gives no values in the text; its bound is the original data: "once there is a
# prefix, the performance exceeds that of the original calibration data ... performance
# gradually declines with increased prefix length" (0 .. 1024). Read as: prefixes 1-4 at
# Syn's advantage over Wiki (Table 2, DCLM-7B, Wanda: Alpaca 9.99 vs 9.40), prefix 0 and 1024 at
# Wiki's level, log-linear in the prefix length between 4 and 1024.
C6_TOP = _log(9.99 / 9.40)


def _c6(attrs: dict, params: dict) -> float:
    p = attrs["prefix_tokens"]
    if 1 <= p <= 4:
        return C6_TOP
    if p == 0:
        return 0.0
    return C6_TOP * max(0.0, 1 - math.log(p / 4) / math.log(1024 / 4))


# C7: Table 4, DCLM-7B, Wanda 60 %, commonsense accuracy by filter rate
C7_ACC = {0.0: 64.49, 0.1: 64.76, 0.2: 64.71, 0.3: 64.49, 0.4: 64.51}


def _c7(attrs: dict, params: dict) -> float:
    return KAPPA * (_interp(C7_ACC, attrs["filter_top"]) - C7_ACC[0.0])


PAPER: dict[str, PaperSize] = {
    "C1": PaperSize(
        "Sec. 3.2 / Fig. 2: range across sources 'less than 0.1%' at low sparsity, '0.5% ... at 50% ... "
        "2.3% at 60%', 4:8 / 2:4 '1.5% to 1.8%'; Table 3: 65 % range 58.14 - 53.97 = 4.17 points",
        "sources equally spaced over the range x KAPPA (log-ppl per accuracy point); tau^2 differences follow",
        _c1,
    ),
    "C2": PaperSize(
        "Sec. 3.3 / Fig. 3: the claim is a null ('does not reduce the disparity'); the gap to close is the "
        "2:4 range of Sec. 3.2, '1.5% to 1.8%' (1.8)",
        "the 2:4 range x KAPPA at the smallest amount, closed (0) at the largest: power to refute the claim",
        _c2,
        direction="not replicated",
    ),
    "C3": PaperSize(
        "Sec. 3.4 / Table 1: Wikipedia 'falling short of DCLM by 1.3% to 1.8%' (the lower end, 1.3)",
        "1.3 points x KAPPA, on every setting",
        _c3,
    ),
    "C4": PaperSize(
        "Table 2, DCLM-7B: Alpaca ppl Syn 9.40 / 9.40 / 9.20 vs Wiki 9.99 / 10.16 / 9.96 and C4 9.67 / 9.81 / "
        "9.52 (Wanda / DSnoT / OWL)",
        "log ppl ratio of Wiki / Syn against the generated set's own source, of C4 / Syn against the others",
        _c4,
    ),
    "C5": PaperSize(
        "Table 3, DCLM-7B, Wanda: Syn - Wiki 0.57 / 4.14 / 2.20 / 2.58 points and Syn - C4 0.21 / 0.89 / 0.75 / "
        "1.09 at 50 % / 65 % / 4:8 / 2:4",
        "points x KAPPA (linear in sparsity between 50 % and 65 %)",
        _c5,
    ),
    "C6": PaperSize(
        "Sec. 6.2 / Fig. 4 (no values in the text): prefixes 1-4 best, 'once there is a prefix ... exceeds "
        "the original calibration data', declining with length to 1024; bound: Table 2 Syn vs Wiki, Alpaca "
        "9.40 vs 9.99",
        "prefixes 1-4 at log(9.99 / 9.40), 0 and 1024 at 0, log-linear in length between 4 and 1024",
        _c6,
    ),
    "C7": PaperSize(
        "Table 4, DCLM-7B: commonsense 64.49 / 64.76 / 64.71 / 64.49 / 64.51 at filter 0 / 10 / 20 / 30 / 40 %",
        "points above no filter x KAPPA",
        _c7,
    ),
}


# --- measured ----------------------------------------------------------------------------


@dataclass
class Arm:
    attrs: dict  # the cell attributes but the seed (and the metric)
    mean: float  # seed mean, log scale
    sd: float  # seed sd, log scale
    generated: bool


@dataclass
class Design:
    """What a claim's cells look like in one study and model, for simulation."""

    study: str
    claim: str
    model: str
    metric: str
    params: dict
    arms: list[Arm]
    blocks: list[list[int]]  # arms sharing texts
    rho: list[float]  # per block: the mean correlation of its arms' seed values
    seeds: int  # seeds measured
    pool_sd: float = 0.0  # between-pool sd of a generated arm (log scale), added in simulation
    level: dict[tuple, float] = field(default_factory=dict)  # context -> null level

    @property
    def sd(self) -> float:
        """Root mean square of the arms' seed sds (log scale)."""
        return math.sqrt(sum(a.sd**2 for a in self.arms) / len(self.arms))


def context_of(attrs: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in attrs.items() if k not in CALIB_ATTRS))


def _correlation(arms: list[dict[int, float]]) -> float:
    seeds = sorted(set.intersection(*(set(a) for a in arms)))
    if len(seeds) < 3:
        return 0.0
    x = np.log(np.array([[a[s] for s in seeds] for a in arms]))
    c = np.corrcoef(x)
    off = c[~np.eye(len(arms), dtype=bool)]
    off = off[np.isfinite(off)]
    return float(np.clip(off.mean(), 0.0, 0.95)) if off.size else 0.0


def designs_of(study: str, meta: dict, rows: list[dict]) -> list[Design]:
    """One :class:`Design` per (claim the study addresses, model), C1-C7 (cells)."""
    metric = primary_metric(meta, rows)
    if metric is None or not metric.startswith("ppl/"):
        return []
    params_of = (meta.get("report") or {}).get("claims") or {}
    out = []
    for claim_id in meta.get("claims") or []:
        if claim_id not in PAPER:
            continue
        for model in sorted({r["model"] for r in rows}):
            cells = by_seed([r for r in rows if r["metric"] == metric and r["model"] == model])
            arms_seeds = [(dict(k), v) for k, v in cells.items()]
            arms = []
            for attrs, values in arms_seeds:
                logs = np.log(list(values.values()))
                arms.append(
                    Arm(
                        {k: v for k, v in attrs.items() if k != "metric"},
                        float(logs.mean()),
                        float(logs.std(ddof=1)),
                        attrs.get("strategy") == "synthetic",
                    )
                )
            blocks = blocks_of(arms_seeds)
            rho = [_correlation([arms_seeds[i][1] for i in b]) if len(b) > 1 else 0.0 for b in blocks]
            level: dict[tuple, list[float]] = {}
            for arm in arms:
                level.setdefault(context_of(arm.attrs), []).append(arm.mean)
            params = dict(params_of.get(claim_id) or {})
            params["_sources"] = sorted({a.attrs["calib"] for a in arms})
            params["_smallest"] = min((a.attrs.get("nsamples", 0) for a in arms), default=0)
            strategy = params.get("strategy")
            params["_source"] = next((a.attrs.get("source") for a in arms if a.attrs["calib"] == strategy), None)
            out.append(
                Design(
                    study,
                    claim_id,
                    model,
                    metric,
                    params,
                    arms,
                    blocks,
                    rho,
                    len(meta.get("seeds") or []),
                    level={c: float(np.mean(v)) for c, v in level.items()},
                )
            )
    return out


def read_run(rundir: str | Path) -> tuple[dict, list[dict]]:
    """A run folder's study.json and result rows, under the study's own labels (as ``report``)."""
    from .store import RunStore

    store = RunStore(rundir)
    meta = store.read_meta() or {}
    own = meta.get("cells")
    cells = store.cells(own)
    if isinstance(own, dict):
        cells = [replace(c, attrs=own.get(c.key, c.attrs)) for c in cells]
    return meta, rows_of(cells)


def pool_sd_of(rows: list[dict], metric: str, model: str, a: int = 1, b: int = 4) -> float | None:
    """Between-pool sd (log scale) from two generated arms the paper holds equal (prefixes
    ``a`` and ``b``), each cut from one pool by every seed: Var(mean_a - mean_b) =
    2 sigma_pool^2 + s_a^2 / n_a + s_b^2 / n_b, so sigma_pool^2 = (d^2 - s_a^2/n_a - s_b^2/n_b) / 2
    (one degree of freedom: a rough figure; 0 when negative)."""
    arms = {}
    for key, values in by_seed([r for r in rows if r["metric"] == metric and r["model"] == model]).items():
        attrs = dict(key)
        if attrs.get("strategy") == "synthetic" and attrs.get("prefix_tokens") in (a, b):
            arms[attrs["prefix_tokens"]] = np.log(list(values.values()))
    if set(arms) != {a, b}:
        return None
    x, y = arms[a], arms[b]
    d2 = (x.mean() - y.mean()) ** 2
    return math.sqrt(max(0.0, (d2 - x.var(ddof=1) / len(x) - y.var(ddof=1) / len(y)) / 2))


# --- simulated ---------------------------------------------------------------------------


def simulate(design: Design, seeds: int, multiplier: float, rng: np.random.Generator) -> list[dict]:
    """Rows of one synthetic study like ``design``'s, the paper's effect x ``multiplier``."""
    paper = PAPER[design.claim]
    rows = []
    for block, rho in zip(design.blocks, design.rho, strict=True):
        common = rng.standard_normal(seeds)
        pool = rng.standard_normal(seeds)  # a seed's generated pool, shared by the block's arms
        for i in block:
            arm = design.arms[i]
            own = rng.standard_normal(seeds)
            noise = arm.sd * (math.sqrt(rho) * common + math.sqrt(1 - rho) * own)
            if arm.generated:
                noise = noise + design.pool_sd * pool
            level = design.level[context_of(arm.attrs)] - multiplier * paper.shift(arm.attrs, design.params)
            for seed, value in enumerate(np.exp(level + noise)):
                rows.append({**arm.attrs, "metric": design.metric, "value": float(value), "seed": seed})
    return rows


def power(design: Design, seeds: int, multiplier: float = 1.0, reps: int = 200, seed: int = 0) -> float:
    """Share of ``reps`` simulated studies whose verdict detects the effect (see the module)."""
    one = claim(design.claim)
    params = {k: v for k, v in design.params.items() if not k.startswith("_")}
    wanted = PAPER[design.claim].direction
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        effects = one.effects(Evidence(simulate(design, seeds, multiplier, rng), design.metric), params)
        hits += verdict(effects)[0] == wanted
    return hits / reps


GRID = (3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60)


def seeds_for(design: Design, reps: int = 200, most: int = GRID[-1], seed: int = 0) -> tuple[int | None, dict]:
    """The fewest seeds with power >= 80 % at the paper's size (None: more than ``most``),
    and the powers computed on the way ({seeds: power})."""
    seen: dict[int, float] = {}
    below = 2
    for n in [g for g in GRID if g <= most]:
        seen[n] = power(design, n, 1.0, reps, seed)
        if seen[n] >= TARGET:
            lo, hi = below, n
            while hi - lo > 1:
                mid = (lo + hi) // 2
                seen[mid] = power(design, mid, 1.0, reps, seed)
                lo, hi = (lo, mid) if seen[mid] >= TARGET else (mid, hi)
            return hi, dict(sorted(seen.items()))
        below = n
    return None, dict(sorted(seen.items()))


def mde(design: Design, seeds: int, reps: int = 200, seed: int = 0, steps: int = 7) -> float:
    """The multiple of the paper's effect detected with 80 % power at ``seeds`` seeds
    (bisection on the log of the multiple; the same random draws at every multiple)."""
    lo, hi = 0.0, 1.0
    while power(design, seeds, hi, reps, seed) < TARGET:
        lo, hi = hi, hi * 4
        if hi > 4**6:
            return math.inf
    if lo == 0.0:
        lo = hi / 4
        while lo > 1 / 4**4 and power(design, seeds, lo, reps, seed) >= TARGET:
            lo, hi = lo / 4, lo
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if power(design, seeds, mid, reps, seed) >= TARGET else (mid, hi)
    return hi


def normal_seeds(sd: float, effect: float, alpha: float = 0.025, target: float = TARGET) -> float:
    """Seeds per arm for a two-sample difference with seed sd ``sd`` per arm, one-sided
    level ``alpha`` and power ``target`` (normal approximation): 2 sd^2 (z_a + z_b)^2 / effect^2."""
    from scipy.stats import norm

    return 2 * sd**2 * (norm.isf(alpha) + norm.ppf(target)) ** 2 / effect**2
