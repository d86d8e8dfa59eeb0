"""What a :class:`~calibprune.config.PruneConfig` can name, without importing torch.

Every pruning method, refinement and allocation is declared here by name, with the
module that implements it and whether it looks at activations. The implementations
(:mod:`.methods`, :mod:`.allocation`, which need torch) register their classes into these
same registries; a declared name is imported on first use. So a config is checked, and
the CLI's audit decides whether a run reads calibration data, before torch is imported:
``calibprune prune ... --owl-lambda 0.1`` is refused in a fraction of a second.

Adding a method, refinement or allocation: its class in the implementing module, and one
line here (registering a name that is not declared here is refused, so it cannot be
forgotten; ``tests/test_catalog.py`` checks that the ``calibrated`` flags agree with what
the implementations ask for).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import CalibpruneError
from ..utils.registry import Registry


@dataclass(frozen=True)
class Entry:
    """A declared name: where it is implemented and whether it reads activations."""

    module: str
    calibrated: bool


class Catalog(Registry):
    """A :class:`Registry` whose names are declared up front (torch-free) and whose
    implementations register themselves when their module is imported."""

    def __init__(self, kind: str, entries: dict[str, Entry]):
        super().__init__(kind)
        self.entries = dict(entries)

    def register(self, name: str):
        if name not in self.entries:
            raise CalibpruneError(
                f"{self.kind} {name!r} is not declared in calibprune/pruning/catalog.py: add it there "
                "(its module and whether it reads calibration data)"
            )
        return super().register(name)

    def names(self) -> list[str]:
        """The declared names in declaration order, then any registered at run time (a test's toy)."""
        return list(self.entries) + [name for name in self._factories if name not in self.entries]

    def __contains__(self, name: str) -> bool:
        return name in self.entries or name in self._factories

    def get(self, name: str):
        if name not in self._factories and name in self.entries:
            importlib.import_module(self.entries[name].module)  # its classes register themselves
            if name not in self._factories:
                module = self.entries[name].module
                raise CalibpruneError(f"{self.kind} {name!r} is declared, but {module} registers none")
        return super().get(name)

    def calibrated(self, name: str) -> bool:
        """Whether ``name`` looks at activations (an unknown name is refused, listing the known ones)."""
        if name in self._factories and name not in self.entries:  # registered at run time: ask it
            return reads_activations(self.create(name))
        if name not in self.entries:
            self.get(name)  # raises the registry's "unknown ... known ones are ..."
        return self.entries[name].calibrated


def reads_activations(implementation) -> bool:
    """What an implementation asks for: statistics kinds (``needs``) or ``needs_calibration``."""
    return bool(getattr(implementation, "needs", None)) or bool(getattr(implementation, "needs_calibration", False))


_METHODS = "calibprune.pruning.methods"
_ALLOCATIONS = "calibprune.pruning.allocation"

METHODS = Catalog(
    "pruning method",
    {
        "magnitude": Entry(_METHODS, calibrated=False),
        "wanda": Entry(_METHODS, calibrated=True),
        "ria": Entry(_METHODS, calibrated=True),
        "sparsegpt": Entry(_METHODS, calibrated=True),
        "admm": Entry(_METHODS, calibrated=True),
    },
)
REFINERS = Catalog("refinement", {"dsnot": Entry(_METHODS, calibrated=True)})
ALLOCATIONS = Catalog(
    "allocation",
    {
        "uniform": Entry(_ALLOCATIONS, calibrated=False),
        "owl": Entry(_ALLOCATIONS, calibrated=True),
    },
)


def needs_calibration(config) -> bool:
    """Whether any stage of ``config`` (scorer, allocation, refinement) looks at activations;
    unknown method / refinement / allocation names are refused, listing the known ones."""
    refine = config.refine != "none" and REFINERS.calibrated(config.refine)
    allocation = ALLOCATIONS.calibrated(config.allocation)
    return METHODS.calibrated(config.method) or refine or allocation
