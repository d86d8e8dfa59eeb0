"""``calibprune`` command line: thin wrappers around :mod:`calibprune.pipeline`."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import CalibpruneError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Calibration-aware post-training pruning of LLMs.")
console = Console(stderr=True)
out = Console()


def _split(values: Optional[list[str]]) -> tuple[str, ...]:
    """Options that take lists accept both repetition and commas: --ppl a,b --ppl c."""
    return tuple(v.strip() for value in values or [] for v in value.split(",") if v.strip())


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@app.command()
def prune(
    output: str = typer.Option(..., "--output", "-o", help="Folder for the pruned model (save_pretrained + prune_report.json)."),
    model: str = typer.Option("smollm2-135m", help="Preset name, local folder or Hugging Face id."),
    method: str = typer.Option("wanda", help="magnitude | wanda | sparsegpt"),
    sparsity: Optional[float] = typer.Option(None, help="Unstructured sparsity in [0, 1)."),
    pattern: Optional[str] = typer.Option(None, help="N:M pattern: N of every M consecutive inputs pruned (2:4, 4:8)."),
    calib: str = typer.Option("wiki-en", help="Calibration source: corpus name or local .txt/.jsonl file/folder."),
    nsamples: int = typer.Option(128, help="Calibration windows."),
    seqlen: int = typer.Option(2048, help="Tokens per calibration window."),
    seed: int = typer.Option(0, help="Seed of the window sampling."),
    sampling: Optional[str] = typer.Option(None, help="stream | document (default: the corpus's own rule)."),
    text_field: str = typer.Option("text", help="Text field of .jsonl sources."),
    targets: Optional[list[str]] = typer.Option(None, help="Only prune layers matching these globs (comma-separated)."),
    ignore: Optional[list[str]] = typer.Option(None, help="Never prune layers matching these globs."),
    batch_size: int = typer.Option(4, help="Calibration samples per block call."),
    activation_store: str = typer.Option("disk", help="Where hidden states wait between blocks: disk | memory."),
    allocation: str = typer.Option("uniform", help="Per-block sparsity: uniform | owl."),
    refine: str = typer.Option("none", help="Mask refinement: none | dsnot."),
    owl_m: float = typer.Option(5.0, help="OWL outlier threshold M (scores above M x mean)."),
    owl_lambda: float = typer.Option(0.08, help="OWL lambda: block sparsities within target +/- 2 lambda."),
    owl_mixed_nm: bool = typer.Option(False, help="With --pattern and --allocation owl: a per-block N (mixed N:M)."),
    owl_nm_lambda: float = typer.Option(1.0, help="OWL mixed N:M spread, in units of N."),
    dsnot_cycles: int = typer.Option(50, help="DSnoT swap cycles per layer."),
    dsnot_threshold: float = typer.Option(0.1, help="DSnoT stops a row once |error proxy| <= this."),
    dsnot_var_power: float = typer.Option(1.0, help="DSnoT regrow priority: contribution / variance^power."),
    dsnot_skip: Optional[list[str]] = typer.Option(None, help="Layers (globs inside a block) DSnoT leaves alone [default: mlp.*]; 'none' for none."),
    blocksize: int = typer.Option(128, help="SparseGPT column block size."),
    percdamp: float = typer.Option(0.01, help="SparseGPT damping, fraction of the mean Hessian diagonal."),
    ppl: Optional[list[str]] = typer.Option(None, help="Also report dense and pruned perplexity on these corpora."),
    ppl_seqlen: int = typer.Option(2048, help="Perplexity window length."),
    ppl_max_windows: Optional[int] = typer.Option(None, help="Score at most this many perplexity windows."),
    dtype: Optional[str] = typer.Option(None, help="Load dtype (float32, bfloat16); default: the checkpoint's."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output folder."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Prune a model layer by layer and save it as a plain Hugging Face folder."""
    from .config import DSnoTOptions, OWLOptions, PruneConfig, RunnerOptions, SparseGPTOptions, SparsityTarget
    from .pipeline import CalibrationRequest, PerplexityRequest, run_prune

    skip = _split(dsnot_skip) if dsnot_skip else DSnoTOptions.skip
    config = PruneConfig(
        method=method,
        target=SparsityTarget.parse(sparsity, pattern),
        targets=_split(targets),
        ignore=_split(ignore),
        allocation=allocation,
        refine=refine,
        owl=OWLOptions(hyper_m=owl_m, lam=owl_lambda, mixed_nm=owl_mixed_nm, nm_lambda=owl_nm_lambda),
        dsnot=DSnoTOptions(cycles=dsnot_cycles, threshold=dsnot_threshold, var_power=dsnot_var_power,
                           skip=() if skip == ("none",) else skip),
        sparsegpt=SparseGPTOptions(blocksize=blocksize, percdamp=percdamp),
        runner=RunnerOptions(batch_size=batch_size, activation_store=activation_store),
    )
    request = CalibrationRequest(source=calib, nsamples=nsamples, seqlen=seqlen, seed=seed,
                                 sampling=sampling, text_field=text_field)
    ppl_request = PerplexityRequest(list(_split(ppl)), seqlen=ppl_seqlen, max_windows=ppl_max_windows)
    _quiet_libraries()
    report = run_prune(model, config, request, output, overwrite=overwrite, ppl=ppl_request,
                       dtype=dtype, progress=not quiet)
    summary = report["summary"]
    label = " + ".join(x for x in (method, allocation, refine) if x not in ("uniform", "none"))
    out.print(f"[bold]pruned[/bold] {summary['layers_pruned']} layers of {model} with {label} "
              f"{config.target.describe()}: {summary['sparsity_pruned_layers']:.2%} of their weights "
              f"({summary['sparsity_all_parameters']:.2%} of all parameters) -> {output}")
    if report.get("perplexity"):
        _print_ppl_table(report["perplexity"])


