"""Per-token log-probabilities of sequences under a causal LM, batched with padding.

For a sequence x_1..x_T the scorer returns, for t = 2..T,

    logprob_t = log p(x_t | x_<t)
    mean_t    = E_{z ~ p(.|x_<t)} [log p(z | x_<t)]             (= -entropy)
    std_t     = sqrt(E_z[(log p(z | x_<t))^2] - mean_t^2)

the last two only when ``distribution=True`` (Min-K%++ needs them). Sequences are
sorted by length and packed into batches of at most ``max_batch_tokens`` padded
tokens (right padding, attention mask), and the vocabulary-sized tensors are reduced
``position_chunk`` positions at a time, so memory stays bounded for long texts and
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

    def __len__(self) -> int:
        return self.logprob.numel()


def _batches(lengths: list[int], max_batch_tokens: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current = [], []
    for index in order:
        width = lengths[current[0]] if current else lengths[index]
        if current and (len(current) + 1) * width > max_batch_tokens:
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
    max_batch_tokens: int = 4096,
    position_chunk: int = 256,
    progress: bool = False,
    desc: str = "scoring",
) -> list[TokenScores]:
    """Token scores of every sequence (same order as given)."""
    device = next(model.parameters()).device
    results: list[TokenScores | None] = [None] * len(sequences)
    lengths = [len(s) for s in sequences]
    batches = _batches(lengths, max_batch_tokens)
    for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        width = max(lengths[i] for i in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, : lengths[index]] = torch.as_tensor(sequences[index], dtype=torch.long)
            mask[row, : lengths[index]] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        logprob, mean, std = _reduce(logits[:, :-1], ids[:, 1:].to(device), distribution, position_chunk)
        for row, index in enumerate(batch):
            n = max(lengths[index] - 1, 0)
            results[index] = TokenScores(
                logprob=logprob[row, :n].cpu(),
                mean=mean[row, :n].cpu() if distribution else None,
                std=std[row, :n].cpu() if distribution else None,
            )
    return results  # type: ignore[return-value]


def _reduce(logits: torch.Tensor, targets: torch.Tensor, distribution: bool, chunk: int):
    batch, positions, _ = logits.shape
    logprob = torch.empty(batch, positions)
    mean = torch.empty(batch, positions) if distribution else None
    std = torch.empty(batch, positions) if distribution else None
    for start in range(0, positions, chunk):
        part = F.log_softmax(logits[:, start : start + chunk].float(), dim=-1)
        logprob[:, start : start + chunk] = part.gather(-1, targets[:, start : start + chunk, None]).squeeze(-1).cpu()
        if distribution:
            prob = part.exp()
            first = (prob * part).sum(-1)
            second = (prob * part.square()).sum(-1)
            mean[:, start : start + chunk] = first.cpu()
            std[:, start : start + chunk] = (second - first.square()).clamp_min(0).sqrt().cpu()
    return logprob, mean, std
