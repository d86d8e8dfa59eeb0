"""A calibration set: the token windows a pruner sees, plus where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..utils.provenance import tensor_fingerprint


@dataclass
class CalibrationSet:
    """``input_ids`` is ``[nsamples, seqlen]`` (int64); ``manifest`` records the source,
    strategy and every parameter that produced it; ``texts`` are optional."""

    input_ids: torch.Tensor
    manifest: dict = field(default_factory=dict)
    texts: list[str] | None = None

    def __post_init__(self):
        if self.input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [nsamples, seqlen], got shape {tuple(self.input_ids.shape)}")
        self.input_ids = self.input_ids.to(torch.long)

    @property
    def nsamples(self) -> int:
        return self.input_ids.shape[0]

    @property
    def seqlen(self) -> int:
        return self.input_ids.shape[1]

    @property
    def fingerprint(self) -> str:
        return tensor_fingerprint(self.input_ids)

    def describe(self) -> dict:
        return {**self.manifest, "nsamples": self.nsamples, "seqlen": self.seqlen, "fingerprint": self.fingerprint}
