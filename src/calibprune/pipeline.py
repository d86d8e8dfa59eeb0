"""End-to-end jobs behind the CLI: validate everything, then load, prune, save.

The order is the contract of "bad input fails fast": every check that needs only
the arguments, the model's config or a weightless copy of the model, or the tokenizer
and corpus runs before the weights are loaded and before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from .calibration import (
    CalibrationSet,
    GenerationOptions,
    build_calibration,
    build_detected,
    build_synthetic,
    check_sampling_args,
    is_calibration_folder,
)
from .calibration.filters import check_keep_top
from .config import PruneConfig
from .corpora import DEFAULT_ENCODING, get_corpus, local_source
from .errors import CalibpruneError
from .estimate import (
    Estimate,
    RunEstimate,
    forward_rate,
    generation_rate,
    listening,
    perplexity_part,
    prune_passes,
    silent,
)
from .evaluation.perplexity import PPL_PROTOCOL, PROTOCOLS, PerplexityInputs, perplexity_inputs, score_perplexity
from .models.checkpoint import Checkpoint, checkpoint_folder
from .models.loading import (
    load_config,
    load_model,
    load_tokenizer,
    max_sequence_length,
    meta_model,
    model_folder,
    parse_dtype,
    resolve_model,
)
from .models.offload import check_offload, choose_offload, open_model, run_dtype, weight_bytes
from .pruning.engine import needs_calibration, prune_model, validate
from .scoring.membership import check_k
from .utils.device import device_record, free_memory_bytes, resolve_device
from .utils.io import atomic_directory, check_output_dir, check_output_file, write_json
from .utils.keys import KEYED_WHEN_SET
from .utils.provenance import environment
from .utils.resources import StageTracker

REPORT_NAME = "prune_report.json"
DEFAULT_NSAMPLES, DEFAULT_SEQLEN = 128, 2048  # the published code's calibration defaults

Say = Callable[[str], None]


@dataclass
class CalibrationRequest:
    """``--calib`` and its sampling options.

    ``nsamples``/``seqlen`` left at None mean 128 x 2048 for a source that is sampled,
    and the set's own size for a prebuilt set (in memory or a folder). Given for a
    prebuilt set, they are honoured by taking its first ``nsamples`` windows cut to
    their first ``seqlen`` tokens, or refused when the set is too small.
    """

    source: str | CalibrationSet = "wiki-en"
    nsamples: int | None = None
    seqlen: int | None = None
    seed: int = 0
    sampling: str | None = None
    text_field: str = "text"
    windows: str = "disjoint"
    encoding: str = DEFAULT_ENCODING

    @property
    def prebuilt(self) -> bool:
        """An in-memory set or a saved set folder: it brings its own nsamples/seqlen."""
        return isinstance(self.source, CalibrationSet) or is_calibration_folder(self.source)

    @property
    def window_count(self) -> int:
        return DEFAULT_NSAMPLES if self.nsamples is None else self.nsamples

    @property
    def window_length(self) -> int:
        return DEFAULT_SEQLEN if self.seqlen is None else self.seqlen

    def check(self) -> None:
        if self.prebuilt:
            for flag, value in (("--nsamples", self.nsamples), ("--seqlen", self.seqlen)):
                if value is not None and value < 1:
                    raise CalibpruneError(f"{flag} {value} must be >= 1")
        else:
            check_sampling_args(self.window_count, self.window_length, self.sampling, self.windows)

    def to_dict(self) -> dict:
        """The request as given (an in-memory set is named by its one-line repr)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["source"] = self.source if isinstance(self.source, str) else repr(self.source)
        return out

    def build(self, tokenizer) -> CalibrationSet:
        calibration = build_calibration(
            self.source,
            tokenizer,
            self.window_count,
            self.window_length,
            self.seed,
            mode=self.sampling,
            text_field=self.text_field,
            windows=self.windows,
            encoding=self.encoding,
        )
        if self.prebuilt:
            if not isinstance(self.source, CalibrationSet):
                calibration.manifest["folder"] = str(Path(self.source).resolve())
            calibration = calibration.head(self.nsamples, self.seqlen)
        return calibration


