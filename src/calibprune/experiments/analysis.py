"""A study's analysis steps over its own calibration sets (one set per strategy: the
first seed's), with the same jobs as ``calibprune analyze``; outputs under RUNDIR/analysis/."""

from __future__ import annotations

from .identity import with_content
from .plan import Plan, digest
from .spec import Study, analysis_options
from .store import RunStore


def run_analyses(study: Study, plan: Plan, store: RunStore) -> int:
    from ..analysis.jobs import run_membership, run_similarity

    executed = 0
    for model in study.models:
        sets = {
            label: str(store.set_path("calib", per[min(per)]))
            for (m, label), per in plan.sets.items()
            if m == model and store.has_set("calib", per[min(per)])
        }
        for step in study.analyses:
            params = dict(step.params)
            extra = list(params.pop("extra", []) or [])
            inputs = {"analysis": step.kind, "model": model, "sets": sets, "extra": extra, "params": params}
            read = {name: plan.identity("source", name) for name in [*extra, params.get("reference")] if name}
            content = {name: ident for name, ident in read.items() if ident}
            identified = with_content(inputs, model=plan.identity("model", model), sources=content)
            key = digest(identified, [f"analysis/{step.kind}"])
            folder = store.root / "analysis" / f"{step.kind}-{key}"
            if folder.exists():
                continue
            names = list(sets.values()) + extra
            options = analysis_options(step, model)
            if step.kind == "similarity":
                run_similarity(names, folder, options, progress=False)
            else:
                run_membership(model, names, folder, options, progress=False)
            from ..utils.io import write_json

            write_json(folder.parent / f"{folder.name}.labels.json", {v: k for k, v in sets.items()} | {"model": model})
            executed += 1
    return executed
