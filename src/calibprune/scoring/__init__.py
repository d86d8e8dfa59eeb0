"""What a model thinks of a text: token log-probabilities, perplexity, Min-K%, Min-K%++.

One batched, padding-aware scorer serves calibration (perplexity filter, detection),
analysis (membership distributions) and evaluation alike.
"""

from ..utils.lazy import lazy_exports

# imported on first use (PEP 562): .rules is torch-free, read by the option declarations
_EXPORTS = {
    "SCORES": ".membership",
    "min_k": ".membership",
    "min_k_plus_plus": ".membership",
    "perplexity_of": ".membership",
    "score_text": ".membership",
    "TokenScores": ".tokens",
    "score_sequences": ".tokens",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = ["SCORES", "TokenScores", "min_k", "min_k_plus_plus", "perplexity_of", "score_sequences", "score_text"]
