"""Calibration data: sampling windows from corpora (more strategies build on this)."""

from __future__ import annotations

from ..corpora import get_corpus
from .calibset import CalibrationSet
from .sampling import MODES, check_sampling_args, sample_windows


def build_calibration(source, tokenizer, nsamples: int = 128, seqlen: int = 2048, seed: int = 0,
                      mode: str | None = None, text_field: str = "text") -> CalibrationSet:
    """The ``--calib`` interface: an in-memory set is passed through; a corpus name or
    local file is sampled on the fly with the published rules."""
    if isinstance(source, CalibrationSet):
        return source
    corpus = get_corpus(source, text_field=text_field)
    return sample_windows(corpus, tokenizer, nsamples, seqlen, seed, mode=mode)


__all__ = ["MODES", "CalibrationSet", "build_calibration", "check_sampling_args", "sample_windows"]
