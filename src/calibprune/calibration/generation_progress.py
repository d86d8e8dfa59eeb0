"""Progress of self-generation: it moves at every decoding step, not once per batch.

A batch of ``max_new_tokens`` steps takes minutes on a CPU, so a bar over texts sits
still for that long. :class:`GenerationProgress` receives one call per decoding step
(through a stopping criterion that never stops anything: it only reads the length of
the sequences, so it neither syncs a GPU nor draws from the random generator) and one
per finished batch. :class:`StepBar` draws that as a bar over decoding steps of all
batches (finished batches count as done, so a resumed run starts where it stopped),
with tqdm's ETA and a postfix ``batch b/n, step k/max``.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria


class GenerationProgress:
    """What a generation reports; the default does nothing (tests record the calls)."""

    def start(self, batches: int, done: int, steps: int) -> None:
        """``batches`` in all, ``done`` of them already finished, up to ``steps`` decoding steps each."""

    def step(self, batch: int, step: int) -> None:
        """Decoding step ``step`` (1-based) of batch ``batch`` (0-based) is done."""

    def batch_done(self, batch: int, texts: int, generated_tokens: int) -> None:
        """Batch ``batch`` finished with ``texts`` texts holding ``generated_tokens`` new tokens."""

    def close(self) -> None:
        pass


class StepBar(GenerationProgress):
    """A tqdm bar over decoding steps: ``batches x steps`` in all."""

    def __init__(self, enabled: bool = True, desc: str = "generating"):
        self.enabled, self.desc = enabled, desc
        self.bar = None

    def start(self, batches: int, done: int, steps: int) -> None:
        self.batches, self.steps = batches, steps
        self.produced, self.started = 0, time.perf_counter()
        self.bar = tqdm(
            total=batches * steps, initial=done * steps, desc=self.desc, unit="step", disable=not self.enabled
        )

    def _advance_to(self, position: int) -> None:
        if position > self.bar.n:
            self.bar.update(position - self.bar.n)

    def step(self, batch: int, step: int) -> None:
        self._advance_to(batch * self.steps + step)
        self.bar.set_postfix_str(f"batch {batch + 1}/{self.batches}, step {step}/{self.steps}", refresh=False)

    def batch_done(self, batch: int, texts: int, generated_tokens: int) -> None:
        self.produced += generated_tokens
        self._advance_to((batch + 1) * self.steps)  # a batch whose texts all stopped early at EOS
        rate = self.produced / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"batch {batch + 1}/{self.batches} done, {rate:.1f} tok/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def as_progress(progress: bool | GenerationProgress) -> GenerationProgress:
    """``True``/``False``: a bar, shown or not; an object: used as it is."""
    return progress if isinstance(progress, GenerationProgress) else StepBar(enabled=bool(progress))


class StepReporter(StoppingCriteria):
    """Calls ``progress.step`` after every decoding step of ``batch``; never stops a sequence."""

    def __init__(self, progress: GenerationProgress, batch: int, prompt_length: int):
        self.progress, self.batch, self.prompt_length = progress, batch, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        self.progress.step(self.batch, input_ids.shape[1] - self.prompt_length)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
