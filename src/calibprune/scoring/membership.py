"""Sequence-level scores: perplexity, Min-K% and Min-K%++ (membership inference).

* perplexity  = exp(-mean_t logprob_t)
* Min-K%      = mean of the lowest k% of logprob_t                     (Shi et al., 2024)
* Min-K%++    = mean of the lowest k% of z_t = (logprob_t - mean_t) / std_t
                                                                        (Zhang et al., 2025)

High Min-K%/Min-K%++ means no token was surprising: the text looks like training data.
"Lowest k%" takes max(1, floor(k * n)) of the n scored tokens, so a text shorter than
1/k tokens still gets a score; std_t is clamped at 1e-6 (a peaked distribution gives
std -> 0). A text with fewer than 2 tokens has no scored token: its scores are NaN.
"""

from __future__ import annotations

import math

import torch

from ..errors import CalibpruneError
from .rules import check_k
from .tokens import TokenScores, score_sequences

_STD_FLOOR = 1e-6

# Bump a revision in the commit that changes this algorithm's output for some input (keys of
# cached results include it: calibprune.experiments.revisions; tests/golden/revisions.json checks it).
REVISIONS = {"scoring": 1}  # token log-probabilities (tokens.py), perplexity, Min-K%, Min-K%++


def _lowest_mean(values: torch.Tensor, k: float) -> float:
    if values.numel() == 0:
        return math.nan
    count = max(1, int(math.floor(values.numel() * k + 1e-9)))
    return float(torch.sort(values).values[:count].mean())


def perplexity_of(scores: TokenScores) -> float:
    return math.exp(-float(scores.logprob.mean())) if len(scores) else math.nan


def min_k(scores: TokenScores, k: float = 0.2) -> float:
    check_k(k)
    return _lowest_mean(scores.logprob, k)


def min_k_plus_plus(scores: TokenScores, k: float = 0.2) -> float:
    check_k(k)
    if scores.mean is None or scores.std is None:
        raise ValueError("Min-K%++ needs token scores computed with distribution=True")
    z = (scores.logprob - scores.mean) / scores.std.clamp_min(_STD_FLOOR)
    return _lowest_mean(z, k)


SCORES = {
    "ppl": lambda s, k: perplexity_of(s),
    "mink": min_k,
    "mink++": min_k_plus_plus,
}


def score_text(
    model,
    sequences: list[list[int]],
    kinds: tuple[str, ...] = ("mink++",),
    k: float = 0.2,
    progress: bool = False,
    **kwargs,
) -> dict[str, list[float]]:
    """Scores of each kind ('ppl', 'mink', 'mink++') for every sequence."""
    unknown = set(kinds) - set(SCORES)
    if unknown:
        raise CalibpruneError(f"unknown score {sorted(unknown)}: known ones are {', '.join(SCORES)}")
    check_k(k)
    token_scores = score_sequences(model, sequences, distribution="mink++" in kinds, progress=progress, **kwargs)
    return {kind: [SCORES[kind](s, k) for s in token_scores] for kind in kinds}
