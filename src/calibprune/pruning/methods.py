"""Pruning methods (scorers: magnitude, Wanda, SparseGPT) and mask refiners (DSnoT).

A method declares the input statistics it needs and turns one group of weight
matrices that share an input into new weights and masks. Score-based methods only
define :meth:`PruningMethod.scores`; the mask rules live in :mod:`masks`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch

from ..config import PruneConfig, SparsityTarget
from ..utils.registry import Registry
from .dsnot import dsnot_refine
from .masks import target_mask
from .sparsegpt import sparsegpt_prune
from .stats import InputStatistics

METHODS = Registry("pruning method")


@dataclass
class Pruned:
    """A method's decision for one layer: the mask (``True`` = pruned) and, for methods
    that also update the surviving weights (SparseGPT), the new weight matrix."""

    mask: torch.Tensor
    weight: torch.Tensor | None = None
    info: dict = field(default_factory=dict)


class PruningMethod:
    name: str = ""
    needs: frozenset[str] = frozenset()  # statistics kinds, see stats.py
    scope: str = "row"  # how unstructured sparsity is compared: per output row or per matrix

    def scores(self, weight: torch.Tensor, stats: InputStatistics | None) -> torch.Tensor:
        """Importance of each weight (low = pruned first), ``[rows, cols]``."""
        raise NotImplementedError

    def prune(
        self,
        weights: list[torch.Tensor],
        stats: InputStatistics | None,
        target: SparsityTarget,
        config: PruneConfig,
        names: list[str],
    ) -> list[Pruned]:
        """One :class:`Pruned` per weight of a group of layers sharing one input."""
        return [Pruned(target_mask(self.scores(w, stats), target, self.scope)) for w in weights]


@METHODS.register("magnitude")
class Magnitude(PruningMethod):
    """|W_ij|, one threshold per matrix (the published magnitude baseline)."""

    name = "magnitude"
    scope = "matrix"

    def scores(self, weight, stats):
        return weight.abs()


@METHODS.register("wanda")
class Wanda(PruningMethod):
    """Wanda (Sun et al., 2024): S_ij = |W_ij| * ||X_j||_2, compared within each output row."""

    name = "wanda"
    needs = frozenset({"sq"})

    def scores(self, weight, stats):
        return weight.abs() * stats.col_norm.unsqueeze(0)


@METHODS.register("sparsegpt")
class SparseGPT(PruningMethod):
    """SparseGPT (Frantar & Alistarh, 2023): OBS reconstruction, see sparsegpt.py."""

    name = "sparsegpt"
    needs = frozenset({"xxt"})

    def prune(self, weights, stats, target, config, names):
        # Rows are independent (per-row masks), so a group sharing one Hessian is one solve.
        stacked = torch.cat(weights, dim=0)
        new, mask, info = sparsegpt_prune(stacked, stats.hessian, target, config.sparsegpt, name="+".join(names))
        rows = [w.shape[0] for w in weights]
        return [Pruned(m, nw, info) for nw, m in zip(new.split(rows), mask.split(rows), strict=True)]


def get_method(name: str) -> PruningMethod:
    return METHODS.create(name)


REFINERS = Registry("refinement")


class Refiner:
    """Changes a method's mask (never the number pruned per row) using statistics."""

    name: str = ""
    needs: frozenset[str] = frozenset()

    def applies(self, local_name: str, config: PruneConfig) -> bool:
        return True

    def refine(
        self,
        weight: torch.Tensor,
        mask: torch.Tensor,
        stats: InputStatistics,
        target: SparsityTarget,
        config: PruneConfig,
    ) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


@REFINERS.register("dsnot")
class DSnoT(Refiner):
    """DSnoT prune-and-regrow (see dsnot.py); Wanda scores pick which kept weight to prune."""

    name = "dsnot"
    needs = frozenset({"sq", "sum"})

    def applies(self, local_name, config):
        return not any(fnmatch.fnmatchcase(local_name, pattern) for pattern in config.dsnot.skip)

    def refine(self, weight, mask, stats, target, config):
        importance = Wanda().scores(weight, stats)
        return dsnot_refine(
            weight, mask, stats.mean, stats.variance, importance, config.dsnot, nm_m=target.m if target.is_nm else None
        )


def get_refiner(name: str) -> Refiner | None:
    return None if name == "none" else REFINERS.create(name)
