"""``synthetic``: the model continues short prefixes of the source's texts; the most perplexing
generations are dropped (the paper's self-generation; the algorithm: :mod:`..synthetic`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from ...options import OptionError, at_least, check_fields, in_interval, option
from .base import Strategy, register

_GENERATES = "the generation options apply to a strategy that generates"


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling settings (the official code's defaults); ``None`` fields are resolved
    from the window length (see :meth:`resolve`). The paper's LLaMA-2/3 runs used
    temperature 0.8: a study setting, not a default."""

    prefix_tokens: int = option(
        1,
        help="Source tokens after BOS in each prompt (0 = BOS only; paper: 1).",
        check=at_least(0, "0 = start token only"),
    )
    temperature: float = option(
        0.6,
        help="Sampling temperature (the paper's LLaMA runs used 0.8).",
        check=lambda v: None if v > 0 else f"{{}} {v} must be > 0",
    )
    top_p: float = option(0.95, help="Nucleus sampling mass.", check=in_interval(0, 1, "(]"))
    top_k: int = option(50, help="Top-k sampling (0 = off).", check=at_least(0, "0 disables top-k"))
    repetition_penalty: float = option(
        1.2,
        help="Repetition penalty (1 = none).",
        check=lambda v: None if v > 0 else f"{{}} {v} must be > 0 (1 = none)",
    )
    max_new_tokens: int | None = option(
        None,
        help="Tokens per generated text.",
        show_default="fill the window: seqlen - prompt length",
        check=at_least(1),
    )
    batch_size: int = option(32, help="Prompts generated together.", check=at_least(1))
    num_texts: int | None = option(
        None,
        help="Texts to generate.",
        show_default="rounds of batches until the kept texts fill nsamples x seqlen",
        check=at_least(1),
    )
    filter_top: float = option(
        0.2,
        help="Drop this fraction of the most perplexing generated texts.",
        check=in_interval(0, 1, "[)", "the fraction of most perplexing texts dropped (paper: 0.2)"),
    )

    def __post_init__(self):
        check_fields(self)

    def resolve(self, seqlen: int) -> GenerationOptions:
        """Fill the defaults that depend on the window length (``num_texts`` stays as
        given: ``None`` means rounds, see :mod:`calibprune.calibration.synthetic`)."""
        return replace(self, max_new_tokens=self.max_new_tokens or max(1, seqlen - self.prefix_tokens - 1))

    def sampling(self) -> dict:
        """The keyword arguments of ``model.generate`` that make the sampling rule."""
        return dict(
            do_sample=True,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
        )

    def first_round(self, nsamples: int) -> int:
        """Texts to generate first: ``num_texts``, or whole batches enough for ``nsamples``
        window-long texts after the filter (x1.25)."""
        if self.num_texts is not None:
            return self.num_texts
        return whole_batches(1.25 * nsamples / (1.0 - self.filter_top), self.batch_size)


def whole_batches(texts: float, batch_size: int) -> int:
    return max(1, math.ceil(texts / batch_size)) * batch_size


@register
class Synthetic(Strategy):
    name = "synthetic"
    summary = "the model continues 1-4 token prefixes of the source's texts; the most perplexing are dropped"
    options = GenerationOptions
    section = "generation"
    runs_model = True
    windows_from = "generated"
    resumable = "finished generation batches"
    window_rule = "stream: the kept generated texts are joined"
    expanding = ("prefix_tokens", "filter_top", "temperature")

    def check(self, job) -> None:
        generation, needed = job.options, job.nsamples * job.seqlen
        if generation.num_texts is not None:
            most = int(generation.num_texts * (1 - generation.filter_top)) * job.seqlen
            if most < needed:
                raise OptionError(
                    "generation.num_texts",
                    f"{{generation.num_texts={generation.num_texts}}} with "
                    f"{{generation.filter_top={generation.filter_top}}} keeps at most {most:,} tokens, fewer than "
                    f"nsamples x seqlen = {needed:,}: raise {{generation.num_texts}}",
                )

    def build(self, job, inputs):
        from ..synthetic import build_synthetic

        return build_synthetic(
            inputs.model,
            inputs.tokenizer,
            inputs.corpus,
            job.nsamples,
            job.seqlen,
            job.seed,
            job.options,
            work_dir=inputs.work_dir,
            overwrite=inputs.overwrite,
            progress=inputs.progress,
            windows=job.windows,
        )

    def key_fields(self, options) -> dict:
        return {"generation": asdict(options)}

    def attrs(self, options) -> dict:
        return {"prefix_tokens": options.prefix_tokens, "filter_top": options.filter_top}

    def generation(self, job):
        return job.options

    def seconds(self, job, rates: dict) -> float:
        generated = job.nsamples * job.seqlen / (1 - job.options.filter_top)
        return rates["load_s"] + generated / rates["gen_tokens_per_s"] + generated / rates["tokens_per_s"]
