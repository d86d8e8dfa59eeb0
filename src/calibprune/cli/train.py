"""``calibprune train-reference``: train the ``tiny-known`` model, whose training data is known.

A small Llama trained here on a documented mix of the offline corpora's calibration
pools (:mod:`calibprune.models.trained`): about an hour on 2 CPU cores, checkpointed,
and resumed by rerunning the same command after a kill.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .app import console, notice, on_interrupt, quiet_libraries


def train_reference(
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Folder for the model (save_pretrained + training.json).",
        show_default="the tiny-known preset's cache folder",
    ),
    steps: int | None = typer.Option(
        None, min=1, help="Optimizer steps (a shorter run, e.g. to time it; needs --output).", show_default="one epoch"
    ),
    seed: int = typer.Option(
        0, help="Seed of the document order, window order and initial weights (not 0: needs --output)."
    ),
    threads: int = typer.Option(2, min=1, help="Torch threads; recorded (bit-identical weights need the same count)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
):
    """Train the tiny-known model on wiki-en + pycode + gcide calibration pools (resumable)."""
    from dataclasses import replace

    from ..errors import CalibpruneError
    from ..models.presets import TRAINED_PRESET, get_preset
    from ..models.trained import FULL, partial_folder, train

    quiet_libraries()
    if output is None and (steps is not None or seed != FULL.seed):
        raise CalibpruneError(
            f"--steps and --seed change the model: pass --output DIR (the {TRAINED_PRESET} preset's folder holds the "
            "documented run only)"
        )
    folder = get_preset(TRAINED_PRESET).folder if output is None else output
    config = replace(FULL, steps=steps, seed=seed, threads=threads)
    on_interrupt(f"the last checkpoint is kept in {partial_folder(Path(folder))}: rerun to resume", quiet)
    done = train(folder, config, progress=notice(quiet))
    console.print(f"trained: {done}", soft_wrap=True)
