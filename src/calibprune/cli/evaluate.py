"""``calibprune eval``: lm-eval tasks and/or perplexity of a model, and their tables."""

from __future__ import annotations

import sys

import typer

from .app import ENCODING_HELP, notice, on_interrupt, out, quiet_libraries, split
from .audit import refuse_encoding, refuse_unused


def eval_(
    ctx: typer.Context,
    model: str = typer.Option(..., help="Preset, local folder (e.g. a pruned model) or Hugging Face id."),
    tasks: list[str] | None = typer.Option(
        None, help="lm-eval tasks (comma-separated): boolq,winogrande,piqa,hellaswag,arc_easy,arc_challenge,mmlu"
    ),
    limit: int | None = typer.Option(None, help="Evaluate a fixed, seeded subset of at most N documents per task."),
    seed: int = typer.Option(0, help="Seed of the --limit subsets and of lm-eval."),
    mmlu_shots: int = typer.Option(5, help="MMLU few-shot examples (paper text: 5; paper code: 0)."),
    ppl: list[str] | None = typer.Option(None, help="Corpora or local files for perplexity (comma-separated)."),
    ppl_protocol: str = typer.Option("concat-windows", help="concat-windows (Wanda/SparseGPT) | per-example (Alpaca)."),
    ppl_seqlen: int = typer.Option(2048, help="Perplexity window length (per-example: max tokens per document)."),
    ppl_max_windows: int | None = typer.Option(
        None, help="Score at most this many windows (or documents).", show_default="all of the pool"
    ),
    ppl_split: str | None = typer.Option(
        None, help="calib | heldout | all.", show_default="heldout; all for local files"
    ),
    encoding: str = typer.Option("utf-8", help=ENCODING_HELP),
    batch_size: str = typer.Option(
        "8",
        help="Sequences per forward pass, at most (batches also hold <= 4096 tokens); 'auto': the largest "
        "that fits (GPU) or the fastest measured (CPU), reported in the output.",
    ),
    scoring: str = typer.Option(
        "shared-prefix", help="shared-prefix (each shared context computed once) | plain (lm-eval's way)."
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="Write the results as JSON here."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output file."),
    dtype: str | None = typer.Option(
        None, help="Weights dtype: auto | float32 | bfloat16 | float16.", show_default="auto: the checkpoint's"
    ),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N."),
    quiet: bool = typer.Option(False, help="No progress bars (lm-eval's included), no notices."),
):
    """Evaluate a model: lm-eval tasks (offline data) and perplexity with a named protocol."""
    with_tasks, with_ppl = bool(split(tasks)), bool(split(ppl))
    refuse_unused(
        ctx,
        ("ppl_protocol", "ppl_seqlen", "ppl_max_windows", "ppl_split"),
        with_ppl,
        "without --ppl: drop them or pass --ppl CORPUS",
    )
    refuse_unused(ctx, ("limit", "seed"), with_tasks, "without --tasks: drop them or pass --tasks")
    refuse_unused(ctx, ("overwrite",), output is not None, "without --output: drop it or pass --output FILE")
    refuse_encoding(ctx, split(ppl), "--ppl")
    refuse_unused(
        ctx,
        ("mmlu_shots",),
        "mmlu" in split(tasks),
        "unless --tasks includes mmlu: drop it or add mmlu to --tasks",
    )
    from ..evaluation.batching import parse_batch_size
    from ..jobs.evaluate import run_eval
    from ..jobs.requests import PerplexityRequest, TaskRequest
    from .render import ppl_table, task_table

    quiet_libraries()
    on_interrupt(f"eval of {model}: no results written" + (f" to {output}" if output else ""), quiet)
    batch_size = parse_batch_size(batch_size)
    ppl_request = PerplexityRequest(
        list(split(ppl)),
        seqlen=ppl_seqlen,
        max_windows=ppl_max_windows,
        batch_size=batch_size,
        protocol=ppl_protocol,
        split=ppl_split,
        encoding=encoding,
    )
    task_request = TaskRequest(
        list(split(tasks)), limit=limit, seed=seed, mmlu_shots=mmlu_shots, batch_size=batch_size, scoring=scoring
    )
    report = run_eval(
        model,
        ppl_request,
        task_request,
        output=output,
        dtype=dtype,
        progress=not quiet,
        device=device,
        overwrite=overwrite,
        argv=sys.argv,
        say=notice(quiet),
    )
    if report.batch_size is not None:
        probe = report.batch_size
        out.print(f"--batch-size auto: {probe['chosen']} ({probe['rule']}: {probe['measured']})")
    if report.tasks is not None:
        task_table(report.tasks)
        path = report.tasks["scoring"]
        out.print(
            f"scoring: {path['path']}" + (f" (fell back: {path['fallback_reason']})" if path["fallback_reason"] else "")
        )
    if report.perplexity is not None:
        ppl_table({model: report.perplexity})
    if output:
        out.print(f"results -> {output}", soft_wrap=True)
