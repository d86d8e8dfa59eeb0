"""What a job is about to compute, said before it starts: tokens, passes and a measured rate.

The arithmetic and the wording are :mod:`calibprune.estimate`'s; here each job lists its
parts (dense perplexity, pruning, pruned perplexity, lm-eval documents, self-generation).
A rate is measured only when a notice is heard (the callers check ``listening(say)``).
"""

from __future__ import annotations

import torch

from ..calibration import CalibrationSet
from ..estimate import Estimate, RunEstimate, forward_rate, generation_rate, perplexity_part, prune_passes
from ..evaluation.perplexity import PerplexityInputs
from .requests import TaskRequest


def probe_window(calibration: CalibrationSet | None, inputs: dict[str, PerplexityInputs]) -> torch.Tensor:
    """What the rate probe runs: one calibration window, else one perplexity sequence (<= 512 tokens)."""
    if calibration is not None:
        return calibration.input_ids[:1, : min(calibration.seqlen, 512)]
    return torch.tensor([next(iter(inputs.values())).sequences[0][:512]], dtype=torch.long)


def prune_estimate(model, config, calibration, dense_inputs: dict, pruned_inputs: dict) -> RunEstimate:
    """What ``prune`` will compute, in order: [dense perplexity], [pruning], [pruned perplexity]."""
    parts = []
    if dense_inputs:
        parts.append(perplexity_part("dense perplexity", dense_inputs))
    if calibration is not None:
        what = f"pruning calibrates on {calibration.nsamples} windows x {calibration.seqlen} tokens"
        parts.append(Estimate(what, calibration.nsamples * calibration.seqlen, prune_passes(config)))
    if pruned_inputs:
        parts.append(perplexity_part("pruned perplexity", pruned_inputs))
    rate = forward_rate(model, probe_window(calibration, pruned_inputs)) if parts else None
    return RunEstimate("prune", tuple(parts), rate, () if parts else ("no calibration data, no perplexity",))


def eval_estimate(model, ppl_inputs: dict, tasks: TaskRequest | None) -> RunEstimate:
    """What ``eval`` will compute: perplexity in tokens at a measured rate; lm-eval tasks in documents
    (their token counts are known only once lm-eval has built the requests)."""
    parts = (perplexity_part("perplexity", ppl_inputs),) if ppl_inputs else ()
    rate = forward_rate(model, probe_window(None, ppl_inputs)) if ppl_inputs else None
    notes = ()
    if tasks:
        from ..evaluation.harness import documents_per_task

        counts = documents_per_task(tasks.names, tasks.limit, tasks.mmlu_shots)
        known = {name: n for name, n in counts.items() if n is not None}
        listed = ", ".join(
            f"{name} {n:,}" if n is not None else f"{name} (count unknown offline)" for name, n in counts.items()
        )
        notes = (
            f"lm-eval tasks on {sum(known.values()):,} documents ({listed}); their time shows on the bar once "
            "lm-eval has built the requests",
        )
    return RunEstimate("eval", parts, rate, notes)


def generation_estimate(model, tokenizer, generation, nsamples: int, seqlen: int) -> tuple[Estimate, int]:
    """The first self-generation round (``generation``: the job's GenerationOptions), measured
    here, and its number of batches."""
    from ..calibration.synthetic import start_token

    options = generation.resolve(seqlen)
    texts = options.first_round(nsamples)
    batches = -(-texts // options.batch_size)
    start = (start_token(tokenizer)["ids"] or [tokenizer.eos_token_id or 0])[0]
    rate = generation_rate(model, options.batch_size, start, options.sampling())
    rounds = "" if generation.num_texts else "; more rounds if texts stop early"
    what = (
        f"self-generation of {texts} texts x up to {options.max_new_tokens} new tokens "
        f"({batches} batches of {options.batch_size}{rounds})"
    )
    return Estimate(what, texts * options.max_new_tokens, 1.0, rate), batches
