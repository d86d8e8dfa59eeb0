"""Calibration data: sample a corpus, self-generate, or detect training-like texts (each a
registered strategy: :mod:`.strategies`).

Every strategy returns a :class:`CalibrationSet` (token windows + manifest + texts) that
saves to and loads from a folder; ``prune --calib`` takes such a folder or a source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..corpora import get_corpus
from ..utils.lazy import lazy_exports
from .folder import looks_like_set

if TYPE_CHECKING:
    from .calibset import CalibrationSet

# Exported names -> their module, imported on first use (PEP 562): the CLI's option audit
# asks whether --calib is a set folder before torch is imported.
_EXPORTS = {
    "CalibrationSet": ".calibset",
    "CalibJob": ".job",
    "DETECTORS": ".strategies.detect",
    "DetectOptions": ".strategies.detect",
    "build_detected": ".detect",
    "drop_above_percentile": ".filters",
    "keep_top_fraction": ".filters",
    "MODES": ".job",
    "WINDOW_RULES": ".job",
    "check_sampling_args": ".sampling",
    "sample_windows": ".sampling",
    "windows_from_texts": ".sampling",
    "GenerationOptions": ".strategies.synthetic",
    "build_synthetic": ".synthetic",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


def is_calibration_folder(source) -> bool:
    """A folder holding any of a set's files: read as a set (and refused if damaged), never as text."""
    return looks_like_set(source)


def build_calibration(
    source,
    tokenizer,
    nsamples: int = 128,
    seqlen: int = 2048,
    seed: int = 0,
    mode: str | None = None,
    text_field: str = "text",
    windows: str = "disjoint",
    encoding: str = "utf-8",
) -> CalibrationSet:
    """The ``--calib`` interface: an in-memory set or a saved set folder is used as it
    is (after checking its tokenizer); a corpus name or local file is sampled on the
    fly with the published rules."""
    from .calibset import CalibrationSet
    from .sampling import sample_windows

    if isinstance(source, CalibrationSet):
        calib = source
    elif is_calibration_folder(source):
        calib = CalibrationSet.load(source)
    else:
        corpus = get_corpus(source, text_field=text_field, encoding=encoding)
        return sample_windows(corpus, tokenizer, nsamples, seqlen, seed, mode=mode, windows=windows)
    calib.check_tokenizer(tokenizer)
    return calib


__all__ = [
    "DETECTORS",
    "MODES",
    "WINDOW_RULES",
    "CalibJob",
    "CalibrationSet",
    "DetectOptions",
    "GenerationOptions",
    "build_calibration",
    "build_detected",
    "build_synthetic",
    "check_sampling_args",
    "drop_above_percentile",
    "is_calibration_folder",
    "keep_top_fraction",
    "sample_windows",
    "windows_from_texts",
]
