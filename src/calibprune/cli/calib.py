"""``calibprune calib``: build a calibration set by a registered strategy and save it.

The options come from the declarations: the job's (:class:`~calibprune.calibration.job.CalibJob`)
and each strategy's own (:mod:`calibprune.calibration.strategies`), one flag group per
strategy; a new strategy's options appear here, audited, the moment it is registered.
"""

from __future__ import annotations

import sys

import typer

from ..cli_options import Group, audit, flags_of, make, refusal, typed, with_parameters
from ..errors import CalibpruneError
from .app import name_errors_with, notice, on_interrupt, out, quiet_libraries, styled
from .audit import refuse_unused

# flags named before the rule --<field> (kept: the command lines in the wild use them)
STRATEGY_FLAGS = {
    "generation": {"batch_size": "--gen-batch-size"},
    "detect": {"k": "--mink-k", "detector": "--detector"},
}


def calib_groups():
    from ..calibration.job import CalibJob
    from ..calibration.strategies import all_strategies

    groups = [Group(CalibJob, "job", title="Calibration set")]
    for strategy in all_strategies():
        if strategy.options is not None:
            flags = STRATEGY_FLAGS.get(strategy.section, {})
            title = f"{strategy.section} (--strategy {strategy.name})"
            groups.append(Group(strategy.options, strategy.section, flags=flags, title=title))
    return groups


def _chosen_strategy(ctx: typer.Context, declared: dict, synthetic: bool, detect: str | None) -> str:
    """--strategy NAME, or its older spellings --synthetic and --detect DETECTOR (only one)."""
    named = [f"--strategy {declared['job__strategy']}"] if typed(ctx, ["job__strategy"]) else []
    named += ["--synthetic"] if synthetic else []
    named += [f"--detect {detect}"] if detect else []
    if len(named) > 1:
        raise CalibpruneError(f"{' and '.join(named)} name strategies: pass only one")
    return "synthetic" if synthetic else "detect" if detect else declared["job__strategy"]


def calib(
    ctx: typer.Context,
    output: str = typer.Option(..., "--output", "-o", help="Folder for the calibration set."),
    model: str = typer.Option(
        "smollm2-135m", help="Model whose tokenizer (and, for a strategy that runs it, weights) to use."
    ),
    synthetic: bool = typer.Option(False, "--synthetic", help="Same as --strategy synthetic."),
    detect: str | None = typer.Option(None, help="Same as --strategy detect --detector NAME (mink++)."),
    dtype: str | None = typer.Option(
        None,
        help="For a strategy that runs the model: weights dtype, auto | float32 | bfloat16 | float16.",
        show_default="auto: the checkpoint's",
    ),
    device: str = typer.Option("auto", help="For a strategy that runs the model: auto | cpu | cuda | cuda:N."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output (and restart an unfinished generation)."),
    quiet: bool = typer.Option(False, help="No progress bars, no notices."),
    **declared,
):
    """Build a calibration set: sample a source, self-generate (--strategy synthetic) or detect
    (--strategy detect), or any registered strategy."""
    from ..calibration.strategies import all_strategies

    groups = calib_groups()
    flags = flags_of(groups)
    name_errors_with(flags.scoped("job"))
    name = _chosen_strategy(ctx, declared, synthetic, detect)
    if detect:
        declared["detect__detector"] = detect
    strategy = make(groups[0], {"job__strategy": name}, flags).builder  # an unknown name, refused in flags
    for other in all_strategies():  # a strategy's options without that strategy
        group = next((g for g in groups if other.section and g.name == other.section), None)
        if group is None or other.name == name:
            continue
        given = typed(ctx, [group.param(leaf) for leaf in group.leaves()])
        if given:
            table = {group.param(leaf): group.flag(leaf) for leaf in group.leaves()}
            raise refusal(
                [table[p] for p in given], f"without --strategy {other.name}: drop them or pass --strategy {other.name}"
            )
    options = None
    if strategy.options is not None:
        group = next(g for g in groups if g.name == strategy.section)
        options = make(group, declared, flags)
    job = make(groups[0], declared, flags, strategy=name, options=options)
    audit(ctx, [(groups[0], job)], flags)
    refuse_unused(
        ctx,
        ("device", "dtype"),
        strategy.runs_model,
        f"with --strategy {name}: it runs no model (only its tokenizer); drop them",
    )
    from ..calibration.generation_log import generation_work_dir
    from ..jobs.calibrate import run_calib

    quiet_libraries()
    note = f"calib -> {output}: nothing written (the set appears only when complete)"
    if strategy.resumable:
        kept = generation_work_dir(output)
        note += f"; {strategy.resumable} are kept in {kept}: rerun the same command to resume from them"
    on_interrupt(note, quiet)
    calibration = run_calib(
        model,
        job,
        output,
        overwrite=overwrite,
        progress=not quiet,
        say=notice(quiet),
        device=device,
        dtype=dtype,
        argv=sys.argv,
    )
    manifest = calibration.manifest
    line = f" {calibration.nsamples} x {calibration.seqlen} tokens from {manifest['source']} ({manifest['strategy']})"
    if "filter" in manifest:
        pool = manifest["filter"].get("texts", manifest["filter"].get("candidates"))
        line += f"; kept {manifest['filter']['kept']} of {pool} texts"
    out.print(styled("calibration set", f"{line} -> {output}"), soft_wrap=True)


with_parameters(calib, calib_groups())  # the declared options join the signature typer reads
