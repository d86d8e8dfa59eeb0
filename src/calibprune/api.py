"""The Python API's own functions: twins of the CLI commands that take in-memory objects.

``calibprune.prune`` and ``calibprune.save_pruned`` (see :mod:`calibprune`) come from here.
"""

from __future__ import annotations

import torch

from .calibration import CalibrationSet
from .config import PruneConfig, SparsityTarget
from .jobs.prune import annotate_report, save_pruned
from .pruning.engine import prune_model
from .results import PruneReport

__all__ = ["prune", "save_pruned"]


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
) -> PruneReport:
    """Python twin of ``calibprune prune`` for an in-memory model; prunes it in place.

    ``calibration`` is a :class:`CalibrationSet` or an ``[nsamples, seqlen]`` token tensor.
    ``options`` are :class:`PruneConfig` fields (``targets``, ``ignore``, ``sparsegpt``, ``runner``).
    Returns the engine's part of the report (``layers``, ``allocation``, ``summary``,
    ``batching``, ``activations``): a :class:`~calibprune.results.PruneReport`, also readable by key.
    """
    config = PruneConfig(method=method, target=SparsityTarget.parse(sparsity, pattern), **options)
    if isinstance(calibration, torch.Tensor):
        calibration = CalibrationSet(calibration, manifest={"source": "tensor"})
    return PruneReport.from_json(annotate_report(prune_model(model, calibration, config, progress=progress)))
