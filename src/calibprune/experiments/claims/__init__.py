"""The paper's claims C1..C8, one registered :class:`Claim` each, and their verdicts.

Every module of this package but :mod:`.registry` and :mod:`.evidence` declares claims
(one claim, or a family sharing a check: C3/C4/C5 in :mod:`.c345_versus`) and is imported
here, so a new claim is one new module. See :mod:`.registry` for the verdict rule.
"""

from __future__ import annotations

import importlib
import pkgutil

from .evidence import CELLS, Basis, Evidence, Inputs, primary_metric
from .registry import (
    CLAIMS,
    VERDICT_RULE,
    Claim,
    Param,
    claim,
    claims,
    evaluate_claims,
    intervals_text,
    register,
    verdict,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("registry", "evidence") and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CELLS",
    "CLAIMS",
    "VERDICT_RULE",
    "Basis",
    "Claim",
    "Evidence",
    "Inputs",
    "Param",
    "claim",
    "claims",
    "evaluate_claims",
    "intervals_text",
    "primary_metric",
    "register",
    "verdict",
]
