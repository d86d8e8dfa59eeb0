"""Random token windows from texts, with the published loaders' two rules.

* ``stream`` — join the texts (``"\\n\\n"`` between them), tokenize once and cut
  ``nsamples`` windows of ``seqlen`` tokens from the stream (the Wikipedia loader of
  Wanda/SparseGPT, and the paper's synthetic-data loader). Where the windows start:

  - ``windows="disjoint"`` (default): a uniformly random placement of ``nsamples``
    non-overlapping windows, so no calibration token is a repeat;
  - ``windows="random"``: independent uniform starts, as the published loaders draw
    them (``random.randint`` per window); windows may overlap when the stream is
    short, and the manifest says how many tokens are repeats.
* ``document`` — visit texts in a seeded random order and cut one random window from
  each text longer than ``seqlen`` tokens (the C4 / SlimPajama / DCLM loader); no
  window crosses a document boundary and no document is used twice.

The same seed always gives the same windows (``torch.Generator`` seeded explicitly).
"""

from __future__ import annotations

import random

import torch

from ..corpora import Corpus
from ..corpora.tokens import pool_tokens, stream_tokens
from ..errors import CalibpruneError
from ..models.loading import tokenize
from ..options import OptionError
from .calibset import CalibrationSet, decode_windows, tokenizer_info
from .job import check_windows

# Bump a revision in the commit that changes this algorithm's output for some input (keys of
# cached results include it: calibprune.experiments.revisions; tests/golden/revisions.json checks it).
REVISIONS = {"calib/sample": 1}  # the sample strategy and the stream / document window rules


def check_sampling_args(nsamples: int, seqlen: int, mode: str | None = None, windows: str = "disjoint") -> None:
    """The window arguments, checked by :class:`~calibprune.calibration.job.CalibJob`'s declarations."""
    check_windows(nsamples, seqlen, mode, windows)


def windows_from_texts(
    texts: list[str],
    tokenizer,
    nsamples: int,
    seqlen: int,
    seed: int,
    mode: str = "stream",
    what: str = "the texts",
    windows: str = "disjoint",
) -> tuple[torch.Tensor, dict]:
    """``[nsamples, seqlen]`` windows, and what the manifest should say about them: the
    tokens they were drawn from and the share of window tokens that repeat another's."""
    check_sampling_args(nsamples, seqlen, mode, windows)
    if not texts:
        raise CalibpruneError(f"there is no text in {what} to sample calibration windows from")
    generator = torch.Generator().manual_seed(seed)
    if mode == "stream":
        ids = torch.tensor(stream_tokens(texts, tokenizer), dtype=torch.long)
        return _stream_windows(ids, nsamples, seqlen, generator, what, windows)
    return _document_windows(texts, tokenizer, nsamples, seqlen, generator, what)


def sample_windows(
    corpus: Corpus,
    tokenizer,
    nsamples: int,
    seqlen: int,
    seed: int,
    mode: str | None = None,
    split: str = "calib",
    windows: str = "disjoint",
) -> CalibrationSet:
    """Windows from a corpus's calibration pool (``split``), with its default sampling rule.

    Stream windows are cut from the pool's token stream, tokenized once per corpus
    version and tokenizer and cached on disk (:mod:`calibprune.corpora.tokens`): the
    same windows as tokenizing the texts here, without the seconds it takes."""
    mode = mode or corpus.sampling
    check_sampling_args(nsamples, seqlen, mode, windows)
    what = f"corpus {corpus.name!r} ({split} pool)"
    if mode == "stream":
        generator = torch.Generator().manual_seed(seed)
        stream = pool_tokens(corpus, split, tokenizer)
        ids, info = _stream_windows(stream, nsamples, seqlen, generator, what, windows)
    else:
        ids, info = windows_from_texts(corpus.texts(split), tokenizer, nsamples, seqlen, seed, mode, what, windows)
    manifest = {
        **source_fields(corpus),
        "strategy": "sample",
        "sampling": mode,
        "split": split,
        "seed": seed,
        "tokenizer": tokenizer_info(tokenizer),
        **info,
    }
    return CalibrationSet(input_ids=ids, manifest=manifest, windows_text=decode_windows(tokenizer, ids))


