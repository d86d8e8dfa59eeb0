"""``calibprune calib``: build a calibration set (sample, --synthetic or --detect) and save it."""

from __future__ import annotations

import sys

import typer

from ..errors import CalibpruneError
from .app import ENCODING_HELP, notice, on_interrupt, out, quiet_libraries, styled
from .audit import refuse_encoding, refuse_text_field, refuse_unused


def calib(
    ctx: typer.Context,
    output: str = typer.Option(..., "--output", "-o", help="Folder for the calibration set."),
    source: str = typer.Option(
        "wiki-en", help="Corpus name, hub name (c4, wikipedia, slimpajama, dclm) or local file/folder."
    ),
    model: str = typer.Option(
        "smollm2-135m", help="Model whose tokenizer (and, for --synthetic/--detect, weights) to use."
    ),
    nsamples: int = typer.Option(128, help="Calibration windows."),
    seqlen: int = typer.Option(2048, help="Tokens per window."),
    seed: int = typer.Option(0, help="Seed of sampling and generation."),
    sampling: str | None = typer.Option(None, help="stream | document (default: the source's own rule)."),
    windows: str = typer.Option(
        "disjoint", help="Stream windows: disjoint (no overlaps) | random (independent starts, published loaders)."
    ),
    text_field: str = typer.Option("text", help="Text field/column of .jsonl/.parquet/.arrow sources."),
    encoding: str = typer.Option("utf-8", help=ENCODING_HELP),
    synthetic: bool = typer.Option(False, "--synthetic", help="Self-generate from prefixes of the source's texts."),
    prefix_tokens: int = typer.Option(1, help="Source tokens after BOS in each prompt (0 = BOS only; paper: 1)."),
    temperature: float = typer.Option(0.6, help="Sampling temperature (the paper's LLaMA runs used 0.8)."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling mass."),
    top_k: int = typer.Option(50, help="Top-k sampling (0 = off)."),
    repetition_penalty: float = typer.Option(1.2, help="Repetition penalty (1 = none)."),
    max_new_tokens: int | None = typer.Option(
        None, help="Tokens per generated text.", show_default="fill the window: seqlen - prompt length"
    ),
    num_texts: int | None = typer.Option(
        None,
        help="Texts to generate.",
        show_default="rounds of batches until the kept texts fill nsamples x seqlen",
    ),
    gen_batch_size: int = typer.Option(32, help="Prompts generated together."),
    filter_top: float = typer.Option(0.2, help="Drop this fraction of the most perplexing generated texts."),
    detect: str | None = typer.Option(None, help="Detect training-like texts with this score: mink++."),
    keep_top: float = typer.Option(0.5, help="With --detect: keep this fraction of highest-scoring texts."),
    mink_k: float = typer.Option(0.2, help="Min-K%++: fraction of lowest-scoring tokens averaged."),
    num_candidates: int | None = typer.Option(
        None, help="With --detect: score at most this many source texts.", show_default="all of the calib pool"
    ),
    dtype: str | None = typer.Option(
        None,
        help="With --synthetic/--detect: weights dtype, auto | float32 | bfloat16 | float16.",
        show_default="auto: the checkpoint's",
    ),
    device: str = typer.Option("auto", help="With --synthetic/--detect: auto | cpu | cuda | cuda:N."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output (and restart an unfinished generation)."),
    quiet: bool = typer.Option(False, help="No progress bars, no notices."),
):
    """Build a calibration set: sample a source, self-generate (--synthetic) or detect (--detect mink++)."""
    if synthetic and detect:
        raise CalibpruneError("--synthetic and --detect are two strategies: pass only one")
    generation_options = (
        "prefix_tokens",
        "temperature",
        "top_p",
        "top_k",
        "repetition_penalty",
        "max_new_tokens",
        "num_texts",
        "gen_batch_size",
        "filter_top",
    )
    refuse_unused(ctx, generation_options, synthetic, "without --synthetic: drop them or pass --synthetic")
    refuse_unused(
        ctx,
        ("sampling",),
        not (synthetic or detect),
        "with --synthetic or --detect: their windows are cut by a fixed rule (self-generated texts: stream; "
        "detected texts: the source's own rule); drop it",
    )
    refuse_text_field(ctx, source)
    refuse_encoding(ctx, [source], "--source")
    detect_options = ("keep_top", "mink_k", "num_candidates")
    refuse_unused(ctx, detect_options, bool(detect), "without --detect: drop them or pass --detect mink++")
    refuse_unused(
        ctx,
        ("device", "dtype"),
        bool(synthetic or detect),
        "without --synthetic or --detect: sampling a source runs no model (only its tokenizer); drop them",
    )
    from ..calibration import GenerationOptions
    from ..calibration.generation_log import generation_work_dir
    from ..jobs.calibrate import CalibJob, run_calib

    job = CalibJob(
        source=source,
        nsamples=nsamples,
        seqlen=seqlen,
        seed=seed,
        sampling=sampling,
        text_field=text_field,
        windows=windows,
        encoding=encoding,
        strategy="synthetic" if synthetic else "detect" if detect else "sample",
        generation=GenerationOptions(
            prefix_tokens=prefix_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            max_new_tokens=max_new_tokens,
            batch_size=gen_batch_size,
            num_texts=num_texts,
            filter_top=filter_top,
        ),
        detector=detect or "mink++",
        keep_top=keep_top,
        mink_k=mink_k,
        num_candidates=num_candidates,
    )
    quiet_libraries()
    note = f"calib -> {output}: nothing written (the set appears only when complete)"
    if synthetic:
        note += (
            f"; finished generation batches are kept in {generation_work_dir(output)}: "
            "rerun the same command to resume from them"
        )
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
