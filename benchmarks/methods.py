"""Every pruning method side by side on SmolLM2: same calibration windows, same held-out windows.

Rows: magnitude, wanda, sparsegpt, ria, ria with channel permutation (2:4 only: ``ria.permutation``,
``lsa`` by default, the reference's ``--reallocation --lsa``), admm — each with uniform and with
OWL allocation — at 50 %, 60 %, 70 % unstructured and 2:4. OWL at 2:4 is skipped: one fixed N:M
pattern cannot vary per block, and OWL's mixed N:M (per-block N, ``owl.mixed_nm``) moves N by
2 at its default spread, outside 1..3 for M = 4 (the config refuses it).

Every row prunes a fresh copy of the dense model through the Python API
(:func:`calibprune.api.prune`) on **one** calibration set built once (wiki-en, seeded,
``--calib-windows`` x ``--calib-seqlen`` tokens, default 32 x 512), and is scored by held-out
perplexity on the same windows of each ``--ppl`` corpus (default wiki-en and kjv, held-out
split, ``--ppl-windows`` x 512 tokens each, default 16). ``prune_s`` is the wall time of the
pruning call alone (calibration passes, statistics, masks, updates), not of the evaluation.

Rows are written to the output JSON as they finish, in priority order (the rows that test the
references' published orderings first: 2:4 and high sparsity); a rerun skips the rows already
there, so the script can be stopped and restarted. ``--threads`` (default 1) bounds torch's
threads, so that it can run beside other work.

    nice -n 10 python benchmarks/methods.py                       # every row
    python benchmarks/methods.py --rows wanda@2:4 ria+lsa@2:4     # some of them
    python benchmarks/methods.py --table                          # print the table of what finished
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
METHODS = ("magnitude", "wanda", "sparsegpt", "ria", "ria+lsa", "admm")
TARGETS = ("2:4", "70%", "60%", "50%")


def grid() -> list[str]:
    """Every row name, ``<method>[+owl]@<target>``, in the order they run: the rows of the
    published comparisons first (RIA vs Wanda at 2:4, ADMM vs SparseGPT at 70 %, then 60 %),
    each unstructured sparsity without OWL, then with it."""
    out = ["wanda@2:4", "ria@2:4", "ria+lsa@2:4", "sparsegpt@2:4", "admm@2:4", "magnitude@2:4"]
    for target in ("70%", "60%", "50%"):
        for allocation in ("", "+owl"):
            out += [f"{m}{allocation}@{target}" for m in ("sparsegpt", "admm", "wanda", "ria", "magnitude")]
    return out


def options_of(row: str) -> dict:
    """The :func:`calibprune.api.prune` keywords of a row."""
    from calibprune.config import OWLOptions, RIAOptions

    setting, target = row.split("@")
    parts = setting.split("+")
    method, extras = parts[0], set(parts[1:])
    out: dict = {"method": method}
    out |= {"pattern": target} if ":" in target else {"sparsity": int(target.rstrip("%")) / 100}
    if "lsa" in extras or "heuristic" in extras:
        out["ria"] = RIAOptions(permutation="lsa" if "lsa" in extras else "heuristic")
    if "owl" in extras:
        out["allocation"] = "owl"
        out["owl"] = OWLOptions()
    return out


def provenance(args, calib) -> dict:
    import torch
    import transformers

    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "model": args.model,
        "calibration": {
            "source": "wiki-en",
            "nsamples": args.calib_windows,
            "seqlen": args.calib_seqlen,
            "seed": 0,
            "fingerprint": calib.fingerprint,
        },
        "perplexity": {"corpora": args.ppl, "split": "held-out (each corpus' default)", "windows": args.ppl_windows},
    }


def _commit() -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        return done.stdout.strip() or None
    except OSError:
        return None


def table(results: dict, corpora: list[str]) -> str:
    """A markdown table: one line per method setting, one column per target and corpus."""
    rows = results.get("rows", {})
    dense = results.get("dense", {})
    head = "| method | " + " | ".join(f"{t} {c}" for t in ("50%", "60%", "70%", "2:4") for c in corpora) + " |"
    lines = [head, "|" + "---|" * (1 + 4 * len(corpora))]
    if dense:
        lines.append("| dense | " + " | ".join(f"{dense['ppl'][c]:.2f}" for _ in range(4) for c in corpora) + " |")
    settings = []
    for name in grid():
        setting = name.split("@")[0]
        if setting not in settings:
            settings.append(setting)
    for setting in settings:
        cells = []
        for target in ("50%", "60%", "70%", "2:4"):
            for corpus in corpora:
                row = rows.get(f"{setting}@{target}")
                cells.append(f"{row['ppl'][corpus]:.2f}" if row else "–")
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    lines += ["", "| row | prune s | wall s (prune + eval) |", "|---|---|---|"]
    for name in grid():
        if name in rows:
            lines.append(f"| {name} | {rows[name]['prune_s']:.1f} | {rows[name]['seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rows", nargs="+", default=None, help="row names (default: every row, see grid())")
    parser.add_argument("--calib-windows", type=int, default=32)
    parser.add_argument("--calib-seqlen", type=int, default=512)
    parser.add_argument("--ppl", nargs="+", default=["wiki-en", "kjv"])
    parser.add_argument("--ppl-windows", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(RESULTS / "methods.json"))
    parser.add_argument("--table", action="store_true", help="print the table of the finished rows and stop")
    args = parser.parse_args()
    out = Path(args.output)
    results = json.loads(out.read_text()) if out.exists() else {}
    if args.table:
        print(table(results, results.get("provenance", {}).get("perplexity", {}).get("corpora", args.ppl)))
        return
    rows = args.rows or grid()
    unknown = sorted(set(rows) - set(grid()))
    if unknown:
        parser.error(f"unknown rows {unknown}: use names from grid(), e.g. wanda@2:4, admm+owl@70%")

    import torch

    torch.set_num_threads(args.threads)
    from calibprune.api import prune
    from calibprune.calibration import build_calibration
    from calibprune.config import RunnerOptions
    from calibprune.evaluation.perplexity import perplexity
    from calibprune.models.loading import load_model, load_tokenizer, resolve_model

    torch.manual_seed(0)
    resolved = resolve_model(args.model)
    tokenizer = load_tokenizer(resolved)
    dense = load_model(resolved)
    calib = build_calibration("wiki-en", tokenizer, args.calib_windows, args.calib_seqlen, seed=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    if results.get("provenance", {}).get("calibration", {}).get("fingerprint") not in (None, calib.fingerprint):
        sys.exit(f"{out} holds rows of another calibration set: pass another --output")
    results.setdefault("provenance", provenance(args, calib) | {"commit": _commit()})
    results.setdefault("rows", {})

    def save():
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(out)

    def ppl(model) -> dict:
        return {
            c: perplexity(model, tokenizer, c, seqlen=512, max_windows=args.ppl_windows, progress=False)["ppl"]
            for c in args.ppl
        }

    if "dense" not in results:
        started = time.perf_counter()
        results["dense"] = {"ppl": ppl(dense), "seconds": round(time.perf_counter() - started, 1)}
        save()
        print("dense", results["dense"], flush=True)
    runner = RunnerOptions(activation_store="memory")  # 32 x 512 hidden states: ~38 MB
    for name in rows:
        if name in results["rows"]:
            print(name, "(done)", results["rows"][name]["ppl"], flush=True)
            continue
        started = time.perf_counter()
        model = copy.deepcopy(dense)
        report = prune(model, calib, progress=False, runner=runner, **options_of(name))
        pruned_s = time.perf_counter() - started
        summary = report["summary"]
        results["rows"][name] = {
            "ppl": ppl(model),
            "prune_s": round(pruned_s, 1),
            "seconds": round(time.perf_counter() - started, 1),
            "sparsity": summary["sparsity_pruned_layers"],
            "nm_conformance_min": summary.get("nm_conformance_min"),
        }
        del model
        save()
        print(name, results["rows"][name], flush=True)
    print(table(results, args.ppl))


if __name__ == "__main__":
    main()
