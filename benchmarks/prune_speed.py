"""Pruning speed and memory next to one dense forward pass over the same tokens.

Each measurement runs in a fresh process (so peak RSS is its own), on the same
seeded calibration windows. Times are CPU time (user + system, all threads) and wall
time. With ``--repeats R`` the whole set runs R times, each repeat running every
method back to back; the ratio to the dense forward is taken within each repeat and
the table shows the median ratio and its range (these machines are noisy: the same
run can differ by 30% between repeats, while paired ratios stay steadier).

``dense`` is one plain ``model(input_ids)`` pass over all windows in batches of the
same size the pruner uses, LM head included: the floor a layer-wise method cannot beat
by much. Peak RSS is the kernel's high-water mark
during the measured stage only (reset after the model is loaded), so it covers the
weights plus whatever the stage allocates.

    python benchmarks/prune_speed.py --repeats 2           # 32 and 128 samples x 512 tokens
    python benchmarks/prune_speed.py --nsamples 16 --methods dense wanda

``--startup`` measures instead what a whole ``calibprune prune`` process spends before
and around its pruning stage (the real command, in a fresh process: imports, plan,
calibration sampling, loading, the rate probe, pruning, saving, and the rest:
interpreter start-up, option parsing, time no stage books), next to a dense-forward
process (interpreter, imports, loading, one forward pass over the same windows, read
from a saved set); the ratio is taken within each repeat. ``--src A B`` runs the prune
process with each of these source trees in turn (e.g. the main checkout's ``src`` and
this one's), interleaved, so that two versions are compared side by side:

    python benchmarks/prune_speed.py --startup --nsamples 32 --repeats 3 --src /work/main/src src

Prints a table and writes ``benchmarks/results/prune_speed.json`` (``prune_startup.json``
with ``--startup``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
METHODS = ["dense", "magnitude", "wanda", "sparsegpt", "wanda+owl", "wanda+dsnot"]


def parse_spec(spec: str) -> dict:
    """'wanda+owl+dsnot' -> method, allocation and refinement."""
    method, *extras = spec.split("+")
    return {
        "method": method,
        "allocation": "owl" if "owl" in extras else "uniform",
        "refine": "dsnot" if "dsnot" in extras else "none",
    }


def worker(method: str, nsamples: int, seqlen: int, batch_size: int, model_name: str, extra: list[str]) -> dict:
    import torch

    from calibprune.calibration import build_calibration
    from calibprune.config import PruneConfig, RunnerOptions, SparsityTarget
    from calibprune.models.loading import load_model, load_tokenizer, resolve_model
    from calibprune.pruning.engine import prune_model
    from calibprune.utils.resources import GIB, StageTracker, current_rss_bytes

    resolved = resolve_model(model_name)
    calib = build_calibration("wiki-en", load_tokenizer(resolved), nsamples=nsamples, seqlen=seqlen, seed=0)
    model = load_model(resolved)
    for p in model.parameters():  # fault the weights in, so "after load" is the real model size
        p.data.sum()
    after_load = current_rss_bytes()
    tracker = StageTracker()
    kwargs = dict(arg.split("=", 1) for arg in extra)
    with tracker.stage("run"):
        if method == "dense":
            with torch.no_grad():
                for start in range(0, nsamples, batch_size):
                    model(input_ids=calib.input_ids[start : start + batch_size], use_cache=False)
        else:
            config = PruneConfig(
                target=SparsityTarget.unstructured(0.5),
                **parse_spec(method),
                runner=RunnerOptions(batch_size=batch_size, activation_store=kwargs.get("store", "disk")),
            )
            prune_model(model, calib, config, progress=False)
    stage = tracker.stages["run"]
    return {
        "method": method,
        "nsamples": nsamples,
        "seqlen": seqlen,
        "batch_size": batch_size,
        "wall_s": stage["wall_s"],
        "cpu_s": stage["cpu_s"],
        "peak_rss_gib": stage["peak_rss_gib"],
        "rss_after_load_gib": round(after_load / GIB, 4),
        "peak_scope": stage["peak_scope"],
        "threads": torch.get_num_threads(),
        "calibration_fingerprint": calib.fingerprint,
    }


def summarize(runs: list[dict]) -> list[dict]:
    """One row per (method, nsamples). Each repeat ran every method back to back, so the
    ratio to the dense forward is taken *within* a repeat (paired), then the median over
    repeats is reported, with the range; times shown are the medians."""
    rows = []
    for method, nsamples in dict.fromkeys((r["method"], r["nsamples"]) for r in runs):
        same = [r for r in runs if (r["method"], r["nsamples"]) == (method, nsamples)]
        dense = {r["repeat"]: r for r in runs if r["method"] == "dense" and r["nsamples"] == nsamples}
        row = {k: v for k, v in same[0].items() if k not in ("wall_s", "cpu_s", "peak_rss_gib", "repeat")}
        row.update(
            cpu_s=statistics.median(r["cpu_s"] for r in same),
            wall_s=statistics.median(r["wall_s"] for r in same),
            peak_rss_gib=max(r["peak_rss_gib"] for r in same),
            repeats=len(same),
        )
        paired = [
            (r["cpu_s"] / dense[r["repeat"]]["cpu_s"], r["wall_s"] / dense[r["repeat"]]["wall_s"])
            for r in same
            if r["repeat"] in dense
        ]
        if paired:
            row["x_dense_cpu"] = round(statistics.median(p[0] for p in paired), 3)
            row["x_dense_wall"] = round(statistics.median(p[1] for p in paired), 3)
            row["x_dense_cpu_range"] = [round(min(p[0] for p in paired), 3), round(max(p[0] for p in paired), 3)]
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    columns = [
        "method",
        "samples x tokens",
        "CPU s",
        "x dense (CPU)",
        "range over repeats",
        "wall s",
        "x dense (wall)",
        "peak RSS GiB",
        "RSS after load GiB",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    nan = float("nan")
    for r in rows:
        cells = [
            r["method"],
            f"{r['nsamples']} x {r['seqlen']}",
            f"{r['cpu_s']:.1f}",
            f"{r.get('x_dense_cpu', nan):.2f}",
            "-".join(f"{v:.2f}" for v in r.get("x_dense_cpu_range", [])),
            f"{r['wall_s']:.1f}",
            f"{r.get('x_dense_wall', nan):.2f}",
            f"{r['peak_rss_gib']:.3f}",
            f"{r['rss_after_load_gib']:.3f}",
        ]
        print("| " + " | ".join(cells) + " |")


STARTUP_ROWS = [  # (row, key in a prune process's measurements)
    ("imports", "imports_s"),
    ("plan", "plan"),
    ("calibration sampling", "calibration"),
    ("load", "load"),
    ("rate probe", "estimate"),
    ("prune", "prune"),
    ("save", "save"),
    ("other (interpreter, CLI, unstaged)", "other_s"),
    ("start-up: whole process - prune", "startup_s"),
    ("whole process", "process_s"),
]


def prune_process_worker(nsamples: int, seqlen: int, model_name: str, output: str) -> dict:
    """The real ``calibprune prune`` command in this process; stages from its report."""
    started = time.perf_counter()
    import calibprune
    import calibprune.jobs.prune  # noqa: F401  (what `prune` imports once its options are audited)
    from calibprune.cli.app import app

    imports = time.perf_counter() - started
    argv = [
        "prune", "--model", model_name, "--method", "wanda", "--sparsity", "0.5", "--calib", "wiki-en",
        "--nsamples", str(nsamples), "--seqlen", str(seqlen), "--output", output, "--overwrite",
    ]  # fmt: skip
    app(argv, standalone_mode=False)
    report = json.loads((Path(output) / "prune_report.json").read_text())
    return {
        "imports_s": round(imports, 3),
        "stages": {name: stage["wall_s"] for name, stage in report["stages"].items()},
        "calibration_fingerprint": report["calibration"]["fingerprint"],
        "code": str(Path(calibprune.__file__).parent),
    }


def dense_process_worker(set_folder: str, batch_size: int, model_name: str) -> dict:
    """A dense-forward process: imports, loading, one forward pass over a saved set's windows."""
    started = time.perf_counter()
    import torch

    from calibprune.calibration import CalibrationSet
    from calibprune.models.loading import load_model, resolve_model

    imports = time.perf_counter() - started
    calib = CalibrationSet.load(set_folder)
    model = load_model(resolve_model(model_name))
    forward = time.perf_counter()
    with torch.no_grad():
        for start in range(0, calib.nsamples, batch_size):
            model(input_ids=calib.input_ids[start : start + batch_size], use_cache=False)
    return {"imports_s": round(imports, 3), "forward_s": round(time.perf_counter() - forward, 3)}


