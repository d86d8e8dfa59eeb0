"""``calibprune studies``, ``sweep`` and ``report``: the paper's experiments as cached sweeps."""

from __future__ import annotations

import json
import os

import typer

from .app import console, out, quiet_libraries, styled
from .render import studies_table, sweep_plan_table


def studies(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List the shipped study specs (paper and small scale), one per experiment of the paper."""
    from ..experiments.claims import claims
    from ..experiments.sweep import shipped_studies

    rows = shipped_studies()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    studies_table(rows, claims())


def sweep(
    spec: str = typer.Argument(..., help="Study spec (YAML); studies/<scale>/<name>.yaml finds a shipped one."),
    output: str = typer.Option(..., "--output", "-o", help="Run folder; rerunning the same command resumes."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells, which are done, and the estimated cost."),
    executor: str = typer.Option("local", help="local | ray"),
    address: str | None = typer.Option(None, help="With --executor ray: a cluster to join (auto); default: local Ray."),
    workers: int = typer.Option(1, help="With --executor local: parallel processes (CPU threads divided)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Rerun the cells whose last run failed."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Make SPEC the run folder's spec even if the folder holds another one (its results are kept).",
    ),
):
    """Run a study: every cell of the grid, cached by content, resumable, on one machine or a Ray cluster."""
    from ..experiments.progress import Progress
    from ..experiments.store import RunStore
    from ..experiments.sweep import dry_run_table, run_sweep

    quiet_libraries()
    result = run_sweep(
        spec,
        output,
        executor,
        address,
        workers,
        retry_failed,
        dry_run,
        progress=Progress(enabled=not dry_run),
        overwrite=overwrite,
    )
    if dry_run:
        sweep_plan_table(result.study.name, dry_run_table(result, RunStore(output)))
        return
    counts = {s: sum(v == s for v in result.status.values()) for s in ("done", "failed", "pending")}
    out.print(
        f"study {result.study.name}: {counts['done']} cells done, {counts['failed']} failed; "
        f"ran {result.executed} in {result.wall_s:.1f} s -> {output}"
    )
    if result.failed:
        typer.echo("failed:\n  " + "\n  ".join(result.failed), err=True)  # unwrapped: one line per cell
        typer.echo("rerun them with --retry-failed", err=True)
        raise typer.Exit(1)


def report(
    rundirs: list[str] = typer.Argument(..., help="Run folder(s) of `calibprune sweep`."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for report.md, CSV tables and PNG plots."),
    summary: str | None = typer.Option(
        None, "--summary", help="Also write one markdown with every claim's verdict across the run folders."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing --output folder and --summary file."),
    partial: bool = typer.Option(
        False, help="Report a run folder that lacks some of its study's cells (a sweep not finished yet)."
    ),
):
    """Aggregate run folders: mean/std/n over seeds, ranges across sources, differences vs a baseline, claims.

    One run folder: its report in OUTPUT. Several (or --summary): each study's report in
    OUTPUT/<run folder name>/, and --summary FILE gathers the claims across them. An existing
    OUTPUT or FILE is replaced only with --overwrite; one that is, lies inside or contains a
    run folder is refused.
    """
    from ..experiments.report import write_report, write_reports

    if len(rundirs) == 1 and summary is None:
        studies = [write_report(rundirs[0], output, overwrite, partial) | {"name": None}]
    else:
        studies = write_reports(rundirs, output, summary, overwrite, partial)
    for data in studies:
        where = os.path.join(output, data["name"]) if data["name"] else output
        if data["platforms"]:
            console.print(styled("warning:", f" {where}: {data['platforms']}", "bold yellow"), soft_wrap=True)
        for claim in data["claims"]:
            if claim["addressed"]:
                out.print(f"{claim['claim']}: {claim['verdict']} ({claim['reason']})")
        out.print(f"-> {where}/report.md, summary.csv, ranges.csv, diffs.csv, claims.csv, {len(data['figures'])} plots")
    if summary:
        out.print(f"-> {summary}")
