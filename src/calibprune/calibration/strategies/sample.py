"""``sample``: windows of a source's texts, with the published loaders' rules (:mod:`..sampling`)."""

from __future__ import annotations

from .base import Strategy, register


@register
class Sample(Strategy):
    name = "sample"
    summary = "windows of the source's texts, by the published loaders' rules"

    def build(self, job, inputs):
        from ..sampling import sample_windows

        return sample_windows(
            inputs.corpus, inputs.tokenizer, job.nsamples, job.seqlen, job.seed, mode=job.sampling, windows=job.windows
        )

    def label(self, source: str) -> str:
        return source
