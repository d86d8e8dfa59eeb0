"""``calibprune report RUNDIR --output DIR``: tables (markdown + CSV), plots, verdicts.

With several run folders (``calibprune report RUN1 RUN2 ... --output DIR``) each study's
report goes to ``DIR/<run folder name>/`` and ``--summary FILE`` adds one markdown that
gathers, claim by claim, the verdict of every study that addresses it (the replication
report). Output folder (written atomically)::

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
import os
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ..errors import CalibpruneError
from ..options import OptionError, command_line, literal
from ..utils.io import atomic_directory, check_output_dir, check_output_file
from . import claims as paper_claims
from . import plots
from .aggregate import diffs, ranges, rows_of, summarize
from .claims import evaluate_claims, primary_metric
from .platforms import mixing_warning
from .store import RunStore


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def membership_scores(labelled: list[tuple[dict, dict]]) -> dict[str, list[float]]:
    """Min-K%++ per text, by strategy label, from the stored membership analyses."""
    scores: dict[str, list[float]] = {}
    for result, labels in labelled:
        for name, per in result["scores"].items():
            scores[labels.get(name, name)] = [v for v in per["mink++"] if v == v]
    return scores


def build_report(rundir: str | Path, partial: bool = False) -> dict:
    """Read a run folder; a cell or dense evaluation its study.json lists but the folder lacks
    is refused (with the command that computes it) unless ``partial``."""
    store = RunStore(rundir)
    if not store.root.is_dir():
        raise OptionError(
            "", f"run folder {literal(repr(str(rundir)))} does not exist: pass the {{output}} of `calibprune sweep`"
        )
    meta = store.read_meta() or {}
    own = meta.get("cells")  # the study's own cells (None: every cell, older run folders)
    cells = store.cells(own)
    denses = store.denses(meta.get("denses"))
    missing = _missing(store, own, meta.get("denses"))
    if missing and not partial:
        raise OptionError(
            "partial",
            f"{literal(rundir)}: {missing} listed in study.json but not in the run folder (not run yet, or deleted): "
            f"run `{store.rerun()}` to compute them, or pass {{partial=true}} to report the results that are there",
        )
    if isinstance(own, dict):  # ... under the study's own labels
        cells = [replace(c, attrs=own.get(c.key, c.attrs)) for c in cells]
    if not cells and not (store.root / "analysis").is_dir():
        raise OptionError(
            "",
            f"{literal(rundir)} holds no cell results (cells/*.json): run "
            f"`{command_line('sweep', 'SPEC', output=str(rundir))}`",
        )
    rows = rows_of(cells)
    summary = summarize(rows)
    baseline = (meta.get("report") or {}).get("baseline")
    analyses = store.analyses("membership")  # read once: scores and the models that scored
    membership = membership_scores(analyses)
    scorers = {result.get("model") for result, _ in analyses}
    return {
        "models": sorted({r["model"] for r in rows} | scorers - {None}),
        "meta": meta,
        "cells": cells,
        "rows": rows,
        "summary": summary,
        "ranges": ranges(summary),
        "diffs": diffs(rows, baseline) if baseline else [],
        "dense": [{"model": d.attrs["model"], **(d.metrics or {})} for d in denses if d.ok],
        "claims": evaluate_claims(meta, rows, membership),
        "membership": membership,
        "similarity": store.analyses("similarity"),
        "missing": missing,
        "metric": primary_metric(meta, rows),
        "platforms": mixing_warning(cells),
    }


def check_outputs(rundirs: list[str | Path], output: str | Path, summary: str | Path | None, overwrite: bool) -> None:
    """Before any run folder is read: the outputs overlap no run folder, and replace an
    existing folder or summary only with ``overwrite``."""
    runs = [("the run folder", r) for r in rundirs]
    check_output_dir(output, overwrite, runs)
    if summary is not None:
        check_output_file(summary, overwrite, runs, field="summary")


def _missing(store: RunStore, cell_keys, dense_keys) -> str:
    """What study.json lists that the run folder lacks, in words ('' if nothing)."""
    cells = [k for k in cell_keys or [] if not store.cell_path(k).exists()]
    denses = [k for k in dense_keys or [] if not store.dense_path(k).exists()]
    parts = [f"{len(cells)} of its {len(cell_keys)} cells (e.g. cells/{cells[0]}.json)"] if cells else []
    parts += [f"{len(denses)} dense evaluation(s) (e.g. dense/{denses[0]}.json)"] if denses else []
    return " and ".join(parts)


def write_report(rundir: str | Path, output: str | Path, overwrite: bool = False, partial: bool = False) -> dict:
    check_outputs([rundir], output, None, overwrite)
    data = build_report(rundir, partial)
    with atomic_directory(output, overwrite=overwrite) as tmp:
        _write_into(tmp, data)
    return data


def _write_into(folder: Path, data: dict) -> None:
    for name in ("summary", "ranges", "diffs", "dense"):
        _write_csv(folder / f"{name}.csv", data[name])
    _write_csv(folder / "claims.csv", [_claim_row(c) for c in data["claims"] if c["addressed"]])
    data["figures"] = _figures(data, data["metric"], folder)
    (folder / "report.md").write_text(_markdown(data, data["figures"]))


def write_reports(
    rundirs: list[str | Path],
    output: str | Path,
    summary: str | Path | None = None,
    overwrite: bool = False,
    partial: bool = False,
) -> list[dict]:
    """One report per run folder in ``output/<folder name>/``; ``summary``: the claims across them.

    Every run folder is read (and refused if it is not one) before anything is written;
    the output folder and the summary file each appear whole or not at all.
    """
    check_outputs(rundirs, output, summary, overwrite)
    names = [Path(r).resolve().name for r in rundirs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CalibpruneError(
            f"run folders named {', '.join(map(repr, twice))} appear twice: their reports would share "
            "output/<name>/; pass each run folder once, or rename one"
        )
    studies = [build_report(r, partial) | {"name": n} for r, n in zip(rundirs, names, strict=True)]
    with atomic_directory(output, overwrite=overwrite) as tmp:
        for data in studies:
            (tmp / data["name"]).mkdir()
            _write_into(tmp / data["name"], data)
    if summary is not None:
        summary = Path(summary)
        links = PurePosixPath(Path(os.path.relpath(Path(output).resolve(), summary.resolve().parent)).as_posix())
        text = _replication_markdown(studies, links, " ".join(map(str, rundirs)), output, summary)
        partial = summary.with_name(f".{summary.name}.tmp")
        summary.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text)
        os.replace(partial, summary)  # never a half-written summary
    return studies


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _claim_body(claim: dict, figure: str | PurePosixPath | None) -> list[str]:
    """A claim's verdict line, its effects table and (``figure``: the link to it) its figure."""
    out = [
        f"**Verdict: {claim['verdict']}** ({claim['reason']}). Metric `{claim['metric']}`, {_seeds(claim['seeds'])}.\n"
    ]
    if claim["effects"]:
        out.append(_table(claim["effects"], ["what", "mean", "ci_low", "ci_high", "n"]))
    if figure is not None:
        out.append(f"![{claim['figure']}]({figure})\n")
    return out


