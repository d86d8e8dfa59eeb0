"""What a long run will cost, said before it starts.

A run's cost is counted in tokens through the model and turned into time with a rate
measured on this machine, on this model, a moment before the work starts:

* pruning: nsamples x seqlen calibration tokens, times the number of dense-forward
  equivalents the method costs (:data:`PRUNE_PASSES`, from ``benchmarks/prune_speed.py``:
  Wanda 1.6, SparseGPT 2.4, + 0.8 for OWL's dense pass; magnitude reads no data), at
  the rate of one timed forward pass over a calibration window;
* self-generation: texts of the first round x new tokens per text (an upper bound:
  texts stop early at EOS), at the rate of a few timed decoding steps of one batch
  (later steps attend over longer texts: the rate is optimistic there, pessimistic for
  the fixed cost of each call).

* perplexity: windows x window length (or the documents' tokens), one forward pass each;
  ``prune --ppl`` sums the dense pass, pruning and the pruned pass in one line
  (:class:`RunEstimate`), printed before the dense pass starts.

Estimates are rough (+-50 %: attention grows with the window, machines are shared);
the progress bars then show the measured ETA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Dense-forward equivalents of each stage, measured by benchmarks/prune_speed.py (README).
PRUNE_PASSES = {"magnitude": 0.0, "wanda": 1.6, "sparsegpt": 2.4}
OWL_PASSES = 0.8
OTHER_METHOD_PASSES = 2.0  # methods registered later: assume a Wanda-like cost


@dataclass(frozen=True)
class Estimate:
    """``tokens`` processed ``passes`` times at ``rate`` tokens/s (None: not measured)."""

    what: str
    tokens: int
    passes: float = 1.0
    rate: float | None = None

    @property
    def work(self) -> float:
        """Tokens through the model, counted in single passes."""
        return self.tokens * self.passes

    @property
    def seconds(self) -> float | None:
        return _seconds(self.work, self.rate)

    def amount(self) -> str:
        """``16,384 tokens x 1.6 model passes``."""
        return f"{self.tokens:,} tokens" + (f" x {self.passes:g} model passes" if self.passes != 1.0 else "")

    def describe(self) -> str:
        return f"{self.what}: {self.amount()}" + _at_rate(self.work, self.rate)


@dataclass(frozen=True)
class RunEstimate:
    """The stages of one run (their ``rate`` is ignored) at one measured ``rate``, in one
    line; ``notes`` name work that is not counted in tokens (e.g. lm-eval documents)."""

    what: str
    parts: tuple[Estimate, ...]
    rate: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.parts)

    @property
    def work(self) -> float:
        return sum(p.work for p in self.parts)

    @property
    def seconds(self) -> float | None:
        return _seconds(self.work, self.rate)

    def describe(self) -> str:
        if len(self.parts) == 1:
            line = Estimate(self.parts[0].what, self.parts[0].tokens, self.parts[0].passes, self.rate).describe()
        elif self.parts:
            items = " + ".join(f"{p.what} ({p.amount()})" for p in self.parts)
            line = f"{self.what}: {items} = {round(self.work):,} tokens of model passes" + _at_rate(
                self.work, self.rate
            )
        else:
            line = f"{self.what}:"
        return "; ".join([line, *self.notes]) if self.parts else f"{line} {'; '.join(self.notes)}"


def _seconds(work: float, rate: float | None) -> float | None:
    return None if rate is None or rate <= 0 else work / rate


def _at_rate(work: float, rate: float | None) -> str:
    seconds = _seconds(work, rate)
    return "" if seconds is None else f"; at {rate:,.0f} tokens/s measured here, about {duration(seconds)}"


def silent(message: str) -> None:
    """The notice sink of ``--quiet``: nothing is printed, so no rate is measured for it."""


def listening(say) -> bool:
    """Whether notices given to ``say`` reach anyone (the rate probes cost seconds)."""
    return say is not silent


def perplexity_part(what: str, inputs: dict) -> Estimate:
    """One perplexity pass over prepared inputs (name -> ``PerplexityInputs``), one forward each."""
    return Estimate(
        f"{what} on " + ", ".join(i.describe() for i in inputs.values()), sum(i.tokens for i in inputs.values())
    )


def duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``2.3 h``: the precision an estimate deserves."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def prune_passes(config) -> float:
    """Dense-forward equivalents of ``config`` (method + OWL's dense pass)."""
    passes = PRUNE_PASSES.get(config.method, OTHER_METHOD_PASSES)
    if config.allocation == "owl":
        passes += OWL_PASSES
    return passes


def forward_rate(model, input_ids, tries: int = 2) -> float:
    """Tokens/s of a forward pass over ``input_ids`` ([1, L]): the fastest of ``tries``
    after a short warm-up (on a shared machine, noise only ever adds time)."""
    import torch

    device = next(model.parameters()).device
    ids = input_ids.to(device)

    def timed(batch) -> float:
        started = time.perf_counter()
        with torch.no_grad():
            model(input_ids=batch, use_cache=False)
        return time.perf_counter() - started

    timed(ids[:, :8])  # first-call allocations
    return ids.numel() / max(min(timed(ids) for _ in range(tries)), 1e-6)


def generation_rate(
    model, batch_size: int, start_id: int, sampling: dict | None = None, steps: int = 8, tries: int = 2
) -> float:
    """New tokens/s of ``generate`` for a batch of ``batch_size`` one-token prompts with the
    run's ``sampling`` settings: ``steps`` tokens, the fastest of ``tries``, after a warm-up.
    The call's fixed setup is counted in, so this errs on the slow side."""
    import torch

    device = next(model.parameters()).device
    ids = torch.full((batch_size, 1), start_id, dtype=torch.long, device=device)

    def timed(count: int) -> float:
        started = time.perf_counter()
        with torch.no_grad():
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                **(sampling or {"do_sample": False}),
                max_new_tokens=count,
                min_new_tokens=count,
                pad_token_id=start_id,
            )
        return time.perf_counter() - started

    timed(1)  # first-call allocations
    return batch_size * steps / max(min(timed(steps) for _ in range(tries)), 1e-6)
