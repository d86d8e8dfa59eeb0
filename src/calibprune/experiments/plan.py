"""From a study to stages: every stage keyed by a hash of its fully resolved inputs.

    pool   one generated text pool per (model, synthetic strategy but its filter rate, seed)   [pool: shared]
    calib  one calibration set per (model, strategy, seed)
    dense  one evaluation of the dense model per (model, evaluation block, dtype)
    cell   one pruned-and-evaluated model per (model, calib, setting, evaluation, dtype)

Keys hash the inputs together with the revisions of the algorithms the stage runs, so a
result is reused exactly when it would be recomputed identically, and changing one axis
value leaves every other cell's key (and file) alone. Inputs read from local files (a
calibration source, a perplexity corpus, a model folder) enter a key by their content,
not their path (:mod:`.identity`): editing one recomputes exactly the stages that read it.

**Generated pools** (``pool: shared``). Every seed generates its own pool, under its own
seed, so the variation between generation runs is in every interval over seeds (a pool
re-cut by every seed would leave it out). The arms of one strategy that differ only in
``generation.filter_top`` share it: the pool of seed s is generated once, sized for the
arms' highest rate (rounds until its kept texts fill nsamples x seqlen), and every arm
filters those same texts at its own rate (:func:`calibprune.calibration.synthetic.refilter`),
so a filter study compares rates on the same texts, not on pools of other sizes. One pool
per seed rather than a pool 10x a set: generation is the costly part on CPU, and a seed's
own pool costs what the seed's set costs. ``pool_seed`` is unused (the pool's seed is the
seed's).

**Revisions** (:mod:`.revisions`): every algorithm declares one, bumped whenever its
output changes. A stage's key covers the revisions of exactly what it runs, and of what
those use:

    pool / calib   its strategy (calib/sample, calib/synthetic, calib/detect)
    dense          its evaluation (ppl/<protocol>, tasks)
    cell           its method, allocation, refiner and evaluation; the calibration set's
                   key (hence its strategy's revisions) is one of its inputs
    analysis       analysis/similarity or analysis/membership

so bumping Wanda's revision recomputes exactly the cells that run Wanda (or ADMM and
DSnoT, which call its score). Keys made before revisions existed hashed
``{"calibprune": "0.1.0", "inputs": ...}``; a key still hashes exactly that while every
algorithm it covers is at its base revision (1), and adds ``"revisions": {name: n}`` for
those above it, so committed run folders stay valid until an algorithm they used changes.
The package version is not hashed: a release that changes no algorithm invalidates nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ..pruning.catalog import needs_calibration
from .identity import model_identity, source_identity, with_content
from .revisions import bumped
from .spec import CalibVariant, Evaluation, Setting, Study

# What every key hashed as "calibprune" before revisions existed (the package version of
# then); fixed, so that keys depend on algorithm revisions, not on the package version.
KEY_EPOCH = "0.1.0"


def digest(obj, algorithms: Iterable[str] = ()) -> str:
    """The key of a stage with inputs ``obj`` that runs ``algorithms`` (names, see
    :mod:`.revisions`): the revisions above base enter the hash, see the module docstring."""
    payload = {"calibprune": KEY_EPOCH, "inputs": obj}
    revisions = bumped(algorithms)
    if revisions:
        payload["revisions"] = revisions
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def calib_algorithms(job) -> list[str]:
    """What building a calibration set (or a generated pool) runs."""
    return [job.builder.algorithm]


def evaluation_algorithms(evaluation: Evaluation) -> list[str]:
    """What an evaluation block runs: its perplexity protocol, the task evaluation."""
    return ([f"ppl/{evaluation.ppl.protocol}"] if evaluation.ppl else []) + (["tasks"] if evaluation.tasks else [])


def cell_algorithms(setting: Setting, evaluation: Evaluation) -> list[str]:
    """What pruning and evaluating one cell runs (its calibration set enters by its key)."""
    config = setting.config
    names = [f"method/{config.method}", f"allocation/{config.allocation}"]
    if config.refine != "none":
        names.append(f"refine/{config.refine}")
    return names + evaluation_algorithms(evaluation)


@dataclass
class Stage:
    kind: str  # pool | calib | dense | cell
    key: str
    payload: dict  # what the worker function needs (picklable)
    needs: str | None = None  # key of the stage whose result is this stage's input
    attrs: dict = field(default_factory=dict)
    detail: str = ""  # what tells this stage's calibration apart from others with the same name

    @property
    def label(self) -> str:
        a = dict(self.attrs)
        if self.detail:
            a["calib"] = f"{a['calib']} ({self.detail})"
        if self.kind == "cell":
            return f"{a['model']} | {a['calib']} | {a['setting']} | seed {a['seed']}"
        return f"{self.kind} {' | '.join(str(v) for v in a.values())}"


# How a calibration parameter reads in a stage's label, when strategies that share a name differ in it.
_DETAIL_FORMATS = {
    "nsamples": "{} samples",
    "seqlen": "{} tokens",
    "prefix_tokens": "prefix {}",
    "filter_top": "filter {:.0%}",
    "keep_top": "keep {:.0%}",
}


def variant_details(variants: list[CalibVariant]) -> list[str]:
    """Per variant, the parameters in which it differs from variants of the same name.

    One spec entry with a list (``prefix_tokens: [0, 1, 4]``) expands into variants that
    share their name; without this, progress lines and ``--dry-run`` rows would read the same.
    """
    by_name: dict[str, list[dict]] = {}
    for variant in variants:
        by_name.setdefault(variant.label, []).append(variant.attrs())
    details = []
    for variant in variants:
        siblings = by_name[variant.label]
        mine = variant.attrs()
        varying = [k for k in _DETAIL_FORMATS if k in mine and len({str(s.get(k)) for s in siblings}) > 1]
        details.append(", ".join(_DETAIL_FORMATS[k].format(mine[k]) for k in varying))
    return details


@dataclass
class Plan:
    pools: dict[str, Stage] = field(default_factory=dict)
    calibs: dict[str, Stage] = field(default_factory=dict)
    denses: dict[str, Stage] = field(default_factory=dict)
    cells: dict[str, Stage] = field(default_factory=dict)
    # (model, calib label) -> calib key per seed, for the analysis steps
    sets: dict[tuple[str, str], dict[int, str]] = field(default_factory=dict)
    # (kind, name) -> content entry of a model or source: each local input hashed once per plan
    content: dict[tuple[str, str], dict | None] = field(default_factory=dict)
    # pool family (see pool_family) -> the highest filter rate of its arms: what its pools are sized for
    pool_rates: dict[str, float] = field(default_factory=dict)

    def identity(self, kind: str, name: str) -> dict | None:
        if (kind, name) not in self.content:
            self.content[(kind, name)] = model_identity(name) if kind == "model" else source_identity(name)
        return self.content[(kind, name)]

    def keys(self) -> set[str]:
        """Every stage key of the plan (pools, calibration sets, dense evaluations, cells)."""
        return set(self.pools) | set(self.calibs) | set(self.denses) | set(self.cells)


def pool_family(variant: CalibVariant) -> str:
    """What arms sharing one generated pool per seed have in common: the strategy entry's
    label and every job field but the seed and ``generation.filter_top``."""
    key = variant.job.key()
    key.pop("seed", None)
    generation = dict(key.get("generation") or {})
    generation.pop("filter_top", None)
    return json.dumps({"label": variant.label, **key, "generation": generation}, sort_keys=True, default=str)


def pool_job(variant: CalibVariant, seed: int, plan: Plan):
    """The job that generates seed ``seed``'s pool for ``variant``: its own seed, sized for
    the highest filter rate of the arms sharing it."""
    options = variant.job.options
    rate = plan.pool_rates.get(pool_family(variant), options.filter_top)
    return replace(variant.job, seed=seed, options=replace(options, filter_top=rate))


def calib_stage(study: Study, model: str, variant: CalibVariant, seed: int, plan: Plan, detail: str = "") -> Stage:
    job = replace(variant.job, seed=seed)
    content = {"model": plan.identity("model", model), "source": plan.identity("source", job.source)}
    needs = None
    if variant.pool == "shared":
        generate = pool_job(variant, seed, plan)
        inputs = {"stage": "pool", "model": model, "job": generate.key()}
        needs = digest(with_content(inputs, **content), calib_algorithms(generate))
        plan.pools.setdefault(
            needs,
            Stage(
                "pool",
                needs,
                {"model": model, "job": generate},
                attrs={"model": model, "calib": variant.label, "seed": seed},
                detail=detail,
            ),
        )
    inputs = {"stage": "calib", "model": model, "job": job.key(), "pool": needs}
    key = digest(with_content(inputs, **content), calib_algorithms(job))
    attrs = {"model": model, "calib": variant.label, "seed": seed}
    return plan.calibs.setdefault(key, Stage("calib", key, {"model": model, "job": job}, needs, attrs, detail))


def make_plan(study: Study) -> Plan:
    plan = Plan()
    for variant in study.calibrations:
        if variant.pool == "shared":
            family = pool_family(variant)
            rate = variant.job.options.filter_top
            plan.pool_rates[family] = max(rate, plan.pool_rates.get(family, rate))
    evaluation = study.evaluation.to_dict()
    for model in study.models:
        if study.settings:
            key = dense_key(study, plan, model, evaluation)
            payload = {"model": model, "evaluation": study.evaluation, "dtype": study.dtype}
            plan.denses[key] = Stage("dense", key, payload, attrs={"model": model})
        for variant, detail in zip(study.calibrations, variant_details(study.calibrations), strict=True):
            for seed in study.seeds:
                calib = calib_stage(study, model, variant, seed, plan, detail) if _needs_sets(study) else None
                if calib is not None:
                    plan.sets.setdefault((model, variant.label), {})[seed] = calib.key
                for setting in study.settings:
                    add_cell(study, plan, model, variant, setting, seed, evaluation, detail)
    return plan


def dense_key(study: Study, plan: Plan, model: str, evaluation: dict) -> str:
    inputs = {"stage": "dense", "model": model, "evaluation": evaluation, "dtype": study.dtype}
    content = _evaluation_content(study, plan, model)
    return digest(with_content(inputs, **content), evaluation_algorithms(study.evaluation))


def _evaluation_content(study: Study, plan: Plan, model: str) -> dict:
    """The content entries of what an evaluation reads: the model, and local perplexity corpora."""
    corpora = study.evaluation.ppl.corpora if study.evaluation.ppl else []
    ppl = {name: ident for name in corpora if (ident := plan.identity("source", name))}
    return {"model": plan.identity("model", model), "ppl": ppl}


def _needs_sets(study: Study) -> bool:
    return bool(study.analyses) or any(needs_calibration(s.config) for s in study.settings)


def add_cell(
    study: Study,
    plan: Plan,
    model: str,
    variant: CalibVariant,
    setting: Setting,
    seed: int,
    evaluation,
    detail: str = "",
):
    calibrated = needs_calibration(setting.config)
    calib = calib_stage(study, model, variant, seed, plan, detail) if calibrated else None
    inputs = {
        "stage": "cell",
        "model": model,
        "calib": calib.key if calib else None,
        "prune": setting.config.to_dict(),
        "evaluation": evaluation,
        "dtype": study.dtype,
    }
    algorithms = cell_algorithms(setting, study.evaluation)
    key = digest(with_content(inputs, **_evaluation_content(study, plan, model)), algorithms)
    attrs = {"model": model, **variant.attrs(), **setting.attrs(), "seed": seed}
    payload = {
        "model": model,
        "config": setting.config,
        "evaluation": study.evaluation,
        "dtype": study.dtype,
        "keep_model": study.keep_models,
        "dense_key": dense_key(study, plan, model, evaluation),
    }
    plan.cells[key] = Stage("cell", key, payload, calib.key if calib else None, attrs, detail)
