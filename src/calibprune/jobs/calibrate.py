"""``calibprune calib``: build a calibration set (sample, self-generate or detect) and save it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..calibration import CalibrationSet, GenerationOptions, build_detected, build_synthetic, check_sampling_args
from ..calibration.filters import check_keep_top
from ..calibration.generation_log import finished_batches, generation_work_dir
from ..corpora import DEFAULT_ENCODING, get_corpus, local_source
from ..errors import CalibpruneError
from ..estimate import listening, silent
from ..models.loading import load_config, load_model, load_tokenizer, model_folder, parse_dtype, resolve_model
from ..scoring.membership import check_k
from ..utils.device import device_record, resolve_device
from ..utils.io import check_output_dir
from ..utils.keys import KEYED_WHEN_SET
from ..utils.provenance import environment
from ..utils.resources import StageTracker
from .estimates import generation_estimate
from .requests import Say, check_seqlen


@dataclass
class CalibJob:
    """What ``calibprune calib`` builds: the strategy and all its parameters."""

    source: str = "wiki-en"
    nsamples: int = 128
    seqlen: int = 2048
    seed: int = 0
    sampling: str | None = None
    text_field: str = "text"
    windows: str = "disjoint"
    strategy: str = "sample"  # sample | synthetic | detect
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    detector: str = "mink++"
    keep_top: float = 0.5
    mink_k: float = 0.2
    num_candidates: int | None = None
    encoding: str = field(default=DEFAULT_ENCODING, metadata=KEYED_WHEN_SET)  # of local files

    def check(self) -> None:
        check_sampling_args(self.nsamples, self.seqlen, self.sampling, self.windows)
        if self.strategy == "detect":
            check_keep_top(self.keep_top)
            check_k(self.mink_k)
        elif self.strategy == "synthetic":
            generation, needed = self.generation, self.nsamples * self.seqlen
            if generation.num_texts is not None:
                most = int(generation.num_texts * (1 - generation.filter_top)) * self.seqlen
                if most < needed:
                    raise CalibpruneError(
                        f"--num-texts {generation.num_texts} with --filter-top {generation.filter_top} keeps at most "
                        f"{most:,} tokens, fewer than nsamples x seqlen = {needed:,}: raise --num-texts"
                    )


def _announce_generation(model, tokenizer, job: CalibJob, work_dir, overwrite: bool, say: Say) -> None:
    """Cost of the first generation round, measured here, and where a rerun resumes."""
    estimate, batches = generation_estimate(model, tokenizer, job.generation, job.nsamples, job.seqlen)
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
    job.check()
    if output is not None:
        inputs = [("the --model folder", model_folder(model_name)), ("--source", local_source(job.source))]
        check_output_dir(output, overwrite, inputs)
    if work_dir is None and output is not None:
        work_dir = generation_work_dir(output)
    # unknown names fail here, listing the known ones
    corpus = get_corpus(job.source, text_field=job.text_field, encoding=job.encoding)
    if hasattr(corpus, "check_available"):
        corpus.check_available()
    if job.strategy != "sample":
        corpus.check_readable()  # an undecodable local file fails before the model is loaded
    resolved = resolve_model(model_name)
    check_seqlen(job.seqlen, load_config(resolved))
    tokenizer = load_tokenizer(resolved)
    if job.strategy == "sample":
        from ..calibration import sample_windows

        calib = sample_windows(
            corpus, tokenizer, job.nsamples, job.seqlen, job.seed, mode=job.sampling, windows=job.windows
        )
    else:
        tracker = StageTracker(device=run_device)
        with tracker.stage("load"):
            model = load_model(resolved, dtype=dtype, device=run_device)
        if job.strategy == "synthetic":
            if listening(say):  # the estimate measures a generation: only when someone listens
                _announce_generation(model, tokenizer, job, work_dir, overwrite, say)
            with tracker.stage("generate"):
                calib = build_synthetic(
                    model,
                    tokenizer,
                    corpus,
                    job.nsamples,
                    job.seqlen,
                    job.seed,
                    job.generation,
                    work_dir=work_dir,
                    overwrite=overwrite,
                    progress=progress,
                    windows=job.windows,
                )
        elif job.strategy == "detect":
            with tracker.stage("detect"):
                calib = build_detected(
                    model,
                    tokenizer,
                    corpus,
                    job.nsamples,
                    job.seqlen,
                    job.seed,
                    job.keep_top,
                    job.mink_k,
                    job.num_candidates,
                    job.detector,
                    progress=progress,
                    windows=job.windows,
                )
        else:
            raise CalibpruneError(f"unknown calibration strategy {job.strategy!r}: use sample, synthetic or detect")
    calib.manifest["model"] = str(model_name)
    calib.manifest["argv"] = None if argv is None else list(argv)
    calib.manifest["environment"] = environment()
    if job.strategy != "sample":  # where the model generated / scored, with the GPU's peak memory
        calib.manifest["environment"]["compute"] = {
            **device_record(run_device, next(model.parameters()).dtype),
            "stages": tracker.to_dict(),
        }
    if output is not None:
        calib.save(output, overwrite=overwrite)
    if work_dir is not None:
        shutil.rmtree(work_dir, ignore_errors=True)
    return calib
