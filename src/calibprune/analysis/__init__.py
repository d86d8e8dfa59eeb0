"""Analysis of calibration sets: n-gram similarity (MinHash-LSH) and membership scores (Min-K%++)."""

from .membership import membership_scores, summarize
from .sets import TextSet, load_sets
from .similarity import exact_jaccard, ngram_set, similarity_report

__all__ = ["TextSet", "exact_jaccard", "load_sets", "membership_scores", "ngram_set", "similarity_report", "summarize"]
