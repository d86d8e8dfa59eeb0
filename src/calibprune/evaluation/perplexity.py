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
from dataclasses import dataclass

import torch

from ..corpora import Corpus, LocalCorpus, get_corpus
from ..corpora.tokens import pool_tokens
from ..errors import CalibpruneError
from ..models.loading import encode, special_tokens_added
from ..options import OptionError, literal
from ..scoring import perplexity_of, score_sequences
from .names import PPL_PROTOCOL, PROTOCOLS

# Bump a revision in the commit that changes this algorithm's output for some input (keys of
# cached results include it: calibprune.experiments.revisions; tests/golden/revisions.json checks it).
REVISIONS = {"ppl/concat-windows": 1, "ppl/per-example": 1}
USES = {"ppl/concat-windows": ("scoring",), "ppl/per-example": ("scoring",)}


def default_split(corpus: Corpus) -> str:
    return "all" if isinstance(corpus, LocalCorpus) else "heldout"


@dataclass
class PerplexityInputs:
    """The sequences one perplexity measurement scores, known before any model runs:
    so a run can say what they cost, and score the same ones before and after pruning."""

    corpus: str
    split: str
    protocol: str
    seqlen: int
    sequences: list[list[int]]
    special_tokens: dict | None = None  # per-example: what the tokenizer added around each document

    @property
    def tokens(self) -> int:
        """Tokens through the model (each sequence's whole length)."""
        return sum(len(s) for s in self.sequences)

    def describe(self) -> str:
        """``32 windows x 512 tokens of wiki-en`` or ``100 documents (<= 512 tokens) of alpaca.jsonl``."""
        if self.protocol == "concat-windows":
            return f"{len(self.sequences)} windows x {self.seqlen} tokens of {self.corpus}"
        return f"{len(self.sequences)} documents (<= {self.seqlen} tokens) of {self.corpus}"


def perplexity_inputs(
    tokenizer,
    corpus: Corpus | str,
    seqlen: int = 2048,
    max_windows: int | None = None,
    split: str | None = None,
    protocol: str = PPL_PROTOCOL,
) -> PerplexityInputs:
    """What :func:`perplexity` scores on ``corpus``; ``max_windows`` caps windows (or documents)."""
    corpus = get_corpus(corpus) if isinstance(corpus, str) else corpus
    split = split or default_split(corpus)
    if protocol not in PROTOCOLS:
        raise CalibpruneError(f"unknown perplexity protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if seqlen < 2:
        raise CalibpruneError(f"perplexity window {seqlen} must be >= 2 tokens")
    if protocol == "concat-windows":
        sequences, special = _concat_windows(pool_tokens(corpus, split, tokenizer), seqlen, max_windows), None
    else:
        sequences, special = (
            _per_example(tokenizer, corpus.texts(split), seqlen, max_windows),
            special_tokens_added(tokenizer),
        )
    if not sequences:
        raise OptionError(
            "perplexity.seqlen",
            f"corpus {literal(repr(corpus.name))} ({split} pool) has no text long enough for one {seqlen}-token "
            "window: use a shorter {perplexity.seqlen}",
        )
    return PerplexityInputs(corpus.name, split, protocol, seqlen, sequences, special)


@torch.no_grad()
def score_perplexity(model, inputs: PerplexityInputs, batch_size: int = 1, progress: bool = True) -> dict:
    """Perplexity of ``model`` on prepared ``inputs``, the protocol named in the result."""
    # the shared scorer bounds memory: batches of <= 4096 tokens, vocabulary-sized
    # tensors reduced a chunk of positions at a time (full logits of 8 x 2048 tokens
    # would take 3 GiB for a 49k vocabulary, three copies of them 10 GiB)
    desc = f"ppl {inputs.corpus}"
    scores = score_sequences(model, inputs.sequences, max_batch_size=batch_size, progress=progress, desc=desc)
    count = sum(len(s) for s in scores)
    out = {"protocol": inputs.protocol, "corpus": inputs.corpus, "split": inputs.split, "seqlen": inputs.seqlen}
    if inputs.protocol == "concat-windows":
        nll = -sum(float(s.logprob.double().sum()) for s in scores)
        return {**out, "windows": len(scores), "tokens_scored": count, "nll": nll / count, "ppl": math.exp(nll / count)}
    per_example = [perplexity_of(s) for s in scores]
    return {
        **out,
        "examples": len(scores),
        "tokens_scored": count,
        "ppl": sum(per_example) / len(per_example),
        "ppl_median": float(torch.tensor(per_example).median()),
        "special_tokens": inputs.special_tokens,
    }


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
    inputs = perplexity_inputs(tokenizer, corpus, seqlen, max_windows, split, protocol)
    return score_perplexity(model, inputs, batch_size, progress)


def _concat_windows(ids: torch.Tensor, seqlen: int, max_windows: int | None) -> list[list[int]]:
    n_windows = ids.numel() // seqlen
    if max_windows is not None:
        n_windows = min(n_windows, max_windows)
    return ids[: n_windows * seqlen].view(n_windows, seqlen).tolist()


def _per_example(tokenizer, texts: list[str], seqlen: int, max_examples: int | None) -> list[list[int]]:
    # each document encoded as the tokenizer does by default (BOS where it adds one),
    # as the paper's per-sample perplexity does
    sequences = [ids[:seqlen] for ids in (encode(tokenizer, t) for t in texts) if len(ids) >= 2]
    return sequences if max_examples is None else sequences[:max_examples]
