"""Cell results -> the paper's quantities.

* summary: per (model, setting, calibration strategy and its parameters) and metric,
  mean, sample std (n - 1) and n over seeds;
* range: per (model, setting, nsamples, seqlen) and metric, max - min of the strategies'
  means (the paper's Figure 2 quantity: how much the choice of source moves the result);
* diff: per strategy vs a named baseline, the seed-paired difference d_s = x_s - b_s:
  mean, std, n and the 95% t interval mean +/- t(0.975, n-1) std / sqrt(n).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from ..results import StageRecord

CALIB_ATTRS = ("calib", "source", "strategy", "prefix_tokens", "filter_top", "keep_top")
ORDER = (
    "model",
    "setting",
    "method",
    "allocation",
    "refine",
    "pattern",
    "sparsity",
    "nsamples",
    "seqlen",
) + CALIB_ATTRS


def rows_of(cells: list[StageRecord]) -> list[dict]:
    """One row per (ok cell, metric): the cell's attributes, ``metric`` and ``value``."""
    rows = []
    for cell in cells:
        if not cell.ok:
            continue
        for metric, value in (cell.metrics or {}).items():
            rows.append({**cell.attrs, "metric": metric, "value": float(value)})
    return rows


def _key(row: dict, drop: tuple[str, ...]) -> tuple:
    return tuple(sorted((k, v) for k, v in row.items() if k not in drop and k not in ("value",)))


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        groups[_key(row, ("seed",))].append(row["value"])
    out = []
    for key, values in groups.items():
        out.append(
            {
                **dict(key),
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "n": len(values),
            }
        )
    return sorted(out, key=sort_key)


def ranges(summary: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in summary:
        groups[_key(row, CALIB_ATTRS + ("mean", "std", "n"))].append(row)
    out = []
    for key, members in groups.items():
        if len(members) < 2:
            continue
        best, worst = max(members, key=lambda r: r["mean"]), min(members, key=lambda r: r["mean"])
        out.append(
            {
                **dict(key),
                "range": best["mean"] - worst["mean"],
                "max": best["mean"],
                "min": worst["mean"],
                "argmax": best["calib"],
                "argmin": worst["calib"],
                "strategies": len(members),
            }
        )
    return sorted(out, key=sort_key)


def t_quantile(n: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """Mean of a_s - b_s over the seeds both have, with its 95% t interval."""
    seeds = sorted(set(a) & set(b))
    d = [a[s] - b[s] for s in seeds]
    out = {"n": len(d), "mean": statistics.fmean(d) if d else None, "std": None, "ci_low": None, "ci_high": None}
    if len(d) > 1:
        std = statistics.stdev(d)
        half = t_quantile(len(d)) * std / math.sqrt(len(d))
        out.update(std=std, ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    return out


def by_seed(rows: list[dict]) -> dict[tuple, dict[int, float]]:
    """(attributes without seed) -> {seed: value}."""
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for row in rows:
        out[_key(row, ("seed",))][row["seed"]] = row["value"]
    return out


def diffs(rows: list[dict], baseline: str) -> list[dict]:
    seeds = by_seed(rows)
    context: dict[tuple, dict[tuple, dict[int, float]]] = defaultdict(dict)
    for key, values in seeds.items():
        context[tuple(kv for kv in key if kv[0] not in CALIB_ATTRS)][key] = values
    out = []
    for _shared, members in context.items():
        base = [v for k, v in members.items() if dict(k)["calib"] == baseline]
        if len(base) != 1:
            continue
        for key, values in members.items():
            attrs = dict(key)
            if attrs["calib"] == baseline:
                continue
            out.append({**attrs, "baseline": baseline, **paired(values, base[0])})
    return sorted(out, key=sort_key)


def sort_key(row: dict) -> tuple:
    return tuple(
        str(row.get(k, "")) if not isinstance(row.get(k), (int, float)) else f"{row[k]:012.4f}"
        for k in ("metric", *ORDER)
    )


def higher_is_better(metric: str) -> bool:
    return not metric.startswith("ppl/")