def _models(data: dict) -> str:
    return ", ".join(data["models"]) or "-"


def deciding_effect(effects: list[dict]) -> tuple[str, dict | None]:
    """The effect a verdict hinges on, and how to introduce it, by the verdict's own rule.

    If Holm rejects "effect >= 0" for some effects (not replicated), the rejected one furthest
    below 0 (lowest upper end), introduced as "against the claim (Holm), r of k"; else, if
    some 95% interval lies below 0 without surviving Holm, the lowest of those, "below 0
    before Holm, i of k" (the verdict stays inconclusive); otherwise the one whose interval
    reaches lowest (what keeps it from, or just makes it, replicated)."""
    from .claims.registry import holm

    if not effects:
        return "", None
    below = [e for e in effects if e.get("ci_high") is not None and e["ci_high"] < 0]
    if all(e.get("p_below") is not None for e in effects):
        rejected = [e for e, r in zip(effects, holm([e["p_below"] for e in effects]), strict=True) if r]
        if rejected:
            return f"against the claim (Holm), {len(rejected)} of {len(effects)}", min(rejected, key=_upper)
        if below:
            return f"below 0 before Holm, {len(below)} of {len(effects)}", min(below, key=_upper)
    elif below:  # effects without p-values: their intervals
        return f"against the claim, {len(below)} of {len(effects)}", min(below, key=_upper)
    chosen = min(effects, key=lambda e: float("-inf") if e.get("ci_low") is None else e["ci_low"])
    return f"weakest of {len(effects)}", chosen


def _upper(effect: dict) -> float:
    return effect["ci_high"]


def _deciding_text(effects: list[dict]) -> str:
    intro, e = deciding_effect(effects)
    if e is None:
        return "-"
    text = f"{e['what']}: {_num(e.get('mean'))} [{_num(e.get('ci_low'))}, {_num(e.get('ci_high'))}]"
    return text if len(effects) == 1 else f"{intro}: {text}"


