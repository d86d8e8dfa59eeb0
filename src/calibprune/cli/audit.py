"""No option is silently ignored: the rules the declarations do not carry.

An option typed on the command line that this invocation would not use is refused with
the reason, before any work, and for prune, eval and calib before torch is imported: their
rules read only the arguments, the file system and the torch-free registries
(:mod:`calibprune.pruning.catalog`). ``analyze``'s local-set rule reads
:mod:`calibprune.analysis.sets`, which imports torch. Declared options are
audited from their own ``applies`` rule (:func:`calibprune.cli_options.audit`); the
options each command still declares by hand are audited here.
"""

from __future__ import annotations

import typer

from ..cli_options import refusal, typed


def flag(name: str) -> str:
    """The flag of a hand-declared parameter: ``ppl_seqlen`` -> ``--ppl-seqlen`` (a declared
    field's parameter ``job__text_field`` -> ``--text-field``: its field name by the rule)."""
    return "--" + name.split("__")[-1].replace("_", "-")


def refuse_unused(ctx: typer.Context, names: tuple[str, ...], used: bool, why: str) -> None:
    """Refuse typed options among ``names`` when ``used`` is False; ``why`` completes
    "... has no effect ..." with the reason and the fix."""
    given = typed(ctx, list(names))
    if given and not used:
        raise refusal([flag(n) for n in given], why)


def refuse_text_field(ctx: typer.Context, source, param: str = "text_field") -> None:
    """--text-field names a field of local .jsonl/.parquet/.arrow files; a registered corpus has none."""
    from ..corpora import CORPORA

    if isinstance(source, str) and source in CORPORA:
        refuse_unused(
            ctx,
            (param,),
            False,
            f"with the corpus {source!r}: it names the text field of local .jsonl/.parquet/.arrow files; drop it",
        )


def refuse_encoding(ctx: typer.Context, sources, what: str, param: str = "encoding") -> None:
    """--encoding decodes local .txt/.jsonl files; refused when ``sources`` (what the
    command reads as text, set folders left out) hold none. ``what`` names the options."""
    from ..corpora import is_local_source

    refuse_unused(
        ctx,
        (param,),
        any(is_local_source(s) for s in sources),
        f"when no local file is read ({what} name corpora or calibration-set folders): it is how local "
        ".txt/.jsonl files are decoded; drop it",
    )


def refuse_local_sets(ctx: typer.Context, specs: list[str], what: str) -> None:
    """analyze: --encoding only with a --sets/--reference entry read as local files."""
    from ..analysis.sets import local_specs

    refuse_encoding(ctx, local_specs(specs), what)


def audit_prune(ctx: typer.Context, config, calib: str, ppl: list[str]) -> None:
    """prune: refuse the hand-declared options this run would not use (``calib``: the
    --calib value; ``ppl``: the --ppl corpora)."""
    from ..calibration import is_calibration_folder
    from ..pruning.catalog import needs_calibration

    calibrated = needs_calibration(config)
    prebuilt = is_calibration_folder(calib)  # a set folder brings its own windows
    read_calib = calibrated and not prebuilt
    refuse_encoding(ctx, ([calib] if read_calib else []) + list(ppl), "--calib and --ppl")

    calibration_options = ("calib", "nsamples", "seqlen", "seed", "sampling", "windows", "text_field")
    refuse_unused(
        ctx,
        calibration_options,
        calibrated,
        f"with --method {config.method}: it reads only the weights (|W|), no calibration data is used; "
        "drop them, or add --allocation owl / --refine dsnot, which do use calibration data",
    )
    refuse_unused(
        ctx,
        ("seed", "sampling", "windows", "text_field"),
        not prebuilt,
        f"when --calib is a calibration-set folder ({calib} was sampled when it was built; its "
        "manifest.json records how): drop them, or pass the source itself to --calib",
    )
    refuse_text_field(ctx, calib)
    refuse_unused(ctx, ("ppl_seqlen", "ppl_max_windows"), bool(ppl), "without --ppl: drop them or pass --ppl CORPUS")
