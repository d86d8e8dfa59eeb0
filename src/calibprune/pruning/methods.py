"""Pruning methods (scorers: magnitude, Wanda, RIA, SparseGPT, ADMM) and mask refiners (DSnoT).

A method declares the input statistics it needs and turns one group of weight
matrices that share an input into new weights and masks. Score-based methods only
define :meth:`PruningMethod.scores`; the mask rules live in :mod:`masks`.

Every method and refiner declares a ``revision``: bump it in the same commit as any
change that moves its masks or weights for some input (stage keys include it, see
:mod:`calibprune.experiments.revisions`; ``tests/golden/revisions.json`` checks it).
``uses`` names the other algorithms whose code it calls (their revisions count too).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch

from ..config import PruneConfig, SparsityTarget
from ..errors import CalibpruneError
from ..options import OptionError
from .admm import ADMMOptions, admm_prune
from .catalog import METHODS, REFINERS  # declared there, torch-free
from .dsnot import dsnot_refine
from .masks import target_mask
from .permutation import permuted_nm_mask
from .ria import RIAOptions, ria_scores
from .sparsegpt import sparsegpt_prune
from .stats import InputStatistics


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
    revision: int = 1  # bump when the output changes (module docstring)
    uses: tuple[str, ...] = ()  # other algorithms it runs, e.g. "method/wanda"

    def validate(self, config: PruneConfig) -> None:
        """Refuse, before any work, a config this method cannot run (raise CalibpruneError)."""

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
        scope: str | None = None,
    ) -> list[Pruned]:
        """One :class:`Pruned` per weight of a group of layers sharing one input;
        ``scope`` overrides how unstructured scores are compared (a refiner may ask)."""
        return [Pruned(target_mask(self.scores(w, stats), target, scope or self.scope)) for w in weights]


@METHODS.register("magnitude")
class Magnitude(PruningMethod):
    """|W_ij|, one threshold per matrix (the published magnitude baseline, Wanda's
    ``prune_magnitude``: every weight <= sort(|W|)[int(numel * r)] pruned)."""

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


@METHODS.register("ria")
class RIA(PruningMethod):
    """RIA (Zhang et al., 2024): S_ij = (|W_ij| / sum_k |W_kj| + |W_ij| / sum_k |W_ik|)
    * ||X_j||^a, see ria.py; one threshold per matrix by default, as the reference. For
    N:M, ``options.permutation`` permutes the input channels first (permutation.py).
    The options are ``config.ria`` (:meth:`from_config`)."""

    name = "ria"
    needs = frozenset({"sq"})

    def __init__(self, options: RIAOptions = RIAOptions()):
        self.options = options
        self.scope = options.scope

    @classmethod
    def from_config(cls, config: PruneConfig) -> RIA:
        return cls(config.ria)

    def scores(self, weight, stats):
        return ria_scores(weight, stats.sq_per_sample, self.options.a)

    def prune(self, weights, stats, target, config, names, scope=None):
        if self.options.permutation == "none":
            return super().prune(weights, stats, target, config, names, scope)
        if not target.is_nm:  # PruneConfig refuses this before any work; a direct call is refused here
            raise OptionError("pattern", "RIA channel permutation applies to N:M patterns only: pass {pattern=N:M}")
        o, out = self.options, []
        for weight, name in zip(weights, names, strict=True):
            mask, _, info = permuted_nm_mask(
                self.scores(weight, stats), target.n, target.m, o.permutation, o.column_order, o.lsa_blocks, name
            )
            out.append(Pruned(mask, info=info))
        return out


@METHODS.register("sparsegpt")
class SparseGPT(PruningMethod):
    """SparseGPT (Frantar & Alistarh, 2023): OBS reconstruction, see sparsegpt.py.
    Layers fed one input share one Hessian and are solved as one stacked matrix."""

    name = "sparsegpt"
    needs = frozenset({"xxt"})

    def validate(self, config):
        target, blocksize = config.target, config.sparsegpt.blocksize
        if target.is_nm and blocksize % target.m:
            raise CalibpruneError(f"SparseGPT blocksize {blocksize} must be a multiple of M={target.m}")

    def prune(self, weights, stats, target, config, names, scope=None):
        # The OBS update of a row never reads another row, so a group sharing one Hessian is one solve.
        stacked = torch.cat(weights, dim=0)
        rows = [w.shape[0] for w in weights]
        new, mask, info = sparsegpt_prune(
            stacked, stats.hessian, target, config.sparsegpt, name="+".join(names), row_groups=rows
        )
        return [Pruned(m, nw, info) for nw, m in zip(new.split(rows), mask.split(rows), strict=True)]


@METHODS.register("admm")
class ADMM(PruningMethod):
    """ADMM weight update (Boža, 2024), see admm.py: with ``mask_method`` None (the
    default, ``admm.mask="gradual"``) the mask is selected gradually from the ADMM
    iterate, starting from Wanda's score; else the mask is ``mask_method``'s and only the
    weights are updated. Layers fed one input share one Gram matrix and are solved as one
    stacked matrix. The options are ``config.admm`` (:meth:`from_config`)."""

    name = "admm"  # its gradual mask computes its own first score (admm.py): Wanda's code is not run
    # a fixed mask (admm.mask) runs that method's code; a stage key covers every one it may run
    uses = ("method/magnitude", "method/wanda", "method/ria")

    def __init__(self, options: ADMMOptions = ADMMOptions(), mask_method: PruningMethod | None = None):
        self.options = options
        self.mask_method = mask_method
        self.needs = frozenset({"xxt"}) | (mask_method.needs if mask_method else frozenset())

    @classmethod
    def from_config(cls, config: PruneConfig) -> ADMM:
        mask = config.admm.mask
        return cls(config.admm, None if mask == "gradual" else build_method(config, mask))

    def scores(self, weight, stats):
        # the score of ADMM's first selection (|W_ij| ||X_j||), or the mask method's
        return self.mask_method.scores(weight, stats) if self.mask_method else Wanda().scores(weight, stats)

    def prune(self, weights, stats, target, config, names, scope=None):
        mask = None
        if self.mask_method is not None:
            mask = torch.cat([p.mask for p in self.mask_method.prune(weights, stats, target, config, names, scope)])
        rows = [w.shape[0] for w in weights]
        new, mask, info = admm_prune(
            torch.cat(weights), stats.gram, target, self.options, mask, name="+".join(names), row_groups=rows
        )
        return [Pruned(m, nw, info) for nw, m in zip(new.split(rows), mask.split(rows), strict=True)]


def get_method(name: str) -> PruningMethod:
    """The method ``name`` with its default options."""
    return METHODS.create(name)


def build_method(config: PruneConfig, name: str | None = None) -> PruningMethod:
    """The method a config names (or ``name``), with the config's options for it: a class
    with a ``from_config`` classmethod (RIA, ADMM) reads its nested options
    (``config.ria``, ``config.admm``); the others take none."""
    cls = METHODS.get(name or config.method)
    from_config = getattr(cls, "from_config", None)
    return from_config(config) if from_config is not None else cls()


class Refiner:
    """Changes a method's mask using statistics. ``initial_scope``: how the initial
    method must compare unstructured scores when this refiner is on (``None``: as usual)."""

    name: str = ""
    needs: frozenset[str] = frozenset()
    initial_scope: str | None = None
    revision: int = 1  # bump when the output changes (module docstring)
    uses: tuple[str, ...] = ()

    def applies(self, local_name: str, config: PruneConfig) -> bool:
        return True

    def refine(
        self,
        weight: torch.Tensor,
        mask: torch.Tensor,
        stats: InputStatistics,
        target: SparsityTarget,
        config: PruneConfig,
        initial_scores: torch.Tensor,
    ) -> tuple[torch.Tensor, dict]:
        """``weight`` holds the dense values; ``initial_scores`` the initial method's scores."""
        raise NotImplementedError


@REFINERS.register("dsnot")
class DSnoT(Refiner):
    """DSnoT prune-and-regrow (see dsnot.py). As in the reference code, the initial mask
    is chosen per output row (magnitude included), unstructured prune candidates are
    ordered by Wanda score and N:M ones by the initial method's own score."""

    name = "dsnot"
    needs = frozenset({"sq", "sum", "svar"})
    initial_scope = "row"
    uses = ("method/wanda",)  # unstructured prune candidates are ordered by Wanda score

    def applies(self, local_name, config):
        return not any(fnmatch.fnmatchcase(local_name, pattern) for pattern in config.dsnot.skip)

    def refine(self, weight, mask, stats, target, config, initial_scores):
        return dsnot_refine(
            weight,
            mask,
            stats.sum_per_sample,
            stats.sample_variance,
            Wanda().scores(weight, stats),
            initial_scores,
            config.dsnot,
            nm_m=target.m if target.is_nm else None,
        )


def get_refiner(name: str) -> Refiner | None:
    return None if name == "none" else REFINERS.create(name)
