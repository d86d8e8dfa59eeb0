"""Pruning maths (scores, masks, SparseGPT, statistics) and the engine that runs it."""
