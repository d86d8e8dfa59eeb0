"""Typed results: the one contract between the jobs, the CLI, the studies and the reports.

* :class:`PruneReport` -- ``calibprune prune`` / :func:`calibprune.prune` (``prune_report.json``);
* :class:`EvalResult` -- ``calibprune eval`` (its ``--output`` file);
* :class:`CorpusPerplexity` -- one corpus's perplexity, :class:`PerplexityResult` -- the
  prune report's ``{"dense": {corpus: ...}, "pruned": {corpus: ...}}``;
* :class:`StageOutcome` -- what a study's worker returns for one stage, its value a
  :class:`DenseResult`, a :class:`CellResult` or a calibration set;
* :class:`StageRecord` -- a run folder's ``cells/<key>.json`` and ``dense/<key>.json``.

Every type is a dataclass whose fields are its JSON keys, in the order they are written:
``to_json()`` gives today's on-disk layout and ``from_json(d)`` reads it, and the files
written before (keys they lack stay left out: :attr:`JsonResult.absent`; keys a type does
not know are kept in :attr:`JsonResult.extra` and written back). Each is also a read-only
mapping over its JSON (``report["summary"]``), for code written against the dicts.

Torch-free: importing this module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from .errors import CalibpruneError

_SPECIAL = ("absent", "extra")


@dataclass(kw_only=True, eq=False)
class JsonResult(Mapping):
    """A dataclass that is its JSON object.

    ``absent``: the keys the JSON it was read from lacks (an older file, or the API's
    engine-only prune report); while such a field is None, ``to_json`` leaves it out again.
    ``extra``: keys this type does not know, written back after its own."""

    absent: frozenset[str] = field(default=frozenset(), repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    # field name -> how a JSON value becomes the typed value (None stays None)
    DECODE: ClassVar[dict[str, Any]] = {}

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            if f.name in _SPECIAL:
                continue
            value = getattr(self, f.name)
            if value is None and f.name in self.absent:
                continue
            out[f.name] = _encode(value)
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Mapping):
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise CalibpruneError(f"a {cls.__name__} is a JSON object, not a {type(data).__name__}")
        known = {f.name: f for f in fields(cls) if f.name not in _SPECIAL}
        required = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING]
        lacking = [n for n in required if n not in data]
        if lacking:
            raise CalibpruneError(f"a {cls.__name__} needs {', '.join(map(repr, lacking))}; this one lacks them")
        values = {n: _decode(cls.DECODE.get(n), data[n]) for n in known if n in data}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, absent=frozenset(n for n in known if n not in data), extra=extra)

    # the read-only mapping over the JSON
    def __getitem__(self, key: str):
        if key in _SPECIAL or key not in self._names():
            return self.extra[key]
        value = getattr(self, key)
        if value is None and key in self.absent:
            raise KeyError(key)
        return _encode(value)

    @classmethod
    def _names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def __iter__(self):
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


def _encode(value):
    """The JSON of a typed value, of a dict of them (``{corpus: CorpusPerplexity}``), else the value."""
    if isinstance(value, JsonResult):
        return value.to_json()
    if isinstance(value, dict) and any(isinstance(v, JsonResult) for v in value.values()):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(how, value):
    return value if how is None or value is None else how(value)


@dataclass(kw_only=True, eq=False)
class CorpusPerplexity(JsonResult):
    """One corpus's perplexity (:func:`calibprune.evaluation.perplexity.score_perplexity`).
    ``concat-windows`` has ``windows`` and ``nll``; ``per-example`` has ``examples``,
    ``ppl_median`` and ``special_tokens``."""

    protocol: str
    corpus: str
    split: str | None = None
    seqlen: int | None = None
    windows: int | None = None
    examples: int | None = None
    tokens_scored: int | None = None
    nll: float | None = None
    ppl: float
    ppl_median: float | None = None
    special_tokens: Any = None


def corpus_scores(data: Mapping | None) -> dict[str, CorpusPerplexity] | None:
    """``{corpus: record}`` -> ``{corpus: CorpusPerplexity}`` (None stays None)."""
    return None if data is None else {name: CorpusPerplexity.from_json(r) for name, r in data.items()}


@dataclass(kw_only=True, eq=False)
class PerplexityResult(JsonResult):
    """The prune report's perplexity: per corpus, of the dense model (absent when a study
    skips it: it evaluates the dense model once) and of the pruned one."""

    dense: dict[str, CorpusPerplexity] | None = None
    pruned: dict[str, CorpusPerplexity] | None = None

    DECODE: ClassVar[dict[str, Any]] = {"dense": corpus_scores, "pruned": corpus_scores}

    def columns(self) -> dict[str, dict[str, CorpusPerplexity]]:
        """The models measured, in order (``dense``, ``pruned``), each ``{corpus: result}``."""
        return {name: per for name in ("dense", "pruned") if (per := getattr(self, name))}


def metrics_from(perplexity: Mapping[str, CorpusPerplexity] | None, tasks: Mapping | None) -> dict[str, float]:
    """Flat metric names: ``ppl/<corpus>``, ``acc/<task>``, ``acc_norm/<task>``, ``acc/average``."""
    out: dict[str, float] = {}
    for corpus, result in (perplexity or {}).items():
        out[f"ppl/{corpus}"] = result.ppl
    tasks = tasks or {}
    for name, row in (tasks.get("tasks") or {}).items():
        for metric in ("acc", "acc_norm"):
            if row.get(metric) is not None:
                out[f"{metric}/{name}"] = row[metric]
    if (tasks.get("average") or {}).get("acc") is not None:
        out["acc/average"] = tasks["average"]["acc"]
    return out


@dataclass(kw_only=True, eq=False)
class PruneReport(JsonResult):
    """``prune_report.json``. :func:`calibprune.prune` fills the engine's part only
    (``layers`` ... ``activations``); ``calibprune prune`` adds the rest. ``tasks``: the
    lm-eval results of the pruned model (the dict of :func:`~calibprune.evaluation.harness.evaluate_tasks`)."""

    command: str | None = None
    argv: list[str] | None = None
    options: dict | None = None
    model: dict | None = None
    device: dict | None = None
    config: dict | None = None
    calibration: dict | None = None
    seeds: dict | None = None
    layers: dict[str, dict]
    allocation: dict | None = None
    summary: dict[str, Any]
    batching: dict | None = None
    activations: dict | None = None
    perplexity: PerplexityResult | None = None
    environment: dict | None = None
    tasks: dict | None = None
    stages: dict | None = None
    wall_s: float | None = None

    DECODE: ClassVar[dict[str, Any]] = {"perplexity": PerplexityResult.from_json}

    def metrics(self, which: str = "pruned") -> dict[str, float]:
        """The flat metrics of the ``which`` model (``pruned`` or ``dense``); tasks are the pruned model's."""
        if which not in ("dense", "pruned"):
            raise CalibpruneError(f"which={which!r}: use dense or pruned")
        ppl = getattr(self.perplexity, which) if self.perplexity is not None else None
        return metrics_from(ppl, self.tasks if which == "pruned" else None)


