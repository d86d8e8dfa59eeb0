"""How much to prune in each decoder block: uniform, or OWL.

OWL (Yin et al., "Outlier Weighed Layerwise Sparsity", ICML 2024). On the dense model,
for each block b, with Wanda scores S = |W| * ||X_j|| of all its pruned layers:

    r_b  = share of scores above M * mean(S)           (outlier ratio, M = 5)
    r'_b = (r_b - min r) / (max r - min r) * 2 lambda  (normalised to [0, 2 lambda])
    s_b  = s - (r'_b - mean r')                        (block sparsity)

so blocks with more outliers are pruned less and the mean block sparsity is the
target s. For N:M patterns the published structured variant
(``prune_wanda_outlier_structure_special``) gives each block its own N: r'_b
normalised to [0, lambda_nm], d_b = round(r'_b - mean r') (half to even), a d_b of
exactly 1 raised to 2 (as that code does), N_b = N - d_b.
The outlier ratios come from one sequential pass over the *dense* model (inputs flow
through unpruned blocks), as in the reference code.

Each allocation is a registered :class:`Allocation` (:data:`ALLOCATIONS`), with a
``revision`` to bump whenever its block targets change for some input (see
:mod:`calibprune.pruning.methods`); the engine dispatches through the registry.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..calibration import CalibrationSet
from ..config import OWLOptions, PruneConfig, SparsityTarget
from ..models.layers import find_decoder_blocks, weight_matrix
from ..models.placement import BlockPlacement
from ..options import OptionError
from .blocks import iterate_blocks
from .catalog import ALLOCATIONS  # declared there, torch-free


def outlier_ratio(scores: list[torch.Tensor], hyper_m: float) -> float:
    """Share (in %) of all given scores above ``hyper_m`` times their mean."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    return float((flat > hyper_m * flat.mean()).float().mean()) * 100.0


def _normalised(ratios: list[float], scale: float) -> torch.Tensor:
    r = torch.tensor(ratios, dtype=torch.float64)
    spread = r.max() - r.min()
    if spread == 0:  # identical blocks: nothing to redistribute
        return torch.zeros_like(r)
    return (r - r.min()) / spread * scale


def owl_sparsities(ratios: list[float], target: float, lam: float) -> list[float]:
    """Block sparsities s - (r' - mean r') with r' in [0, 2 lambda]."""
    norm = _normalised(ratios, 2 * lam)
    sparsities = (target - (norm - norm.mean())).tolist()
    bad = [s for s in sparsities if not 0 <= s < 1]
    if bad:
        raise OptionError("owl.lam", f"OWL gave block sparsities {bad} outside [0, 1): lower {{owl.lam}}")
    return sparsities


def owl_nm(ratios: list[float], n: int, m: int, nm_lambda: float) -> list[int]:
    """Per-block N for the mixed N:M variant: N - d, d = round(r' - mean r') with a d of
    1 raised to 2 (the reference's rule), r' in [0, lambda_nm]."""
    norm = _normalised(ratios, nm_lambda)
    shifts = torch.round(norm - norm.mean())
    shifts[shifts == 1.0] = 2.0
    ns = [n - int(v) for v in shifts.tolist()]
    bad = [v for v in ns if not 0 < v < m]
    if bad:
        raise OptionError(
            "owl.nm_lambda", f"OWL gave N values {bad} outside 1..{m - 1} for M={m}: lower {{owl.nm_lambda}}"
        )
    return ns


@torch.no_grad()
def measure_outlier_ratios(
    model: nn.Module,
    calibration: CalibrationSet,
    config: PruneConfig,
    progress: bool = True,
    placement: BlockPlacement | None = None,
) -> dict[int, float]:
    """Outlier ratio of every block that has selected layers, from the dense model."""
    _, blocks = find_decoder_blocks(model)
    ratios: dict[int, float] = {}
    bar = tqdm(total=len(blocks), desc="owl outlier ratios", unit="block", disable=not progress, leave=False)
    for work in iterate_blocks(model, calibration, config, frozenset({"sq"}), read_only=True, placement=placement):
        scores = [
            weight_matrix(layer).abs() * work.stats[leader].col_norm
            for leader, names in work.groups.items()
            for layer in (work.layers[n] for n in names)
        ]
        ratios[work.index] = outlier_ratio(scores, config.owl.hyper_m)
        bar.update(work.index + 1 - bar.n)
    bar.close()
    return ratios


class Allocation:
    """How much to prune in each decoder block. ``needs_calibration``: whether it looks at
    activations (then the engine collects calibration data even for magnitude)."""

    name: str = ""
    needs_calibration: bool = False
    revision: int = 1  # bump when the block targets change (module docstring)
    uses: tuple[str, ...] = ()

    def allocate(
        self,
        model: nn.Module,
        calibration: CalibrationSet | None,
        config: PruneConfig,
        progress: bool = True,
        placement: BlockPlacement | None = None,
    ) -> tuple[dict[int, SparsityTarget], dict]:
        """Target of every block (index -> SparsityTarget) and what the report should say."""
        raise NotImplementedError


@ALLOCATIONS.register("uniform")
class Uniform(Allocation):
    """Every block at the configured target."""

    name = "uniform"

    def allocate(self, model, calibration, config, progress=True, placement=None):
        _, blocks = find_decoder_blocks(model)
        return {i: config.target for i in range(len(blocks))}, {"method": "uniform"}


@ALLOCATIONS.register("owl")
class OWL(Allocation):
    """OWL block sparsities (or per-block N for mixed N:M) from the dense model's outlier ratios."""

    name = "owl"
    needs_calibration = True

    def allocate(self, model, calibration, config, progress=True, placement=None):
        find_decoder_blocks(model)  # a model without decoder blocks is refused first, whatever the data
        if calibration is None:
            raise OptionError(
                "allocation", "{allocation=owl} needs calibration data (its outlier ratios come from activations)"
            )
        owl: OWLOptions = config.owl
        ratios = measure_outlier_ratios(model, calibration, config, progress, placement)
        indices = sorted(ratios)
        values = [ratios[i] for i in indices]
        info = {"method": "owl", "hyper_m": owl.hyper_m, "outlier_ratios": dict(zip(indices, values, strict=True))}
        target = config.target
        if target.is_nm:
            ns = owl_nm(values, target.n, target.m, owl.nm_lambda)
            info.update(nm_lambda=owl.nm_lambda, block_n=dict(zip(indices, ns, strict=True)))
            return {i: SparsityTarget.nm(n, target.m) for i, n in zip(indices, ns, strict=True)}, info
        sparsities = owl_sparsities(values, target.ratio, owl.lam)
        info.update(lam=owl.lam, block_sparsity=dict(zip(indices, sparsities, strict=True)))
        return {i: SparsityTarget.unstructured(s) for i, s in zip(indices, sparsities, strict=True)}, info


def get_allocation(name: str) -> Allocation:
    return ALLOCATIONS.create(name)


def allocate(
    model: nn.Module,
    calibration: CalibrationSet | None,
    config: PruneConfig,
    progress: bool = True,
    placement: BlockPlacement | None = None,
) -> tuple[dict[int, SparsityTarget], dict]:
    """Target of every block (index -> SparsityTarget) and what the report should say."""
    return get_allocation(config.allocation).allocate(model, calibration, config, progress, placement)
