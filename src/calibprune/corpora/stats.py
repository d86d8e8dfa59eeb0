"""Sizes of a corpus and of its calibration / held-out pools, cached per corpus."""

from __future__ import annotations

import json

from ..errors import MissingAssetError
from ..paths import cache_dir
from ..utils.io import write_json
from .base import Corpus, document_split


def corpus_stats(corpus: Corpus) -> dict:
    """Documents and characters per pool (``calib``, ``heldout``); raises if not installed."""
    signature = corpus.version()
    cache = cache_dir() / "corpora" / "stats" / f"{corpus.name.replace('/', '_')}.json"
    if signature and cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("signature") == signature:
            return cached["stats"]
    stats = {"calib": {"documents": 0, "characters": 0}, "heldout": {"documents": 0, "characters": 0}}
    for doc in corpus.documents("all"):
        pool = stats[document_split(corpus.name, doc.id, corpus.heldout_per_mille)]
        pool["documents"] += 1
        pool["characters"] += len(doc.text)
    if signature:
        write_json(cache, {"signature": signature, "stats": stats})
    return stats


def availability(corpus: Corpus) -> str:
    try:
        next(iter(corpus.documents("all")), None)
        return "ready"
    except MissingAssetError as error:
        return str(error)
