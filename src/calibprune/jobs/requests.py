"""What a job is asked for: the calibration data, the perplexity and the lm-eval tasks.

Each request checks itself from its arguments alone (``check``), before any model is
loaded; what needs the model's config (the window length) is :func:`check_seqlen`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..calibration import CalibrationSet, build_calibration, check_sampling_args, is_calibration_folder
from ..corpora import DEFAULT_ENCODING, get_corpus, local_source
from ..errors import CalibpruneError
from ..evaluation.perplexity import PPL_PROTOCOL, PROTOCOLS, PerplexityInputs, perplexity_inputs
from ..models.loading import max_sequence_length
from ..options import OptionError
from ..utils.keys import KEYED_WHEN_SET

DEFAULT_NSAMPLES, DEFAULT_SEQLEN = 128, 2048  # the published code's calibration defaults

Say = Callable[[str], None]  # receives one-line notices (estimates, resume points)


@dataclass
class CalibrationRequest:
    """``--calib`` and its sampling options.

    ``nsamples``/``seqlen`` left at None mean 128 x 2048 for a source that is sampled,
    and the set's own size for a prebuilt set (in memory or a folder). Given for a
    prebuilt set, they are honoured by taking its first ``nsamples`` windows cut to
    their first ``seqlen`` tokens, or refused when the set is too small.
    """

    source: str | CalibrationSet = "wiki-en"
    nsamples: int | None = None
    seqlen: int | None = None
    seed: int = 0
    sampling: str | None = None
    text_field: str = "text"
    windows: str = "disjoint"
    encoding: str = DEFAULT_ENCODING

    @property
    def prebuilt(self) -> bool:
        """An in-memory set or a saved set folder: it brings its own nsamples/seqlen."""
        return isinstance(self.source, CalibrationSet) or is_calibration_folder(self.source)

    @property
    def window_count(self) -> int:
        return DEFAULT_NSAMPLES if self.nsamples is None else self.nsamples

    @property
    def window_length(self) -> int:
        return DEFAULT_SEQLEN if self.seqlen is None else self.seqlen

    def check(self) -> None:
        if self.prebuilt:
            for name, value in (("nsamples", self.nsamples), ("seqlen", self.seqlen)):
                if value is not None and value < 1:
                    raise OptionError(name, f"{{{name}}} {value} must be >= 1")
        else:
            check_sampling_args(self.window_count, self.window_length, self.sampling, self.windows)

    def to_dict(self) -> dict:
        """The request as given (an in-memory set is named by its one-line repr)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["source"] = self.source if isinstance(self.source, str) else repr(self.source)
        return out

    def build(self, tokenizer) -> CalibrationSet:
        calibration = build_calibration(
            self.source,
            tokenizer,
            self.window_count,
            self.window_length,
            self.seed,
            mode=self.sampling,
            text_field=self.text_field,
            windows=self.windows,
            encoding=self.encoding,
        )
        if self.prebuilt:
            if not isinstance(self.source, CalibrationSet):
                calibration.manifest["folder"] = str(Path(self.source).resolve())
            calibration = calibration.head(self.nsamples, self.seqlen)
        return calibration


@dataclass
class PerplexityRequest:
    corpora: list[str] = field(default_factory=list)
    seqlen: int = 2048
    max_windows: int | None = None
    batch_size: int | str = 1  # or "auto"
    protocol: str = PPL_PROTOCOL
    split: str | None = None  # default: held-out pool of registered corpora, all of a local file
    encoding: str = field(default=DEFAULT_ENCODING, metadata=KEYED_WHEN_SET)  # of local files

    def check(self) -> None:
        from ..evaluation.batching import parse_batch_size

        parse_batch_size(self.batch_size)
        if self.protocol not in PROTOCOLS:
            raise CalibpruneError(f"unknown perplexity protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}")
        for corpus in self.resolve():  # unknown names fail here, listing the known ones
            corpus.check_readable()  # an undecodable local file fails before the model is loaded

    def resolve(self) -> list:
        return [get_corpus(name, encoding=self.encoding) for name in self.corpora]

    def prepare(self, tokenizer) -> dict[str, PerplexityInputs]:
        """The sequences to score per corpus: tokenized once, before the model is loaded,
        for the estimate and for every pass (dense, pruned)."""
        return {
            name: perplexity_inputs(tokenizer, corpus, self.seqlen, self.max_windows, self.split, self.protocol)
            for name, corpus in zip(self.corpora, self.resolve(), strict=True)
        }


@dataclass
class TaskRequest:
    """``calibprune eval --tasks``: lm-eval tasks on the in-memory model."""

    names: list[str] = field(default_factory=list)
    limit: int | None = None
    seed: int = 0
    mmlu_shots: int = 5
    batch_size: int | str = 8  # or "auto"
    scoring: str = "shared-prefix"

    def check(self) -> None:
        from ..evaluation.batching import parse_batch_size
        from ..evaluation.harness import resolve_tasks
        from ..evaluation.prefix import SCORING_PATHS

        if self.limit is not None and self.limit <= 0:
            raise OptionError("limit", f"{{limit}} {self.limit} must be >= 1")
        if self.scoring not in SCORING_PATHS:
            known = ", ".join(SCORING_PATHS)
            raise OptionError("scoring", f"{{scoring}} {self.scoring!r} is unknown: use one of {known}")
        parse_batch_size(self.batch_size)
        resolve_tasks(self.names, self.mmlu_shots)  # unknown tasks / missing data fail before loading


def check_seqlen(seqlen: int, config, what: str = "{seqlen}") -> None:
    """Refuse (never silently clamp) a window longer than the model supports. ``what``: the
    field that set it, as a template (``{perplexity.seqlen}``), or words."""
    limit = max_sequence_length(config)
    if limit is not None and seqlen > limit:
        path = what.strip("{}") if what.startswith("{") else ""
        raise OptionError(
            path, f"{what} {seqlen} exceeds the model's maximum sequence length {limit}: pass {what} {limit} or less"
        )


def perplexity_sources(ppl: PerplexityRequest | None) -> list[tuple[str, str | None]]:
    """The local files --ppl reads (an output must not overlap them)."""
    return [("{perplexity.corpora}", local_source(name)) for name in (ppl.corpora if ppl else [])]
