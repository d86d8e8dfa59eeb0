"""``calibprune sweep``: resolve a study, skip what is stored, run the rest, write results.

Order: shared pools -> calibration sets -> dense evaluations and cells -> analysis steps.
Each stage's result is written by this (driver) process the moment it arrives, through
a temporary file and a rename, so a kill at any moment loses at most the stages in
flight. A failed stage is recorded in the files of the cells that depend on it, the
sweep goes on, and the command ends non-zero naming them; ``--retry-failed`` reruns them.
The run folder keeps its spec (another spec is refused unless its grid only grows, or
``--overwrite``) and has one writer at a time: see :mod:`.runfolder`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path

import yaml

from ..errors import CalibpruneError
from ..options import OptionError, literal
from ..results import StageOutcome, StageRecord
from ..utils.io import refuse_overlap, write_json
from . import cost
from .executors import make_executor
from .plan import Plan, Stage, make_plan
from .progress import Progress
from .runfolder import adopt_spec, check_spec, writer_lock
from .spec import Study, load_study
from .store import RunStore


def studies_root() -> Path:
    return Path(str(importlib_resources.files("calibprune.experiments") / "studies"))


def resolve_spec(path: str | Path) -> Path:
    """A spec path as given, else relative to the shipped studies (``studies/small/x.yaml``)."""
    path = Path(path)
    if path.exists():
        return path
    parts = path.parts[1:] if path.parts and path.parts[0] == "studies" else path.parts
    shipped = studies_root().joinpath(*parts) if parts else None
    if shipped is not None and shipped.exists():
        return shipped
    raise CalibpruneError(
        f"study spec {str(path)!r} does not exist: pass a YAML file; `calibprune studies` lists the shipped ones"
    )


@dataclass
class SweepResult:
    study: Study
    plan: Plan
    status: dict[str, str]  # cell key -> done | failed | pending (before this sweep)
    executed: dict[str, int] = field(
        default_factory=lambda: {"pool": 0, "calib": 0, "dense": 0, "cell": 0, "analysis": 0}
    )
    failed: list[str] = field(default_factory=list)  # labels of failed cells / stages
    overhead_s: float = 0.0  # wall - stage_s: spec resolution, hashing, run-folder IO, executor
    resolve_s: float = 0.0  # of which: loading, validating and planning the study
    stage_s: float = 0.0  # wall time the stages report (measured inside the worker)
    wall_s: float = 0.0


def cell_status(store: RunStore, plan: Plan) -> dict[str, str]:
    out = {}
    for key in plan.cells:
        record = store.read_cell(key)
        out[key] = "pending" if record is None else ("done" if record.get("status") == "ok" else "failed")
    return out


def check_run_folder(study: Study, output: str | Path) -> None:
    """The run folder may exist (a rerun resumes) but is no file and overlaps nothing the
    study reads: a local model folder, calibration source or perplexity file."""
    from ..corpora import local_source
    from ..models.loading import model_folder

    if Path(output).exists() and not Path(output).is_dir():
        raise OptionError(
            "output", f"{{output}} {literal(repr(str(output)))} is a file: pass a run folder (new, or one to resume)"
        )
    reads = [(f"models[{i}]", model_folder(m)) for i, m in enumerate(study.models)]
    reads += [(f"the calibration source of {v.label!r}", local_source(v.job.source)) for v in study.calibrations]
    ppl = study.evaluation.ppl
    reads += [("evaluation.ppl", local_source(c)) for c in (ppl.corpora if ppl else [])]
    refuse_overlap(output, reads)


def run_sweep(
    spec: str | Path,
    output: str | Path,
    executor: str = "local",
    address: str | None = None,
    workers: int = 1,
    retry_failed: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> SweepResult:
    """``overwrite``: make the spec the run folder's even if it is another spec (nothing is deleted)."""
    started = time.perf_counter()
    study = load_study(resolve_spec(spec))  # everything is validated here, before any work
    if workers < 1:
        raise OptionError("workers", f"{{workers}} {workers} must be >= 1")
    if executor not in ("local", "ray"):
        raise OptionError("executor", f"{{executor}} {literal(repr(executor))} is unknown: use local or ray")
    check_run_folder(study, output)
    plan = make_plan(study)
    store = RunStore(output)
    if dry_run:
        check_spec(store.root, Path(study.path), plan.keys(), overwrite)
        result = SweepResult(study, plan, cell_status(store, plan))
        result.resolve_s = time.perf_counter() - started
        return result
    with writer_lock(store.root):
        return _sweep(study, plan, store, started, executor, address, workers, retry_failed, progress, overwrite)