def _timed_process(cmd: list[str], env: dict) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def run_startup(args) -> dict:
    """--startup: prune processes (one per --src) and a dense-forward process, interleaved per repeat."""
    import tempfile

    here = Path(__file__).resolve().parents[1] / "src"  # this checkout's code, for the set and the dense process
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(here)}
    sources = [str(Path(src).resolve()) for src in args.src or [here]]
    runs = []
    with tempfile.TemporaryDirectory(prefix="prune-startup-") as tmp:
        folder = str(Path(tmp) / "set")
        prep = [sys.executable, __file__, "--worker", "save-set", str(args.nsamples[0]), "--seqlen", str(args.seqlen)]
        _timed_process([*prep, "--model", args.model, "--extra", f"folder={folder}"], env)
        for repeat in range(args.repeats):
            cmd = [sys.executable, __file__, "--worker", "dense-process", str(args.nsamples[0]), "--model", args.model]
            dense, wall = _timed_process(
                [*cmd, "--batch-size", str(args.batch_size), "--extra", f"folder={folder}"], env
            )
            runs.append({"kind": "dense", "repeat": repeat, **dense, "process_s": round(wall, 3)})
            print(f"  dense-forward process, run {repeat}: {wall:.1f} s", flush=True)
            for src in sources:
                src_env = {**env, "PYTHONPATH": src}
                cmd = [sys.executable, __file__, "--worker", "prune-process", str(args.nsamples[0])]
                cmd += ["--seqlen", str(args.seqlen), "--model", args.model, "--extra", f"folder={tmp}/out"]
                row, wall = _timed_process(cmd, src_env)
                runs.append({"kind": "prune", "src": src, "repeat": repeat, **row, "process_s": round(wall, 3)})
                print(f"  prune process ({row['code']}), run {repeat}: {wall:.1f} s", flush=True)
    return startup_result(runs, sources)


