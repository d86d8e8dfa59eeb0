"""``calibprune prune``: validate everything, then load, prune, [evaluate], save.

The order is the contract of "bad input fails fast": every check that needs only
the arguments, the model's config or a weightless copy of the model, or the tokenizer
and corpus runs before the weights are loaded and before anything is written.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..calibration import CalibrationSet
from ..config import PruneConfig
from ..corpora import local_source
from ..estimate import listening, silent
from ..models.checkpoint import Checkpoint, checkpoint_folder
from ..models.loading import load_config, load_tokenizer, meta_model, model_folder, parse_dtype, resolve_model
from ..models.offload import check_offload, choose_offload, open_model, run_dtype, weight_bytes
from ..options import OptionError, command_line
from ..pruning.catalog import needs_calibration
from ..pruning.engine import prune_model, validate
from ..results import PerplexityResult, PruneReport
from ..utils.device import device_record, free_memory_bytes, resolve_device
from ..utils.io import atomic_directory, check_output_dir, write_json
from ..utils.provenance import environment
from ..utils.resources import StageTracker
from .estimates import prune_estimate
from .evaluate import evaluate_perplexities, evaluate_task_request, resolve_batch_sizes
from .requests import CalibrationRequest, PerplexityRequest, Say, TaskRequest, check_seqlen, perplexity_sources

REPORT_NAME = "prune_report.json"


def run_prune(
    model_name: str,
    config: PruneConfig,
    calib: CalibrationRequest,
    output: str | Path | None,
    overwrite: bool = False,
    ppl: PerplexityRequest | None = None,
    dtype: str | None = None,
    progress: bool = True,
    tasks: TaskRequest | None = None,
    evaluate_dense: bool = True,
    say: Say = silent,
    device: str = "auto",
    offload: str = "auto",
    argv: list[str] | None = None,
) -> PruneReport:
    """``calibprune prune``: returns the report that is also written to ``output``.

    ``output=None`` keeps the pruned model in memory only (a study evaluates it and
    keeps the report); ``tasks`` evaluates the pruned model on lm-eval tasks;
    ``evaluate_dense=False`` skips the dense perplexity (a study caches it once per model);
    ``say`` receives one-line notices (the cost estimate) before the long stages.
    ``device``/``offload``: where blocks are computed and where the weights wait
    (:mod:`calibprune.models.offload`); ``offload="disk"`` streams each pruned block to
    ``output`` as soon as it is done. ``argv``: the command line (the CLI passes
    ``sys.argv``; None from Python), recorded in the report with every option given here.
    """
    started = time.perf_counter()
    options = {
        "model": str(model_name),
        "calibration": calib.to_dict(),
        "perplexity": asdict(ppl) if ppl else None,
        "tasks": asdict(tasks) if tasks else None,
        "evaluate_dense": evaluate_dense,
        "dtype": dtype,
        "device": device,
        "offload": offload,
        "output": None if output is None else str(output),
        "overwrite": overwrite,
    }
    # 1. arguments alone
    run_device = resolve_device(device)
    check_offload(offload)
    parse_dtype(dtype)
    calibrated = needs_calibration(config)  # also refuses unknown method / refinement names
    calib.check()
    ppl = ppl if ppl and ppl.corpora else None  # an empty request is no request
    tasks = tasks if tasks and tasks.names else None
    if ppl:
        ppl.check()
    if tasks:
        tasks.check()
    if output is not None:
        inputs = [("the {model} folder", model_folder(model_name)), ("{calib}", local_source(calib.source))]
        check_output_dir(output, overwrite, inputs + perplexity_sources(ppl))
    evaluates = bool(ppl or tasks or output is None)
    if offload in ("cpu", "disk") and evaluates:
        what = "{perplexity.corpora}/{tasks.names}" if ppl or tasks else "a run without {output}"
        raise OptionError(
            "offload",
            f"{{offload={offload}}} never holds the whole model, which {what} needs: prune with {{output}} and "
            f"evaluate the saved folder with `{command_line('eval', model='OUTPUT')}`, or pass {{offload=none}}",
        )
    tracker = StageTracker(device=run_device)
    # 2. model config, a weightless copy, the tokenizer, the calibration windows
    with tracker.stage("plan"):
        resolved = resolve_model(model_name)
        model_config = load_config(resolved)
        if calibrated and not calib.prebuilt:
            check_seqlen(calib.window_length, model_config)
        if ppl:
            check_seqlen(ppl.seqlen, model_config, "{perplexity.seqlen}")
        weights_dtype = run_dtype(resolved, model_config, dtype)
        skeleton = meta_model(model_config, weights_dtype)
        validate(skeleton, config)
        choice = choose_offload(
            offload,
            weight_bytes(skeleton, weights_dtype),
            run_device,
            free_memory_bytes(run_device),
            free_memory_bytes(torch.device("cpu")),
            evaluates,
        )
        if choice.value == "disk":
            Checkpoint(checkpoint_folder(resolved))  # no safetensors files: refused now, with the fix
        tokenizer = load_tokenizer(resolved)
    if choice.value != "none":
        say(f"offload: {choice.value} ({choice.reason})")
    calibration = None
    if calibrated:
        with tracker.stage("calibration"):
            calibration = calib.build(tokenizer)
            check_seqlen(calibration.seqlen, model_config, "the calibration windows' length")
    ppl_inputs = {}
    if ppl:
        with tracker.stage("ppl_inputs"):
            ppl_inputs = ppl.prepare(tokenizer)
    job = PruneJob(model_name, resolved, model_config, config, calibration, tokenizer, tracker, started)
    job.placement_record = {**device_record(run_device, weights_dtype), **choice.to_dict()}
    job.invocation = {"argv": None if argv is None else list(argv), "options": options}
    # 3. the expensive part, into a temporary sibling of ``output`` that appears complete or not
    # at all (--offload disk streams the pruned blocks into it as they are done)
    streams = choice.value == "disk"
    folder = atomic_directory(output, overwrite=overwrite) if output is not None else contextlib.nullcontext()
    with folder as tmp:
        with tracker.stage("load"):
            where = (tmp,) if streams else ()
            model, placement = open_model(resolved, model_config, choice.value, run_device, weights_dtype, *where)
        dense_inputs = ppl_inputs if evaluate_dense else {}
        if listening(say) and placement.name == "none":  # a forward pass is measured: only on a whole model
            with tracker.stage("estimate"):
                say(prune_estimate(model, config, calibration, dense_inputs, ppl_inputs).describe())
        probe = None
        if ppl or tasks:
            ppl, tasks, probe = resolve_batch_sizes(model, ppl, tasks)
        result: dict = {}
        if dense_inputs:
            with tracker.stage("ppl_dense"):
                result["dense"] = evaluate_perplexities(model, dense_inputs, ppl, progress)
        report = job.prune(model, placement, progress)
        if ppl:
            with tracker.stage("ppl_pruned"):
                result["pruned"] = evaluate_perplexities(model, ppl_inputs, ppl, progress)
        report.perplexity = PerplexityResult.from_json(result) if result else None
        if tasks:
            with tracker.stage("tasks_pruned"):
                report.tasks = evaluate_task_request(model, tokenizer, tasks, progress, probe)
        if tmp is not None:
            with tracker.stage("save"):
                write_model_folder(model, tokenizer, tmp, weights=not streams)
        return job.finish(report, tmp)


@dataclass
class PruneJob:
    """What :func:`run_prune` has planned: the pruning stage shared by every ``--offload``,
    and the one place its report is completed (:meth:`finish`)."""

    model_name: str
    resolved: str
    model_config: object
    config: PruneConfig
    calibration: CalibrationSet | None
    tokenizer: object
    tracker: StageTracker
    started: float
    placement_record: dict = field(default_factory=dict)
    invocation: dict = field(default_factory=lambda: {"argv": None, "options": None})

    def prune(self, model, placement, progress: bool) -> PruneReport:
        """Prune ``model`` and build the report."""
        calibration, config = self.calibration, self.config
        with self.tracker.stage("prune"):
            pruned = prune_model(model, calibration, config, progress=progress, placement=placement)
        report = {
            "command": "prune",
            **self.invocation,  # argv (None from Python) and the options as given
            "model": {
                "source": str(self.model_name),
                "resolved": self.resolved,
                "architecture": type(model).__name__,
                "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            },
            "device": {**self.placement_record, **placement.describe()},
            "config": config.to_dict(),
            "calibration": calibration.describe() if calibration is not None else None,
            "seeds": {"calibration": calibration.manifest.get("seed") if calibration is not None else None},
            **pruned,
            "perplexity": None,
            "environment": environment(),
        }
        return PruneReport.from_json(annotate_report(report))

    def finish(self, report: PruneReport, folder: Path | None = None) -> PruneReport:
        """The stages and the wall time, then ``prune_report.json`` in ``folder`` (if any)."""
        report.stages = self.tracker.to_dict()
        report.wall_s = round(time.perf_counter() - self.started, 3)
        if folder is not None:
            write_json(Path(folder) / REPORT_NAME, report.to_json())
        return report


def annotate_report(report: dict) -> dict:
    """Totals and units a reader of the report should not have to work out: DSnoT swaps
    summed over layers; OWL outlier ratios are percentages."""
    swaps = [r["dsnot_swaps"] for r in report.get("layers", {}).values() if "dsnot_swaps" in r]
    if swaps:
        report["summary"]["dsnot_swaps_total"] = sum(swaps)
        report["summary"]["dsnot_layers_refined"] = len(swaps)
    allocation = report.get("allocation") or {}
    if "outlier_ratios" in allocation:
        allocation["outlier_ratio_unit"] = "% of a block's Wanda scores above M x their mean"
    return report


def write_model_folder(model, tokenizer, folder: Path, weights: bool = True) -> None:
    """A plain Hugging Face folder: ``save_pretrained`` (``weights=False``: the config and
    generation config only, the weights being streamed there already) and the tokenizer."""
    if weights:
        model.save_pretrained(folder)
    else:
        model.config.save_pretrained(folder)
        if model.can_generate() and model.generation_config is not None:
            model.generation_config.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def save_pruned(
    model, tokenizer, output: str | Path, report: PruneReport | dict | None = None, overwrite: bool = False
) -> Path:
    """Write a pruned model as the CLI does: ``save_pretrained`` folder + tokenizer +
    ``prune_report.json`` (the report :func:`calibprune.prune` returned, plus the environment),
    atomically (the folder appears complete or not at all)."""
    check_output_dir(output, overwrite)
    report = report.to_json() if isinstance(report, PruneReport) else dict(report or {})
    report.setdefault("environment", environment())
    with atomic_directory(output, overwrite=overwrite) as tmp:
        write_model_folder(model, tokenizer, tmp)
        write_json(tmp / REPORT_NAME, report)
    return Path(output)
