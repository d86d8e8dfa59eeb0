"""Calibration strategies, one registered object each (see :mod:`.base`).

``get_strategy(name)`` returns the registered object; :func:`names` lists them in a fixed
order (the paper's three first). Every module of this package is imported on first use, so a
new strategy is one new module here.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import STRATEGIES, BuildInputs, Strategy, register

_FIRST = ("sample", "synthetic", "detect")  # the paper's three, in its order
_discovered = False


def discover() -> None:
    """Import every strategy module of this package (each registers its strategy)."""
    global _discovered
    if _discovered:
        return
    for module in _FIRST:
        importlib.import_module(f"{__name__}.{module}")
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base", *_FIRST):
            importlib.import_module(f"{__name__}.{info.name}")
    _discovered = True


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name`` (an unknown name is refused, listing the known ones)."""
    discover()
    return STRATEGIES.get(name)


def names() -> list[str]:
    """The paper's three first, in its order, then the others by name (registration order
    depends on which module was imported first)."""
    discover()
    registered = STRATEGIES.names()
    return [n for n in _FIRST if n in registered] + sorted(n for n in registered if n not in _FIRST)


def all_strategies() -> list[Strategy]:
    return [get_strategy(name) for name in names()]


__all__ = ["STRATEGIES", "BuildInputs", "Strategy", "all_strategies", "discover", "get_strategy", "names", "register"]
