"""A study spec, resolved: the objects :func:`calibprune.experiments.spec.parse_study` makes
(every value checked, every default filled) and the plan, the runs and the reports read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..analysis.options import MembershipOptions, SimilarityOptions
from ..calibration.job import CalibJob
from ..config import PruneConfig
from ..jobs.requests import PerplexityRequest, TaskRequest
from ..utils.keys import key_fields

# a study's analysis steps, by kind: their declared options
ANALYSIS_OPTIONS = {"similarity": SimilarityOptions, "membership": MembershipOptions}


def job_record(job: CalibJob) -> dict:
    """A calibration job as the study's records hold it (the layout of its stage key, with
    ``encoding`` always: see :meth:`CalibJob.key`)."""
    return job.key() | {"encoding": job.encoding}


@dataclass(frozen=True)
class CalibVariant:
    """One calibration strategy with every parameter fixed except the seed."""

    label: str
    job: CalibJob
    # synthetic: "per-seed" = each seed and arm generates its own pool; "shared" = one pool per seed,
    # shared by the arms that differ only in generation.filter_top (each filters the same texts)
    pool: str = "per-seed"
    pool_seed: int = 0  # always 0 (a spec's non-zero pool_seed is refused): kept in the records' layout
    # where in the spec it came from: the strategy's key path, and the key path of nsamples / seqlen
    path: str = field(default="", compare=False)
    where: dict = field(default_factory=dict, compare=False)

    @property
    def strategy(self) -> str:
        return self.job.strategy

    def attrs(self) -> dict:
        """What the report groups and plots by."""
        job = self.job
        out = {"calib": self.label, "source": job.source, "strategy": job.strategy, "nsamples": job.nsamples}
        out["seqlen"] = job.seqlen
        return out | job.builder.attrs(job.options)

    def to_dict(self) -> dict:
        return {"label": self.label, "job": job_record(self.job), "pool": self.pool, "pool_seed": self.pool_seed}


@dataclass(frozen=True)
class Setting:
    label: str
    config: PruneConfig

    def attrs(self) -> dict:
        target = self.config.target
        return {
            "setting": self.label,
            "method": self.config.method,
            "allocation": self.config.allocation,
            "refine": self.config.refine,
            "sparsity": target.ratio,
            "pattern": f"{target.n}:{target.m}" if target.is_nm else "unstructured",
        }


@dataclass(frozen=True)
class Evaluation:
    ppl: PerplexityRequest | None
    tasks: TaskRequest | None

    def to_dict(self) -> dict:
        return {"ppl": key_fields(self.ppl) if self.ppl else None, "tasks": asdict(self.tasks) if self.tasks else None}


@dataclass(frozen=True)
class Analysis:
    """An analysis step: its kind and its options as the spec gives them (the key of its
    output hashes them as given; :func:`analysis_options` resolves them)."""

    kind: str
    params: dict


def analysis_options(step: Analysis, model: str):
    """The step's options object for ``model`` (the tokenizer of ``unit: token``)."""
    params = {k: v for k, v in step.params.items() if k != "extra"}
    if step.kind == "similarity" and params.get("unit") == "token":
        params["model"] = model
    return ANALYSIS_OPTIONS[step.kind](**params)


@dataclass
class Study:
    name: str
    path: str
    raw: dict
    models: list[str]
    seeds: list[int]
    calibrations: list[CalibVariant]
    settings: list[Setting]
    evaluation: Evaluation
    analyses: list[Analysis] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    keep_models: bool = False
    dtype: str | None = None
    cost: dict = field(default_factory=dict)
