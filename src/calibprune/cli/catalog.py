"""``calibprune models`` and ``calibprune corpora``: what is bundled, installed and ready."""

from __future__ import annotations

import json

import typer

from .app import console, out
from .render import corpora_table, models_table


def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List the bundled model presets and whether each is installed and converted."""
    from ..models.presets import PRESETS

    rows = [
        {
            "preset": p.name,
            "installed": p.installed(),
            "converted": p.ready(),
            "trained_here": p.trained_here,
            "folder": str(p.folder),
            "install": p.install,
            "description": p.description,
        }
        for p in PRESETS.values()
    ]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    models_table(rows)


def corpora(
    install: bool = typer.Option(False, "--install", help="Fetch and convert the Debian-packaged corpora (once)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
):
    """List text corpora: what is available offline, sizes, held-out split."""
    from ..corpora import CORPORA, OFFLINE_NAMES, install_all
    from ..corpora.stats import availability, corpus_stats

    if install:
        for name, path in install_all().items():
            console.print(f"{name}: {path}", soft_wrap=True)
    rows = []
    for name in CORPORA.names():
        corpus = CORPORA.create(name)
        row = {
            "name": name,
            "offline": name in OFFLINE_NAMES,
            "sampling": corpus.sampling,
            "description": corpus.description,
            "heldout_fraction": corpus.heldout_per_mille / 1000,
        }
        state = availability(corpus) if name in OFFLINE_NAMES else "needs network"
        row["status"] = state
        if state == "ready":
            pools = corpus_stats(corpus)  # without the per-document lengths a study's pool check reads
            row["pools"] = {p: {k: v for k, v in sizes.items() if k != "longest"} for p, sizes in pools.items()}
        rows.append(row)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    corpora_table(rows)
