"""Evaluation of (pruned) models: perplexity protocols and lm-eval tasks on the in-memory model."""

from .perplexity import PPL_PROTOCOL, PROTOCOLS, perplexity

__all__ = ["PPL_PROTOCOL", "PROTOCOLS", "perplexity"]
