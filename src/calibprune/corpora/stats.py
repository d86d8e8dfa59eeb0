"""Sizes of a corpus and of its calibration / held-out pools, cached per corpus.

Per pool: documents, characters, UTF-8 bytes, and the byte lengths of its longest
documents (at most :data:`LONGEST`, longest first), from which a study's check bounds the
tokens a pool can hold before any model runs.
"""

from __future__ import annotations

import json

from ..errors import MissingAssetError
from ..paths import cache_dir
from ..utils.io import write_json
from .base import Corpus, document_split

LONGEST = 4096
FIELDS = ("documents", "characters", "bytes", "longest")


def corpus_stats(corpus: Corpus) -> dict:
    """Documents, characters, bytes and longest documents' bytes per pool (``calib``,
    ``heldout``); raises if not installed."""
    signature = corpus.version()
    cache = cache_dir() / "corpora" / "stats" / f"{corpus.name.replace('/', '_')}.json"
    if signature and cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("signature") == signature and all(set(FIELDS) <= set(p) for p in cached["stats"].values()):
            return cached["stats"]
    stats = {pool: {"documents": 0, "characters": 0, "bytes": 0, "longest": []} for pool in ("calib", "heldout")}
    for doc in corpus.documents("all"):
        pool = stats[document_split(corpus.name, doc.id, corpus.heldout_per_mille)]
        size = len(doc.text.encode("utf-8"))
        pool["documents"] += 1
        pool["characters"] += len(doc.text)
        pool["bytes"] += size
        pool["longest"].append(size)
    for pool in stats.values():
        pool["longest"] = sorted(pool["longest"], reverse=True)[:LONGEST]
    if signature:
        write_json(cache, {"signature": signature, "stats": stats})
    return stats


def availability(corpus: Corpus) -> str:
    try:
        next(iter(corpus.documents("all")), None)
        return "ready"
    except MissingAssetError as error:
        return str(error)
