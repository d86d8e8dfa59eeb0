"""Random token windows from a corpus, with the published loaders' two rules.

* ``stream`` — join the pool's documents (``"\\n\\n"`` between them), tokenize once and cut
  ``nsamples`` windows of ``seqlen`` tokens at uniformly random offsets (the Wikipedia
  loader of Wanda/SparseGPT, and the paper's synthetic-data loader).
* ``document`` — visit documents in a seeded random order and cut one random window
  from each document longer than ``seqlen`` tokens (the C4 / SlimPajama / DCLM loader);
  no window crosses a document boundary and no document is used twice.

The same seed always gives the same windows (``torch.Generator`` seeded explicitly).
"""

from __future__ import annotations

import torch

from ..corpora import Corpus
from ..errors import CalibpruneError
from .calibset import CalibrationSet

MODES = ("stream", "document")


def _tokenize(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]


def check_sampling_args(nsamples: int, seqlen: int, mode: str | None = None) -> None:
    if nsamples <= 0:
        raise CalibpruneError(f"nsamples {nsamples} must be >= 1 (the paper uses 128)")
    if seqlen <= 1:
        raise CalibpruneError(f"seqlen {seqlen} must be >= 2 tokens (the paper uses 2048)")
    if mode is not None and mode not in MODES:
        raise CalibpruneError(f"sampling mode {mode!r} is unknown: use one of {', '.join(MODES)}")


def sample_windows(
    corpus: Corpus,
    tokenizer,
    nsamples: int,
    seqlen: int,
    seed: int,
    mode: str | None = None,
    split: str = "calib",
) -> CalibrationSet:
    mode = mode or corpus.sampling
    check_sampling_args(nsamples, seqlen, mode)
    generator = torch.Generator().manual_seed(seed)
    if mode == "stream":
        windows, pool_tokens = _stream_windows(corpus, tokenizer, nsamples, seqlen, generator, split)
    else:
        windows, pool_tokens = _document_windows(corpus, tokenizer, nsamples, seqlen, generator, split)
    manifest = {
        "source": corpus.name,
        "strategy": "sample",
        "sampling": mode,
        "split": split,
        "nsamples": nsamples,
        "seqlen": seqlen,
        "seed": seed,
        "tokenizer": getattr(tokenizer, "name_or_path", type(tokenizer).__name__),
        "pool_tokens": pool_tokens,
    }
    return CalibrationSet(input_ids=windows, manifest=manifest)


def _stream_windows(corpus, tokenizer, nsamples, seqlen, generator, split):
    text = "\n\n".join(corpus.texts(split))
    if not text:
        raise CalibpruneError(f"corpus {corpus.name!r} has no text in its {split} pool")
    ids = torch.tensor(_tokenize(tokenizer, text), dtype=torch.long)
    needed = nsamples * seqlen
    if ids.numel() < needed:
        raise CalibpruneError(
            f"corpus {corpus.name!r} ({split} pool) holds {ids.numel():,} tokens, fewer than "
            f"nsamples x seqlen = {nsamples} x {seqlen} = {needed:,}: lower --nsamples or --seqlen, "
            "or use a larger corpus"
        )
    starts = torch.randint(0, ids.numel() - seqlen + 1, (nsamples,), generator=generator)
    return torch.stack([ids[s : s + seqlen] for s in starts.tolist()]), ids.numel()


def _document_windows(corpus, tokenizer, nsamples, seqlen, generator, split):
    docs = corpus.texts(split)
    if not docs:
        raise CalibpruneError(f"corpus {corpus.name!r} has no documents in its {split} pool")
    order = torch.randperm(len(docs), generator=generator).tolist()
    windows, pool_tokens, long_enough = [], 0, 0
    for index in order:
        ids = _tokenize(tokenizer, docs[index])
        pool_tokens += len(ids)
        if len(ids) <= seqlen:
            continue
        long_enough += 1
        start = int(torch.randint(0, len(ids) - seqlen, (1,), generator=generator))
        windows.append(torch.tensor(ids[start : start + seqlen], dtype=torch.long))
        if len(windows) == nsamples:
            return torch.stack(windows), pool_tokens
    raise CalibpruneError(
        f"corpus {corpus.name!r} ({split} pool) has only {long_enough} documents longer than {seqlen} tokens, "
        f"fewer than nsamples={nsamples}: use a shorter --seqlen, fewer --nsamples, "
        "or --sampling stream (join documents, then window)"
    )
