"""Estimated cost of what a sweep still has to run (``--dry-run``).

seconds = tokens processed / throughput, with per-method multiples of a dense forward
over the calibration tokens (measured on SmolLM2-135M, 2 CPU cores: Wanda 1.5x,
SparseGPT 2.1x, OWL +0.8x, magnitude ~0; see the README's benchmark tables). Throughputs
default to that machine's (220 forward tokens/s, 80 generated tokens/s, 1 task item/s)
and a spec overrides them with ``cost: {tokens_per_s, gen_tokens_per_s, items_per_s}``.
Once cells are stored, the estimate is rescaled by measured / estimated time of those.
"""

from __future__ import annotations

METHOD_FACTOR = {"magnitude": 0.02, "wanda": 1.5, "sparsegpt": 2.1}
DEFAULTS = {"tokens_per_s": 220.0, "gen_tokens_per_s": 80.0, "items_per_s": 1.0, "load_s": 5.0}
UNKNOWN_WINDOWS = 64  # perplexity windows assumed when max_windows is not set
UNKNOWN_ITEMS = 2000  # task items assumed when limit is not set


def _rates(study) -> dict:
    return {**DEFAULTS, **{k: float(v) for k, v in (study.cost or {}).items() if k in DEFAULTS}}


def eval_seconds(study, rates) -> float:
    ppl, tasks = study.evaluation.ppl, study.evaluation.tasks
    seconds = 0.0
    if ppl:
        seconds += len(ppl.corpora) * (ppl.max_windows or UNKNOWN_WINDOWS) * ppl.seqlen / rates["tokens_per_s"]
    if tasks:
        seconds += len(tasks.names) * (tasks.limit or UNKNOWN_ITEMS) / rates["items_per_s"]
    return seconds


def stage_seconds(stage, study, rates) -> float:
    p = stage.payload
    if stage.kind == "dense":
        return rates["load_s"] + eval_seconds(study, rates)
    if stage.kind == "cell":
        config = p["config"]
        tokens = stage.attrs["nsamples"] * stage.attrs["seqlen"]
        factor = METHOD_FACTOR.get(config.method, 1.5) + (0.8 if config.allocation == "owl" else 0.0)
        return rates["load_s"] + factor * tokens / rates["tokens_per_s"] + eval_seconds(study, rates)
    job = p["job"]
    if stage.kind == "pool" or stage.needs is None:  # built by its strategy (not windows of a shared pool)
        return job.builder.seconds(job, rates)
    return 1.0  # windowing a shared pool


def estimate(study, plan, status: dict[str, str], store) -> dict:
    rates = _rates(study)
    measured = [(store.read_cell(k), plan.cells[k]) for k, s in status.items() if s == "done"]
    scale = 1.0
    known = [(r["wall_s"], stage_seconds(st, study, rates)) for r, st in measured if r and r.get("wall_s")]
    if known:
        scale = sum(w for w, _ in known) / max(1e-9, sum(e for _, e in known))
    pending = [plan.cells[k] for k, s in status.items() if s != "done"]
    wanted = {c.needs for c in pending if c.needs}
    if study.analyses:  # analysis steps read one set per strategy and model
        wanted |= {k for per in plan.sets.values() for k in per.values()}
    calibs = {k for k in wanted if not store.has_set("calib", k)}
    pools = {
        plan.calibs[k].needs for k in calibs if plan.calibs[k].needs and not store.has_set("pool", plan.calibs[k].needs)
    }
    denses = [d for k, d in plan.denses.items() if store.read_dense(k) is None]
    stages = [plan.pools[k] for k in pools] + [plan.calibs[k] for k in calibs] + denses + pending
    seconds = {kind: 0.0 for kind in ("pool", "calib", "dense", "cell")}
    for stage in stages:
        seconds[stage.kind] += stage_seconds(stage, study, rates) * (scale if stage.kind == "cell" else 1.0)
    return {
        "to_run": {"pool": len(pools), "calib": len(calibs), "dense": len(denses), "cell": len(pending)},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "total_s": round(sum(seconds.values()), 1),
        "scale_from_measured": round(scale, 3),
        "rates": rates,
    }