def _replication_markdown(studies: list[dict], links: PurePosixPath, rundirs: str, output, summary) -> str:
    """Claim by claim, the verdict of every study that addresses it, with effects and figures."""
    command = f"calibprune report {rundirs} --output {output} --summary {summary} --overwrite"
    out = [
        "# Replication report\n",
        'Claims of "Beware of Calibration Data for Pruning Large Language Models" (Ji et al., ICLR 2025), '
        "checked by calibprune's small-scale studies. Written by `calibprune report` from the committed cell "
        "results; regenerate it (no model is run) with\n",
        f"    {command}\n",
        "Each effect is oriented so that a positive value is what the paper claims, on the study's primary "
        f"metric (perplexities negated: lower is better), with {paper_claims.intervals_text()}. "
        f"{paper_claims.VERDICT_RULE}\n",
        "## Verdicts\n",
        "| claim | verdict | study | model | metric | seeds | effect, mean [95% CI] | figure |",
        "|---|---|---|---|---|---|---|---|",
    ]
    addressed: dict[str, list[tuple[dict, dict]]] = {c.id: [] for c in paper_claims.claims()}
    for data in studies:
        for claim in data["claims"]:
            if claim["addressed"]:
                addressed[claim["claim"]].append((data, claim))
    for name, found in addressed.items():
        if not found:
            out.append(
                f"| {name} | inconclusive | - | - | - | - | no study here addresses it; "
                f"`calibprune sweep {paper_claims.claim(name).paper_spec}` would | - |"
            )
        for data, claim in found:
            figure = claim["figure"] if claim["figure"] in data["figures"] else None
            link = f"[{figure}]({links / data['name'] / figure})" if figure else "-"
            out.append(
                f"| {name} | **{claim['verdict']}** | [{data['meta'].get('study', data['name'])}]"
                f"({links / data['name'] / 'report.md'}) | {_models(data)} | `{claim['metric']}` | {claim['seeds']} "
                f"| {_deciding_text(claim['effects'])} | {link} |"
            )
    out.append("")
    for name, found in addressed.items():
        registered = paper_claims.claim(name)
        out.append(f"## {name}: {registered.text}\n")
        if not found:
            out.append(f"No study in this report addresses it: run `calibprune sweep {registered.paper_spec}`.\n")
        for data, claim in found:
            out.append(f"### {data['meta'].get('study', data['name'])} ({_models(data)})\n")
            figure = links / data["name"] / claim["figure"] if claim["figure"] in data["figures"] else None
            out += _claim_body(claim, figure)
    out.append("## Studies\n")
    out.append("| study | model | cells ok | cells failed | primary metric | report |")
    out.append("|---|---|---|---|---|---|")
    for data in studies:
        ok = sum(c.ok for c in data["cells"])
        out.append(
            f"| {data['meta'].get('study', data['name'])} | {_models(data)} | {ok} | {len(data['cells']) - ok} "
            f"| `{data['metric']}` | [report]({links / data['name'] / 'report.md'}) |"
        )
    return "\n".join(out) + "\n"


def _claim_row(claim: dict) -> dict:
    row = {k: claim[k] for k in ("claim", "verdict", "metric", "seeds", "figure", "reason")}
    for i, e in enumerate(claim["effects"]):
        row[f"effect{i}"] = f"{e['what']}: {_num(e.get('mean'))} [{_num(e.get('ci_low'))}, {_num(e.get('ci_high'))}]"
    return row


def _figures(data: dict, metric: str | None, tmp: Path) -> dict[str, str]:
    from ..analysis import plots as analysis_plots

    made = {}
    dense = {d["model"]: d[metric] for d in data["dense"] if d.get(metric) is not None}
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
            if plots.metric_vs(data["summary"], metric, x, tmp / name, title, where, dense=dense):
                made[name] = title
        if plots.metric_bars(data["summary"], metric, tmp / "metric_by_source.png", dense):
            made["metric_by_source.png"] = f"{metric} per calibration source and setting"
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
    ok = sum(c.ok for c in data["cells"])
    failed = len(data["cells"]) - ok
    out = [f"# Study: {meta.get('study', 'unnamed')}\n"]
    if meta.get("description"):
        out.append(f"{meta['description'].strip()}\n")
    if meta.get("stands_in"):
        out.append(f"**Stand-ins at this scale.** {meta['stands_in'].strip()}\n")
    out.append(f"Cells: {ok} ok, {failed} failed. Seeds: {meta.get('seeds')}. Primary metric: `{metric}`.\n")
    if data["missing"]:
        out.append(f"**Partial report** (--partial): missing {data['missing']}.\n")
    if data["platforms"]:
        out.append(f"**Warning:** {data['platforms']}.\n")
    out.append("## Claims\n")
    addressed = [claim for claim in data["claims"] if claim["addressed"]]
    if not addressed:
        ids = [c.id for c in paper_claims.claims()]
        span = f"{ids[0]}-{ids[-1]}"
        out.append(f"This study addresses none of the paper's claims {span} (its spec's `claims` is empty).\n")
    for claim in addressed:
        out.append(f"### {claim['claim']}: {claim['text']}\n")
        out += _claim_body(claim, claim["figure"] if claim["figure"] in figures else None)
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
