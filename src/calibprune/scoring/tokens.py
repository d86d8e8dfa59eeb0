"""Per-token log-probabilities of sequences under a causal LM, batched with padding.

For a sequence x_1..x_T the scorer returns, for t = 2..T,

    logprob_t = log p(x_t | x_<t)
    mean_t    = E_{z ~ p(.|x_<t)} [log p(z | x_<t)]             (= -entropy)
    std_t     = sqrt(E_z[(log p(z | x_<t))^2] - mean_t^2)

the last two only when ``distribution=True`` (Min-K%++ needs them), and whether x_t was
the most likely token (``greedy=True``, for lm-eval's ``is_greedy``). Sequences are
sorted by length and packed into batches of at most ``max_batch_tokens`` padded
tokens (right padding, attention mask), and the vocabulary-sized tensors are reduced
``chunk_tokens`` (batch rows x positions) at a time, so memory stays bounded for long texts and
large vocabularies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass
class TokenScores:
    logprob: torch.Tensor  # [T-1]
    mean: torch.Tensor | None = None  # [T-1]
    std: torch.Tensor | None = None  # [T-1]
    greedy: torch.Tensor | None = None  # [T-1] bool: x_t is the argmax of p(.|x_<t)

    def __len__(self) -> int:
        return self.logprob.numel()


def _batches(lengths: list[int], max_batch_tokens: int, max_batch_size: int | None = None) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current = [], []
    for index in order:
        width = lengths[current[0]] if current else lengths[index]
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or (len(current) + 1) * width > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


@torch.no_grad()
def score_sequences(
    model,
    sequences: list[list[int]],
    distribution: bool = False,
    greedy: bool = False,
    max_batch_tokens: int = 4096,
    max_batch_size: int | None = None,
    chunk_tokens: int = 1024,
    progress: bool = False,
    desc: str = "scoring",
) -> list[TokenScores]:
    """Token scores of every sequence (same order as given)."""
    results: list[TokenScores | None] = [None] * len(sequences)
    for batch, ids, logits in _forward_batches(model, sequences, max_batch_tokens, max_batch_size, progress, desc):
        reduced = reduce_logits(logits[:, :-1], ids[:, 1:].to(logits.device), distribution, greedy, chunk_tokens)
        for row, index in enumerate(batch):
            n = max(len(sequences[index]) - 1, 0)
            results[index] = TokenScores(**{k: (v[row, :n] if v is not None else None) for k, v in reduced.items()})
    return results  # type: ignore[return-value]


@torch.no_grad()
def next_token_logprobs(
    model,
    contexts: list[list[int]],
    max_batch_tokens: int = 4096,
    max_batch_size: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """log p(. | context) after each context: ``[len(contexts), vocab]`` (one forward per
    context, however many single-token continuations are asked about it)."""
    out: list[torch.Tensor | None] = [None] * len(contexts)
    for batch, _, logits in _forward_batches(model, contexts, max_batch_tokens, max_batch_size, progress, "contexts"):
        for row, index in enumerate(batch):
            out[index] = F.log_softmax(logits[row, len(contexts[index]) - 1].float(), dim=-1).cpu()
    return torch.stack(out)  # type: ignore[arg-type]


def _forward_batches(model, sequences, max_batch_tokens, max_batch_size, progress, desc):
    """(indices, padded ids, logits) per batch; right padding with an attention mask."""
    device = next(model.parameters()).device
    lengths = [len(s) for s in sequences]
    batches = _batches(lengths, max_batch_tokens, max_batch_size)
    for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        width = max(lengths[i] for i in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, : lengths[index]] = torch.as_tensor(sequences[index], dtype=torch.long)
            mask[row, : lengths[index]] = 1
        yield batch, ids, model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits


def reduce_logits(
    logits: torch.Tensor, targets: torch.Tensor, distribution: bool, greedy: bool, chunk_tokens: int
) -> dict:
    """Per position: the log-probability of ``targets`` under ``logits`` [, the mean and std of
    log p over the vocabulary, weighted by p (``distribution``); whether the target is the
    argmax (``greedy``)],
    computed ``chunk_tokens`` x vocabulary floats at a time (also used by the shared-prefix
    task scorer, :mod:`calibprune.evaluation.prefix`)."""
    batch, positions, _ = logits.shape
    # a chunk spans every row of the batch, so its width shrinks as the batch grows:
    # each vocabulary-sized temporary then holds <= chunk_tokens x vocab floats
    chunk = max(1, chunk_tokens // batch)
    out = {
        "logprob": torch.empty(batch, positions),
        "mean": torch.empty(batch, positions) if distribution else None,
        "std": torch.empty(batch, positions) if distribution else None,
        "greedy": torch.empty(batch, positions, dtype=torch.bool) if greedy else None,
    }
    for start in range(0, positions, chunk):
        span = slice(start, start + chunk)
        part = F.log_softmax(logits[:, span].float(), dim=-1)
        out["logprob"][:, span] = part.gather(-1, targets[:, span, None]).squeeze(-1).cpu()
        if distribution:
            prob = part.exp()
            first = (prob * part).sum(-1)
            second = (prob * part.square()).sum(-1)
            out["mean"][:, span] = first.cpu()
            out["std"][:, span] = (second - first.square()).clamp_min(0).sqrt().cpu()
        if greedy:
            out["greedy"][:, span] = (part.argmax(-1) == targets[:, span]).cpu()
    return out
