"""The evaluation's named choices, torch-free: the CLI's audit and the request declarations
(:mod:`calibprune.jobs.requests`) read them before torch is imported."""

from __future__ import annotations

from ..options import OptionError, literal

PPL_PROTOCOL = "concat-windows"
PROTOCOLS = ("concat-windows", "per-example")  # see evaluation.perplexity
SCORING_PATHS = ("shared-prefix", "plain")  # see evaluation.prefix
PPL_SPLITS = ("calib", "heldout", "all")


def parse_batch_size(value: str | int) -> int | str:
    """``"auto"`` or a positive integer (the CLI passes strings)."""
    if value == "auto":
        return "auto"
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1:
        raise OptionError("batch_size", f"{{batch_size}} {literal(repr(value))} must be a positive integer or 'auto'")
    return size
