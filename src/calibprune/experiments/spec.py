"""Study specs: a YAML file whose named axes multiply into cells.

    models x calibration strategies x pruning settings x seeds  ->  cells

A list where a scalar is expected (``sparsity: [0.3, 0.5]``, ``nsamples: [64, 128]``,
``generation: {filter_top: [0, 0.1]}``) expands that entry into one variant per value.
Everything is validated before any work: unknown keys and bad values are refused with
their key path (``pruning[1].refine``) and the fix, and every pruning setting and
calibration strategy is built into the engine's own objects (:class:`PruneConfig`,
whose ``check_combination`` refuses impossible combinations; :class:`CalibJob`;
:class:`PerplexityRequest`; :class:`TaskRequest`), so no rule is restated here.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import fields
from pathlib import Path

import yaml

from ..calibration.job import CalibJob
from ..calibration.strategies import all_strategies, get_strategy
from ..config import PruneConfig, SparsityTarget
from ..errors import CalibpruneError
from ..jobs.requests import PerplexityRequest, TaskRequest
from ..options import OptionError, build, walk
from . import claims as paper_claims
from .study import (  # noqa: F401  (the resolved objects, re-exported: code imports them from here)
    ANALYSIS_OPTIONS,
    Analysis,
    CalibVariant,
    Evaluation,
    Setting,
    Study,
    analysis_options,
    job_record,
)

TOP_KEYS = {
    "study", "description", "scale", "stands_in", "claims", "models", "seeds", "calibration", "pruning",
    "evaluation", "analysis", "report", "resources", "keep_models", "dtype", "cost",
}  # fmt: skip
CALIB_KEYS = {"nsamples", "seqlen", "strategies"}
# a calibration strategy entry: the job's declared fields, each strategy's options under its section
JOB_KEYS = tuple(leaf.path for leaf in walk(CalibJob))


def strategy_keys() -> set[str]:
    """The keys of a strategy entry (read when a spec is parsed: a strategy registered later counts)."""
    return {"name", "pool", "pool_seed", *JOB_KEYS} | {s.section for s in all_strategies() if s.section}


# a pruning setting: PruneConfig's fields, its target given as sparsity or pattern, and a name
SETTING_KEYS = {"name", "sparsity", "pattern"} | {f.name for f in fields(PruneConfig) if f.name != "target"}
# the evaluation requests' own fields: a study sets what the Python API and the CLI set
PPL_KEYS = {f.name for f in fields(PerplexityRequest)}
TASK_KEYS = {f.name for f in fields(TaskRequest)}
# a study's analysis step: the analysis's declared options (its model is the study's), the
# sets it adds to the study's own (extra), and its kind
ANALYSES = tuple(ANALYSIS_OPTIONS)
ANALYSIS_KEYS = {
    kind: {"kind", "extra"} | {leaf.path for leaf in walk(cls) if leaf.path != "model"}
    for kind, cls in ANALYSIS_OPTIONS.items()
}
REPORT_KEYS = {"baseline", "primary_metric", "claims"}
RESOURCE_KEYS = {"num_cpus", "num_gpus", "memory", "threads"}
# fields that a list expands into variants (everything else that takes a list is a list)
EXPANDING = {
    "strategy": ("source", "nsamples", "seqlen"),  # and each strategy's own ``expanding`` options
    "setting": ("method", "sparsity", "pattern", "allocation", "refine"),
}


def fail(path: str, message: str) -> CalibpruneError:
    return CalibpruneError(f"{path}: {message}")


def check_keys(value, allowed: set[str], path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(path, f"expected a mapping with keys among {', '.join(sorted(allowed))}, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise fail(f"{path}.{unknown[0]}", f"unknown key: use one of {', '.join(sorted(allowed))}")
    return value


def expand(entry: dict, keys: tuple[str, ...]) -> list[dict]:
    """One dict per combination of the list values of ``keys`` (in the order given)."""
    axes = [(k, entry[k]) for k in keys if isinstance(entry.get(k), list)]
    if not axes:
        return [dict(entry)]
    return [
        {**entry, **dict(zip([k for k, _ in axes], combo, strict=True))}
        for combo in itertools.product(*[values for _, values in axes])
    ]


def _build(path: str, build, *args):
    """Build or check the options object at ``path``: an error naming its fields is put in the
    spec's words, their key paths (``evaluation.ppl.seqlen 1 must be >= 2``)."""
    try:
        return build(*args)
    except OptionError as error:
        rendered = error.render(spec_namer(path))
        raise CalibpruneError(rendered if error.path else f"{path}: {rendered}") from None
    except CalibpruneError as error:
        raise fail(path, str(error)) from None
    except TypeError as error:  # a wrong-typed value reached a dataclass
        raise fail(path, f"bad value ({error})") from None


