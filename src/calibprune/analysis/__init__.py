"""Analysis of calibration sets: n-gram similarity (MinHash-LSH) and membership scores (Min-K%++).

Torch-free until a function is used (PEP 562): the options (:mod:`.options`) are read by the
CLI's audit before torch is imported.
"""

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "TextSet": ".sets",
    "load_sets": ".sets",
    "exact_jaccard": ".similarity",
    "ngram_set": ".similarity",
    "similarity_report": ".similarity",
    "membership_scores": ".membership",
    "summarize": ".membership",
    "SimilarityOptions": ".options",
    "MembershipOptions": ".options",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
