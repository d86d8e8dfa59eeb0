"""``detect``: the source's texts that Min-K%++ scores most training-like under the model
(the paper's detection strategy; the algorithm: :mod:`..detect`)."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import at_least, check_fields, in_interval, option
from ...scoring.rules import MINK_K, mink_fraction
from .base import Strategy, register

DETECTORS = ("mink++",)


@dataclass(frozen=True)
class DetectOptions:
    """How training-like texts are detected and how many are kept."""

    detector: str = option("mink++", help="The training-likeness score.", choices=DETECTORS)
    keep_top: float = option(
        0.5,
        help="Keep this fraction of highest-scoring texts.",
        check=in_interval(0, 1, "(]", "the fraction of highest-scoring texts kept"),
    )
    k: float = option(MINK_K, help="Min-K%++: fraction of lowest-scoring tokens averaged.", check=mink_fraction)
    num_candidates: int | None = option(
        None, help="Score at most this many source texts.", show_default="all of the calib pool", check=at_least(1)
    )

    def __post_init__(self):
        check_fields(self)


@register
class Detect(Strategy):
    name = "detect"
    summary = "the source's texts Min-K%++ scores most training-like under the model"
    options = DetectOptions
    section = "detect"
    runs_model = True
    windows_from = "subset"
    window_rule = "the source's own rule, on the kept texts"
    expanding = ("keep_top",)

    def build(self, job, inputs):
        from ..detect import build_detected

        o = job.options
        return build_detected(
            inputs.model,
            inputs.tokenizer,
            inputs.corpus,
            job.nsamples,
            job.seqlen,
            job.seed,
            o.keep_top,
            o.k,
            o.num_candidates,
            o.detector,
            progress=inputs.progress,
            windows=job.windows,
        )

    def key_fields(self, options) -> dict:
        # the 0.1 layout: these four sat at the top of the job, k as mink_k
        return {
            "detector": options.detector,
            "keep_top": options.keep_top,
            "mink_k": options.k,
            "num_candidates": options.num_candidates,
        }

    def attrs(self, options) -> dict:
        return {"keep_top": options.keep_top}

    def seconds(self, job, rates: dict) -> float:
        return rates["load_s"] + (job.options.num_candidates or 1000) * job.seqlen / rates["tokens_per_s"]
