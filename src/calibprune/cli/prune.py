"""``calibprune prune``: its options, their audit, the prune job, the result line."""

from __future__ import annotations

import sys

import typer

from ..cli_options import Flags, Group, audit, flags_of, make, with_parameters
from ..errors import CalibpruneError
from .app import ENCODING_HELP, name_errors_with, notice, on_interrupt, out, quiet_libraries, split, styled
from .audit import audit_prune


def prune_groups():
    from ..config import PruneConfig

    # the CLI resolves the activation store per device (auto); study specs and the Python API
    # keep disk, the value every committed study cell was keyed with (see DECLARED_EXCEPTIONS)
    return [Group(PruneConfig, "config", defaults={"runner.activation_store": "auto"})]


def target_flags(groups) -> Flags:
    # fields the prune command declares by hand (until their own groups are declared)
    return flags_of(groups, {"sparsity": "--sparsity", "pattern": "--pattern", "calibration.source": "--calib"})


def prune(
    ctx: typer.Context,
    output: str = typer.Option(
        ..., "--output", "-o", help="Folder for the pruned model (save_pretrained + prune_report.json)."
    ),
    model: str = typer.Option("smollm2-135m", help="Preset name, local folder or Hugging Face id."),
    sparsity: float | None = typer.Option(None, help="Unstructured sparsity in [0, 1)."),
    pattern: str | None = typer.Option(
        None, help="N:M pattern: N of every M consecutive inputs PRUNED (2:4, 4:8 = 50%; 1:4 = 25%)."
    ),
    calib: str = typer.Option(
        "wiki-en",
        help="Calibration data: a calibration-set folder (from `calibprune calib`), a corpus name, "
        "or a local .txt/.jsonl/.parquet/.arrow file or folder.",
    ),
    nsamples: int | None = typer.Option(
        None,
        help="Calibration windows. With a set folder: use its first N windows.",
        show_default="128; a set folder: all of its windows",
    ),
    seqlen: int | None = typer.Option(
        None,
        help="Tokens per calibration window. With a set folder: cut its windows to the first N tokens.",
        show_default="2048; a set folder: its window length",
    ),
    seed: int = typer.Option(0, help="Seed of the window sampling (sources only)."),
    sampling: str | None = typer.Option(
        None, help="stream | document (sources only).", show_default="the corpus's own rule"
    ),
    windows: str = typer.Option(
        "disjoint",
        help="Stream windows: disjoint (no overlaps) | random (independent starts, published loaders); sources only.",
    ),
    text_field: str = typer.Option("text", help="Text field/column of .jsonl/.parquet/.arrow sources."),
    encoding: str = typer.Option("utf-8", help=ENCODING_HELP),
    ppl: list[str] | None = typer.Option(None, help="Also report dense and pruned perplexity on these corpora."),
    ppl_seqlen: int = typer.Option(2048, help="Perplexity window length."),
    ppl_max_windows: int | None = typer.Option(
        None, help="Score at most this many perplexity windows.", show_default="all windows of the held-out pool"
    ),
    dtype: str | None = typer.Option(
        None, help="Weights dtype: auto | float32 | bfloat16 | float16.", show_default="auto: the checkpoint's"
    ),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N."),
    offload: str = typer.Option(
        "auto",
        help="Where weights wait while one block is pruned: none (all on the device) | cpu | disk (the checkpoint's "
        "safetensors; pruned blocks stream to --output).",
        show_default="auto: none if the model fits the device, else cpu (GPU) or disk",
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing --output folder."),
    quiet: bool = typer.Option(False, help="No progress bars, no notices: errors and the result line only."),
    **declared,
):
    """Prune a model layer by layer and save it as a plain Hugging Face folder."""
    from ..config import SparsityTarget
    from ..options import OptionError

    groups = prune_groups()
    flags = target_flags(groups)
    try:
        target = SparsityTarget.parse(sparsity, pattern)
    except OptionError as error:
        raise CalibpruneError(error.render(flags.name)) from None
    config = make(groups[0], declared, flags, target=target)
    name_errors_with(flags.scoped("config"))  # an OptionError from deeper down, in this command's flags
    ppl_corpora = list(split(ppl))
    audit_prune(ctx, config, calib, ppl_corpora)  # torch-free: nothing heavy is imported before it
    audit(ctx, [(groups[0], config)], flags)
    from ..jobs.prune import run_prune
    from ..jobs.requests import CalibrationRequest, PerplexityRequest

    request = CalibrationRequest(
        source=calib,
        nsamples=nsamples,
        seqlen=seqlen,
        seed=seed,
        sampling=sampling,
        text_field=text_field,
        windows=windows,
        encoding=encoding,
    )
    ppl_request = PerplexityRequest(ppl_corpora, seqlen=ppl_seqlen, max_windows=ppl_max_windows, encoding=encoding)
    say = notice(quiet)
    if config.target.is_nm:
        say(config.target.explain(flags.name))
    quiet_libraries()
    on_interrupt(f"prune -> {output}: nothing written (the output appears only when complete)", quiet)
    report = run_prune(
        model,
        config,
        request,
        output,
        overwrite=overwrite,
        ppl=ppl_request,
        dtype=dtype,
        progress=not quiet,
        say=say,
        device=device,
        offload=offload,
        argv=sys.argv,
    )
    summary = report.summary
    target = config.target
    nm_meaning = f" ({target.n} pruned of every {target.m})" if target.is_nm else ""
    out.print(
        styled(
            "pruned",
            f" {summary['layers_pruned']} layers of {model} with {config.describe()}{nm_meaning}: "
            f"{summary['sparsity_pruned_layers']:.2%} of their weights "
            f"({summary['sparsity_all_parameters']:.2%} of all parameters) -> {output}",
        ),
        soft_wrap=True,
    )
    if report.perplexity is not None and report.perplexity.columns():
        from .render import ppl_table

        ppl_table(report.perplexity.columns())


with_parameters(prune, prune_groups())  # the declared options join the signature typer reads
