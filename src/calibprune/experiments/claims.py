"""Verdicts on the paper's claims C1..C8 from a run folder's cells.

Every claim is reduced to effects with 95% intervals, oriented so that a positive effect
is what the paper claims, on the study's primary metric (``report.primary_metric``;
perplexities are negated, lower being better). A verdict is *replicated* when every
interval lies above 0, *not replicated* when one lies below 0, and *inconclusive*
otherwise or when the data are missing, with the reason and the paper-scale spec that
would decide it. Paired t intervals over seeds for differences of strategies; seeded
bootstrap over seeds (2000 resamples) for differences of ranges.
"""

from __future__ import annotations

import random
import statistics

from .aggregate import CALIB_ATTRS, by_seed, higher_is_better, paired

TEXT = {
    "C1": "the spread across calibration sources grows with sparsity and with structure (unstructured < 4:8 < 2:4)",
    "C2": "more calibration samples do not close the gap between sources",
    "C3": "training-like data calibrates better than high-quality data unlike the training data",
    "C4": "self-generated data beats its source and the common baselines, for Wanda, DSnoT and OWL",
    "C5": "the self-generation advantage holds at 50 %, 65 %, 4:8 and 2:4",
    "C6": "prefixes of 1-4 tokens are best; longer prefixes fall back toward the original data",
    "C7": "dropping the 10-20 % most perplexing texts helps; more filtering helps less",
    "C8": "self-generated text has higher Min-K%++ scores than the other sources",
}
PAPER_SPEC = {
    "C1": "studies/paper/sparsity-pattern.yaml",
    "C2": "studies/paper/amount.yaml",
    "C3": "studies/paper/sources.yaml",
    "C4": "studies/paper/table2-main.yaml",
    "C5": "studies/paper/settings.yaml",
    "C6": "studies/paper/prefix.yaml",
    "C7": "studies/paper/filter.yaml",
    "C8": "studies/paper/mink.yaml",
}
FIGURE = {
    "C1": "range_vs_setting.png",
    "C2": "metric_vs_nsamples.png",
    "C3": "metric_by_source.png",
    "C4": "metric_by_source.png",
    "C5": "metric_by_source.png",
    "C6": "metric_vs_prefix.png",
    "C7": "metric_vs_filter.png",
    "C8": "mink_distributions.png",
}


def primary_metric(meta: dict, rows: list[dict]) -> str | None:
    wanted = (meta.get("report") or {}).get("primary_metric")
    metrics = sorted({r["metric"] for r in rows})
    if wanted:
        return wanted if wanted in metrics else None
    return "acc/average" if "acc/average" in metrics else (metrics[0] if metrics else None)


def verdict(effects: list[dict], missing: str | None = None, over: str = "seeds") -> tuple[str, str]:
    """``over``: what the intervals are over (the seeds; for C8, the texts scored)."""
    if missing:
        return "inconclusive", missing
    if not effects:
        return "inconclusive", "no comparison could be formed from the stored cells"
    if any(e.get("ci_low") is None for e in effects):
        return "inconclusive", "fewer than 2 paired seeds for some comparison: no interval"
    if all(e["ci_low"] > 0 for e in effects):
        return "replicated", "every 95% interval lies above 0"
    if any(e["ci_high"] < 0 for e in effects):
        return "not replicated", "a 95% interval lies below 0 (the opposite of the claim)"
    return "inconclusive", f"a 95% interval includes 0: the {over} do not resolve the effect"


def _oriented(stats: dict, sign: float) -> dict:
    out = dict(stats)
    if stats.get("mean") is not None:
        out["mean"] = sign * stats["mean"]
    if stats.get("ci_low") is not None:
        low, high = sign * stats["ci_low"], sign * stats["ci_high"]
        out["ci_low"], out["ci_high"] = min(low, high), max(low, high)
    return out


def _bootstrap(fn, groups: list[dict[str, list[float]]], reps: int = 2000, seed: int = 0) -> dict:
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


def _spread(group: dict[str, list[float]], sign: float) -> float:
    means = [sign * statistics.fmean(v) for v in group.values()]
    return max(means) - min(means)


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


def c1(ev: Evidence, params: dict) -> list[dict]:
    groups = {dict(ctx).get("setting"): (dict(ctx), g) for ctx, g in ev.by_context().items() if len(g) > 1}
    unstructured = sorted((a["sparsity"], g) for a, g in groups.values() if a["pattern"] == "unstructured")
    effects = []
    if len(unstructured) >= 2:
        (lo, g_lo), (hi, g_hi) = unstructured[0], unstructured[-1]
        effects.append(
            {
                "what": f"range at {hi:.0%} - range at {lo:.0%} (unstructured)",
                **_bootstrap(lambda a, b: _spread(a, ev.sign) - _spread(b, ev.sign), [g_hi, g_lo]),
            }
        )
    ordered = [g for s, g in unstructured if abs(s - 0.5) < 1e-9]
    ordered += [g for a, g in groups.values() if a["pattern"] == "4:8"][:1]
    ordered += [g for a, g in groups.values() if a["pattern"] == "2:4"][:1]
    names = ["50% unstructured", "4:8", "2:4"]
    if len(ordered) == 3:
        for i in range(2):
            effects.append(
                {
                    "what": f"range at {names[i + 1]} - range at {names[i]}",
                    **_bootstrap(lambda a, b: _spread(a, ev.sign) - _spread(b, ev.sign), [ordered[i + 1], ordered[i]]),
                }
            )
    return effects


def c2(ev: Evidence, params: dict) -> list[dict]:
    by_n = {}
    for ctx, g in ev.by_context().items():
        if len(g) > 1:
            by_n.setdefault(dict(ctx)["nsamples"], g)
    if len(by_n) < 2:
        return []
    largest = max(by_n)
    return [
        {
            "what": f"range across sources at the largest nsamples ({largest})",
            **_bootstrap(lambda a: _spread(a, ev.sign), [by_n[largest]]),
        }
    ]


