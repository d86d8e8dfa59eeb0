"""Perplexity on held-out text, with the protocol named in every result.

Two protocols, because published numbers use both and they are not comparable:

* ``concat-windows`` (Wanda/SparseGPT): the documents are joined with ``"\\n\\n"``,
  tokenized once and cut into consecutive non-overlapping windows of ``seqlen`` tokens;
  each window is scored on its own (no carried context) and
  ppl = exp(sum of token NLLs / number of predicted tokens).
* ``per-example`` (the paper's Alpaca protocol): every document (its first ``seqlen``
  tokens) is scored on its own and ppl = mean over documents of exp(mean token NLL).

Registered corpora are evaluated on their held-out pool only, so no evaluation
document was ever a calibration document; a local file is evaluated whole (``all``).
"""

from __future__ import annotations

import math

import torch

from ..corpora import Corpus, LocalCorpus, get_corpus
from ..errors import CalibpruneError
from ..models.loading import encode, special_tokens_added, tokenize
from ..scoring import perplexity_of, score_sequences

PPL_PROTOCOL = "concat-windows"
PROTOCOLS = ("concat-windows", "per-example")

# Bump a revision in the commit that changes this algorithm's output for some input (keys of
# cached results include it: calibprune.experiments.revisions; tests/golden/revisions.json checks it).
REVISIONS = {"ppl/concat-windows": 1, "ppl/per-example": 1}
USES = {"ppl/concat-windows": ("scoring",), "ppl/per-example": ("scoring",)}


def default_split(corpus: Corpus) -> str:
    return "all" if isinstance(corpus, LocalCorpus) else "heldout"


@torch.no_grad()
def perplexity(
    model,
    tokenizer,
    corpus: Corpus | str,
    seqlen: int = 2048,
    max_windows: int | None = None,
    batch_size: int = 1,
    split: str | None = None,
    protocol: str = PPL_PROTOCOL,
    progress: bool = True,
) -> dict:
    """Perplexity of ``model`` on ``corpus``; ``max_windows`` caps windows (or documents)."""
    corpus = get_corpus(corpus) if isinstance(corpus, str) else corpus
    split = split or default_split(corpus)
    if protocol not in PROTOCOLS:
        raise CalibpruneError(f"unknown perplexity protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if seqlen < 2:
        raise CalibpruneError(f"perplexity window {seqlen} must be >= 2 tokens")
    texts = corpus.texts(split)
    run = _concat_windows if protocol == "concat-windows" else _per_example
    result = run(model, tokenizer, texts, seqlen, max_windows, batch_size, progress, f"ppl {corpus.name}")
    if result is None:
        raise CalibpruneError(
            f"corpus {corpus.name!r} ({split} pool) has no text long enough for one {seqlen}-token window: "
            "use a shorter --ppl-seqlen"
        )
    out = {"protocol": protocol, "corpus": corpus.name, "split": split, "seqlen": seqlen, **result}
    if protocol == "per-example":
        out["special_tokens"] = special_tokens_added(tokenizer)
    return out


def _concat_windows(model, tokenizer, texts, seqlen, max_windows, batch_size, progress, desc):
    ids = torch.tensor(tokenize(tokenizer, "\n\n".join(texts)), dtype=torch.long)
    n_windows = ids.numel() // seqlen
    if max_windows is not None:
        n_windows = min(n_windows, max_windows)
    if n_windows == 0:
        return None
    windows = ids[: n_windows * seqlen].view(n_windows, seqlen).tolist()
    # the shared scorer bounds memory: batches of <= 4096 tokens, vocabulary-sized
    # tensors reduced a chunk of positions at a time (full logits of 8 x 2048 tokens
    # would take 3 GiB for a 49k vocabulary, three copies of them 10 GiB)
    scores = score_sequences(model, windows, max_batch_size=batch_size, progress=progress, desc=desc)
    nll = -sum(float(s.logprob.double().sum()) for s in scores)
    count = sum(len(s) for s in scores)
    return {"windows": n_windows, "tokens_scored": count, "nll": nll / count, "ppl": math.exp(nll / count)}


def _per_example(model, tokenizer, texts, seqlen, max_examples, batch_size, progress, desc):
    # each document encoded as the tokenizer does by default (BOS where it adds one),
    # as the paper's per-sample perplexity does
    sequences = [ids[:seqlen] for ids in (encode(tokenizer, t) for t in texts) if len(ids) >= 2]
    if max_examples is not None:
        sequences = sequences[:max_examples]
    if not sequences:
        return None
    scores = score_sequences(model, sequences, max_batch_size=batch_size, progress=progress, desc=desc)
    per_example = [perplexity_of(s) for s in scores]
    return {
        "examples": len(sequences),
        "tokens_scored": sum(len(s) for s in scores),
        "ppl": sum(per_example) / len(per_example),
        "ppl_median": float(torch.tensor(per_example).median()),
    }
