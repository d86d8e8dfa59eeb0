"""How training-like each set looks to a model: Min-K%++, Min-K% and perplexity per text.

Calibration sets are scored on their exact token windows; other sets on each text's
first ``max_tokens`` tokens. Scores come from :mod:`calibprune.scoring` (defined there).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import CalibpruneError
from ..models.loading import encode
from ..options import OptionError
from ..scoring import score_text
from .sets import TextSet

KINDS = ("mink++", "mink", "ppl")

# Bump a revision in the commit that changes this algorithm's output for some input (keys of
# cached results include it: calibprune.experiments.revisions; tests/golden/revisions.json checks it).
REVISIONS = {"analysis/membership": 1}
USES = {"analysis/membership": ("scoring",)}


def membership_scores(
    model,
    tokenizer,
    sets: list[TextSet],
    k: float = 0.2,
    max_tokens: int = 512,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, dict[str, list[float]]]:
    if max_tokens < 2:
        raise OptionError("max_tokens", f"{{max_tokens}} {max_tokens} must be >= 2")
    scores = {}
    for s in sets:
        # whole texts encoded as the tokenizer does by default (BOS where it adds one), as
        # mink-plus-plus ``run.py`` does; calibration windows are scored as they are
        ids = s.token_ids or [encode(tokenizer, t) for t in s.texts]
        ids = [row[:max_tokens] for row in ids if len(row) >= 2]
        if not ids:
            raise CalibpruneError(f"set {s.name!r} has no text of at least 2 tokens to score")
        scores[s.name] = score_text(model, ids, KINDS, k=k, max_batch_size=batch_size, progress=progress)
    return scores


def summarize(values: list[float]) -> dict:
    finite = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if finite.size == 0:
        return {"n": 0}
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    return {
        "n": int(finite.size),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }
