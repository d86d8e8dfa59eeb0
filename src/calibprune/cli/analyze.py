"""``calibprune analyze``: n-gram similarity and membership scores of calibration sets."""

from __future__ import annotations

import typer

from .app import ENCODING_HELP, notice, on_interrupt, out, quiet_libraries, split
from .audit import refuse_local_sets, refuse_unused
from .render import membership_table, similarity_tables

analyze_app = typer.Typer(no_args_is_help=True, help="Analyze calibration sets: n-gram similarity, membership scores.")


@analyze_app.command("similarity")
def analyze_similarity(
    ctx: typer.Context,
    sets: list[str] = typer.Option(..., help="Calibration-set folders, corpus:NAME or local files (comma-separated)."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for similarity.json/.csv/.png."),
    reference: str | None = typer.Option(
        None, help="Indexed whole (never cut): each set's texts are checked against it (e.g. corpus:wiki-en)."
    ),
    ngram: int = typer.Option(3, help="n of the n-grams."),
    unit: str = typer.Option("word", help="word | token (token needs --model)."),
    num_perm: int = typer.Option(128, help="MinHash permutations."),
    containment_threshold: float = typer.Option(
        0.5, help="A text counts as drawn from --reference when this share of its n-grams occurs in it."
    ),
    lsh_threshold: float = typer.Option(0.5, help="Jaccard above which a text counts as a near-duplicate (LSH)."),
    max_texts: int = typer.Option(
        2000, help="Cut each --sets source to this many documents (seeded); never --reference."
    ),
    seed: int = typer.Option(0, help="Seed of MinHash and of the document subsets."),
    model: str | None = typer.Option(None, help="Tokenizer for --unit token."),
    encoding: str = typer.Option("utf-8", help=ENCODING_HELP),
    overwrite: bool = typer.Option(False, help="Replace an existing --output."),
    quiet: bool = typer.Option(False, help="No progress bars, no notices."),
):
    """n-gram overlap between sets (MinHash Jaccard) and, against --reference, how many of
    each set's texts are contained in it (exact n-gram containment) or near-duplicates (LSH)."""
    refuse_unused(
        ctx,
        ("containment_threshold", "lsh_threshold"),
        reference is not None,
        "without --reference: drop them or pass --reference",
    )
    refuse_unused(ctx, ("model",), unit == "token", "unless --unit token: drop it or pass --unit token")
    refuse_local_sets(ctx, [*split(sets), reference or ""], "--sets and --reference")
    from ..analysis.jobs import run_similarity

    quiet_libraries()
    on_interrupt(f"analyze similarity -> {output}: nothing written", quiet)
    report = run_similarity(
        list(split(sets)),
        reference,
        output,
        n=ngram,
        unit=unit,
        num_perm=num_perm,
        max_texts=max_texts,
        seed=seed,
        lsh_threshold=lsh_threshold,
        model=model,
        overwrite=overwrite,
        containment_threshold=containment_threshold,
        progress=not quiet,
        encoding=encoding,
    )
    say = notice(quiet)
    for name, origin in report["sets"].items():
        available = origin.get("available_texts", origin["texts"])
        cut = f" of {available:,} (--max-texts {max_texts})" if available > origin["texts"] else " (all)"
        say(f"set {name}: {origin['texts']:,} texts{cut}")
    if "reference_index" in report:
        index = report["reference_index"]
        grams = f"{index['ngrams']:,} distinct {ngram}-grams"
        say(f"reference {report['reference']}: {index['texts']:,} texts (all, never cut), {grams}")
    similarity_tables(report, ngram, unit, num_perm, containment_threshold)
    out.print(f"-> {output}/similarity.json (per-text containment), .csv, .png", soft_wrap=True)


@analyze_app.command("membership")
def analyze_membership(
    ctx: typer.Context,
    sets: list[str] = typer.Option(..., help="Calibration-set folders, corpus:NAME or local files (comma-separated)."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for membership.json, summary.csv, membership.png."),
    model: str = typer.Option("smollm2-135m", help="The model whose view of the texts is measured."),
    k: float = typer.Option(0.2, help="Min-K%/Min-K%++: fraction of lowest-scoring tokens averaged."),
    max_texts: int = typer.Option(200, help="Texts scored per set (seeded subset)."),
    max_tokens: int = typer.Option(512, help="Tokens scored per text."),
    seed: int = typer.Option(0, help="Seed of the text subsets."),
    batch_size: int = typer.Option(8, help="Texts per forward pass."),
    encoding: str = typer.Option("utf-8", help=ENCODING_HELP),
    dtype: str | None = typer.Option(
        None, help="Weights dtype: auto | float32 | bfloat16 | float16.", show_default="auto: the checkpoint's"
    ),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Min-K%++, Min-K% and perplexity distributions of each set under a model."""
    refuse_local_sets(ctx, list(split(sets)), "--sets")
    from ..analysis.jobs import run_membership

    quiet_libraries()
    on_interrupt(f"analyze membership -> {output}: nothing written", quiet)
    report = run_membership(
        model,
        list(split(sets)),
        output,
        k=k,
        max_texts=max_texts,
        max_tokens=max_tokens,
        seed=seed,
        batch_size=batch_size,
        overwrite=overwrite,
        progress=not quiet,
        device=device,
        dtype=dtype,
        encoding=encoding,
    )
    membership_table(report, model, k)
    out.print(f"-> {output}/membership.json, summary.csv, membership.png", soft_wrap=True)
