"""``calibprune eval``: lm-eval tasks and/or perplexity of a model, and their tables."""

from __future__ import annotations

import sys

import typer

from ..cli_options import Group, audit, flags_of, make, with_parameters
from .app import name_errors_with, notice, on_interrupt, out, quiet_libraries
from .audit import refuse_unused


def eval_groups():
    from ..jobs.requests import PerplexityRequest, TaskRequest

    return [
        # one --batch-size for the tasks and the perplexity windows
        Group(PerplexityRequest, "perplexity", shared={"batch_size": "tasks.batch_size"}, title="Perplexity (--ppl)"),
        Group(TaskRequest, "tasks", title="lm-eval tasks (--tasks)"),
    ]


def eval_(
    ctx: typer.Context,
    model: str = typer.Option(..., help="Preset, local folder (e.g. a pruned model) or Hugging Face id."),
    output: str | None = typer.Option(None, "--output", "-o", help="Write the results as JSON here."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output file."),
    dtype: str | None = typer.Option(
        None, help="Weights dtype: auto | float32 | bfloat16 | float16.", show_default="auto: the checkpoint's"
    ),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N."),
    quiet: bool = typer.Option(False, help="No progress bars (lm-eval's included), no notices."),
    **declared,
):
    """Evaluate a model: lm-eval tasks (offline data) and perplexity with a named protocol."""
    from ..jobs.requests import EvalRun

    groups = eval_groups()
    flags = flags_of(groups)
    tasks = make(groups[1], declared, flags)
    ppl = make(groups[0], declared, flags, batch_size=tasks.batch_size)
    audit(ctx, [(group, EvalRun(ppl, tasks)) for group in groups], flags)  # torch-free
    refuse_unused(ctx, ("overwrite",), output is not None, "without --output: drop it or pass --output FILE")
    name_errors_with(flags.name)
    from ..jobs.evaluate import run_eval
    from .render import ppl_table, task_table

    quiet_libraries()
    on_interrupt(f"eval of {model}: no results written" + (f" to {output}" if output else ""), quiet)
    report = run_eval(
        model,
        ppl,
        tasks,
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


with_parameters(eval_, eval_groups())  # the declared options join the signature typer reads
