"""What a job is asked for: the calibration data, the perplexity and the lm-eval tasks.

Each request is a dataclass of declared options (:func:`~calibprune.options.option`): its
defaults, checks, help and the rule that says when each applies are written here once, and
``calibprune prune``/``eval`` take their flags from them, the study spec its
``evaluation`` keys, Python its keyword arguments. The ``applies`` rules read the whole
command's options: a :class:`PruneRun` or an :class:`EvalRun`.

Each request checks itself from its arguments alone (``check``), before any model is
loaded; what needs the model's config (the window length) is :func:`check_seqlen`. This
module is torch-free (the CLI's audit reads it before torch is imported): what needs torch
is imported where it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..calibration import is_calibration_folder
from ..calibration.job import CalibJob, check_windows, decodes_local_files
from ..corpora import CORPORA, DEFAULT_ENCODING, get_corpus, local_source
from ..evaluation.names import PPL_PROTOCOL, PPL_SPLITS, PROTOCOLS, SCORING_PATHS, parse_batch_size
from ..options import OptionError, Rule, at_least, check_fields, declared_as, option

DEFAULT_NSAMPLES, DEFAULT_SEQLEN = 128, 2048  # the published code's calibration defaults

Say = Callable[[str], None]  # receives one-line notices (estimates, resume points)

CalibrationSetLike = Any  # or an in-memory calibprune.calibration.CalibrationSet (torch: not imported here)


def _needs_calibration(run) -> bool:
    from ..pruning.catalog import needs_calibration  # torch-free

    return needs_calibration(run.config)


def _weights_only(run) -> str:
    return (
        f"with {{method={run.config.method}}}: it reads only the weights (|W|), no calibration data is used; drop "
        "them, or add {allocation=owl} / {refine=dsnot}, which do use calibration data"
    )


# The calibration options apply when the run reads calibration data ...
CALIBRATED = Rule(_needs_calibration, _weights_only)


def _sampled(run) -> bool:
    return _needs_calibration(run) and not run.calibration.prebuilt


def _sampled_why(run) -> str:
    if not _needs_calibration(run):
        return _weights_only(run)
    return (
        f"when {{calibration.source}} is a calibration-set folder ({run.calibration.source} was sampled when it was "
        "built; its manifest.json records how): drop them, or pass the source itself to {calibration.source}"
    )


# ... and the sampling options only when it samples a source (a set folder brings its windows)
SAMPLED = Rule(_sampled, _sampled_why)


def _reads_fields(run) -> bool:
    return _sampled(run) and not (isinstance(run.calibration.source, str) and run.calibration.source in CORPORA)


def _reads_fields_why(run) -> str:
    if not _sampled(run):
        return _sampled_why(run)
    return (
        f"with the corpus {run.calibration.source!r}: it names the text field of local .jsonl/.parquet/.arrow "
        "files; drop it"
    )


def read_as_text(run) -> list:
    """What a prune run reads as text: ``--calib`` when it samples it, and the ``--ppl`` corpora."""
    calib = [run.calibration.source] if _sampled(run) else []
    return calib + list(run.perplexity.corpora if run.perplexity is not None else ())


@dataclass
class CalibrationRequest:
    """``--calib`` and its sampling options (the options :class:`CalibJob` declares, with
    the rules of a prune run).

    ``nsamples``/``seqlen`` left at None mean 128 x 2048 for a source that is sampled,
    and the set's own size for a prebuilt set (in memory or a folder). Given for a
    prebuilt set, they are honoured by taking its first ``nsamples`` windows cut to
    their first ``seqlen`` tokens, or refused when the set is too small.
    """

    source: str | CalibrationSetLike = declared_as(
        CalibJob,
        "source",
        help="Calibration data: a calibration-set folder (from `calibprune calib`), a corpus name, "
        "or a local .txt/.jsonl/.parquet/.arrow file or folder.",
        applies=CALIBRATED,
    )
    nsamples: int | None = declared_as(
        CalibJob,
        "nsamples",
        None,
        help="Calibration windows. With a set folder: use its first N windows.",
        show_default="128; a set folder: all of its windows",
        applies=CALIBRATED,
    )
    seqlen: int | None = declared_as(
        CalibJob,
        "seqlen",
        None,
        help="Tokens per calibration window. With a set folder: cut its windows to the first N tokens.",
        show_default="2048; a set folder: its window length",
        applies=CALIBRATED,
    )
    seed: int = declared_as(CalibJob, "seed", help="Seed of the window sampling (sources only).", applies=SAMPLED)
    sampling: str | None = declared_as(
        CalibJob, "sampling", help="stream | document (sources only).", show_default="the corpus's own rule",
        applies=SAMPLED,
    )  # fmt: skip
    windows: str = declared_as(
        CalibJob,
        "windows",
        help="Stream windows: disjoint (no overlaps) | random (independent starts, published loaders); sources only.",
        applies=SAMPLED,
    )
    text_field: str = declared_as(CalibJob, "text_field", applies=Rule(_reads_fields, _reads_fields_why))
    encoding: str = declared_as(
        CalibJob,
        "encoding",
        help="Encoding of local .txt/.jsonl files (calibration source and perplexity corpora), e.g. latin-1; "
        "decoding errors are refused.",
        applies=decodes_local_files(read_as_text, "{calibration.source} and {perplexity.corpora}"),
    )

    @property
    def prebuilt(self) -> bool:
        """An in-memory set or a saved set folder: it brings its own nsamples/seqlen."""
        return not isinstance(self.source, str) or is_calibration_folder(self.source)

    @property
    def window_count(self) -> int:
        return DEFAULT_NSAMPLES if self.nsamples is None else self.nsamples

    @property
    def window_length(self) -> int:
        return DEFAULT_SEQLEN if self.seqlen is None else self.seqlen

    def check(self) -> None:
        check_fields(self)
        if not self.prebuilt:  # the window rule as a sampled source resolves it
            check_windows(self.window_count, self.window_length, self.sampling, self.windows)

    def to_dict(self) -> dict:
        """The request as given (an in-memory set is named by its one-line repr)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["source"] = self.source if isinstance(self.source, str) else repr(self.source)
        return out

    def build(self, tokenizer):
        """The :class:`~calibprune.calibration.CalibrationSet` to prune with."""
        from ..calibration import build_calibration

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
            if isinstance(self.source, str):
                calibration.manifest["folder"] = str(Path(self.source).resolve())
            calibration = calibration.head(self.nsamples, self.seqlen)
        return calibration