def _guard(path: str, build, *args):
    """Run an engine constructor/check; re-raise its error with the spec's key path."""
    try:
        return build(*args)
    except CalibpruneError as error:
        raise fail(path, str(error)) from None
    except TypeError as error:  # a wrong-typed value reached a dataclass
        raise fail(path, f"bad value ({error})") from None


# --- parsing -----------------------------------------------------------------------------


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not path.is_file():
        raise CalibpruneError(
            f"study spec {str(path)!r} does not exist: pass a YAML file (`calibprune studies` lists them)"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CalibpruneError(f"{path}: not valid YAML ({error})") from None
    return parse_study(raw, str(path))


def parse_study(raw, path: str = "<spec>") -> Study:
    raw = check_keys(raw, TOP_KEYS, "spec")
    for key in ("study", "models", "seeds", "calibration", "evaluation"):
        if key not in raw:
            raise fail(key, "missing: every study names its models, seeds, calibration strategies and evaluation")
    models = _models(raw["models"])
    calib = check_keys(raw["calibration"], CALIB_KEYS, "calibration")
    strategies = calib.get("strategies")
    if not isinstance(strategies, list) or not strategies:
        raise fail("calibration.strategies", "expected a non-empty list of strategies (e.g. - source: wiki-en)")
    defaults = {k: calib[k] for k in ("nsamples", "seqlen") if k in calib}
    calibrations = [v for i, s in enumerate(strategies) for v in _strategy(s, defaults, f"calibration.strategies[{i}]")]
    _unique([c.label + repr(sorted(c.attrs().items())) for c in calibrations], "calibration.strategies")
    pruning = raw.get("pruning") or []
    if not isinstance(pruning, list):
        raise fail("pruning", "expected a list of settings (e.g. - {method: wanda, sparsity: [0.5, 0.6]})")
    settings = [s for i, entry in enumerate(pruning) for s in _settings(entry, f"pruning[{i}]")]
    _unique([s.label for s in settings], "pruning")
    analyses = _analyses(raw.get("analysis") or [])
    _claims(raw.get("claims"))
    if not settings and not analyses:
        raise fail("pruning", "a study with no pruning settings must hold analysis steps")
    study = Study(
        name=_string(raw["study"], "study"),
        path=path,
        raw=raw,
        models=models,
        seeds=_seeds(raw["seeds"]),
        calibrations=calibrations,
        settings=settings,
        evaluation=_evaluation(raw["evaluation"]),
        analyses=analyses,
        report=_report(raw.get("report"), calibrations),
        resources=check_keys(raw.get("resources"), RESOURCE_KEYS, "resources"),
        keep_models=bool(raw.get("keep_models", False)),
        dtype=raw.get("dtype"),
        cost=raw.get("cost") or {},
    )
    if settings and not (study.evaluation.ppl or study.evaluation.tasks):
        raise fail("evaluation", "nothing to evaluate: give ppl.corpora and/or tasks.names")
    if study.dtype is not None:
        from ..models.loading import parse_dtype

        _guard("dtype", lambda: parse_dtype(study.dtype))
    from .checks import check_primary_metric

    check_primary_metric(study)
    check_against_models(study)
    return study


def check_against_models(study: Study) -> None:
    """What only a model's config or tokenizer decides (window lengths, N:M widths, the
    tokens of a close-call calibration pool), for every model whose config is on this
    machine (a folder or a converted preset; hub models are checked by their cells): the
    engine's own ``check_seqlen`` and ``validate`` on a weightless copy, and
    :func:`.checks.check_pool` with the model's tokenizer."""
    from ..corpora import get_corpus
    from ..jobs.requests import check_seqlen
    from ..models.loading import load_config, load_tokenizer, meta_model
    from ..models.presets import PRESETS
    from ..pruning.engine import validate
    from .checks import check_pool

    for i, model in enumerate(study.models):
        if model in PRESETS:
            if not PRESETS[model].ready():
                continue
            folder = str(PRESETS[model].folder)
        elif Path(model).expanduser().is_dir():
            folder = str(Path(model).expanduser())
        else:
            continue
        config = load_config(folder)
        for variant in study.calibrations:
            where = f"calibration strategy {variant.label!r} with models[{i}] ({model})"
            _guard(where, check_seqlen, variant.job.seqlen, config, "seqlen")
        tokenizer_of, counted = functools.cache(lambda folder=folder: load_tokenizer(folder)), {}
        for variant in study.calibrations:
            if variant.strategy == "sample":
                corpus = get_corpus(variant.job.source, variant.job.text_field, variant.job.encoding)
                where = f"{variant.path} with models[{i}] ({model})"
                check_pool(corpus, variant.job, variant.where, where, tokenizer_of, counted)
        if study.evaluation.ppl:
            ppl = study.evaluation.ppl
            _guard(f"evaluation.ppl with models[{i}] ({model})", check_seqlen, ppl.seqlen, config, "seqlen")
        skeleton = meta_model(config) if study.settings else None
        for setting in study.settings:
            _guard(
                f"pruning setting {setting.label!r} with models[{i}] ({model})",
                validate,
                skeleton,
                setting.config,
            )


def _string(value, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(path, f"expected a non-empty string, got {value!r}")
    return value


def _unique(labels: list[str], path: str) -> None:
    seen = set()
    for label in labels:
        if label in seen:
            raise fail(path, f"{label.split('[')[0]!r} appears twice: give the entries distinct `name`s")
        seen.add(label)


def _models(value) -> list[str]:
    from ..models.loading import resolve_model
    from ..models.presets import PRESETS

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise fail("models", "expected a list of models (presets, folders or hub ids), e.g. [smollm2-135m]")
    for i, name in enumerate(value):
        name = _string(name, f"models[{i}]")
        if name not in PRESETS:  # presets are converted on first use; hub ids are checked for form only
            _guard(f"models[{i}]", lambda name=name: resolve_model(name, probe_hub=False))
    return list(value)


def _seeds(value) -> list[int]:
    """``[0, 3, 7]``, ``{range: [0, 20]}`` (start, stop exclusive) or ``"0..19"`` (inclusive)."""
    if isinstance(value, dict):
        check_keys(value, {"range"}, "seeds")
        bounds = value.get("range")
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int) for b in bounds)):
            raise fail("seeds.range", f"expected [start, stop] (stop exclusive), got {bounds!r}")
        seeds = list(range(*bounds))
    elif isinstance(value, str) and ".." in value:
        start, _, stop = value.partition("..")
        try:
            seeds = list(range(int(start), int(stop) + 1))
        except ValueError:
            raise fail("seeds", f"{value!r} is not a range like '0..19'") from None
    elif isinstance(value, list):
        seeds = value
    elif isinstance(value, int):
        seeds = [value]
    else:
        raise fail("seeds", f"expected a list, {{range: [0, 20]}} or '0..19', got {value!r}")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise fail("seeds", f"expected non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise fail("seeds", f"{seeds!r} repeats a seed")
    return seeds


def _strategy(entry, defaults: dict, path: str) -> list[CalibVariant]:
    entry = check_keys(entry, strategy_keys(), path)
    if "source" not in entry:
        raise fail(f"{path}.source", "missing: name a corpus (calibprune corpora), hub source or local file")
    name = entry.get("strategy", "sample")
    if name not in {s.name for s in all_strategies()}:
        known = ", ".join(s.name for s in all_strategies())
        raise fail(f"{path}.strategy", f"{name!r} is unknown: use one of {known}")
    strategy = get_strategy(name)
    for other in all_strategies():  # a section is the options of its own strategy only
        if other.section and other.section in entry and other.name != name:
            raise fail(f"{path}.{other.section}", f"applies to strategy: {other.name} only")
    section = strategy.section
    own = (
        check_keys(entry.get(section), {leaf.path for leaf in walk(strategy.options)}, f"{path}.{section}")
        if section
        else {}
    )
    pool = entry.get("pool", "per-seed")
    if pool not in ("shared", "per-seed"):
        raise fail(
            f"{path}.pool",
            f"{pool!r} is unknown: use per-seed (each seed generates its own pool) or shared (one generated "
            "pool per seed, shared by the arms that differ only in generation.filter_top)",
        )
    if int(entry.get("pool_seed", 0)) != 0:
        raise fail(
            f"{path}.pool_seed",
            "no longer used: each seed generates its own pool with its own seed (the study's seeds); drop it",
        )
    if pool == "shared" and strategy.windows_from != "generated":
        raise fail(f"{path}.pool", "a shared pool applies to a strategy that generates its texts (synthetic) only")
    from ..corpora import LocalCorpus, get_corpus
    from .checks import check_pool, check_text_field

    variants = []
    for base in expand({**defaults, **entry}, EXPANDING["strategy"]):
        for values in expand(own, strategy.expanding):
            where = f"{path} (source={base['source']})"
            given = {k: base[k] for k in JOB_KEYS if k in base and k != "strategy"}  # the rest: CalibJob's defaults
            reading = {k: given.get(k, CalibJob.__dataclass_fields__[k].default) for k in ("text_field", "encoding")}
            corpus = _guard(f"{path}.source", lambda reading=reading, base=base: get_corpus(base["source"], **reading))
            try:
                options = _options(strategy, values)
                job = CalibJob(**given, strategy=name, options=options)
                job.check()
            except OptionError as error:
                raise fail(where, error.render(spec_namer(path))) from None
            check_text_field(corpus, entry, job.text_field, path)
            if isinstance(corpus, LocalCorpus):  # a local file that cannot be decoded fails here
                _guard(f"{path}.source", corpus.check_readable)
            origin = {k: f"{path}.{k}" if k in entry else f"calibration.{k}" for k in ("nsamples", "seqlen")}
            check_pool(corpus, job, origin, where)
            label = entry.get("name") or strategy.label(base["source"])
            variants.append(CalibVariant(label, job, pool, int(entry.get("pool_seed", 0)), where, origin))
    return variants


def _options(strategy, values: dict):
    """A strategy's options object from its section of the entry (errors with the section's path)."""
    if strategy.options is None:
        return None
    try:
        return build(strategy.options, values)
    except OptionError as error:
        raise error.within(strategy.section) from None


def spec_namer(prefix: str):
    """How a study spec names a field of the object at ``prefix``: its key path
    (``pruning[1].owl.lam``, ``pruning[1].allocation=owl``)."""

    def name(path: str, value: str | None) -> str:
        key = f"{prefix}.{path}" if path else prefix
        return key if value is None else f"{key}={value}"

    return name


def _settings(entry, path: str) -> list[Setting]:
    entry = check_keys(entry, SETTING_KEYS, path)
    out = []
    for one in expand(entry, EXPANDING["setting"]):
        where = f"{path} ({', '.join(f'{k}={one[k]}' for k in EXPANDING['setting'] if k in one)})"
        values = {k: v for k, v in one.items() if k not in ("name", "sparsity", "pattern")}
        try:
            target = SparsityTarget.parse(one.get("sparsity"), one.get("pattern"))
            config = build(PruneConfig, values | {"target": target})
        except OptionError as error:
            raise fail(where, error.render(spec_namer(path))) from None
        out.append(Setting(one.get("name") or config.describe(), config))
    return out


def _evaluation(value) -> Evaluation:
    value = check_keys(value, {"ppl", "tasks"}, "evaluation")
    ppl = tasks = None
    if value.get("ppl"):
        options = check_keys(value["ppl"], PPL_KEYS, "evaluation.ppl")
        ppl = _build("evaluation.ppl", lambda: PerplexityRequest(**{**options, "corpora": list(options["corpora"])}))
        _build("evaluation.ppl", ppl.check)
    if value.get("tasks"):
        options = check_keys(value["tasks"], TASK_KEYS, "evaluation.tasks")
        tasks = _build("evaluation.tasks", lambda: TaskRequest(**{**options, "names": list(options["names"])}))
        _build("evaluation.tasks", tasks.check)
    return Evaluation(ppl, tasks)


def _analyses(value) -> list[Analysis]:
    if not isinstance(value, list):
        raise fail("analysis", "expected a list of steps (- kind: similarity | membership)")
    out = []
    for i, step in enumerate(value):
        kind = step.get("kind") if isinstance(step, dict) else None
        if kind not in ANALYSES:
            raise fail(f"analysis[{i}].kind", f"{kind!r} is unknown: use one of {', '.join(ANALYSES)}")
        params = {k: v for k, v in check_keys(step, ANALYSIS_KEYS[kind], f"analysis[{i}]").items() if k != "kind"}
        _build(f"analysis[{i}]", analysis_options, Analysis(kind, params), "")  # checked now, by the declarations
        out.append(Analysis(kind, params))
    return out


def _report(value, calibrations: list[CalibVariant]) -> dict:
    value = check_keys(value, REPORT_KEYS, "report")
    labels = {c.label for c in calibrations}
    if value.get("baseline") is not None and value["baseline"] not in labels:
        raise fail(
            "report.baseline", f"{value['baseline']!r} is not a strategy of this study: use one of {sorted(labels)}"
        )
    claims = check_keys(value.get("claims"), set(paper_claims.CLAIMS.names()), "report.claims")
    for name, params in claims.items():
        _claim_params(paper_claims.claim(name), params, labels, f"report.claims.{name}")
    return value


def _claims(value) -> None:
    """The spec's ``claims``: a list of registered claim ids."""
    known = [c.id for c in paper_claims.claims()]
    if value is None:
        return
    if not isinstance(value, list):
        raise fail("claims", f"expected a list of claim ids among {', '.join(known)}, got {value!r}")
    for i, name in enumerate(value):
        if name not in known:
            raise fail(f"claims[{i}]", f"{name!r} is not a claim: use one of {', '.join(known)}")


def _claim_params(claim: paper_claims.Claim, params, labels: set[str], path: str) -> None:
    """``report.claims.<id>``: the parameters the claim declares, each naming strategies of the study."""
    if not claim.params:
        if params:
            raise fail(path, f"{claim.id} reads no parameters: leave it out")
        return
    params = check_keys(params, set(claim.params), path)
    for key, value in params.items():
        param = claim.params[key]
        if isinstance(value, str):
            names = [value]
        elif param.many and isinstance(value, list) and all(isinstance(v, str) for v in value):
            names = value
        else:
            raise fail(f"{path}.{key}", f"expected {param.expects()} ({param.doc}), got {value!r}")
        for name in names:
            if name not in labels:
                raise fail(f"{path}.{key}", f"{name!r} is not a strategy: use one of {sorted(labels)}")
