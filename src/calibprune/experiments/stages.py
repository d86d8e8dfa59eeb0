"""What a worker does for one stage: the same pipeline jobs the CLI runs, in memory.

:func:`execute` never raises: it returns a :class:`~calibprune.results.StageOutcome`, an
error one with ``ok=False``, its message and traceback, so one failing cell does not stop a
sweep and (under Ray) an application error is not mistaken for a lost node and retried.
Results travel back to the driver, which alone writes the run folder.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import replace

from ..results import CellResult, DenseResult, StageOutcome


def _pool(payload: dict, given, scratch):
    from ..jobs.calibrate import run_calib

    return run_calib(payload["model"], payload["job"], None, progress=False, work_dir=scratch)


def _calib(payload: dict, pool, scratch):
    from ..jobs.calibrate import run_calib

    if pool is None:
        return run_calib(payload["model"], payload["job"], None, progress=False, work_dir=scratch)
    # this seed's own generated pool, filtered at this arm's rate (every arm filters the same
    # texts), then windowed under the seed
    from ..calibration.sampling import set_from_pool
    from ..calibration.synthetic import refilter
    from ..models.loading import load_tokenizer, resolve_model

    job = payload["job"]
    tokenizer = load_tokenizer(resolve_model(payload["model"]))
    texts, manifest = refilter(pool, job.options.filter_top)
    what = "the {n} texts of the pool kept at this filter rate"
    return set_from_pool(texts, tokenizer, job.nsamples, job.seqlen, job.seed, "stream", what, manifest, job.windows)


def _dense(payload: dict, given, scratch):
    from ..jobs.evaluate import run_eval

    evaluation = payload["evaluation"]
    report = run_eval(payload["model"], evaluation.ppl, evaluation.tasks, dtype=payload["dtype"], progress=False)
    return DenseResult(metrics=report.metrics(), stages=report.stages)


def _cell(payload: dict, calibration, scratch):
    from ..jobs.prune import run_prune
    from ..jobs.requests import CalibrationRequest

    evaluation = payload["evaluation"]
    request = CalibrationRequest(source=calibration) if calibration is not None else CalibrationRequest()
    report = run_prune(
        payload["model"],
        payload["config"],
        request,
        payload.get("model_dir") if payload["keep_model"] else None,
        overwrite=True,
        ppl=replace(evaluation.ppl) if evaluation.ppl else None,
        tasks=evaluation.tasks,
        evaluate_dense=False,
        dtype=payload["dtype"],
        progress=False,
    )
    return CellResult.of_report(report)


RUNNERS = {"pool": _pool, "calib": _calib, "dense": _dense, "cell": _cell}


def execute(
    kind: str, payload: dict, given=None, scratch: str | None = None, threads: int | None = None
) -> StageOutcome:
    """Run one stage; ``given`` is the result of the stage it needs (a pool or calibration set).

    ``threads``: torch's CPU thread count for the stage (None: leave it as it is); the
    result records it with the platform (CPU model, instruction sets, library versions)."""
    import torch

    from ..utils.provenance import platform_record

    if threads:
        torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    try:
        value = RUNNERS[kind](payload, given, scratch)
        ok, error, trace = True, None, None
    except Exception as exc:  # recorded in the stage's own result; the sweep goes on
        value, ok, error, trace = None, False, f"{type(exc).__name__}: {exc}", traceback.format_exc()
    return StageOutcome(
        ok=ok,
        value=value,
        error=error,
        traceback=trace,
        wall_s=round(time.perf_counter() - started, 3),
        host=socket.gethostname(),
        threads=torch.get_num_threads(),
        platform=platform_record(),
    )
