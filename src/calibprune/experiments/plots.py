"""The paper's plots from aggregated tables (matplotlib, Agg backend)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..analysis.plots import _pyplot


def metric_vs(
    summary: list[dict], metric: str, x: str, path: Path, title: str, where=None, panel: str = "setting"
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
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (name, series) in zip(axes[0], sorted(panels.items()), strict=True):
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
        if x in ("nsamples", "prefix_tokens"):
            ax.set_xscale("symlog" if x == "prefix_tokens" else "log", base=2)
            values = sorted({r[x] for r in rows})  # ticks at the values run, written plainly (not 2^k)
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.minorticks_off()
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.set_title(str(name), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def range_bars(ranges: list[dict], metric: str, path: Path) -> Path | None:
    rows = [r for r in ranges if r["metric"] == metric]
    if not rows:
        return None
    rows.sort(
        key=lambda r: (
            r["model"],
            r["method"],
            r["pattern"] != "unstructured",
            r["sparsity"],
            r["pattern"],
            r.get("nsamples", 0),
        )
    )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(rows) + 2), 4))
    labels = [
        f"{r['setting']}" + (f"\nn={r['nsamples']}" if len({x.get("nsamples") for x in rows}) > 1 else "") for r in rows
    ]
    ax.bar(range(len(rows)), [r["range"] for r in rows], color="tab:orange")
    ax.set_xticks(range(len(rows)), labels, rotation=40, ha="right", fontsize=7)
    ax.set_ylabel(f"range of {metric} across sources")
    ax.set_title("spread across calibration sources (max - min of seed means)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_bars(summary: list[dict], metric: str, path: Path) -> Path | None:
    """``metric`` (mean, std error bars) per pruning setting, one bar per calibration strategy:
    the paper's Table 2 / Figure 4 comparison of sources at fixed settings."""
    rows = [r for r in summary if r["metric"] == metric]
    groups = sorted({(r["model"], r["setting"], r.get("nsamples", 0)) for r in rows})
    strategies = sorted({r["calib"] for r in rows})
    if not rows or len(strategies) < 2:
        return None
    width = 0.8 / len(strategies)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(groups) * len(strategies) * width + 3), 4))
    for i, calib in enumerate(strategies):
        found = {(r["model"], r["setting"], r.get("nsamples", 0)): r for r in rows if r["calib"] == calib}
        xs = [g + i * width for g, key in enumerate(groups) if key in found]
        points = [found[key] for key in groups if key in found]
        ax.bar(xs, [p["mean"] for p in points], width, yerr=[p["std"] or 0 for p in points], capsize=2, label=calib)
    multi_model = len({g[0] for g in groups}) > 1
    labels = [f"{m}\n{s}" if multi_model else s for m, s, _ in groups]
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], labels, fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per calibration source (mean ± std over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