@dataclass
class PerplexityRequest:
    corpora: list[str] = field(default_factory=list)
    seqlen: int = 2048
    max_windows: int | None = None
    batch_size: int | str = 1  # or "auto"
    protocol: str = PPL_PROTOCOL
    split: str | None = None  # default: held-out pool of registered corpora, all of a local file
    encoding: str = field(default=DEFAULT_ENCODING, metadata=KEYED_WHEN_SET)  # of local files

    def check(self) -> None:
        from .evaluation.batching import parse_batch_size

        parse_batch_size(self.batch_size)
        if self.protocol not in PROTOCOLS:
            raise CalibpruneError(f"unknown perplexity protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}")
        for corpus in self.resolve():  # unknown names fail here, listing the known ones
            corpus.check_readable()  # an undecodable local file fails before the model is loaded

    def resolve(self) -> list:
        return [get_corpus(name, encoding=self.encoding) for name in self.corpora]

    def prepare(self, tokenizer) -> dict[str, PerplexityInputs]:
        """The sequences to score per corpus: tokenized once, before the model is loaded,
        for the estimate and for every pass (dense, pruned)."""
        return {
            name: perplexity_inputs(tokenizer, corpus, self.seqlen, self.max_windows, self.split, self.protocol)
            for name, corpus in zip(self.corpora, self.resolve(), strict=True)
        }


@dataclass
class TaskRequest:
    """``calibprune eval --tasks``: lm-eval tasks on the in-memory model."""

    names: list[str] = field(default_factory=list)
    limit: int | None = None
    seed: int = 0
    mmlu_shots: int = 5
    batch_size: int | str = 8  # or "auto"
    scoring: str = "shared-prefix"

    def check(self) -> None:
        from .evaluation.batching import parse_batch_size
        from .evaluation.harness import resolve_tasks
        from .evaluation.prefix import SCORING_PATHS

        if self.limit is not None and self.limit <= 0:
            raise CalibpruneError(f"--limit {self.limit} must be >= 1")
        if self.scoring not in SCORING_PATHS:
            raise CalibpruneError(f"--scoring {self.scoring!r} is unknown: use one of {', '.join(SCORING_PATHS)}")
        parse_batch_size(self.batch_size)
        resolve_tasks(self.names, self.mmlu_shots)  # unknown tasks / missing data fail before loading


def check_seqlen(seqlen: int, config, what: str = "--seqlen") -> None:
    """Refuse (never silently clamp) a window longer than the model supports."""
    limit = max_sequence_length(config)
    if limit is not None and seqlen > limit:
        raise CalibpruneError(
            f"{what} {seqlen} exceeds the model's maximum sequence length {limit}: pass {what} {limit} or less"
        )


def evaluate_perplexities(
    model, inputs: dict[str, PerplexityInputs], request: PerplexityRequest, progress: bool = True
) -> dict:
    """Perplexity per corpus of ``inputs`` (from :meth:`PerplexityRequest.prepare`)."""
    return {name: score_perplexity(model, i, request.batch_size, progress) for name, i in inputs.items()}


def evaluate_task_request(model, tokenizer, request: TaskRequest, progress: bool = True) -> dict:
    """lm-eval tasks of ``request`` on the in-memory model."""
    from .evaluation.harness import evaluate_tasks

    return evaluate_tasks(
        model,
        tokenizer,
        request.names,
        limit=request.limit,
        seed=request.seed,
        mmlu_shots=request.mmlu_shots,
        batch_size=request.batch_size,
        progress=progress,
        scoring=request.scoring,
    )


