"""The token stream of a corpus pool, tokenized once and cached on disk.

Stream-mode sampling (calibration windows) and concat-windows perplexity both cut
windows from one stream: the pool's documents joined by blank lines, tokenized whole.
Tokenizing wiki-en's calibration pool takes ~4 s on 2 CPU cores, on every run, before
any model work; the stream is the same every time for the same corpus content and
tokenizer, so it is kept in ``$CALIBPRUNE_CACHE/tokens/`` as an int32 ``.npy`` file.

The file's key covers everything the stream depends on: the corpus's content signature
(:meth:`Corpus.version`: a changed file changes it), its name, the pool and its
held-out rate, the join, the tokenizer's complete definition (the fast tokenizer's
serialized normalizer, pre-tokenizer, model and added tokens) and the versions of
``tokenizers`` and ``transformers``. A new key replaces the pool's older file, so a
changed corpus leaves nothing stale. A corpus without a signature (hub sources) or a
tokenizer without a serializable fast backend is tokenized every time, as before;
so is a pool of fewer than :data:`MIN_CACHED_TOKENS` tokens (milliseconds to
tokenize: a file would save nothing). Files are written under a temporary name and renamed, so concurrent runs are safe.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import uuid
from pathlib import Path

import torch

from ..models.loading import tokenize
from ..paths import cache_dir
from .base import Corpus

JOIN = "\n\n"
FORMAT = "calibprune.tokens/1"
MIN_CACHED_TOKENS = 100_000  # ~0.4 s of tokenizing on 2 CPU cores


def stream_tokens(texts: list[str], tokenizer) -> list[int]:
    """The token stream windows are cut from: ``texts`` joined by blank lines."""
    return tokenize(tokenizer, JOIN.join(texts))


def tokenizer_key(tokenizer) -> str | None:
    """A digest of everything that decides how ``tokenizer`` splits text (None: unknown)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    versions = [importlib.metadata.version(p) for p in ("tokenizers", "transformers")]
    digest = hashlib.sha256(backend.to_str().encode())
    digest.update(repr((versions, type(tokenizer).__name__)).encode())
    return digest.hexdigest()


def cache_file(corpus: Corpus, split: str, tokenizer) -> Path | None:
    """Where the stream of ``corpus``'s ``split`` pool under ``tokenizer`` is kept (None: not cacheable)."""
    version, key = corpus.version(), tokenizer_key(tokenizer)
    if not version or key is None:
        return None
    parts = repr((FORMAT, corpus.name, split, corpus.heldout_per_mille, JOIN, version, key))
    return _folder() / f"{_pool_stem(corpus, split)}.{hashlib.sha256(parts.encode()).hexdigest()[:20]}.npy"


def pool_tokens(corpus: Corpus, split: str, tokenizer) -> torch.Tensor:
    """``stream_tokens(corpus.texts(split), tokenizer)`` as an int64 tensor, from the cache when it holds it."""
    import numpy as np

    path = cache_file(corpus, split, tokenizer)
    if path is not None and path.exists():
        return torch.from_numpy(np.load(path).astype(np.int64))
    ids = torch.tensor(stream_tokens(corpus.texts(split), tokenizer), dtype=torch.long)
    if path is not None and ids.numel() >= MIN_CACHED_TOKENS and int(ids.max()) < 2**31:
        _store(path, ids.numpy().astype(np.int32), stale=f"{_pool_stem(corpus, split)}.*.npy")
    return ids


def _folder() -> Path:
    return cache_dir() / "tokens"


def _pool_stem(corpus: Corpus, split: str) -> str:
    """A readable, file-safe name for a pool: ``wiki-en.calib``, or a local path's tail + its hash."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", corpus.name)[-40:]
    return f"{name}-{hashlib.sha256(corpus.name.encode()).hexdigest()[:8]}.{split}"


def _store(path: Path, array, stale: str) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(stale):  # an older version of this pool's stream
        if old != path:
            old.unlink(missing_ok=True)
    part = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(part, "wb") as f:
        np.save(f, array)
    os.replace(part, path)
