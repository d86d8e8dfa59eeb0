"""``calibprune report RUNDIR --output DIR``: tables (markdown + CSV), plots, verdicts.

Output folder (written atomically)::

    report.md      tables, embedded figures, one section per claim with its verdict
    summary.csv    mean / std / n over seeds per (model, setting, strategy, metric)
    ranges.csv     range across calibration strategies per setting and metric
    diffs.csv      strategy - baseline, seed-paired, with 95% intervals
    dense.csv      the dense models' metrics
    claims.csv     verdict, effect and interval per claim
    *.png          the paper's plots
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import CalibpruneError
from ..utils.io import atomic_directory
from . import plots
from .aggregate import diffs, ranges, rows_of, summarize
from .claims import evaluate_claims, primary_metric
from .store import RunStore


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _labelled(store: RunStore, kind: str) -> list[tuple[dict, dict]]:
    """(results json, {path: strategy label}) of each stored analysis of ``kind``."""
    out = []
    for folder in sorted((store.root / "analysis").glob(f"{kind}-*")) if (store.root / "analysis").is_dir() else []:
        if not folder.is_dir():
            continue
        labels_file = folder.parent / f"{folder.name}.labels.json"
        labels = json.loads(labels_file.read_text()) if labels_file.exists() else {}
        out.append((json.loads((folder / f"{kind}.json").read_text()), labels))
    return out


def membership_scores(store: RunStore) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {}
    for result, labels in _labelled(store, "membership"):
        for name, per in result["scores"].items():
            scores[labels.get(name, name)] = [v for v in per["mink++"] if v == v]
    return scores


def build_report(rundir: str | Path) -> dict:
    store = RunStore(rundir)
    if not store.root.is_dir():
        raise CalibpruneError(f"run folder {str(rundir)!r} does not exist: pass the --output of `calibprune sweep`")
    meta_path = store.root / "study.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    cells = store.cells()
    if not cells and not (store.root / "analysis").is_dir():
        raise CalibpruneError(
            f"{rundir} holds no cell results (cells/*.json): run `calibprune sweep SPEC --output {rundir}`"
        )
    rows = rows_of(cells)
    summary = summarize(rows)
    baseline = (meta.get("report") or {}).get("baseline")
    membership = membership_scores(store)
    return {
        "meta": meta,
        "cells": cells,
        "rows": rows,
        "summary": summary,
        "ranges": ranges(summary),
        "diffs": diffs(rows, baseline) if baseline else [],
        "dense": [
            {"model": d["attrs"]["model"], **d.get("metrics", {})} for d in store.denses() if d.get("status") == "ok"
        ],
        "claims": evaluate_claims(meta, rows, membership),
        "membership": membership,
        "similarity": _labelled(store, "similarity"),
        "metric": primary_metric(meta, rows),
    }


def write_report(rundir: str | Path, output: str | Path) -> dict:
    data = build_report(rundir)
    metric = data["metric"]
    with atomic_directory(output, overwrite=True) as tmp:
        for name in ("summary", "ranges", "diffs", "dense"):
            _write_csv(tmp / f"{name}.csv", data[name])
        _write_csv(tmp / "claims.csv", [_claim_row(c) for c in data["claims"]])
        figures = _figures(data, metric, tmp)
        (tmp / "report.md").write_text(_markdown(data, figures))
    data["figures"] = figures
    return data


def _claim_row(claim: dict) -> dict:
    row = {k: claim[k] for k in ("claim", "verdict", "metric", "seeds", "figure", "reason")}
    for i, e in enumerate(claim["effects"]):
        row[f"effect{i}"] = f"{e['what']}: {_num(e.get('mean'))} [{_num(e.get('ci_low'))}, {_num(e.get('ci_high'))}]"
    return row


def _figures(data: dict, metric: str | None, tmp: Path) -> dict[str, str]:
    from ..analysis import plots as analysis_plots

    made = {}
    if metric:
        for name, x, title, where in (
            (
                "metric_vs_sparsity.png",
                "sparsity",
                f"{metric} vs sparsity (unstructured)",
                lambda r: r["pattern"] == "unstructured",
            ),
            ("metric_vs_nsamples.png", "nsamples", f"{metric} vs calibration samples", None),
            ("metric_vs_prefix.png", "prefix_tokens", f"{metric} vs prefix length", None),
            ("metric_vs_filter.png", "filter_top", f"{metric} vs filter rate", None),
        ):
            if plots.metric_vs(data["summary"], metric, x, tmp / name, title, where):
                made[name] = title
        if plots.range_bars(data["ranges"], metric, tmp / "range_vs_setting.png"):
            made["range_vs_setting.png"] = "range across sources vs sparsity and pattern"
    if data["membership"]:
        analysis_plots.violins(
            {k: {"mink++": v} for k, v in data["membership"].items()},
            ("mink++",),
            "Min-K%++ per source",
            tmp / "mink_distributions.png",
        )
        made["mink_distributions.png"] = "Min-K%++ distributions per source"
    for i, (result, labels) in enumerate(data["similarity"]):
        name = f"similarity{i or ''}.png"
        analysis_plots.heatmap(
            [labels.get(n, n) for n in result["names"]], result["matrix"], "n-gram Jaccard similarity", tmp / name
        )
        made[name] = "similarity heatmap"
    return made


def _num(value) -> str:
    return "" if value is None else f"{value:.4g}"


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "_(none)_\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(_num(row.get(c)) if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _markdown(data: dict, figures: dict[str, str]) -> str:
    meta, metric = data["meta"], data["metric"]
    ok = sum(c.get("status") == "ok" for c in data["cells"])
    failed = len(data["cells"]) - ok
    out = [f"# Study: {meta.get('study', 'unnamed')}\n"]
    if meta.get("description"):
        out.append(f"{meta['description'].strip()}\n")
    if meta.get("stands_in"):
        out.append(f"**Stand-ins at this scale.** {meta['stands_in'].strip()}\n")
    out.append(f"Cells: {ok} ok, {failed} failed. Seeds: {meta.get('seeds')}. Primary metric: `{metric}`.\n")
    out.append("## Claims\n")
    for claim in data["claims"]:
        out.append(f"### {claim['claim']}: {claim['text']}\n")
        out.append(
            f"**Verdict: {claim['verdict']}** ({claim['reason']}). "
            f"Metric `{claim['metric']}`, {claim['seeds']} seeds.\n"
        )
        if claim["effects"]:
            out.append(_table(claim["effects"], ["what", "mean", "ci_low", "ci_high", "n"]))
        if claim["figure"] in figures and "does not address" not in claim["reason"]:
            out.append(f"![{claim['figure']}]({claim['figure']})\n")
    out.append("## Mean ± std over seeds\n")
    columns = ["model", "setting", "nsamples", "calib", "metric", "mean", "std", "n"]
    out.append(_table([r for r in data["summary"] if r["metric"] == metric] if metric else data["summary"], columns))
    out.append("All metrics: `summary.csv`.\n\n## Range across calibration sources\n")
    out.append(
        _table(data["ranges"], ["model", "setting", "nsamples", "metric", "range", "argmax", "argmin", "strategies"])
    )
    if data["diffs"]:
        out.append(f"## Difference from the baseline `{data['diffs'][0]['baseline']}` (seed-paired, 95% CI)\n")
        out.append(
            _table(
                [d for d in data["diffs"] if d["metric"] == metric],
                ["model", "setting", "nsamples", "calib", "metric", "mean", "ci_low", "ci_high", "n"],
            )
        )
    if data["dense"]:
        out.append("## Dense models\n")
        out.append(_table(data["dense"], list(data["dense"][0])))
    out.append("## Figures\n")
    out += [f"### {title}\n\n![{name}]({name})\n" for name, title in figures.items()]
    return "\n".join(out)
