"""What a model thinks of a text: token log-probabilities, perplexity, Min-K%, Min-K%++.

One batched, padding-aware scorer serves calibration (perplexity filter, detection),
analysis (membership distributions) and evaluation alike.
"""

from .membership import SCORES, min_k, min_k_plus_plus, perplexity_of, score_text
from .tokens import TokenScores, score_sequences

__all__ = ["SCORES", "TokenScores", "min_k", "min_k_plus_plus", "perplexity_of", "score_sequences", "score_text"]