def source_fields(corpus: Corpus) -> dict:
    """A manifest's ``source`` (the corpus's name) and, for local files, how they were read
    (``source_reading``: encoding, text field), which is part of what the texts are."""
    reading = corpus.reading()
    return {"source": corpus.name, **({"source_reading": reading} if reading else {})}


def set_from_pool(
    texts: list[dict],
    tokenizer,
    nsamples: int,
    seqlen: int,
    seed: int,
    mode: str,
    what: str,
    manifest: dict,
    windows: str = "disjoint",
) -> CalibrationSet:
    """A calibration set whose windows come from the pool records marked ``keep``.

    Shared by the strategies that first build and filter a pool of texts (self-generation,
    detection); ``what`` names the kept pool in errors (``{n}``: how many texts it has).
    """
    kept = [t["text"] for t in texts if t["keep"]]
    ids, info = windows_from_texts(
        kept, tokenizer, nsamples, seqlen, seed, mode, what=what.replace("{n}", str(len(kept))), windows=windows
    )
    manifest = {
        **manifest,
        "sampling": mode,
        "seed": seed,
        "tokenizer": tokenizer_info(tokenizer),
        **info,
    }
    return CalibrationSet(input_ids=ids, manifest=manifest, texts=texts, windows_text=decode_windows(tokenizer, ids))


def disjoint_starts(total: int, nsamples: int, seqlen: int, generator: torch.Generator) -> list[int]:
    """Starts of ``nsamples`` non-overlapping windows in a stream of ``total`` tokens,
    every placement equally likely, in random order.

    A placement is fixed by the free tokens before each window, g_0 <= g_1 <= ... in
    [0, F] with F = total - nsamples * seqlen; choosing nsamples distinct slots
    s_0 < s_1 < ... among F + nsamples and taking g_i = s_i - i enumerates each exactly
    once; window i then starts at g_i + i * seqlen."""
    free = total - nsamples * seqlen
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    slots = sorted(random.Random(seed).sample(range(free + nsamples), nsamples))
    starts = [slot - i + i * seqlen for i, slot in enumerate(slots)]
    return [starts[i] for i in torch.randperm(nsamples, generator=generator).tolist()]


def duplicated_share(starts: list[int], seqlen: int) -> float:
    """Share of the window tokens that repeat a stream position another window covers."""
    covered, reach = 0, 0
    for start in sorted(starts):
        covered += max(0, start + seqlen - max(start, reach))
        reach = max(reach, start + seqlen)
    return 1.0 - covered / (len(starts) * seqlen)


def _stream_windows(ids, nsamples, seqlen, generator, what, windows):
    needed = nsamples * seqlen
    if ids.numel() < needed:
        raise OptionError(
            "nsamples",
            f"there are only {ids.numel():,} tokens in {what}, fewer than nsamples x seqlen = "
            f"{nsamples} x {seqlen} = {needed:,}: "
            "lower {nsamples} or {seqlen}, or use a larger source",
        )
    if windows == "disjoint":
        starts = disjoint_starts(ids.numel(), nsamples, seqlen, generator)
    else:
        starts = torch.randint(0, ids.numel() - seqlen + 1, (nsamples,), generator=generator).tolist()
    info = {"pool_tokens": ids.numel(), "windows": windows, "duplicated_token_share": duplicated_share(starts, seqlen)}
    return torch.stack([ids[s : s + seqlen] for s in starts]), info


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
        if len(windows) == nsamples:  # one window per document: nothing repeats
            return torch.stack(windows), {"pool_tokens": pool_tokens, "duplicated_token_share": 0.0}
    raise OptionError(
        "nsamples",
        f"{what} have only {long_enough} documents longer than {seqlen} tokens, fewer than nsamples={nsamples}: "
        "use a shorter {seqlen}, fewer {nsamples}, or {sampling=stream} (join documents, then window)",
    )
