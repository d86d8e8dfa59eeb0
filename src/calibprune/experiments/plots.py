"""The paper's plots from aggregated tables (matplotlib, Agg backend).

Settings are ordered by what they do, not by their names (:func:`setting_key`); a title
is wrapped to the figure's width; the dense model's value of the metric, where the report
has one, is a dashed horizontal line labelled "dense" (``dense``: model -> value).
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

from ..utils.plotting import pyplot as _pyplot


def setting_key(row: dict) -> tuple:
    """Unstructured sparsities ascending, then N:M patterns by sparsity (at equal sparsity
    the wider group first: 4:8 before 2:4, more structure later); the label breaks ties."""
    pattern = row.get("pattern") or "unstructured"
    nm = pattern != "unstructured"
    m = int(pattern.split(":")[1]) if nm else 0
    return (nm, row.get("sparsity") or 0.0, -m, str(row.get("setting", "")))


def _fit(text: str, width_in: float, fontsize: float = 11) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``fontsize`` points."""
    return textwrap.fill(text, max(20, int(width_in * 72 / (0.6 * fontsize))))


def _dense_lines(ax, dense: dict[str, float] | None, models) -> None:
    for model in sorted(set(models)):
        if dense and model in dense:
            label = "dense" if len(set(models)) == 1 else f"dense ({model})"
            ax.axhline(dense[model], linestyle="--", color="0.4", linewidth=1, label=label)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def metric_vs(
    summary: list[dict],
    metric: str,
    x: str,
    path: Path,
    title: str,
    where=None,
    panel: str = "setting",
    dense: dict[str, float] | None = None,
) -> Path | None:
    """``metric`` (mean, std error bars) against attribute ``x``, one line per calibration
    strategy, one panel per value of ``panel`` (the attributes that are not ``x``)."""
    rows = [r for r in summary if r["metric"] == metric and x in r and (where is None or where(r))]
    if len({r[x] for r in rows}) < 2:
        return None
    panels: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = r["method"] if x == "sparsity" else r.get(panel, "")
        if x == "sparsity":
            key = f"{r['model']} {r['method']} {r.get('allocation', '')} {r.get('refine', '')}".replace(
                " uniform", ""
            ).replace(" none", "")
        panels[key][r["calib"] if x not in ("prefix_tokens", "filter_top") else r.get("source", r["calib"])].append(r)
    plt = _pyplot()
    width = 5 * len(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4), squeeze=False)
    order = sorted(panels, key=lambda name: min(setting_key(r) for s in panels[name].values() for r in s))
    for ax, name in zip(axes[0], order, strict=True):
        series = panels[name]
        for label, points in sorted(series.items()):
            points.sort(key=lambda r: r[x])
            ax.errorbar(
                [p[x] for p in points],
                [p["mean"] for p in points],
                yerr=[p["std"] or 0 for p in points],
                marker="o",
                capsize=3,
                label=label,
            )
        _dense_lines(ax, dense, [r["model"] for s in series.values() for r in s])
        if x in ("nsamples", "prefix_tokens"):
            ax.set_xscale("symlog" if x == "prefix_tokens" else "log", base=2)
            values = sorted({r[x] for r in rows})  # ticks at the values run, written plainly (not 2^k)
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.minorticks_off()
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.set_title(_fit(str(name), 5, 9), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(_fit(title, width, 12))
    fig.tight_layout()
    return _save(fig, path)


def range_bars(ranges: list[dict], metric: str, path: Path) -> Path | None:
    rows = [r for r in ranges if r["metric"] == metric]
    if not rows:
        return None
    rows.sort(key=lambda r: (r["model"], setting_key(r), r.get("nsamples", 0)))
    plt = _pyplot()
    width = max(5, 0.8 * len(rows) + 2)
    fig, ax = plt.subplots(figsize=(width, 4))
    labels = [
        f"{r['setting']}" + (f"\nn={r['nsamples']}" if len({x.get("nsamples") for x in rows}) > 1 else "") for r in rows
    ]
    ax.bar(range(len(rows)), [r["range"] for r in rows], color="tab:orange")
    ax.set_xticks(range(len(rows)), labels, rotation=40, ha="right", rotation_mode="anchor", fontsize=7)
    ax.set_ylabel(f"range of {metric} across sources")
    ax.set_title(_fit("spread across calibration sources (max - min of seed means)", width))
    fig.tight_layout()
    return _save(fig, path)


def metric_bars(summary: list[dict], metric: str, path: Path, dense: dict[str, float] | None = None) -> Path | None:
    """``metric`` (mean, std error bars) per pruning setting, one bar per calibration strategy:
    the paper's Table 2 / Figure 4 comparison of sources at fixed settings."""
    rows = [r for r in summary if r["metric"] == metric]
    strategies = sorted({r["calib"] for r in rows})
    if not rows or len(strategies) < 2:
        return None
    first = {}
    for r in rows:
        first.setdefault((r["model"], r["setting"], r.get("nsamples", 0)), r)
    groups = sorted(first, key=lambda g: (g[0], setting_key(first[g]), g[2]))
    bar = 0.8 / len(strategies)
    plt = _pyplot()
    width = max(5, 1.2 * len(groups) * len(strategies) * bar + 3)
    fig, ax = plt.subplots(figsize=(width, 4.5))
    for i, calib in enumerate(strategies):
        found = {(r["model"], r["setting"], r.get("nsamples", 0)): r for r in rows if r["calib"] == calib}
        xs = [g + i * bar for g, key in enumerate(groups) if key in found]
        points = [found[key] for key in groups if key in found]
        ax.bar(xs, [p["mean"] for p in points], bar, yerr=[p["std"] or 0 for p in points], capsize=2, label=calib)
    _dense_lines(ax, dense, [g[0] for g in groups])
    multi_model = len({g[0] for g in groups}) > 1
    labels = [f"{m}\n{s}" if multi_model else s for m, s, _ in groups]
    ax.set_xticks(
        [g + 0.4 - bar / 2 for g in range(len(groups))],
        labels,
        rotation=30,
        ha="right",
        rotation_mode="anchor",
        fontsize=8,
    )
    ax.set_ylabel(metric)
    ax.set_title(_fit(f"{metric} per calibration source (mean ± std over seeds)", width))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
