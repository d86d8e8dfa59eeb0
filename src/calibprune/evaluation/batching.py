"""``--batch-size auto``: the largest batch that fits (GPU) or the fastest measured (CPU).

On a GPU, batches of ``probe_tokens``-long rows are doubled until a forward runs out of
memory; the last one that ran is taken (at most ``max_batch``). On a CPU memory is not
the limit, throughput is: a forward of ``b`` rows of ``probe_tokens`` tokens is timed for
``b = 1, 2, 4, ...`` and the ``b`` with the most tokens/s is taken, stopping once a
doubling gains less than ``min_gain`` (bigger batches then only cost memory). The
probes run on random token ids (speed does not depend on the text) and keep the LM
head's output to the last position where the model allows it, so that a probe never
holds a ``rows x tokens x vocabulary`` logits tensor.
"""

from __future__ import annotations

import inspect
import time

import torch

from .names import parse_batch_size  # noqa: F401  (its home: torch-free)


@torch.no_grad()
def pick_batch_size(
    model, probe_tokens: int = 128, max_batch: int = 32, min_gain: float = 0.05, repeats: int = 1
) -> dict:
    """``{"chosen": b, "device": ..., "rule": ..., "measured": {"b": tokens/s or "fits"}}``
    (string keys, as in the JSON report)."""
    device = next(model.parameters()).device
    vocab = model.config.get_text_config().vocab_size
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}

    def forward(batch: int) -> None:
        ids = torch.randint(0, vocab, (batch, probe_tokens), generator=torch.Generator().manual_seed(0))
        model(input_ids=ids.to(device), use_cache=False, **last_only)

    measured: dict[str, float | str] = {}
    if device.type == "cuda":
        chosen, batch = 1, 1
        while batch <= max_batch:
            try:
                forward(batch)
            except torch.cuda.OutOfMemoryError:
                break
            finally:
                torch.cuda.empty_cache()
            measured[str(batch)], chosen, batch = "fits", batch, batch * 2
        return {"chosen": chosen, "device": "cuda", "rule": "largest that fits", "measured": measured}
    forward(1)  # warm-up: first calls pay one-off allocation costs
    best, chosen, batch = 0.0, 1, 1
    while batch <= max_batch:
        start = time.perf_counter()
        for _ in range(repeats):
            forward(batch)
        speed = repeats * batch * probe_tokens / (time.perf_counter() - start)
        measured[str(batch)] = round(speed, 1)
        gained = speed > (1 + min_gain) * best
        if speed > best:
            best, chosen = speed, batch
        if not gained:
            break
        batch *= 2
    return {"chosen": chosen, "device": device.type, "rule": "fastest measured (tokens/s)", "measured": measured}
