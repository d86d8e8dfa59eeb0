"""The CLI's tables: what each command prints from its job's result (rich, on stdout)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..results import CorpusPerplexity
from .app import out


def ppl_table(results: dict[str, dict[str, CorpusPerplexity]]) -> None:
    """One column per model (``{model: {corpus: result}}``: :meth:`PerplexityResult.columns`, or one
    evaluated model), one row per corpus; its pool is named per row (a local file is scored on all of it)."""
    columns = list(results)
    first = next(iter(results.values()))
    any_row = next(iter(first.values()))
    table = Table(title=f"perplexity ({any_row.protocol}, {any_row.seqlen} tokens)")
    table.add_column("corpus")
    table.add_column("pool")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in first.items():
        table.add_row(name, row.split, *(f"{results[c][name].ppl:.3f}" for c in columns))
    out.print(table)


def task_table(results: dict) -> None:
    table = Table(title=f"lm-eval (limit={results['limit']}, seed={results['seed']})")
    for column in ("task", "n", "shots", "acc", "acc_norm"):
        table.add_column(column, justify="left" if column == "task" else "right")

    def fmt(value, stderr):
        return "" if value is None else f"{value:.4f}" + (f" ± {stderr:.4f}" if stderr is not None else "")

    for name, row in results["tasks"].items():
        table.add_row(
            name,
            str(row["n"]),
            str(row.get("num_fewshot")),
            fmt(row.get("acc"), row.get("acc_stderr")),
            fmt(row.get("acc_norm"), row.get("acc_norm_stderr")),
        )
    table.add_row("average", "", "", fmt(results["average"]["acc"], None), "")
    out.print(table)


def models_table(rows: list[dict]) -> None:
    table = Table(title="model presets")
    for column in ("preset", "installed", "converted", "description"):
        table.add_column(column)
    for row in rows:
        state = "yes" if row["installed"] else f"no: {row['install']}"
        built = "yes" if row["converted"] else "no" if row.get("trained_here") else "on first use"
        table.add_row(row["preset"], state, built, row["description"])
    out.print(table)


def corpora_table(rows: list[dict]) -> None:
    table = Table(title="corpora: calibration / held-out pools (split by document); --json for descriptions")
    for column in ("name", "status", "sampling", "calib docs", "calib MB", "held-out docs", "held-out MB"):
        table.add_column(column, justify="right" if column[-2:] in ("cs", "MB") else "left")
    for row in rows:
        pools = row.get("pools")
        sizes = (
            [
                f"{pools[p][k] / (1e6 if k == 'characters' else 1):,.{1 if k == 'characters' else 0}f}"
                for p in ("calib", "heldout")
                for k in ("documents", "characters")
            ]
            if pools
            else ["", "", "", ""]
        )
        table.add_row(
            row["name"],
            Text(row["status"], style="" if row["status"] == "ready" else "yellow"),
            row["sampling"],
            *sizes,
        )
    out.print(table)


def similarity_tables(report: dict, ngram: int, unit: str, num_perm: int, containment_threshold: float) -> None:
    table = Table(title=f"{ngram}-gram ({unit}) Jaccard, MinHash {num_perm}")
    table.add_column("set", overflow="fold")
    for name in report["names"]:
        table.add_column(name, justify="right", overflow="fold")
    for name, row in zip(report["names"], report["matrix"], strict=True):
        table.add_row(name, *(f"{v:.4f}" for v in row))
    out.print(table)
    if "containment" in report:
        table = Table(title=f"drawn from {report['reference']}? ({ngram}-gram containment and near-duplicates)")
        table.add_column("set", overflow="fold")
        for column in ("texts", f"contained (>= {containment_threshold:g})", "mean containment", "near-dup (LSH)"):
            table.add_column(column, justify="right")
        for name, c in report["containment"].items():
            table.add_row(
                name,
                str(c["texts_scored"]),
                f"{c['share_contained']:.1%}",
                f"{c['mean']:.3f}",
                f"{report['lsh_near_duplicate_share'][name]:.1%}",
            )
        out.print(table)


def membership_table(report: dict, model: str, k: float) -> None:
    table = Table(title=f"membership scores under {model} (k={k}): median [q1, q3]")
    table.add_column("set")
    for kind in ("mink++", "mink", "ppl"):
        table.add_column(kind, justify="right")
    for name, per in report["summary"].items():
        table.add_row(
            name,
            *(
                f"{per[k_]['median']:.3f} [{per[k_]['q1']:.3f}, {per[k_]['q3']:.3f}]"
                for k_ in ("mink++", "mink", "ppl")
            ),
        )
    out.print(table)


def studies_table(rows: list[dict], claims) -> None:
    """The shipped studies, then the text of each claim they test (``claims``: every claim)."""
    table = Table(title="shipped studies: calibprune sweep SPEC --output RUNDIR")
    for column in ("spec", "scale", "claims", "models", "cells", "seeds"):
        table.add_column(column, justify="right" if column in ("cells", "seeds") else "left", overflow="fold")
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("spec", "scale", "claims", "models", "cells", "seeds")))
    out.print(table)
    tested = {c for row in rows for c in row["claim_texts"]}
    out.print("claims (the paper's, as each study tests them):")
    for claim in claims:
        if claim.id in tested:
            out.print(f"  {claim.id}: {claim.text}", soft_wrap=True)


def sweep_plan_table(name: str, listing: dict) -> None:
    table = Table(title=f"study {name}: {len(listing['cells'])} cells")
    table.add_column("cell")
    table.add_column("status")
    for label, status in listing["cells"]:
        table.add_row(label, status)
    out.print(table)
    est = listing["estimate"]
    to_run = ", ".join(f"{v} {k}" for k, v in est["to_run"].items())
    hours = est["total_s"] / 3600
    out.print(f"to run: {to_run}; estimated {est['total_s']:,.0f} s ({hours:.2f} h) on one worker")