def _sweep(study, plan, store, started, executor, address, workers, retry_failed, progress, overwrite) -> SweepResult:
    relation = check_spec(store.root, Path(study.path), plan.keys(), overwrite)
    result = SweepResult(study, plan, cell_status(store, plan))
    result.resolve_s = time.perf_counter() - started
    store.clean_partial()
    replaced = adopt_spec(store.root, Path(study.path), relation)
    write_json(store.root / "study.json", study_meta(study, plan))
    todo = [k for k, s in result.status.items() if s == "pending" or (retry_failed and s == "failed")]
    progress = progress or Progress(enabled=False)
    runner = make_executor(executor, workers, address, study.resources, scratch=str(store.root / "work"))
    stage_time = [0.0]
    try:
        _execute(study, plan, store, todo, runner, result, progress, stage_time, retry_failed)
    finally:
        runner.close()
    result.failed += [plan.cells[k].label for k, s in result.status.items() if s == "failed" and k not in todo]
    result.failed += [
        f"{d.label}: dense evaluation failed (see {store.dense_path(k)})"
        for k, d in plan.denses.items()
        if failed_dense(store, k) and not any(f.startswith(d.label + ":") for f in result.failed)
    ]
    result.wall_s = time.perf_counter() - started
    result.stage_s = stage_time[0]
    result.overhead_s = max(0.0, result.wall_s - result.stage_s)
    store.log_sweep(
        {
            "study": study.name,
            "executor": executor,
            "workers": workers,
            "executed": result.executed,
            "failed": result.failed,
            "wall_s": round(result.wall_s, 3),
            "stage_s": round(result.stage_s, 3),
        }
        | ({"spec": relation, "replaced_spec": replaced} if replaced else {})
    )
    return result


def study_meta(study: Study, plan: Plan) -> dict:
    """What ``report`` needs of the study. ``cells``: the study's own cells, key -> this
    study's labels for it (a cell found done under another study, by content, keeps its
    metrics but is reported under these labels); ``denses``: its dense evaluations. A run
    folder that also holds other studies' results so reports only its own. ``stages``:
    every stage key of the plan, what a later spec must keep to count as a grown grid."""
    raw = study.raw
    return {k: raw.get(k) for k in ("study", "description", "scale", "stands_in", "claims", "report")} | {
        "seeds": study.seeds,
        "cells": {key: plan.cells[key].attrs for key in sorted(plan.cells)},
        "denses": sorted(plan.denses),
        "stages": sorted(plan.keys()),  # what a later sweep must keep to count as a grown grid
    }


