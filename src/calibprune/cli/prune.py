"""``calibprune prune``: its options, their audit, the prune job, the result line."""

from __future__ import annotations

import sys

import typer

from ..cli_options import Flags, Group, audit, flags_of, make, with_parameters
from ..errors import CalibpruneError
from .app import name_errors_with, notice, on_interrupt, out, quiet_libraries, styled


def prune_groups():
    from ..config import PruneConfig
    from ..jobs.requests import CalibrationRequest, PerplexityRequest

    return [
        # the CLI resolves the activation store per device (auto); study specs and the Python API
        # keep disk, the value every committed study cell was keyed with (see DECLARED_EXCEPTIONS)
        Group(
            PruneConfig,
            "config",
            defaults={"runner.activation_store": "auto"},
            title="Pruning",
            sections={
                "sparsegpt": "SparseGPT (--method sparsegpt)",
                "owl": "OWL (--allocation owl)",
                "dsnot": "DSnoT (--refine dsnot)",
                "runner": "Calibration passes",
            },
        ),
        Group(CalibrationRequest, "calibration", title="Calibration data"),
        # one --encoding decodes the local files of --calib and of --ppl
        Group(PerplexityRequest, "perplexity", shared={"encoding": "calibration.encoding"}, title="Perplexity (--ppl)"),
    ]


def target_flags(groups) -> Flags:
    # the sparsity target: --sparsity or --pattern, parsed into config.target by the command
    return flags_of(groups, {"sparsity": "--sparsity", "pattern": "--pattern"})


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
    from ..jobs.requests import PruneRun
    from ..options import OptionError

    groups = prune_groups()
    flags = target_flags(groups)
    try:
        target = SparsityTarget.parse(sparsity, pattern)
    except OptionError as error:
        raise CalibpruneError(error.render(flags.name)) from None
    config = make(groups[0], declared, flags, target=target)
    calibration = make(groups[1], declared, flags)
    perplexity = make(groups[2], declared, flags, encoding=calibration.encoding)
    name_errors_with(flags.scoped("config"))  # an OptionError from deeper down, in this command's flags
    run = PruneRun(config, calibration, perplexity)
    # torch-free: nothing heavy is imported before the audit
    audit(ctx, [(groups[1], run), (groups[2], run), (groups[0], config)], flags)
    from ..jobs.prune import run_prune

    say = notice(quiet)
    if config.target.is_nm:
        say(config.target.explain(flags.name))
    quiet_libraries()
    on_interrupt(f"prune -> {output}: nothing written (the output appears only when complete)", quiet)
    report = run_prune(
        model,
        config,
        calibration,
        output,
        overwrite=overwrite,
        ppl=perplexity,
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
