"""Evaluation of (pruned) models: perplexity protocols (:mod:`.perplexity`) and lm-eval
tasks on the in-memory model (:mod:`.harness`).

The package itself is torch-free (its named choices live in :mod:`.names`), so the CLI's
audit can read them before torch is imported; import the functions from their modules.
"""

from .names import PPL_PROTOCOL, PROTOCOLS

__all__ = ["PPL_PROTOCOL", "PROTOCOLS"]
