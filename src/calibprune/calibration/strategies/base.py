"""What a calibration strategy is: a registered object with its own options and its own ``build``.

A strategy turns a source into a :class:`~calibprune.calibration.CalibrationSet`. It owns

* ``options``: a dataclass of declared options (:func:`calibprune.options.option`) or
  ``None``; the CLI's flags, the study spec's keys (under ``section``) and the Python
  keywords (``CalibJob(options=...)``) all derive from it;
* ``build(job, inputs)``: the set, from the job (source, window count and length, seed,
  its options) and what the job runner prepared (:class:`BuildInputs`);
* a few facts the runner, the studies and the reports ask every strategy the same way
  (``runs_model``, ``window_rule``, ``key_fields``, ``attrs``, ``generation``, ``seconds``).

This module and the strategy modules import no torch at module level (their ``build``
imports the algorithms), so the CLI's audit and the study spec read the declarations in a
fraction of a second. The registry, :data:`STRATEGIES`, is filled by importing every
module of this package (:func:`calibprune.calibration.strategies.discover`): adding a
strategy is one new module here (its class and its options) plus its test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...utils.registry import Registry

STRATEGIES = Registry("calibration strategy")


@dataclass
class BuildInputs:
    """What the job runner hands a strategy's ``build``: the tokenizer, the source, the model
    (``None`` unless the strategy ``runs_model``) and the run's plumbing."""

    tokenizer: Any
    corpus: Any
    model: Any = None
    progress: bool = True
    work_dir: str | Path | None = None  # where a resumable strategy keeps finished work
    overwrite: bool = False
    say: Callable[[str], None] = lambda line: None


class Strategy:
    """Base class of a calibration strategy (see the module docstring)."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line, for --help and the catalog
    options: ClassVar[type | None] = None  # its declared options
    section: ClassVar[str | None] = None  # the key its options sit under in a study's strategy entry
    runs_model: ClassVar[bool] = False  # loads the model's weights (else only its tokenizer)
    # what it keeps in a work folder as it goes (a rerun resumes from it), in words; None: nothing
    resumable: ClassVar[str | None] = None
    # None: the source's own rule or the job's ``sampling``; else the fixed rule, in words
    window_rule: ClassVar[str | None] = None
    expanding: ClassVar[tuple[str, ...]] = ()  # options a list expands into variants in a study spec
    # where its windows are cut from: "source" (the whole calib pool of the source), "subset" (texts of
    # the source it selected), "generated" (texts it generated; a study can share one pool across seeds)
    windows_from: ClassVar[str] = "source"

    # its algorithm revision (bump it in the commit that changes its output; stage keys include it) and the
    # algorithms it calls; the paper's three declare theirs in their algorithm modules (REVISIONS)
    revision: ClassVar[int] = 1
    uses: ClassVar[tuple[str, ...]] = ()

    @property
    def algorithm(self) -> str:
        """Its name in the per-algorithm revisions (:mod:`calibprune.experiments.revisions`)."""
        return f"calib/{self.name}"

    def default_options(self):
        return None if self.options is None else self.options()

    def check(self, job) -> None:
        """Refuse a job this strategy cannot build, from its arguments alone (before any model)."""

    def build(self, job, inputs: BuildInputs):
        raise NotImplementedError

    def key_fields(self, options) -> dict:
        """What a stage key hashes of ``options`` (see ``CalibJob.key``)."""
        return {} if options is None else {self.section: asdict(options)}

    def attrs(self, options) -> dict:
        """What a study report groups and plots by, beside the source and size."""
        return {}

    def generation(self, job):
        """The :class:`GenerationOptions` of a strategy that generates text (its cost is estimated
        from them before it starts), else ``None``."""
        return None

    def seconds(self, job, rates: dict) -> float:
        """A rough cost estimate from a study's measured rates (``load_s``, ``tokens_per_s``,
        ``gen_tokens_per_s``), for the study's time estimate."""
        return 1.0

    def label(self, source: str) -> str:
        """The default label of a study variant of this strategy on ``source``."""
        return f"{self.name}:{source}"


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    instance = cls()
    STRATEGIES.register(cls.name)(instance)
    return cls