def _ppl_inputs(ppl: PerplexityRequest | None) -> list[tuple[str, str | None]]:
    """The local files --ppl reads (an output must not overlap them)."""
    return [("--ppl", local_source(name)) for name in (ppl.corpora if ppl else [])]


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
) -> dict:
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
        inputs = [("the --model folder", model_folder(model_name)), ("--calib", local_source(calib.source))]
        check_output_dir(output, overwrite, inputs + _ppl_inputs(ppl))
    evaluates = bool(ppl or tasks or output is None)
    if offload in ("cpu", "disk") and evaluates:
        what = "--ppl/--tasks" if ppl or tasks else "a run without --output"
        raise CalibpruneError(
            f"--offload {offload} never holds the whole model, which {what} needs: prune with --output and "
            "evaluate the saved folder with `calibprune eval --model OUTPUT`, or pass --offload none"
        )
    tracker = StageTracker(device=run_device)
    # 2. model config, a weightless copy, the tokenizer, the calibration windows
    with tracker.stage("plan"):
        resolved = resolve_model(model_name)
        model_config = load_config(resolved)
        if calibrated and not calib.prebuilt:
            check_seqlen(calib.window_length, model_config)
        if ppl:
            check_seqlen(ppl.seqlen, model_config, "--ppl-seqlen")
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
    job = _PruneJob(model_name, resolved, model_config, config, calibration, tokenizer, tracker, started)
    job.placement_record = {**device_record(run_device, weights_dtype), **choice.to_dict()}
    job.invocation = {"argv": None if argv is None else list(argv), "options": options}
    # 3. the expensive part
    if choice.value == "disk":  # pruned blocks stream into the output folder as they are done
        with atomic_directory(output, overwrite=overwrite) as tmp:
            with tracker.stage("load"):
                model, placement = open_model(resolved, model_config, "disk", run_device, weights_dtype, tmp)
            report = job.prune(model, placement, progress)
            with tracker.stage("save"):
                model.config.save_pretrained(tmp)
                if model.can_generate() and model.generation_config is not None:
                    model.generation_config.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
            report["stages"] = tracker.to_dict()
            report["wall_s"] = round(time.perf_counter() - started, 3)
            write_json(tmp / REPORT_NAME, report)
        return report
    with tracker.stage("load"):
        model, placement = open_model(resolved, model_config, choice.value, run_device, weights_dtype)
    dense_inputs = ppl_inputs if evaluate_dense else {}
    if listening(say) and placement.name == "none":  # a forward pass is measured: only on a whole model
        with tracker.stage("estimate"):
            say(_prune_estimate(model, config, calibration, dense_inputs, ppl_inputs).describe())
    result: dict = {}
    if dense_inputs:
        with tracker.stage("ppl_dense"):
            result["dense"] = evaluate_perplexities(model, dense_inputs, ppl, progress)
    report = job.prune(model, placement, progress)
    if ppl:
        with tracker.stage("ppl_pruned"):
            result["pruned"] = evaluate_perplexities(model, ppl_inputs, ppl, progress)
    report["perplexity"] = result or None
    if tasks:
        with tracker.stage("tasks_pruned"):
            report["tasks"] = evaluate_task_request(model, tokenizer, tasks, progress)
    if output is None:
        report["stages"] = tracker.to_dict()
        report["wall_s"] = round(time.perf_counter() - started, 3)
        return report
    save_pruned(model, tokenizer, output, report, overwrite=overwrite, stages=tracker, started=started)
    return report


@dataclass
class _PruneJob:
    """What :func:`run_prune` has planned, and the pruning stage shared by every ``--offload``."""

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

    def prune(self, model, placement, progress: bool) -> dict:
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
        return annotate_report(report)


def _probe_window(calibration: CalibrationSet | None, inputs: dict[str, PerplexityInputs]) -> torch.Tensor:
    """What the rate probe runs: one calibration window, else one perplexity sequence (<= 512 tokens)."""
    if calibration is not None:
        return calibration.input_ids[:1, : min(calibration.seqlen, 512)]
    return torch.tensor([next(iter(inputs.values())).sequences[0][:512]], dtype=torch.long)


def _prune_estimate(model, config, calibration, dense_inputs: dict, pruned_inputs: dict) -> RunEstimate:
    """What ``prune`` will compute, in order: [dense perplexity], [pruning], [pruned perplexity]."""
    parts = []
    if dense_inputs:
        parts.append(perplexity_part("dense perplexity", dense_inputs))
    if calibration is not None:
        what = f"pruning calibrates on {calibration.nsamples} windows x {calibration.seqlen} tokens"
        parts.append(Estimate(what, calibration.nsamples * calibration.seqlen, prune_passes(config)))
    if pruned_inputs:
        parts.append(perplexity_part("pruned perplexity", pruned_inputs))
    rate = forward_rate(model, _probe_window(calibration, pruned_inputs)) if parts else None
    return RunEstimate("prune", tuple(parts), rate, () if parts else ("no calibration data, no perplexity",))


def _eval_estimate(model, ppl_inputs: dict, tasks: TaskRequest | None) -> RunEstimate:
    """What ``eval`` will compute: perplexity in tokens at a measured rate; lm-eval tasks in documents
    (their token counts are known only once lm-eval has built the requests)."""
    parts = (perplexity_part("perplexity", ppl_inputs),) if ppl_inputs else ()
    rate = forward_rate(model, _probe_window(None, ppl_inputs)) if ppl_inputs else None
    notes = ()
    if tasks:
        from .evaluation.harness import documents_per_task

        counts = documents_per_task(tasks.names, tasks.limit, tasks.mmlu_shots)
        known = {name: n for name, n in counts.items() if n is not None}
        listed = ", ".join(
            f"{name} {n:,}" if n is not None else f"{name} (count unknown offline)" for name, n in counts.items()
        )
        notes = (
            f"lm-eval tasks on {sum(known.values()):,} documents ({listed}); their time shows on the bar once "
            "lm-eval has built the requests",
        )
    return RunEstimate("eval", parts, rate, notes)


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


def save_pruned(
    model,
    tokenizer,
    output: str | Path,
    report: dict | None = None,
    overwrite: bool = False,
    stages: StageTracker | None = None,
    started: float | None = None,
) -> Path:
    """Write a pruned model as the CLI does: ``save_pretrained`` folder + tokenizer +
    ``prune_report.json`` (the dict :func:`prune` returned, plus the environment),
    atomically (the folder appears complete or not at all)."""
    check_output_dir(output, overwrite)
    report = dict(report or {})
    report.setdefault("environment", environment())
    with atomic_directory(output, overwrite=overwrite) as tmp:
        with stages.stage("save") if stages is not None else contextlib.nullcontext():
            model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
        if stages is not None:
            report["stages"] = stages.to_dict()
        if started is not None:
            report["wall_s"] = round(time.perf_counter() - started, 3)
        write_json(tmp / REPORT_NAME, report)
    return Path(output)


def run_eval(
    model_name: str,
    ppl: PerplexityRequest | None = None,
    tasks: TaskRequest | None = None,
    output: str | Path | None = None,
    dtype: str | None = None,
    progress: bool = True,
    device: str = "auto",
    overwrite: bool = False,
    argv: list[str] | None = None,
    say: Say = silent,
) -> dict:
    """``calibprune eval``: lm-eval tasks and/or perplexity of a model folder, preset or hub id;
    ``output``: a JSON file, replaced only with ``overwrite``. ``argv`` (the CLI's
    ``sys.argv``) and the options are recorded in the report. ``say`` receives the cost
    estimate (perplexity tokens at a measured rate, lm-eval documents) after loading,
    before any evaluation."""
    options = {
        "model": str(model_name),
        "perplexity": asdict(ppl) if ppl else None,
        "tasks": asdict(tasks) if tasks else None,
        "dtype": dtype,
        "device": device,
        "output": None if output is None else str(output),
    }
    run_device = resolve_device(device)
    parse_dtype(dtype)
    ppl = ppl if ppl and ppl.corpora else None  # an empty request is no request
    tasks = tasks if tasks and tasks.names else None
    if not (ppl or tasks):
        raise CalibpruneError("nothing to evaluate: pass --tasks (e.g. boolq,piqa) and/or --ppl (e.g. wiki-en)")
    if tasks:
        tasks.check()
    if ppl:
        ppl.check()
    if output:
        check_output_file(output, overwrite, [("the --model folder", model_folder(model_name)), *_ppl_inputs(ppl)])
    resolved = resolve_model(model_name)
    if ppl:
        check_seqlen(ppl.seqlen, load_config(resolved), "--ppl-seqlen")
    tokenizer = load_tokenizer(resolved)
    tracker = StageTracker(device=run_device)
    ppl_inputs = {}
    if ppl:
        with tracker.stage("ppl_inputs"):
            ppl_inputs = ppl.prepare(tokenizer)
    with tracker.stage("load"):
        model = load_model(resolved, dtype=dtype, device=run_device)
    if listening(say):
        with tracker.stage("estimate"):
            say(_eval_estimate(model, ppl_inputs, tasks).describe())
    report: dict = {
        "command": "eval",
        "argv": None if argv is None else list(argv),
        "options": options,
        "model": {"source": str(model_name), "resolved": resolved},
    }
    report["device"] = device_record(run_device, next(model.parameters()).dtype)
    if "auto" in (getattr(tasks, "batch_size", None), getattr(ppl, "batch_size", None)):
        from .evaluation.batching import pick_batch_size

        with tracker.stage("batch-size"):  # one probe serves tasks and perplexity
            report["batch_size"] = pick_batch_size(model)
        chosen = report["batch_size"]["chosen"]
        tasks = replace(tasks, batch_size=chosen) if tasks and tasks.batch_size == "auto" else tasks
        ppl = replace(ppl, batch_size=chosen) if ppl and ppl.batch_size == "auto" else ppl
    if tasks:
        with tracker.stage("tasks"):
            report["tasks"] = evaluate_task_request(model, tokenizer, tasks, progress)
    if ppl:
        with tracker.stage("perplexity"):
            report["perplexity"] = evaluate_perplexities(model, ppl_inputs, ppl, progress)
    report["stages"] = tracker.to_dict()
    report["environment"] = environment()
    if output:
        write_json(output, report)
    return report


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


