"""Every algorithm's revision: what a stage key records of the code that computed it.

An *algorithm* is what turns inputs into a stage's result: a pruning method, a refiner,
an allocation (their classes declare ``revision`` and ``uses``), a calibration strategy,
the scorer, a perplexity protocol, the task evaluation, an analysis (their modules
declare ``REVISIONS = {name: int}`` and ``USES = {name: (names...)}``, see
:data:`MODULES`). ``uses`` names the other algorithms one calls (ADMM and DSnoT call
Wanda's score, self-generation calls the window rules and the scorer): a stage covers
the revisions of everything its algorithms use, transitively (:func:`closure`).

**The rule.** Bump an algorithm's revision in the commit that changes its output (a
mask, a weight, a window, a kept text, a score, a metric) for some input; leave it for
changes that are bit-identical (refactors, speed, messages). Every revision started at
:data:`BASE_REVISION` when keys were first made; a key hashes only the revisions above
it (:func:`bumped`), so keys made before revisions existed stay what they were and an
unchanged algorithm never invalidates a result. ``tests/golden/revisions.json`` holds
each algorithm's revision and a fingerprint of its output on tiny fixtures; the test
fails when an output moves without a bump (or a bump comes without the golden update).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CalibpruneError

BASE_REVISION = 1

# Modules that declare REVISIONS (and USES) for the algorithms they implement.
MODULES = (
    "calibprune.calibration.sampling",
    "calibprune.calibration.synthetic",
    "calibprune.calibration.detect",
    "calibprune.scoring.membership",
    "calibprune.evaluation.perplexity",
    "calibprune.evaluation.tasks",
    "calibprune.analysis.similarity",
    "calibprune.analysis.membership",
)

_PACKAGE = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Algorithm:
    name: str  # e.g. method/wanda, allocation/owl, calib/synthetic, ppl/concat-windows
    revision: int
    uses: tuple[str, ...]
    file: str  # where the revision is declared, e.g. src/calibprune/pruning/methods.py


def _where(module_name: str) -> str:
    path = Path(sys.modules[module_name].__file__).resolve()
    try:
        return f"src/calibprune/{path.relative_to(_PACKAGE).as_posix()}"
    except ValueError:
        return str(path)


def algorithms() -> dict[str, Algorithm]:
    """Every algorithm, by name, with its current revision (read afresh on each call)."""
    from ..pruning.allocation import ALLOCATIONS
    from ..pruning.methods import METHODS, REFINERS

    out: dict[str, Algorithm] = {}
    for prefix, registry in (("method", METHODS), ("refine", REFINERS), ("allocation", ALLOCATIONS)):
        for name in registry.names():
            cls = registry.get(name)
            out[f"{prefix}/{name}"] = Algorithm(
                f"{prefix}/{name}", int(cls.revision), tuple(cls.uses), _where(cls.__module__)
            )
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        uses = getattr(module, "USES", {})
        for name, revision in module.REVISIONS.items():
            out[name] = Algorithm(name, int(revision), tuple(uses.get(name, ())), _where(module_name))
    from ..calibration.strategies import all_strategies

    for strategy in all_strategies():  # a strategy added since declares its revision on its class
        if strategy.algorithm not in out:
            module = type(strategy).__module__
            out[strategy.algorithm] = Algorithm(strategy.algorithm, strategy.revision, strategy.uses, _where(module))
    return out


def closure(names: Iterable[str], known: dict[str, Algorithm] | None = None) -> set[str]:
    """``names`` and every algorithm they use, transitively."""
    known = known if known is not None else algorithms()
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in known:
            raise CalibpruneError(f"no revision is declared for algorithm {name!r} (known: {', '.join(sorted(known))})")
        seen.add(name)
        todo.extend(known[name].uses)
    return seen


def bumped(names: Iterable[str]) -> dict[str, int]:
    """The revisions above :data:`BASE_REVISION` among ``names`` and what they use: what a
    stage key adds to its inputs (empty while every algorithm is at its base)."""
    known = algorithms()
    return {n: known[n].revision for n in sorted(closure(names, known)) if known[n].revision != BASE_REVISION}
