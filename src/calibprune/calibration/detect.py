"""Detection: calibrate on the source texts that look most like training data.

The paper's "detection" strategy: score candidate texts of a source with Min-K%++
under the model to be pruned (Zhang et al., 2025; high = training-like), keep the
``keep_top`` highest-scoring fraction, and sample the calibration windows from the kept
texts with the source's own sampling rule. Candidates are the source's calibration-pool
documents in a seeded random order (at most ``num_candidates``), each scored on its
first ``seqlen`` tokens.
"""

from __future__ import annotations

import torch

from ..corpora import Corpus
from ..models.loading import encode, special_tokens_added
from ..options import literal
from ..scoring import score_text
from .calibset import CalibrationSet
from .filters import keep_top_fraction
from .job import check_windows
from .sampling import set_from_pool, source_fields
from .strategies.detect import DetectOptions

# Bump a revision in the commit that changes this algorithm's output for some input (keys of
# cached results include it: calibprune.experiments.revisions; tests/golden/revisions.json checks it).
REVISIONS = {"calib/detect": 1}  # candidates, Min-K%++ keep rule
USES = {"calib/detect": ("calib/sample", "scoring")}


def build_detected(
    model,
    tokenizer,
    corpus: Corpus,
    nsamples: int,
    seqlen: int,
    seed: int,
    keep_top: float = 0.5,
    k: float = 0.2,
    num_candidates: int | None = None,
    method: str = "mink++",
    progress: bool = True,
    windows: str = "disjoint",
) -> CalibrationSet:
    check_windows(nsamples, seqlen)
    DetectOptions(detector=method, keep_top=keep_top, k=k, num_candidates=num_candidates)  # its declared checks
    docs = list(corpus.documents("calib"))
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()[:num_candidates]
    candidates = [docs[i] for i in order]
    # encoded as the tokenizer does by default (BOS where it adds one), as mink-plus-plus ``run.py``
    ids = [encode(tokenizer, d.text)[:seqlen] for d in candidates]
    scores = score_text(model, ids, ("mink++",), k=k, progress=progress)["mink++"]
    keep = keep_top_fraction(scores, keep_top)
    texts = [
        {"index": i, "source_id": d.id, "text": d.text, "tokens_scored": len(t), "mink++": s, "keep": kept}
        for i, (d, t, s, kept) in enumerate(zip(candidates, ids, scores, keep, strict=True))
    ]
    kept_scores = [s for s, kept in zip(scores, keep, strict=True) if kept]
    manifest = {
        **source_fields(corpus),
        "strategy": "detect",
        "parameters": {"detector": method, "k": k, "keep_top": keep_top, "num_candidates": num_candidates},
        "special_tokens": special_tokens_added(tokenizer),
        "model": getattr(model, "name_or_path", None),
        "filter": {
            "candidates": len(texts),
            "kept": sum(keep),
            "dropped": len(keep) - sum(keep),
            "score_threshold": min(kept_scores) if kept_scores else None,
        },
    }
    return set_from_pool(
        texts,
        tokenizer,
        nsamples,
        seqlen,
        seed,
        corpus.sampling,
        manifest=manifest,
        what=f"the {{n}} kept candidates of {literal(repr(corpus.name))} (raise {{num_candidates}} or {{keep_top}})",
        windows=windows,
    )