def generation_work_dir(output: str | Path) -> Path:
    """Where a resumable generation for ``output`` keeps its finished batches."""
    output = Path(output)
    return output.parent / f".{output.name}.generation"


def finished_batches(work_dir: Path) -> tuple[int, int]:
    """(batches, texts) an interrupted generation left in ``work_dir`` (a torn last line
    does not count; :class:`~calibprune.calibration.synthetic.GenerationLog` drops it)."""
    batches: set[int] = set()
    texts = 0
    log = work_dir / "generations.jsonl"
    if log.exists():
        with open(log, encoding="utf-8") as f:
            for line in f:
                try:
                    batches.add(json.loads(line)["batch"])
                except (json.JSONDecodeError, KeyError):
                    break
                texts += 1
    return len(batches), texts


def _announce_generation(model, tokenizer, job: CalibJob, work_dir, overwrite: bool, say: Say) -> None:
    """Cost of the first generation round, measured here, and where a rerun resumes."""
    from .calibration.synthetic import start_token

    options = job.generation.resolve(job.seqlen)
    texts = options.first_round(job.nsamples)
    batches = -(-texts // options.batch_size)
    start = (start_token(tokenizer)["ids"] or [tokenizer.eos_token_id or 0])[0]
    rate = generation_rate(model, options.batch_size, start, options.sampling())
    rounds = "" if job.generation.num_texts else "; more rounds if texts stop early"
    what = (
        f"self-generation of {texts} texts x up to {options.max_new_tokens} new tokens "
        f"({batches} batches of {options.batch_size}{rounds})"
    )
    say(Estimate(what, texts * options.max_new_tokens, 1.0, rate).describe())
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
        from .calibration import sample_windows

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


@torch.no_grad()
def prune(
    model,
    calibration: CalibrationSet | torch.Tensor | None = None,
    *,
    method: str = "wanda",
    sparsity: float | None = None,
    pattern: str | None = None,
    progress: bool = True,
    **options,
) -> dict:
    """Python twin of ``calibprune prune`` for an in-memory model; prunes it in place.

    ``calibration`` is a :class:`CalibrationSet` or an ``[nsamples, seqlen]`` token tensor.
    ``options`` are :class:`PruneConfig` fields (``targets``, ``ignore``, ``sparsegpt``, ``runner``).
    """
    from .config import SparsityTarget

    config = PruneConfig(method=method, target=SparsityTarget.parse(sparsity, pattern), **options)
    if isinstance(calibration, torch.Tensor):
        calibration = CalibrationSet(calibration, manifest={"source": "tensor"})
    return annotate_report(prune_model(model, calibration, config, progress=progress))