def _execute(study, plan: Plan, store: RunStore, todo, runner, result: SweepResult, progress, stage_time, retry: bool):
    cells = [plan.cells[k] for k in todo]
    set_keys = {c.needs for c in cells if c.needs}
    if study.analyses:
        set_keys |= {k for per in plan.sets.values() for k in per.values()}
    calibs = [plan.calibs[k] for k in sorted(set_keys) if not store.has_set("calib", k)]
    pools = [plan.pools[k] for k in sorted({c.needs for c in calibs if c.needs}) if not store.has_set("pool", k)]
    denses = [s for k, s in plan.denses.items() if store.read_dense(k) is None or (retry and failed_dense(store, k))]
    kept = [s for k, s in result.status.items() if k not in todo]  # found done / failed, not rerun
    progress.start(
        {"pool": len(pools), "calib": len(calibs), "dense": len(denses), "cell": len(cells)},
        runner.parallelism,
        before={"done": kept.count("done"), "failed": kept.count("failed")},
    )
    failed_inputs: dict[str, str] = {}

    def done(stage: Stage, outcome: StageOutcome) -> None:
        stage_time[0] += outcome.wall_s
        result.executed[stage.kind] += 1
        if stage.kind in ("pool", "calib"):
            if outcome.ok:
                store.save_set(stage.kind, stage.key, outcome.value)
            else:
                failed_inputs[stage.key] = f"{stage.kind} stage failed: {outcome.error}"
                result.failed.append(f"{stage.label}: {outcome.error}")
        elif stage.kind == "dense":
            write_json(store.dense_path(stage.key), StageRecord.of(stage.attrs, outcome).to_json())
            if not outcome.ok:
                result.failed.append(f"{stage.label}: {outcome.error}")
        else:
            _write_cell(store, stage, outcome, result)
        progress.update(stage.kind, outcome.ok, outcome.wall_s, stage.label)

    runner.run([(p, None) for p in pools], done)
    loaded: dict[str, object] = {}

    def given(stage: Stage, kind: str):
        if stage.needs is None:
            return None
        if stage.needs not in loaded:
            loaded[stage.needs] = store.load_set(kind, stage.needs) if store.has_set(kind, stage.needs) else None
        return loaded[stage.needs]

    ready_calibs = []
    for stage in calibs:
        if stage.needs in failed_inputs:
            failed_inputs[stage.key] = failed_inputs[stage.needs]
        else:
            ready_calibs.append((stage, given(stage, "pool")))
    runner.run(ready_calibs, done)
    loaded.clear()
    jobs = [(d, None) for d in denses]
    for stage in cells:
        if stage.needs in failed_inputs:
            outcome = StageOutcome.failure(failed_inputs[stage.needs])
            _write_cell(store, stage, outcome, result)
            progress.update("cell", False, 0.0, stage.label)
        else:
            if study.keep_models:  # weights need a filesystem the worker shares with the run folder
                stage.payload["model_dir"] = str(store.root / "models" / stage.key)
            jobs.append((stage, given(stage, "calib")))
    runner.run(jobs, done)
    progress.finish()
    if study.analyses:
        from .analysis import run_analyses

        result.executed["analysis"] += run_analyses(study, plan, store)


def failed_dense(store: RunStore, key: str) -> bool:
    record = store.read_dense(key)
    return record is not None and record.get("status") != "ok"


def _write_cell(store: RunStore, stage: Stage, outcome: StageOutcome, result: SweepResult) -> None:
    record = StageRecord.of(stage.attrs, outcome, calib_key=stage.needs, dense_key=stage.payload["dense_key"])
    store.write_cell(stage.key, record)
    result.status[stage.key] = "done" if outcome.ok else "failed"
    if not outcome.ok:
        result.failed.append(f"{stage.label}: {outcome.error}")


def dry_run_table(result: SweepResult, store: RunStore) -> dict:
    """Cells with their status and the estimated cost of what is still to run."""
    estimate = cost.estimate(result.study, result.plan, result.status, store)
    return {"cells": [(s.label, result.status[k]) for k, s in result.plan.cells.items()], "estimate": estimate}


def shipped_studies() -> list[dict]:
    """One row per shipped spec; ``claim_texts`` says what each of its claims means."""
    from .claims import claim

    rows = []
    for path in sorted(studies_root().glob("*/*.yaml")):
        raw = yaml.safe_load(path.read_text())
        study = load_study(path)
        plan = make_plan(study)
        rows.append(
            {
                "spec": f"studies/{path.parent.name}/{path.name}",
                "scale": raw.get("scale", path.parent.name),
                "claims": ",".join(raw.get("claims") or []),
                "claim_texts": {name: claim(name).text for name in raw.get("claims") or []},
                "models": ",".join(study.models),
                "cells": len(plan.cells),
                "seeds": len(study.seeds),
                "description": raw.get("description", ""),
            }
        )
    return rows
