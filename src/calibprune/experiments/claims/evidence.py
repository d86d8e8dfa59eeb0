"""What a claim's effects are computed from (:class:`Basis`), and the tools its check uses.

:data:`CELLS`, the basis of most claims: the seed values of the study's primary metric
(``report.primary_metric``; perplexities are negated, lower being better) by setting and
strategy, as an :class:`Evidence`. Paired t intervals over seeds for differences of
strategies (:func:`versus`, :func:`paired_effect`); seeded bootstrap over seeds (2000
resamples) for differences of ranges (:func:`bootstrap`, :func:`spread`).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ..aggregate import CALIB_ATTRS, by_seed, higher_is_better, paired


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
    """Seed values of the primary metric by (setting context) and strategy."""

    def __init__(self, rows: list[dict], metric: str):
        self.metric = metric
        self.sign = 1.0 if higher_is_better(metric) else -1.0
        self.cells = {key: v for key, v in by_seed([r for r in rows if r["metric"] == metric]).items()}

    def select(self, **where) -> list[tuple[dict, dict[int, float]]]:
        out = []
        for key, values in self.cells.items():
            attrs = dict(key)
            if all(attrs.get(k) == v for k, v in where.items()):
                out.append((attrs, values))
        return out

    def by_context(self, **where) -> dict[tuple, dict[str, list[float]]]:
        """context (attrs without calibration ones) -> {strategy label: seed values}."""
        out: dict[tuple, dict[str, list[float]]] = {}
        for attrs, values in self.select(**where):
            context = tuple(sorted((k, v) for k, v in attrs.items() if k not in CALIB_ATTRS))
            out.setdefault(context, {})[attrs["calib"]] = [values[s] for s in sorted(values)]
        return out

    def along(self, attr: str) -> dict:
        """{context: {attr value: seed values}} for strategies varying ``attr``."""
        out: dict = {}
        for attrs, values in self.select():
            if attr in attrs:
                context = tuple(sorted((k, v) for k, v in attrs.items() if k != attr))
                out.setdefault(context, {})[attrs[attr]] = values
        return {c: v for c, v in out.items() if len(v) > 1}


CELLS = Basis(
    over="seeds",
    intervals="seed-paired t intervals; a seeded bootstrap for ranges",
    absent="no successful cells with the primary metric",
    gather=lambda inputs: Evidence(inputs.rows, inputs.metric) if inputs.metric is not None else None,
)


def oriented(stats: dict, sign: float) -> dict:
    """``stats`` with its mean and interval multiplied by ``sign`` (positive: what the paper claims)."""
    out = dict(stats)
    if stats.get("mean") is not None:
        out["mean"] = sign * stats["mean"]
    if stats.get("ci_low") is not None:
        low, high = sign * stats["ci_low"], sign * stats["ci_high"]
        out["ci_low"], out["ci_high"] = min(low, high), max(low, high)
    return out


def paired_effect(ev: Evidence, better: dict[int, float], worse: dict[int, float]) -> dict:
    """``better - worse``, seed-paired t interval, oriented by the metric's direction."""
    return oriented(paired(better, worse), ev.sign)


def bootstrap(fn, groups: list[dict[str, list[float]]], reps: int = 2000, seed: int = 0) -> dict:
    """Interval of ``fn(*groups)`` resampling every strategy's seed values independently.

    ``n`` is the fewest seed values behind any strategy (what the interval rests on);
    ``resamples`` the bootstrap's draws."""
    rng = random.Random(seed)
    point = fn(*groups)
    draws = []
    for _ in range(reps):
        draws.append(fn(*[{k: [rng.choice(v) for _ in v] for k, v in g.items()} for g in groups]))
    draws.sort()
    n = min(len(v) for g in groups for v in g.values())
    low, high = draws[int(0.025 * reps)], draws[int(0.975 * reps) - 1]
    return {"mean": point, "ci_low": low, "ci_high": high, "n": n, "resamples": reps}


def spread(group: dict[str, list[float]], sign: float) -> float:
    """Range of the strategies' seed means (oriented: the best minus the worst)."""
    means = [sign * statistics.fmean(v) for v in group.values()]
    return max(means) - min(means)


def as_list(value) -> list[str]:
    """A parameter naming one strategy or a list of them, as a list."""
    return [value] if isinstance(value, str) else list(value or [])
