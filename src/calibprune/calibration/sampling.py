"""Random token windows from texts, with the published loaders' two rules.

* ``stream`` — join the texts (``"\\n\\n"`` between them), tokenize once and cut
  ``nsamples`` windows of ``seqlen`` tokens at uniformly random offsets (the Wikipedia
  loader of Wanda/SparseGPT, and the paper's synthetic-data loader).
* ``document`` — visit texts in a seeded random order and cut one random window from
  each text longer than ``seqlen`` tokens (the C4 / SlimPajama / DCLM loader); no
  window crosses a document boundary and no document is used twice.

The same seed always gives the same windows (``torch.Generator`` seeded explicitly).
"""

from __future__ import annotations

import torch

from ..corpora import Corpus
from ..errors import CalibpruneError
from ..models.loading import tokenize
from .calibset import CalibrationSet, decode_windows, tokenizer_info

MODES = ("stream", "document")


def check_sampling_args(nsamples: int, seqlen: int, mode: str | None = None) -> None:
    if nsamples <= 0:
        raise CalibpruneError(f"nsamples {nsamples} must be >= 1 (the paper uses 128)")
    if seqlen <= 1:
        raise CalibpruneError(f"seqlen {seqlen} must be >= 2 tokens (the paper uses 2048)")
    if mode is not None and mode not in MODES:
        raise CalibpruneError(f"sampling mode {mode!r} is unknown: use one of {', '.join(MODES)}")


def windows_from_texts(
    texts: list[str], tokenizer, nsamples: int, seqlen: int, seed: int, mode: str = "stream", what: str = "the texts"
) -> tuple[torch.Tensor, int]:
    """``[nsamples, seqlen]`` windows and the number of tokens they were drawn from."""
    check_sampling_args(nsamples, seqlen, mode)
    if not texts:
        raise CalibpruneError(f"there is no text in {what} to sample calibration windows from")
    generator = torch.Generator().manual_seed(seed)
    if mode == "stream":
        return _stream_windows(texts, tokenizer, nsamples, seqlen, generator, what)
    return _document_windows(texts, tokenizer, nsamples, seqlen, generator, what)


def sample_windows(
    corpus: Corpus, tokenizer, nsamples: int, seqlen: int, seed: int, mode: str | None = None, split: str = "calib"
) -> CalibrationSet:
    """Windows from a corpus's calibration pool (``split``), with its default sampling rule."""
    mode = mode or corpus.sampling
    check_sampling_args(nsamples, seqlen, mode)
    windows, pool_tokens = windows_from_texts(
        corpus.texts(split), tokenizer, nsamples, seqlen, seed, mode, what=f"corpus {corpus.name!r} ({split} pool)"
    )
    manifest = {
        "source": corpus.name,
        "strategy": "sample",
        "sampling": mode,
        "split": split,
        "seed": seed,
        "tokenizer": tokenizer_info(tokenizer),
        "pool_tokens": pool_tokens,
    }
    return CalibrationSet(input_ids=windows, manifest=manifest, windows_text=decode_windows(tokenizer, windows))


def set_from_pool(
    texts: list[dict], tokenizer, nsamples: int, seqlen: int, seed: int, mode: str, what: str, manifest: dict
) -> CalibrationSet:
    """A calibration set whose windows come from the pool records marked ``keep``.

    Shared by the strategies that first build and filter a pool of texts (self-generation,
    detection); ``what`` names the kept pool in errors (``{n}``: how many texts it has).
    """
    kept = [t["text"] for t in texts if t["keep"]]
    windows, pool_tokens = windows_from_texts(
        kept, tokenizer, nsamples, seqlen, seed, mode, what=what.replace("{n}", str(len(kept)))
    )
    manifest = {
        **manifest,
        "sampling": mode,
        "seed": seed,
        "tokenizer": tokenizer_info(tokenizer),
        "pool_tokens": pool_tokens,
    }
    return CalibrationSet(
        input_ids=windows, manifest=manifest, texts=texts, windows_text=decode_windows(tokenizer, windows)
    )


def stream_tokens(texts: list[str], tokenizer) -> list[int]:
    """The token stream that stream-mode windows are cut from: texts joined by blank lines."""
    return tokenize(tokenizer, "\n\n".join(texts))


def _stream_windows(texts, tokenizer, nsamples, seqlen, generator, what):
    ids = torch.tensor(stream_tokens(texts, tokenizer), dtype=torch.long)
    needed = nsamples * seqlen
    if ids.numel() < needed:
        raise CalibpruneError(
            f"there are only {ids.numel():,} tokens in {what}, fewer than nsamples x seqlen = "
            f"{nsamples} x {seqlen} = {needed:,}: "
            "lower --nsamples or --seqlen, or use a larger source"
        )
    starts = torch.randint(0, ids.numel() - seqlen + 1, (nsamples,), generator=generator)
    return torch.stack([ids[s : s + seqlen] for s in starts.tolist()]), ids.numel()


def _document_windows(texts, tokenizer, nsamples, seqlen, generator, what):
    order = torch.randperm(len(texts), generator=generator).tolist()
    windows, pool_tokens, long_enough = [], 0, 0
    for index in order:
        ids = tokenize(tokenizer, texts[index])
        pool_tokens += len(ids)
        if len(ids) <= seqlen:
            continue
        long_enough += 1
        start = int(torch.randint(0, len(ids) - seqlen, (1,), generator=generator))
        windows.append(torch.tensor(ids[start : start + seqlen], dtype=torch.long))
        if len(windows) == nsamples:
            return torch.stack(windows), pool_tokens
    raise CalibpruneError(
        f"{what} have only {long_enough} documents longer than {seqlen} tokens, fewer than nsamples={nsamples}: "
        "use a shorter --seqlen, fewer --nsamples, or --sampling stream (join documents, then window)"
    )