def _with_perplexity(run) -> bool:
    return run.perplexity is not None and bool(run.perplexity.corpora)


# the perplexity options apply when some corpus is scored
SCORED = Rule(_with_perplexity, "without {perplexity.corpora}: drop them or pass {perplexity.corpora=CORPUS}")


def _batch_size_check(value) -> str | None:
    try:
        parse_batch_size(value)
    except OptionError as error:
        return error.template.replace("{batch_size}", "{}")
    return None


@dataclass
class PerplexityRequest:
    """Perplexity of a model on ``corpora`` by a named protocol (:mod:`calibprune.evaluation.perplexity`)."""

    corpora: list[str] = option(
        default_factory=list, help="Also report perplexity on these corpora or local files (comma-separated)."
    )
    seqlen: int = option(
        2048,
        help="Perplexity window length (per-example: max tokens per document).",
        check=at_least(2, "tokens"),
        applies=SCORED,
    )
    max_windows: int | None = option(
        None,
        help="Score at most this many windows (or documents).",
        show_default="all windows of the held-out pool",
        check=at_least(1),
        applies=SCORED,
    )
    batch_size: int | str = option(
        1,
        help="Perplexity windows per forward pass, or 'auto'.",
        check=_batch_size_check,
        metavar="N|auto",
        applies=SCORED,
    )
    protocol: str = option(
        PPL_PROTOCOL,
        help="concat-windows (Wanda/SparseGPT) | per-example (Alpaca).",
        choices=PROTOCOLS,
        applies=SCORED,
    )
    split: str | None = option(
        None,
        help="calib | heldout | all.",
        show_default="heldout; all for local files",
        check=lambda v: (
            None if v is None or v in PPL_SPLITS else f"{{}} {v!r} is unknown: use one of " + ", ".join(PPL_SPLITS)
        ),
        applies=SCORED,
    )
    encoding: str = option(
        DEFAULT_ENCODING,
        help="Encoding of the local .txt/.jsonl files scored, e.g. latin-1; decoding errors are refused.",
        keyed_when_set=True,
        applies=decodes_local_files(
            lambda run: list(run.perplexity.corpora if run.perplexity is not None else ()), "{perplexity.corpora}"
        ),
    )

    def __post_init__(self):
        self.corpora = list(self.corpora)
        check_fields(self)
        self.batch_size = parse_batch_size(self.batch_size)  # "8" (as typed) -> 8

    def check(self) -> None:
        for corpus in self.resolve():  # unknown names fail here, listing the known ones
            corpus.check_readable()  # an undecodable local file fails before the model is loaded

    def resolve(self) -> list:
        return [get_corpus(name, encoding=self.encoding) for name in self.corpora]

    def prepare(self, tokenizer) -> dict:
        """The sequences to score per corpus (name -> ``PerplexityInputs``): tokenized once,
        before the model is loaded, for the estimate and for every pass (dense, pruned)."""
        from ..evaluation.perplexity import perplexity_inputs

        return {
            name: perplexity_inputs(tokenizer, corpus, self.seqlen, self.max_windows, self.split, self.protocol)
            for name, corpus in zip(self.corpora, self.resolve(), strict=True)
        }


