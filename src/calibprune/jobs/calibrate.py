"""``calibprune calib``: build a calibration set by a registered strategy and save it.

The job (:class:`~calibprune.calibration.job.CalibJob`) and the strategies
(:mod:`calibprune.calibration.strategies`) are declared below this layer; this module
runs one: checks, model loading when the strategy runs the model, the cost notice of a
generating strategy, provenance, saving."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..calibration import CalibrationSet
from ..calibration.generation_log import finished_batches, generation_work_dir
from ..calibration.job import CalibJob
from ..calibration.strategies import BuildInputs
from ..corpora import get_corpus, local_source
from ..estimate import listening, silent
from ..models.loading import load_config, load_model, load_tokenizer, model_folder, parse_dtype, resolve_model
from ..utils.device import device_record, resolve_device
from ..utils.io import check_output_dir
from ..utils.provenance import environment
from ..utils.resources import StageTracker
from .estimates import generation_estimate
from .requests import Say, check_seqlen


def _announce_generation(model, tokenizer, job: CalibJob, work_dir, overwrite: bool, say: Say) -> None:
    """Cost of the first generation round, measured here, and where a rerun resumes."""
    generation = job.builder.generation(job)
    estimate, batches = generation_estimate(model, tokenizer, generation, job.nsamples, job.seqlen)
    say(estimate.describe())
    done, done_texts = finished_batches(Path(work_dir)) if work_dir is not None else (0, 0)
    if done and not overwrite:
        say(
            f"resuming from batch {done + 1} of {max(batches, done + 1)}: {done} finished batches ({done_texts} texts) "
            f"kept in {work_dir}"
        )


def run_calib(
    model_name: str,
    job: CalibJob,
    output: str | Path | None,
    overwrite: bool = False,
    progress: bool = True,
    work_dir: str | Path | None = None,
    say: Say = silent,
    device: str = "auto",
    dtype: str | None = None,
    argv: list[str] | None = None,
) -> CalibrationSet:
    """``calibprune calib``: build a calibration set and save it as a folder.

    ``output=None`` returns the set without saving it; ``work_dir`` is where a
    self-generation keeps its finished batches (default: beside ``output``); ``say``
    receives one-line notices (cost estimate, resume point) before generation;
    ``device``/``dtype``: where and in which dtype the model generates or scores
    (synthetic and detect only); ``argv``: the command line (the CLI's ``sys.argv``), recorded
    in the manifest (a damaged set's rebuild command comes from it).
    """
    run_device = resolve_device(device)
    parse_dtype(dtype)
    strategy = job.builder
    job.check()
    if output is not None:
        inputs = [("the {model} folder", model_folder(model_name)), ("{source}", local_source(job.source))]
        check_output_dir(output, overwrite, inputs)
    if work_dir is None and output is not None:
        work_dir = generation_work_dir(output)
    # unknown names fail here, listing the known ones
    corpus = get_corpus(job.source, text_field=job.text_field, encoding=job.encoding)
    if hasattr(corpus, "check_available"):
        corpus.check_available()
    if strategy.runs_model:
        corpus.check_readable()  # an undecodable local file fails before the model is loaded
    resolved = resolve_model(model_name)
    check_seqlen(job.seqlen, load_config(resolved))
    inputs = BuildInputs(
        tokenizer=load_tokenizer(resolved),
        corpus=corpus,
        progress=progress,
        work_dir=work_dir,
        overwrite=overwrite,
        say=say,
    )
    tracker = StageTracker(device=run_device)
    if strategy.runs_model:
        with tracker.stage("load"):
            inputs.model = load_model(resolved, dtype=dtype, device=run_device)
        if strategy.generation(job) is not None and listening(say):  # measures a generation: only for a listener
            _announce_generation(inputs.model, inputs.tokenizer, job, work_dir, overwrite, say)
    with tracker.stage(strategy.name):
        calib = strategy.build(job, inputs)
    calib.manifest["model"] = str(model_name)
    calib.manifest["argv"] = None if argv is None else list(argv)
    calib.manifest["environment"] = environment()
    if strategy.runs_model:  # where the model generated / scored, with the GPU's peak memory
        calib.manifest["environment"]["compute"] = {
            **device_record(run_device, next(inputs.model.parameters()).dtype),
            "stages": tracker.to_dict(),
        }
    if output is not None:
        calib.save(output, overwrite=overwrite)
    if work_dir is not None:
        shutil.rmtree(work_dir, ignore_errors=True)
    return calib
