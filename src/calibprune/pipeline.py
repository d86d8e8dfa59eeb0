"""Compatibility names for code written against the old ``calibprune.pipeline`` module.

The jobs now live in :mod:`calibprune.jobs` (one module per job) and the Python API in
:mod:`calibprune.api`; import from there. This module only re-exports their public names.
"""

from .api import prune
from .calibration.generation_log import finished_batches, generation_work_dir
from .jobs.calibrate import CalibJob, run_calib
from .jobs.evaluate import evaluate_perplexities, evaluate_task_request, run_eval
from .jobs.prune import REPORT_NAME, annotate_report, run_prune, save_pruned
from .jobs.requests import (
    DEFAULT_NSAMPLES,
    DEFAULT_SEQLEN,
    CalibrationRequest,
    PerplexityRequest,
    TaskRequest,
    check_seqlen,
)

__all__ = [
    "DEFAULT_NSAMPLES",
    "DEFAULT_SEQLEN",
    "REPORT_NAME",
    "CalibJob",
    "CalibrationRequest",
    "PerplexityRequest",
    "TaskRequest",
    "annotate_report",
    "check_seqlen",
    "evaluate_perplexities",
    "evaluate_task_request",
    "finished_batches",
    "generation_work_dir",
    "prune",
    "run_calib",
    "run_eval",
    "run_prune",
    "save_pruned",
]
