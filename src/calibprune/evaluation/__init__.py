"""Evaluation of (pruned) models: perplexity protocols."""

from .perplexity import PPL_PROTOCOL, perplexity

__all__ = ["PPL_PROTOCOL", "perplexity"]
