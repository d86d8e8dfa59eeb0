"""What ``calibprune calib`` builds: :class:`CalibJob`, its declared options and its stage key.

Torch-free: the CLI's audit and the study spec read these declarations before torch is
imported. The options shared by every strategy (source, window count and length, seed, the
reading of local files) are declared here; each strategy's own options are declared by the
strategy (:mod:`calibprune.calibration.strategies`) and sit in ``CalibJob.options``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from ..corpora import CORPORA, is_local_source
from ..options import OptionError, Rule, at_least, check_fields, check_values, literal, option
from .strategies import all_strategies, get_strategy, names

MODES = ("stream", "document")
WINDOW_RULES = ("disjoint", "random")
DEFAULT_ENCODING = "utf-8"


def undecoded_why(what: str) -> str:
    """Why an encoding is refused when nothing is read as local text (``what``: the options
    naming the sources, as a template or the CLI's words)."""
    return (
        f"when no local file is read ({what} name corpora or calibration-set folders): it is how local "
        ".txt/.jsonl files are decoded; drop it"
    )


def decodes_local_files(sources: Callable[[Any], list], what: str) -> Rule:
    """An ``encoding`` option's rule: it applies when some source of ``sources(root)`` is a
    local file (read as text)."""
    return Rule(lambda root: any(is_local_source(s) for s in sources(root)), undecoded_why(what))


def _sampling_applies(job) -> bool:
    return get_strategy(job.strategy).window_rule is None


def _sampling_why(job) -> str:
    rule = get_strategy(job.strategy).window_rule
    return f"with {{strategy={job.strategy}}}: its windows are cut by a fixed rule ({rule}); drop it"


@dataclass
class CalibJob:
    """A calibration set to build: the source, ``nsamples`` windows of ``seqlen`` tokens,
    the seed, and the strategy with its own ``options`` (``None``: the strategy's defaults)."""

    source: str = option(
        "wiki-en", help="Corpus name, hub name (c4, wikipedia, slimpajama, dclm) or local file/folder."
    )
    nsamples: int = option(128, help="Calibration windows.", check=at_least(1, "the paper uses 128"))
    seqlen: int = option(2048, help="Tokens per window.", check=at_least(2, "tokens; the paper uses 2048"))
    seed: int = option(0, help="Seed of sampling and generation.")
    sampling: str | None = option(
        None,
        help="stream | document.",
        show_default="the source's own rule",
        check=lambda v: None if v is None or v in MODES else f"{{}} {v!r} is unknown: use one of {', '.join(MODES)}",
        applies=Rule(_sampling_applies, _sampling_why),
    )
    text_field: str = option(
        "text",
        help="Text field/column of .jsonl/.parquet/.arrow sources.",
        applies=Rule(
            lambda job: job.source not in CORPORA,
            lambda job: (
                f"with the corpus {literal(repr(job.source))}: it names the text field of local "
                ".jsonl/.parquet/.arrow files; drop it"
            ),
        ),
    )
    windows: str = option(
        "disjoint",
        help="Stream windows: disjoint (no overlaps) | random (independent starts, published loaders).",
        check=lambda v: (
            None
            if v in WINDOW_RULES
            else f"{{}} {v!r} is unknown: use 'disjoint' (no overlapping windows, default) or 'random' "
            "(independent random starts, as the published loaders)"
        ),
    )
    strategy: str = option(
        "sample",
        help="How the set is built: " + ", ".join(f"{s.name} ({s.summary})" for s in all_strategies()) + ".",
        check=lambda v: None if v in names() else f"{{}} {v!r} is unknown: use one of {', '.join(names())}",
    )
    options: Any = None  # the strategy's own options object; None: its defaults
    encoding: str = option(
        DEFAULT_ENCODING,
        help="Encoding of local .txt/.jsonl files (e.g. latin-1, cp1252); text not valid in it is refused, never "
        "replaced.",
        keyed_when_set=True,
        applies=decodes_local_files(lambda job: [job.source], "{source}"),
    )

    def __post_init__(self):
        check_values(type(self), strategy=self.strategy)  # an unknown name is refused, listing the known ones
        strategy = get_strategy(self.strategy)
        if self.options is None:
            self.options = strategy.default_options()
        elif strategy.options is None or not isinstance(self.options, strategy.options):
            wanted = "no options" if strategy.options is None else strategy.options.__name__
            raise OptionError(
                "options",
                f"{{strategy={self.strategy}}} takes {wanted}, not a {type(self.options).__name__}",
            )
        check_fields(self)

    @property
    def builder(self):
        """The registered strategy object."""
        return get_strategy(self.strategy)

    def check(self) -> None:
        """What the strategy refuses of this job, from its arguments alone."""
        self.builder.check(self)

    def key(self) -> dict:
        """What a study's stage key hashes of this job.

        The layout is the one every committed cell was keyed with (the 0.1 ``CalibJob``,
        which held every strategy's fields at once): the shared fields, then each of the
        paper's strategies' fields at their defaults, overwritten by the strategy that runs;
        a strategy added since adds its own options under its section. ``encoding`` enters
        only when set (see :mod:`calibprune.utils.keys`)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("options", "encoding")}
        for strategy in all_strategies():
            if strategy.name in LEGACY_KEYED:
                out |= strategy.key_fields(strategy.default_options())
        out |= self.builder.key_fields(self.options)
        if self.encoding != DEFAULT_ENCODING:
            out["encoding"] = self.encoding
        return out

    def to_dict(self) -> dict:
        """The job as reports record it (its options under the strategy's section)."""
        from dataclasses import asdict

        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        if self.options is not None:
            out[self.builder.section] = asdict(self.options)
        return out


# the strategies whose fields the 0.1 CalibJob held (their key layout is kept: module docstring of key)
LEGACY_KEYED = ("sample", "synthetic", "detect")


def check_windows(nsamples: int, seqlen: int, sampling: str | None = None, windows: str = "disjoint") -> None:
    """Check window arguments by :class:`CalibJob`'s declarations (for functions taking them plainly)."""
    check_values(CalibJob, nsamples=nsamples, seqlen=seqlen, sampling=sampling, windows=windows)