def _print_ppl_table(results: dict) -> None:
    table = Table(title="perplexity (held-out, concat-windows)")
    table.add_column("corpus")
    for column in results:
        table.add_column(column, justify="right")
    corpora = next(iter(results.values())).keys()
    for name in corpora:
        table.add_row(name, *(f"{results[c][name]['ppl']:.3f}" for c in results))
    out.print(table)


@app.command("eval")
def eval_(
    model: str = typer.Option(..., help="Preset, local folder (e.g. a pruned model) or Hugging Face id."),
    ppl: Optional[list[str]] = typer.Option(None, help="Corpora for held-out perplexity (comma-separated)."),
    ppl_seqlen: int = typer.Option(2048, help="Perplexity window length."),
    ppl_max_windows: Optional[int] = typer.Option(None, help="Score at most this many windows."),
    batch_size: int = typer.Option(1, help="Windows per forward pass."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the results as JSON here."),
    dtype: Optional[str] = typer.Option(None, help="Load dtype; default: the checkpoint's."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Evaluate a model: held-out perplexity with a named protocol."""
    from .pipeline import PerplexityRequest, run_eval

    corpora = list(_split(ppl))
    if not corpora:
        raise CalibpruneError("nothing to evaluate: pass --ppl CORPUS[,CORPUS...] (e.g. --ppl wiki-en)")
    _quiet_libraries()
    report = run_eval(model, PerplexityRequest(corpora, seqlen=ppl_seqlen, max_windows=ppl_max_windows,
                                               batch_size=batch_size), output=output, dtype=dtype, progress=not quiet)
    _print_ppl_table({model: report["perplexity"]})
    if output:
        out.print(f"results -> {output}")


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List the bundled model presets and whether each is installed and converted."""
    from .models.presets import PRESETS

    rows = [{"preset": p.name, "installed": p.installed(), "converted": p.ready(), "folder": str(p.folder),
             "install": p.install, "description": p.description} for p in PRESETS.values()]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="model presets")
    for column in ("preset", "installed", "converted", "description"):
        table.add_column(column)
    for row in rows:
        state = "yes" if row["installed"] else f"no: {row['install']}"
        table.add_row(row["preset"], state, "yes" if row["converted"] else "on first use", row["description"])
    out.print(table)


@app.command()
def corpora():
    """List the text corpora available offline."""
    from .corpora import CORPORA

    table = Table(title="corpora")
    table.add_column("name")
    table.add_column("description")
    table.add_column("sampling")
    for name in CORPORA.names():
        corpus = CORPORA.create(name)
        table.add_row(name, corpus.description, corpus.sampling)
    out.print(table)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except CalibpruneError as error:
        console.print(f"[bold red]error:[/bold red] {error}")
        sys.exit(2)


if __name__ == "__main__":
    main()