def startup_result(runs: list[dict], sources: list) -> dict:
    for r in runs:
        if r["kind"] == "prune":
            r["other_s"] = round(r["process_s"] - r["imports_s"] - sum(r["stages"].values()), 3)
            r["startup_s"] = round(r["process_s"] - r["stages"]["prune"], 3)
    fingerprints = {r["calibration_fingerprint"] for r in runs if r["kind"] == "prune"}
    if len(fingerprints) != 1:
        sys.exit(f"the prune processes sampled different windows: {sorted(fingerprints)}")
    return {"runs": runs, "rows": summarize_startup(runs, sources), "sources": sources}


def summarize_startup(runs: list[dict], sources: list) -> list[dict]:
    """Median seconds per start-up row and source; the whole process over the dense-forward
    process of the same repeat (median and range)."""
    dense = {r["repeat"]: r for r in runs if r["kind"] == "dense"}
    rows = []
    for label, key in STARTUP_ROWS:
        row = {"row": label}
        for src in sources:
            mine = [r for r in runs if r["kind"] == "prune" and r["src"] == src]
            values = [r.get(key, r["stages"].get(key)) for r in mine]
            row[str(src)] = statistics.median(values) if all(v is not None for v in values) else None
        rows.append(row)
    ratio_row, range_row = {"row": "x dense-forward process (median)"}, {"row": "x dense-forward process (range)"}
    for src in sources:
        ratios = [r["process_s"] / dense[r["repeat"]]["process_s"] for r in runs if r.get("src") == src]
        ratio_row[str(src)] = round(statistics.median(ratios), 3)
        range_row[str(src)] = [round(min(ratios), 3), round(max(ratios), 3)]
    dense_row = {"row": "dense-forward process", **dict.fromkeys(map(str, sources), statistics.median(
        r["process_s"] for r in dense.values()))}  # fmt: skip
    return [*rows, dense_row, ratio_row, range_row]


