"""``calibprune analyze``: n-gram similarity and membership scores of calibration sets.

The options come from the declarations (:mod:`calibprune.analysis.options`); the sets
(``--sets``) are each command's inputs, and so is ``--encoding``'s rule, which reads them.
"""

from __future__ import annotations

import typer

from ..cli_options import Group, audit, flags_of, make, with_parameters
from .app import name_errors_with, notice, on_interrupt, out, quiet_libraries, split
from .audit import refuse_local_sets
from .render import membership_table, similarity_tables

analyze_app = typer.Typer(no_args_is_help=True, help="Analyze calibration sets: n-gram similarity, membership scores.")

SETS_HELP = "Calibration-set folders, corpus:NAME or local files (comma-separated)."


def similarity_groups():
    from ..analysis.options import SimilarityOptions

    return [Group(SimilarityOptions, "similarity")]


def membership_groups():
    from ..analysis.options import MembershipOptions

    return [Group(MembershipOptions, "membership")]


def _options(ctx: typer.Context, groups, declared: dict):
    """The command's options object, refused in its flags, audited by its declared rules."""
    flags = flags_of(groups)
    options = make(groups[0], declared, flags)
    audit(ctx, [(groups[0], options)], flags)
    name_errors_with(flags.scoped(groups[0].name))
    return options


def analyze_similarity(
    ctx: typer.Context,
    sets: list[str] = typer.Option(..., help=SETS_HELP),
    output: str = typer.Option(..., "--output", "-o", help="Folder for similarity.json/.csv/.png."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output."),
    quiet: bool = typer.Option(False, help="No progress bars, no notices."),
    **declared,
):
    """n-gram overlap between sets (MinHash Jaccard) and, against --reference, how many of
    each set's texts are contained in it (exact n-gram containment) or near-duplicates (LSH)."""
    options = _options(ctx, similarity_groups(), declared)
    refuse_local_sets(ctx, [*split(sets), options.reference or ""], "--sets and --reference", "similarity__encoding")
    from ..analysis.jobs import run_similarity

    quiet_libraries()
    on_interrupt(f"analyze similarity -> {output}: nothing written", quiet)
    report = run_similarity(list(split(sets)), output, options, overwrite=overwrite, progress=not quiet)
    say = notice(quiet)
    for name, origin in report["sets"].items():
        available = origin.get("available_texts", origin["texts"])
        cut = f" of {available:,} (--max-texts {options.max_texts})" if available > origin["texts"] else " (all)"
        say(f"set {name}: {origin['texts']:,} texts{cut}")
    if "reference_index" in report:
        index = report["reference_index"]
        grams = f"{index['ngrams']:,} distinct {options.ngram}-grams"
        say(f"reference {report['reference']}: {index['texts']:,} texts (all, never cut), {grams}")
    similarity_tables(report, options.ngram, options.unit, options.num_perm, options.containment_threshold)
    out.print(f"-> {output}/similarity.json (per-text containment), .csv, .png", soft_wrap=True)


def analyze_membership(
    ctx: typer.Context,
    sets: list[str] = typer.Option(..., help=SETS_HELP),
    output: str = typer.Option(..., "--output", "-o", help="Folder for membership.json, summary.csv, membership.png."),
    model: str = typer.Option("smollm2-135m", help="The model whose view of the texts is measured."),
    dtype: str | None = typer.Option(
        None, help="Weights dtype: auto | float32 | bfloat16 | float16.", show_default="auto: the checkpoint's"
    ),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output."),
    quiet: bool = typer.Option(False, help="No progress bars."),
    **declared,
):
    """Min-K%++, Min-K% and perplexity distributions of each set under a model."""
    options = _options(ctx, membership_groups(), declared)
    refuse_local_sets(ctx, list(split(sets)), "--sets", "membership__encoding")
    from ..analysis.jobs import run_membership

    quiet_libraries()
    on_interrupt(f"analyze membership -> {output}: nothing written", quiet)
    report = run_membership(
        model,
        list(split(sets)),
        output,
        options,
        overwrite=overwrite,
        progress=not quiet,
        device=device,
        dtype=dtype,
    )
    membership_table(report, model, options.k)
    out.print(f"-> {output}/membership.json, summary.csv, membership.png", soft_wrap=True)


# the declared options join the signatures typer reads
analyze_app.command("similarity")(with_parameters(analyze_similarity, similarity_groups()))
analyze_app.command("membership")(with_parameters(analyze_membership, membership_groups()))
