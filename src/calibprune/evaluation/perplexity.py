"""Perplexity on held-out text, with the protocol named in every result.

``concat-windows`` (the Wanda/SparseGPT protocol): the held-out documents are joined
with ``"\\n\\n"``, tokenized once and cut into consecutive non-overlapping windows of
``seqlen`` tokens; each window is scored independently (no context carried over) and

    ppl = exp( sum of token NLLs / number of predicted tokens ),

each window predicting its tokens 2..seqlen. Only the corpus's held-out pool is used,
so no evaluation document was ever a calibration document.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..corpora import Corpus, get_corpus
from ..errors import CalibpruneError

PPL_PROTOCOL = "concat-windows"


@torch.no_grad()
def perplexity(
    model,
    tokenizer,
    corpus: Corpus | str,
    seqlen: int = 2048,
    max_windows: int | None = None,
    batch_size: int = 1,
    split: str = "heldout",
    progress: bool = True,
) -> dict:
    corpus = get_corpus(corpus) if isinstance(corpus, str) else corpus
    if seqlen < 2:
        raise CalibpruneError(f"perplexity window {seqlen} must be >= 2 tokens")
    text = "\n\n".join(corpus.texts(split))
    ids = torch.tensor(
        tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"],
        dtype=torch.long,
    )
    n_windows = ids.numel() // seqlen
    if max_windows is not None:
        n_windows = min(n_windows, max_windows)
    if n_windows == 0:
        raise CalibpruneError(
            f"corpus {corpus.name!r} ({split} pool) has {ids.numel()} tokens, less than one window of {seqlen}: "
            "use a shorter --ppl-seqlen"
        )
    windows = ids[: n_windows * seqlen].view(n_windows, seqlen)
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    for start in tqdm(
        range(0, n_windows, batch_size), desc=f"ppl {corpus.name}", unit="batch", disable=not progress, leave=False
    ):
        batch = windows[start : start + batch_size].to(device)
        logits = model(input_ids=batch, use_cache=False).logits
        nll += float(F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum"))
        count += batch[:, 1:].numel()
    return {
        "protocol": PPL_PROTOCOL,
        "corpus": corpus.name,
        "split": split,
        "seqlen": seqlen,
        "windows": n_windows,
        "tokens_scored": count,
        "nll": nll / count,
        "ppl": math.exp(nll / count),
    }