def print_startup_table(rows: list[dict], sources: list) -> None:
    names = [str(s) for s in sources]
    print("| stage | " + " | ".join(f"{n} (median s)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for row in rows:
        cells = []
        for src in sources:
            value = row[str(src)]
            if isinstance(value, list):
                cells.append("-".join(f"{v:.2f}" for v in value))
            else:
                cells.append("" if value is None else f"{value:.2f}")
        print(f"| {row['row']} | " + " | ".join(cells) + " |")


def run_worker(method: str, nsamples: int, args) -> dict:
    """One measurement in a fresh process, so that its peak RSS is its own."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        method,
        str(nsamples),
        "--seqlen",
        str(args.seqlen),
        "--batch-size",
        str(args.batch_size),
        "--model",
        args.model,
        "--extra",
        *args.extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if done.returncode != 0:
        sys.exit(f"{method} x {nsamples} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--nsamples", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=METHODS[:4],
        help=f"dense, or METHOD[+owl][+dsnot] (default: the first four of {METHODS})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the whole set this many times, interleaved; ratios are taken within each repeat",
    )
    parser.add_argument("--from-json", help="re-summarize the runs stored in an earlier output file")
    parser.add_argument("--output", default=str(RESULTS / "prune_speed.json"))
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "NSAMPLES"), help=argparse.SUPPRESS)
    parser.add_argument("--extra", nargs="*", default=[], help="key=value options for the worker (store=memory)")
    parser.add_argument("--startup", action="store_true", help="measure a whole prune process's start-up stages")
    parser.add_argument("--src", nargs="+", help="with --startup: source trees to run the prune process with")
    args = parser.parse_args()

    if args.worker:
        method, nsamples = args.worker
        extra = dict(arg.split("=", 1) for arg in args.extra)
        if method == "save-set":
            from calibprune.calibration import build_calibration
            from calibprune.models.loading import load_tokenizer, resolve_model

            tokenizer = load_tokenizer(resolve_model(args.model))
            build_calibration("wiki-en", tokenizer, int(nsamples), args.seqlen, seed=0).save(extra["folder"])
            result = {"saved": extra["folder"]}
        elif method == "dense-process":
            result = dense_process_worker(extra["folder"], args.batch_size, args.model)
        elif method == "prune-process":
            result = prune_process_worker(int(nsamples), args.seqlen, args.model, extra["folder"])
        else:
            result = worker(method, int(nsamples), args.seqlen, args.batch_size, args.model, args.extra)
        print(json.dumps(result))
        return

    if args.startup:
        if args.from_json:
            stored = json.loads(Path(args.from_json).read_text())
            result = startup_result(stored["runs"], stored["sources"])
        else:
            result = run_startup(args)
        print()
        print_startup_table(result["rows"], result["sources"])
        out = Path(args.output if args.output != str(RESULTS / "prune_speed.json") else RESULTS / "prune_startup.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"model": args.model, "nsamples": args.nsamples[0], "seqlen": args.seqlen, "repeats": args.repeats}
        out.write_text(json.dumps({**meta, "created": time.strftime("%Y-%m-%d %H:%M:%S"), **result}, indent=2) + "\n")
        print(f"\nwritten to {out}")
        return

    if args.from_json:
        runs = json.loads(Path(args.from_json).read_text())["runs"]
    else:
        runs = []
        for nsamples in args.nsamples:
            for repeat in range(args.repeats):
                for method in args.methods:
                    row = {**run_worker(method, nsamples, args), "repeat": repeat}
                    runs.append(row)
                    print(
                        f"  {method:<12} {nsamples:>4} samples, run {repeat}: {row['cpu_s']:8.1f} CPU s "
                        f"{row['wall_s']:8.1f} wall s  peak {row['peak_rss_gib']:.3f} GiB",
                        flush=True,
                    )
    rows = summarize(runs)
    print()
    print_table(rows)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": args.model,
        "batch_size": args.batch_size,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "repeats": args.repeats,
    }
    out.write_text(json.dumps({**meta, "rows": rows, "runs": runs}, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
