"""``calibprune eval``: lm-eval tasks and/or perplexity of a model, and the evaluation
passes the prune job runs on its in-memory model."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from ..estimate import listening, silent
from ..evaluation.perplexity import PerplexityInputs, score_perplexity
from ..models.loading import load_config, load_model, load_tokenizer, model_folder, parse_dtype, resolve_model
from ..options import OptionError
from ..results import CorpusPerplexity, EvalResult
from ..utils.device import device_record, resolve_device
from ..utils.io import check_output_file, write_json
from ..utils.provenance import environment
from ..utils.resources import StageTracker
from .estimates import eval_estimate
from .requests import PerplexityRequest, Say, TaskRequest, check_seqlen, perplexity_sources


def evaluate_perplexities(
    model, inputs: dict[str, PerplexityInputs], request: PerplexityRequest, progress: bool = True
) -> dict[str, CorpusPerplexity]:
    """Perplexity per corpus of ``inputs`` (from :meth:`PerplexityRequest.prepare`)."""
    return {
        name: CorpusPerplexity.from_json(score_perplexity(model, i, request.batch_size, progress))
        for name, i in inputs.items()
    }


def resolve_batch_sizes(
    model, ppl: PerplexityRequest | None, tasks: TaskRequest | None
) -> tuple[PerplexityRequest | None, TaskRequest | None, dict | None]:
    """The one place ``batch_size="auto"`` is resolved: one probe of ``model``
    (:func:`~calibprune.evaluation.batching.pick_batch_size`) serves the tasks and the
    perplexity windows. Returns the requests with the chosen size and the probe (None: no
    request asked for auto)."""
    if "auto" not in (getattr(tasks, "batch_size", None), getattr(ppl, "batch_size", None)):
        return ppl, tasks, None
    from ..evaluation.batching import pick_batch_size

    probe = pick_batch_size(model)
    chosen = probe["chosen"]
    tasks = replace(tasks, batch_size=chosen) if tasks and tasks.batch_size == "auto" else tasks
    ppl = replace(ppl, batch_size=chosen) if ppl and ppl.batch_size == "auto" else ppl
    return ppl, tasks, probe


def evaluate_task_request(
    model, tokenizer, request: TaskRequest, progress: bool = True, probe: dict | None = None
) -> dict:
    """lm-eval tasks of ``request`` (its batch size resolved: :func:`resolve_batch_sizes`,
    whose ``probe`` is recorded with it) on the in-memory model."""
    from ..evaluation.harness import evaluate_tasks

    requested = {"requested": "auto", **probe} if probe is not None else {"requested": request.batch_size}
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
        batching=requested,
    )


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
) -> EvalResult:
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
        raise OptionError(
            "", "nothing to evaluate: pass {tasks.names} (e.g. boolq,piqa) and/or {perplexity.corpora} (e.g. wiki-en)"
        )
    if tasks:
        tasks.check()
    if ppl:
        ppl.check()
    if output:
        inputs = [("the {model} folder", model_folder(model_name)), *perplexity_sources(ppl)]
        check_output_file(output, overwrite, inputs)
    resolved = resolve_model(model_name)
    if ppl:
        check_seqlen(ppl.seqlen, load_config(resolved), "{perplexity.seqlen}")
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
            say(eval_estimate(model, ppl_inputs, tasks).describe())
    report: dict = {
        "command": "eval",
        "argv": None if argv is None else list(argv),
        "options": options,
        "model": {"source": str(model_name), "resolved": resolved},
    }
    report["device"] = device_record(run_device, next(model.parameters()).dtype)
    with tracker.stage("batch-size"):
        ppl, tasks, probe = resolve_batch_sizes(model, ppl, tasks)
    if probe is not None:
        report["batch_size"] = probe
    if tasks:
        with tracker.stage("tasks"):
            # the probe is the report's own entry (batch_size), as before
            report["tasks"] = evaluate_task_request(model, tokenizer, tasks, progress)
    if ppl:
        with tracker.stage("perplexity"):
            report["perplexity"] = evaluate_perplexities(model, ppl_inputs, ppl, progress)
    report["stages"] = tracker.to_dict()
    report["environment"] = environment()
    result = EvalResult.from_json(report)
    if output:
        write_json(output, result.to_json())
    return result
