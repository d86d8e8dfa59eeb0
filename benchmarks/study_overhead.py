"""Orchestration overhead of a study, and stage executions across a rerun.

Runs a small study on the bundled model (2 sources x 2 sparsities x 2 seeds = 8 cells,
short windows) twice into a fresh run folder. Overhead = sweep wall time minus the wall
time the stages themselves report (model loading, calibration, pruning, evaluation,
measured inside the worker): spec resolution, hashing, reading/writing the run folder and
the executor. Target: < 2 % of the stages' time. The second sweep must execute nothing
(cached calibration sets, dense evaluation and cells are never recomputed), and adding
one sparsity must execute only the new cells. Prints a table; writes
``benchmarks/results/study_overhead.json``.

    python benchmarks/study_overhead.py                 # smollm2-135m, ~3 min on 2 CPU cores
    python benchmarks/study_overhead.py --model PATH    # any model folder
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import yaml

RESULTS = Path(__file__).parent / "results"


def spec(model: str, sparsities: list[float]) -> dict:
    return {
        "study": "overhead-benchmark",
        "models": [model],
        "seeds": [0, 1],
        "calibration": {"nsamples": 4, "seqlen": 128, "strategies": [{"source": "wiki-en"}, {"source": "kjv"}]},
        "pruning": [{"method": "wanda", "sparsity": sparsities, "runner": {"activation_store": "memory"}}],
        "evaluation": {"ppl": {"corpora": ["wiki-en"], "seqlen": 128, "max_windows": 4}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--output", default=str(RESULTS / "study_overhead.json"))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steady on a shared machine, no OpenMP spin-waits)"
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from calibprune.experiments.sweep import run_sweep
    from calibprune.models.loading import load_config, meta_model, resolve_model

    # import-time warm-up: the first spec validation would otherwise pay the one-time imports
    # (transformers model classes) that every stage needs anyway, and book them as overhead
    meta_model(load_config(resolve_model(args.model)))

    work = Path(tempfile.mkdtemp(prefix="study-overhead-"))
    rows = []
    try:
        for name, sparsities in (
            ("first run", [0.4, 0.6]),
            ("rerun", [0.4, 0.6]),
            ("one more sparsity", [0.4, 0.5, 0.6]),
        ):
            path = work / f"{name.replace(' ', '-')}.yaml"
            path.write_text(yaml.safe_dump(spec(args.model, sparsities)))
            result = run_sweep(path, work / "run")
            cells = max(1, result.executed["cell"])
            row = {
                "sweep": name,
                "executed": result.executed,
                "wall_s": round(result.wall_s, 2),
                "stage_s": round(result.stage_s, 2),
                "overhead_s": round(result.overhead_s, 3),
                "resolve_s": round(result.resolve_s, 3),
                "overhead_per_cell_s": round(result.overhead_s / cells, 3),
                "overhead_share": round(result.overhead_s / result.stage_s, 4) if result.stage_s else None,
            }
            rows.append(row)
            print(f"  {name}: {row}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| sweep | calib / dense / cell executions | wall s | stage s | overhead s (spec) | overhead / stages |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        e = r["executed"]
        share = f"{r['overhead_share']:.2%}" if r["overhead_share"] is not None else "-"
        print(
            f"| {r['sweep']} | {e['calib']} / {e['dense']} / {e['cell']} | {r['wall_s']} | {r['stage_s']} | "
            f"{r['overhead_s']} ({r['resolve_s']}) | {share} |"
        )
    assert rows[1]["executed"] == {"pool": 0, "calib": 0, "dense": 0, "cell": 0, "analysis": 0}, "rerun recomputed"
    assert rows[2]["executed"]["cell"] == 4 and rows[2]["executed"]["calib"] == 0, "new axis value recomputed more"
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "threads": args.threads, "rows": rows}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