@dataclass(kw_only=True, eq=False)
class EvalResult(JsonResult):
    """``calibprune eval``'s result: ``perplexity`` is ``{corpus: CorpusPerplexity}`` (one model),
    ``tasks`` the lm-eval results, ``batch_size`` the probe of ``--batch-size auto``."""

    command: str = "eval"
    argv: list[str] | None = None
    options: dict | None = None
    model: dict | None = None
    device: dict | None = None
    batch_size: dict | None = None
    tasks: dict | None = None
    perplexity: dict[str, CorpusPerplexity] | None = None
    stages: dict | None = None
    environment: dict | None = None

    DECODE: ClassVar[dict[str, Any]] = {"perplexity": corpus_scores}

    def metrics(self) -> dict[str, float]:
        return metrics_from(self.perplexity, self.tasks)


@dataclass(kw_only=True, eq=False)
class DenseResult(JsonResult):
    """A study's dense evaluation: the model's metrics and the stages' costs."""

    metrics: dict[str, float]
    stages: dict | None = None


@dataclass(kw_only=True, eq=False)
class CellResult(JsonResult):
    """A study's cell: the pruned model's metrics and what the report keeps of its prune report."""

    metrics: dict[str, float]
    summary: dict | None = None
    allocation: dict | None = None
    calibration: dict | None = None
    stages: dict | None = None
    prune_wall_s: float | None = None

    @classmethod
    def of_report(cls, report: PruneReport) -> CellResult:
        return cls(
            metrics=report.metrics("pruned"),
            summary=report.summary,
            allocation=report.allocation,
            calibration={k: v for k, v in (report.calibration or {}).items() if k != "environment"},
            stages=report.stages,
            prune_wall_s=report.wall_s,
        )


STAGE_VALUES: dict[str, type[JsonResult]] = {"dense": DenseResult, "cell": CellResult}
RUN_KEYS = ("wall_s", "host", "threads", "platform")  # where and how long a stage ran


@dataclass(kw_only=True, eq=False)
class StageOutcome(JsonResult):
    """What a worker returns for one stage (:func:`calibprune.experiments.stages.execute`):
    ``ok`` with its ``value`` (a :class:`DenseResult`, a :class:`CellResult`, or the
    calibration set of a pool or calib stage), or not, with ``error`` and ``traceback``."""

    ok: bool
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    wall_s: float = 0.0
    host: str | None = None
    threads: int | None = None
    platform: dict | None = None

    @classmethod
    def failure(cls, error: str, traceback: str | None = None, wall_s: float = 0.0) -> StageOutcome:
        """A stage that did not run (its input failed, or its node was lost)."""
        return cls(ok=False, error=error, traceback=traceback, wall_s=wall_s)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "failed"

    def stored(self) -> dict:
        """What a run folder's record keeps of it: where and how long it ran, then the
        value's fields (ok) or the error and traceback."""
        out = {key: getattr(self, key) for key in RUN_KEYS}
        if self.ok:
            out.update(_encode(self.value) or {})
        else:
            out.update(error=self.error, traceback=self.traceback)
        return out


@dataclass(kw_only=True, eq=False)
class StageRecord(JsonResult):
    """A run folder's ``cells/<key>.json`` (``format``, ``key``, ``calib_key``, ``dense_key``
    and a :class:`CellResult`'s fields) or ``dense/<key>.json`` (a :class:`DenseResult`'s),
    ``error``/``traceback`` when ``status`` is ``failed``."""

    format: str | None = None
    key: str | None = None
    status: str
    attrs: dict
    calib_key: str | None = None
    dense_key: str | None = None
    wall_s: float | None = None
    host: str | None = None
    threads: int | None = None
    platform: dict | None = None
    metrics: dict[str, float] | None = None
    summary: dict | None = None
    allocation: dict | None = None
    calibration: dict | None = None
    stages: dict | None = None
    prune_wall_s: float | None = None
    error: str | None = None
    traceback: str | None = None

    @classmethod
    def of(cls, attrs: dict, outcome: StageOutcome, **keys) -> StageRecord:
        """The record of ``outcome``; ``keys``: a cell's ``calib_key`` and ``dense_key``."""
        return cls.from_json({"status": outcome.status, "attrs": attrs, **keys, **outcome.stored()})

    @property
    def ok(self) -> bool:
        return self.status == "ok"