def _with_tasks(run) -> bool:
    return run.tasks is not None and bool(run.tasks.names)


EVALUATED = Rule(_with_tasks, "without {tasks.names}: drop them or pass {tasks.names}")


@dataclass
class TaskRequest:
    """``calibprune eval --tasks``: lm-eval tasks on the in-memory model."""

    names: list[str] = option(
        default_factory=list,
        help="lm-eval tasks (comma-separated): boolq,winogrande,piqa,hellaswag,arc_easy,arc_challenge,mmlu",
    )
    limit: int | None = option(
        None,
        help="Evaluate a fixed, seeded subset of at most N documents per task.",
        check=at_least(1),
        applies=EVALUATED,
    )
    seed: int = option(0, help="Seed of the limit subsets and of lm-eval.", applies=EVALUATED)
    mmlu_shots: int = option(
        5,
        help="MMLU few-shot examples (paper text: 5; paper code: 0).",
        check=at_least(0),
        applies=Rule(
            lambda run: _with_tasks(run) and "mmlu" in run.tasks.names,
            "unless {tasks.names} includes mmlu: drop it or add mmlu to {tasks.names}",
        ),
    )
    batch_size: int | str = option(
        8,
        help="Sequences per forward pass, at most (batches also hold <= 4096 tokens); 'auto': the largest "
        "that fits (GPU) or the fastest measured (CPU), reported in the output.",
        check=_batch_size_check,
        metavar="N|auto",
    )
    scoring: str = option(
        "shared-prefix",
        help="shared-prefix (each shared context computed once) | plain (lm-eval's way).",
        choices=SCORING_PATHS,
    )

    def __post_init__(self):
        self.names = list(self.names)
        check_fields(self)
        self.batch_size = parse_batch_size(self.batch_size)

    def check(self) -> None:
        from ..evaluation.harness import resolve_tasks

        resolve_tasks(self.names, self.mmlu_shots)  # unknown tasks / missing data fail before loading


@dataclass(frozen=True)
class PruneRun:
    """The resolved options of one prune command, as the requests' ``applies`` rules read them."""

    config: Any  # a calibprune.config.PruneConfig
    calibration: CalibrationRequest
    perplexity: PerplexityRequest | None = None
    tasks: TaskRequest | None = None


@dataclass(frozen=True)
class EvalRun:
    """The resolved options of one eval command, as the requests' ``applies`` rules read them."""

    perplexity: PerplexityRequest | None = None
    tasks: TaskRequest | None = None


def check_seqlen(seqlen: int, config, what: str = "{seqlen}") -> None:
    """Refuse (never silently clamp) a window longer than the model supports. ``what``: the
    field that set it, as a template (``{perplexity.seqlen}``), or words."""
    from ..models.loading import max_sequence_length

    limit = max_sequence_length(config)
    if limit is not None and seqlen > limit:
        path = what.strip("{}") if what.startswith("{") else ""
        raise OptionError(
            path, f"{what} {seqlen} exceeds the model's maximum sequence length {limit}: pass {what} {limit} or less"
        )


def perplexity_sources(ppl: PerplexityRequest | None) -> list[tuple[str, str | None]]:
    """The local files --ppl reads (an output must not overlap them)."""
    return [("{perplexity.corpora}", local_source(name)) for name in (ppl.corpora if ppl else [])]


__all__ = [
    "CalibrationRequest",
    "EvalRun",
    "PerplexityRequest",
    "PruneRun",
    "TaskRequest",
    "check_seqlen",
    "perplexity_sources",
]