def _versus(ev: Evidence, better: str, worse: list[str]) -> list[dict]:
    effects = []
    for attrs, values in ev.select(calib=better):
        context = {k: v for k, v in attrs.items() if k not in CALIB_ATTRS}
        for other in worse:
            for _, base in ev.select(calib=other, **context):
                stats = _oriented(paired(values, base), ev.sign)
                effects.append({"what": f"{better} - {other} @ {attrs.get('setting')}", **stats})
    return effects


def c3(ev: Evidence, params: dict) -> list[dict]:
    return _versus(ev, params.get("better", ""), _list(params.get("worse")))


def c4(ev: Evidence, params: dict) -> list[dict]:
    return _versus(ev, params.get("strategy", ""), _list(params.get("over")))


def _list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _along(ev: Evidence, attr: str) -> dict:
    """{context: {attr value: seed values}} for strategies varying ``attr``."""
    out: dict = {}
    for attrs, values in ev.select():
        if attr in attrs:
            context = tuple(sorted((k, v) for k, v in attrs.items() if k != attr))
            out.setdefault(context, {})[attrs[attr]] = values
    return {c: v for c, v in out.items() if len(v) > 1}


def c6(ev: Evidence, params: dict) -> list[dict]:
    effects = []
    for _context, series in _along(ev, "prefix_tokens").items():
        short = [p for p in series if 1 <= p <= 4]
        if not short:
            continue
        best = max(short, key=lambda p: ev.sign * statistics.fmean(series[p].values()))
        longest = max(series)
        if longest > 4:
            effects.append(
                {
                    "what": f"prefix {best} - prefix {longest}",
                    **_oriented(paired(series[best], series[longest]), ev.sign),
                }
            )
        outside = [p for p in series if p not in short]
        for p in outside:
            if p != longest:
                effects.append(
                    {"what": f"prefix {best} - prefix {p}", **_oriented(paired(series[best], series[p]), ev.sign)}
                )
    return effects


def c7(ev: Evidence, params: dict) -> list[dict]:
    effects = []
    for _context, series in _along(ev, "filter_top").items():
        mid = [f for f in series if 0.1 - 1e-9 <= f <= 0.2 + 1e-9]
        if 0.0 not in series or not mid:
            continue
        best = max(mid, key=lambda f: ev.sign * statistics.fmean(series[f].values()))
        effects.append(
            {"what": f"filter {best:.0%} - no filter", **_oriented(paired(series[best], series[0.0]), ev.sign)}
        )
        most = max(series)
        if most > 0.2 + 1e-9:
            effects.append(
                {
                    "what": f"filter {best:.0%} - filter {most:.0%}",
                    **_oriented(paired(series[best], series[most]), ev.sign),
                }
            )
    return effects


def c8(membership: dict[str, list[float]], params: dict) -> list[dict]:
    """Mean Min-K%++ of the self-generated set minus each other set's, Welch 95% interval."""
    from scipy.stats import ttest_ind

    mine = membership.get(params.get("strategy", ""))
    effects = []
    for name, values in membership.items():
        if mine is None or name == params.get("strategy") or len(values) < 2 or len(mine) < 2:
            continue
        test = ttest_ind(mine, values, equal_var=False)
        ci = test.confidence_interval(0.95)
        effects.append(
            {
                "what": f"{params['strategy']} - {name} (mean Min-K%++)",
                "mean": statistics.fmean(mine) - statistics.fmean(values),
                "ci_low": float(ci.low),
                "ci_high": float(ci.high),
                "n": len(mine),
            }
        )
    return effects


CHECKS = {"C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c4, "C6": c6, "C7": c7}


def evaluate_claims(meta: dict, rows: list[dict], membership: dict[str, list[float]] | None) -> list[dict]:
    """A verdict per claim of the paper: all eight, ``addressed`` saying which the study claims
    to test (the others are inconclusive, and a report shows only the addressed ones)."""
    claimed = set(meta.get("claims") or [])
    params_of = (meta.get("report") or {}).get("claims") or {}
    metric = primary_metric(meta, rows)
    seeds = len(meta.get("seeds") or [])
    out = []
    # C8 rests on the membership analysis, which scores the first seed's sets: its metric is
    # Min-K%++ and its intervals are over their texts, not over seeds
    basis = {claim: (metric, seeds, "seeds") for claim in TEXT} | {"C8": ("mink++", min(seeds, 1), "texts")}
    for claim, text in TEXT.items():
        params = params_of.get(claim) or {}
        missing = None
        effects: list[dict] = []
        if claim not in claimed:
            missing = "this study does not address it"
        elif claim == "C8":
            if not membership:
                missing = "no membership analysis in this run"
            else:
                effects = c8(membership, params)
        elif metric is None:
            missing = "no successful cells with the primary metric"
        elif claim in ("C3", "C4", "C5") and not params:
            missing = f"report.claims.{claim} names no strategies to compare"
        else:
            effects = CHECKS[claim](Evidence(rows, metric), params)
        claim_metric, claim_seeds, over = basis[claim]
        state, reason = verdict(effects, missing, over)
        if state == "inconclusive":
            reason += f"; decided at paper scale by `calibprune sweep {PAPER_SPEC[claim]}`"
        out.append(
            {
                "claim": claim,
                "addressed": claim in claimed,
                "text": text,
                "verdict": state,
                "reason": reason,
                "metric": claim_metric,
                "effects": effects,
                "seeds": claim_seeds,
                "figure": FIGURE[claim],
            }
        )
    return out
