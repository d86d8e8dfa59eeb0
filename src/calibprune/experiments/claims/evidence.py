"""What a claim's effects are computed from (:class:`Basis`), and the one estimator they use.

:data:`CELLS`, the basis of most claims: the seed values of the study's primary metric
(``report.primary_metric``; perplexities are negated, lower being better) by setting and
strategy, as an :class:`Evidence`.

**Units and pairing.** A seed of one strategy is one independent replicate (its own
calibration set; for a generated strategy, its own generated pool). Seed *s* of two
strategies is a pair only when their sets at *s* are cut from the same texts by
construction (:func:`shares_texts`): the same strategy at two settings (one set serves
every setting) or arms of one generated strategy that differ only in ``filter_top`` (one
generated pool per seed, filtered at each rate). Anything else (other sources, prefixes,
temperatures, amounts) shares nothing, its seed labels are arbitrary, and it is compared
unpaired.

**One estimator** (:func:`jackknife`): the units are grouped into independent *blocks*
(a block: one strategy's seeds, or the seeds of strategies that share texts, a unit then
holding one value per strategy); a statistic of the blocks' seed means (and their noise
variances s^2/n) gets the stratified delete-one jackknife variance

    v = sum_b v_b,   v_b = (n_b - 1) / n_b * sum_i (theta_(b,i) - mean_i theta_(b,i))^2

(theta_(b,i): the statistic without unit i of block b), Welch-Satterthwaite degrees of
freedom df = v^2 / sum_b v_b^2 / (n_b - 1), a 95% t interval theta +/- t(0.975, df) sqrt(v)
and one-sided p-values from t = theta / sqrt(v). For a difference of means this *is*
Welch's interval (unpaired: v_b = s_b^2 / n_b) or the paired t interval (one block of
pairs: v = s_d^2 / n), exactly; for the noise-corrected spreads of C1 and C2 it is the
delta-method t interval, the jackknife estimating the gradient (why not a bootstrap: at
5 seeds a percentile bootstrap covered 90 % for a nominal 95 %, and a studentized one
(parametric or not) was worse than the jackknife in simulation; see
tests/test_claim_statistics.py, which pins the null rates).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..aggregate import CALIB_ATTRS, by_seed, higher_is_better


@dataclass(frozen=True)
class Inputs:
    """What a run folder offers the claims: its study.json, result rows, the primary metric
    (None: no successful cell has it) and the membership scores (Min-K%++ per text, by strategy)."""

    meta: dict
    rows: list[dict]
    metric: str | None
    membership: dict[str, list[float]] | None


@dataclass(frozen=True)
class Basis:
    """What a claim's effects rest on, and what their 95% intervals are over.

    ``gather`` turns the run's :class:`Inputs` into the evidence the claim's check reads, or
    None when the run lacks it (the verdict is then inconclusive, ``absent`` saying why);
    ``over`` names what the intervals are over (in the verdict's reason: "the seeds do not
    resolve the effect"); ``intervals`` says how they are formed (the replication report's
    preamble); ``metric`` is the metric reported (None: the study's primary metric) and
    ``seeds`` the most of the study's seeds the evidence rests on (None: all of them)."""

    over: str
    intervals: str
    absent: str
    gather: Callable[[Inputs], object | None]
    metric: str | None = None
    seeds: int | None = None

    def metric_of(self, inputs: Inputs) -> str | None:
        return self.metric if self.metric is not None else inputs.metric

    def seeds_of(self, meta: dict) -> int:
        n = len(meta.get("seeds") or [])
        return n if self.seeds is None else min(n, self.seeds)


def primary_metric(meta: dict, rows: list[dict]) -> str | None:
    wanted = (meta.get("report") or {}).get("primary_metric")
    metrics = sorted({r["metric"] for r in rows})
    if wanted:
        return wanted if wanted in metrics else None
    return "acc/average" if "acc/average" in metrics else (metrics[0] if metrics else None)


class Evidence:
    """Seed values of the primary metric by (setting context) and strategy.

    ``sign``: +1 where higher is better, -1 for perplexities (effects are oriented by it);
    :meth:`scale` the scale spreads are measured on (log for perplexities, whose seed
    noise is multiplicative)."""

    def __init__(self, rows: list[dict], metric: str):
        self.metric = metric
        self.sign = 1.0 if higher_is_better(metric) else -1.0
        self.log = metric.startswith("ppl/")
        self.cells = {key: v for key, v in by_seed([r for r in rows if r["metric"] == metric]).items()}

    def scale(self, value: float) -> float:
        return math.log(value) if self.log else value

    def select(self, **where) -> list[tuple[dict, dict[int, float]]]:
        """(attributes, {seed: value}) of every strategy x setting matching ``where``."""
        out = []
        for key, values in self.cells.items():
            attrs = dict(key)
            if all(attrs.get(k) == v for k, v in where.items()):
                out.append((attrs, values))
        return out

    def by_context(self, **where) -> dict[tuple, dict[str, tuple[dict, dict[int, float]]]]:
        """context (attrs without calibration ones) -> {strategy label: (attrs, {seed: value})}."""
        out: dict[tuple, dict[str, tuple[dict, dict[int, float]]]] = {}
        for attrs, values in self.select(**where):
            context = tuple(sorted((k, v) for k, v in attrs.items() if k not in CALIB_ATTRS))
            out.setdefault(context, {})[attrs["calib"]] = (attrs, values)
        return out

    def along(self, attr: str) -> dict:
        """{context: {attr value: (attrs, {seed: value})}} for strategies varying ``attr``."""
        out: dict = {}
        for attrs, values in self.select():
            if attr in attrs:
                context = tuple(sorted((k, v) for k, v in attrs.items() if k != attr))
                out.setdefault(context, {})[attrs[attr]] = (attrs, values)
        return {c: v for c, v in out.items() if len(v) > 1}


CELLS = Basis(
    over="seeds",
    intervals="jackknife t intervals over independent seeds (Welch unless two sets share their texts, "
    "then seed-paired), with Welch-Satterthwaite degrees of freedom",
    absent="no successful cells with the primary metric",
    gather=lambda inputs: Evidence(inputs.rows, inputs.metric) if inputs.metric is not None else None,
)

# what a set is cut from: strategies equal in these (but for filter_top) share their texts at a seed
_SET_ATTRS = ("model", "nsamples", "seqlen") + CALIB_ATTRS


def shares_texts(a: dict, b: dict) -> bool:
    """Whether seed s of the cells with attributes ``a`` and ``b`` is a real pair: their
    calibration sets are the same set (the same strategy, any setting) or filtered from one
    generated pool (arms of one strategy differing in ``filter_top`` only: the pool of seed
    s is generated once and every rate filters it; even generated per arm, batch b of seed
    s is the same text, see :mod:`calibprune.calibration.synthetic`)."""
    return all(a.get(k) == b.get(k) for k in _SET_ATTRS if k != "filter_top")


# --- the estimator ---------------------------------------------------------------------


def blocks_of(arms: list[tuple[dict, dict[int, float]]]) -> list[list[int]]:
    """The arms (attributes, {seed: value}) grouped into independent blocks: arms that
    share their texts (:func:`shares_texts`) in one block, every other arm alone."""
    blocks: list[list[int]] = []
    for i, (attrs, _) in enumerate(arms):
        home = next((b for b in blocks if shares_texts(arms[b[0]][0], attrs)), None)
        if home is None:
            blocks.append([i])
        else:
            home.append(i)
    return blocks


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seed means and their noise variances s^2 / n of units x (..., n, G), per column."""
    n = x.shape[-2]
    noise = x.var(-2, ddof=1) / n if n > 1 else np.full(x.shape[:-2] + x.shape[-1:], np.nan)
    return x.mean(-2), noise


def _leave_one_out(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and noise variances of x (..., n, G) without each unit in turn: (..., n, G)."""
    n = x.shape[-2]
    total, squares = x.sum(-2, keepdims=True), (x**2).sum(-2, keepdims=True)
    means = (total - x) / (n - 1)
    if n < 3:  # one unit left: no variance (a statistic of means does not read it)
        return means, np.full(x.shape, np.nan)
    var = (squares - x**2 - (n - 1) * means**2) / (n - 2)
    return means, var / (n - 1)


Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def jackknife(arms: list[tuple[dict, dict[int, float]]], statistic: Statistic, scale=float) -> dict:
    """The effect ``statistic(means, noise)`` of the arms, with its jackknife t interval and
    one-sided p-values (the module docstring gives the formulas).

    ``statistic`` reads the arms' seed means and noise variances (arrays (..., arms), in the
    order of ``arms``) and is vectorized over leading axes. Within a block only the seeds
    every arm of it has are units. Returns ``mean``, ``ci_low``/``ci_high`` (95%, two-sided),
    ``se``, ``df``, ``p_above`` (H0: effect <= 0) and ``p_below`` (H0: effect >= 0), and ``n``,
    the fewest units of any block; no interval or p-value (None) where a block has < 2 units."""
    blocks = blocks_of(arms)
    data = []
    for block in blocks:
        seeds = sorted(set.intersection(*(set(arms[i][1]) for i in block)))
        rows = [[scale(arms[i][1][s]) for i in block] for s in seeds]
        data.append(np.array(rows, dtype=float).reshape(-1, len(block)))
    n = min(len(x) for x in data)
    out = dict.fromkeys(("mean", "ci_low", "ci_high", "se", "df", "p_above", "p_below")) | {"n": n}
    if n == 0:
        return out
    order = [i for block in blocks for i in block]  # arms as the blocks list them
    place = np.argsort(order)

    def theta(means, noise):  # the statistic, its arms back in the caller's order
        return statistic(means[..., place], noise[..., place])

    stacked = [_moments(x) for x in data]
    means, noise = (np.concatenate([m[k] for m in stacked], -1) for k in (0, 1))
    mean = float(theta(means, noise))
    if not math.isfinite(mean):  # a spread needs 2 seeds per source
        return out
    out["mean"] = mean
    if n < 2:
        return out
    parts, start = [], 0
    for x in data:
        width, units = x.shape[1], len(x)
        loo_means, loo_noise = _leave_one_out(x)
        m, v = np.repeat(means[None], units, 0), np.repeat(noise[None], units, 0)
        m[:, start : start + width], v[:, start : start + width] = loo_means, loo_noise
        t = theta(m, v)
        parts.append(((units - 1) / units * ((t - t.mean()) ** 2).sum(), units - 1))
        start += width
    var = sum(p for p, _ in parts)
    if not math.isfinite(var):  # a spread left with one seed of a source (2 seeds): no interval
        return out
    se = math.sqrt(var)
    df = var**2 / sum(p**2 / d for p, d in parts) if var > 0 else math.inf
    return out | _t_test(out["mean"], se, float(df))


def _t_test(mean: float, se: float, df: float) -> dict:
    """The 95% interval and one-sided p-values of an estimate with standard error ``se``."""
    from scipy.stats import t

    if se == 0:  # every unit agrees: the estimate is exact
        return {"ci_low": mean, "ci_high": mean, "se": 0.0, "df": df,
                "p_above": 0.0 if mean > 0 else 1.0, "p_below": 0.0 if mean < 0 else 1.0}  # fmt: skip
    half = float(t.ppf(0.975, df)) * se
    score = mean / se
    return {"ci_low": mean - half, "ci_high": mean + half, "se": se, "df": df,
            "p_above": float(t.sf(score, df)), "p_below": float(t.cdf(score, df))}  # fmt: skip


def oriented(stats: dict, sign: float) -> dict:
    """``stats`` multiplied by ``sign`` (positive: what the paper claims): its mean and
    interval, and its one-sided p-values swapped where the sign flips."""
    out = dict(stats)
    if stats.get("mean") is not None:
        out["mean"] = sign * stats["mean"]
    if stats.get("ci_low") is not None:
        low, high = sign * stats["ci_low"], sign * stats["ci_high"]
        out["ci_low"], out["ci_high"] = min(low, high), max(low, high)
    if sign < 0:
        out["p_above"], out["p_below"] = stats.get("p_below"), stats.get("p_above")
    return out


def contrast(ev: Evidence, arms: list[tuple[dict, dict[int, float]]], weights: list[float]) -> dict:
    """sum_k weights_k x mean_k of the arms on the metric (``better - worse``: weights
    [1, -1]), oriented by the metric's direction: Welch, paired or mixed as the arms share
    their texts (:func:`shares_texts`)."""
    w = np.array(weights, dtype=float)
    return oriented(jackknife(arms, lambda m, v: (m * w).sum(-1)), ev.sign)


def between_variance(means: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Noise-corrected variance of the sources' true means, from their seed means m_j and
    noise variances v_j = s_j^2 / n_j (J sources, last axis):

        tau^2 = sum_j (m_j - mean m)^2 / (J - 1)  -  mean_j v_j

    Unbiased whatever the sources' noise: E[sum_j (m_j - mean m)^2 / (J - 1)] is the variance
    of the true means plus mean_j Var(m_j). 0 in expectation when the sources are alike."""
    return means.var(-1, ddof=1) - noise.mean(-1)


def spread_change(ev: Evidence, high: dict[str, tuple], low: dict[str, tuple]) -> dict:
    """tau^2 at ``high`` minus tau^2 at ``low`` (:func:`between_variance`, on :meth:`Evidence.scale`)
    over the sources both have ({label: (attrs, {seed: value})}); a source's seeds pair
    across the two where its sets are the same (:func:`shares_texts`)."""
    sources = sorted(set(high) & set(low))
    arms = [high[s] for s in sources] + [low[s] for s in sources]
    k = len(sources)
    if k < 2:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    return jackknife(
        arms,
        lambda m, v: between_variance(m[..., :k], v[..., :k]) - between_variance(m[..., k:], v[..., k:]),
        ev.scale,
    ) | {"sources": k}


def as_list(value) -> list[str]:
    """A parameter naming one strategy or a list of them, as a list."""
    return [value] if isinstance(value, str) else list(value or [])
