"""Fidelity to the reference algorithms on SmolLM2: each rule side by side, same windows.

Rows (each on the same seeded wiki-en windows, held-out wiki-en perplexity at 512 tokens):

* ``sparsegpt``  — the reference block threshold (default) vs this project's exact
  per-row rule vs a transcription of ``fasterprune``'s loop (tests/reference_loops.py),
  at 50, 60 and 70 %;
* ``dsnot``      — the reference acceptance rules (default) vs ``--dsnot-accept improve``
  vs no DSnoT, swap counts and perplexity, Wanda 60 % and 2:4;
* ``magnitude``  — the reference matrix threshold (default) vs the exact floor(n*r) count;
* ``wanda``      — mask agreement with a transcription of ``prune_wanda`` (one sample per
  forward) at ``--batch-size 1`` and 4, and the perplexity of both.

Windows are cut with ``windows="random"`` (the published loaders' rule, and what this
project drew before disjoint windows became the default), so they equal the "before"
runs of the closing note. Rows are written to ``benchmarks/results/fidelity.json`` as they
finish; a rerun skips the rows already there.

    python benchmarks/fidelity.py                       # all rows (about an hour on 2 CPU cores)
    python benchmarks/fidelity.py --rows wanda dsnot    # some of them
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

RESULTS = Path(__file__).parent / "results"
ROWS = ("wanda", "dsnot", "sparsegpt", "magnitude")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--ppl-windows", type=int, default=32)
    parser.add_argument("--output", default=str(RESULTS / "fidelity.json"))
    args = parser.parse_args()

    import reference_loops as ref

    from calibprune.api import prune
    from calibprune.calibration import build_calibration
    from calibprune.config import DSnoTOptions, RunnerOptions, SparseGPTOptions
    from calibprune.evaluation.perplexity import perplexity
    from calibprune.models.layers import all_block_layers, weight_matrix
    from calibprune.models.loading import load_model, load_tokenizer, resolve_model

    torch.manual_seed(0)
    resolved = resolve_model(args.model)
    tokenizer = load_tokenizer(resolved)
    dense = load_model(resolved)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}

    def windows(nsamples, seqlen):
        return build_calibration("wiki-en", tokenizer, nsamples, seqlen, seed=0, windows="random").input_ids

    def ppl(model):
        return perplexity(model, tokenizer, "wiki-en", seqlen=512, max_windows=args.ppl_windows, progress=False)["ppl"]

    def masks(model):
        return {n: weight_matrix(layer) == 0 for n, layer in all_block_layers(model).items()}

    def agreement(a, b):
        same = sum(int((a[n] == b[n]).sum()) for n in a)
        return same / sum(m.numel() for m in a.values())

    def record(key, **values):
        results[key] = values
        out.write_text(json.dumps(results, indent=2))
        print(key, values, flush=True)

    def run(key, fn):
        if key in results:
            print(key, "(done)", results[key])
            return
        started = time.perf_counter()
        values = fn()
        record(key, **values, seconds=round(time.perf_counter() - started, 1))

    def ours(calib, **options):
        model = copy.deepcopy(dense)
        report = prune(model, calib, progress=False, **options)
        swaps = sum(r.get("dsnot_swaps", 0) for r in report["layers"].values())
        return model, report, swaps

    run("dense", lambda: {"ppl": ppl(dense)})

    if "wanda" in args.rows:
        calib = windows(16, 256)

        def wanda_row():
            theirs = copy.deepcopy(dense)
            ref.wanda(theirs, calib, 0.5)
            one, _, _ = ours(calib, method="wanda", sparsity=0.5, runner=RunnerOptions(batch_size=1))
            four, _, _ = ours(calib, method="wanda", sparsity=0.5, runner=RunnerOptions(batch_size=4))
            reference_masks = masks(theirs)
            return {
                "agreement_batch1": agreement(masks(one), reference_masks),
                "agreement_batch4": agreement(masks(four), reference_masks),
                "ppl_reference": ppl(theirs),
                "ppl_batch1": ppl(one),
                "ppl_batch4": ppl(four),
            }

        run("wanda50_16x256", wanda_row)

    if "dsnot" in args.rows:
        for label, nsamples, seqlen, target in (
            ("dsnot60_8x128", 8, 128, {"sparsity": 0.6}),
            ("dsnot60_16x512", 16, 512, {"sparsity": 0.6}),
            ("dsnot24_16x512", 16, 512, {"pattern": "2:4"}),
        ):
            calib = windows(nsamples, seqlen)

            def wanda_alone(calib=calib, target=target):
                model, _, _ = ours(calib, method="wanda", **target)
                return {"ppl": ppl(model)}

            run(f"{label}_no_dsnot", wanda_alone)
            for accept in ("reference", "improve"):

                def dsnot_row(calib=calib, target=target, accept=accept):
                    model, _, swaps = ours(
                        calib, method="wanda", refine="dsnot", dsnot=DSnoTOptions(accept=accept), **target
                    )
                    rows = sum(layer.shape[0] for n, layer in masks(model).items() if ".mlp." not in n)
                    return {"swaps": swaps, "refined_rows": rows, "ppl": ppl(model)}

                run(f"{label}_{accept}", dsnot_row)

    if "sparsegpt" in args.rows:
        calib = windows(16, 512)
        for sparsity in (0.5, 0.6, 0.7):
            for rule in ("block", "row"):

                def sparsegpt_row(sparsity=sparsity, rule=rule):
                    model, report, _ = ours(
                        calib, method="sparsegpt", sparsity=sparsity, sparsegpt=SparseGPTOptions(mask_rule=rule)
                    )
                    return {"ppl": ppl(model), "sparsity": report["summary"]["sparsity_pruned_layers"]}

                run(f"sparsegpt{int(sparsity * 100)}_{rule}", sparsegpt_row)

            def reference_row(sparsity=sparsity):
                theirs = copy.deepcopy(dense)
                ref.sparsegpt(theirs, calib, sparsity)
                return {"ppl": ppl(theirs)}

            run(f"sparsegpt{int(sparsity * 100)}_transcription", reference_row)

    if "magnitude" in args.rows:
        from calibprune.pruning import masks as mask_rules

        def magnitude_row(exact):
            if exact:  # the earlier rule: exactly floor(numel * r) per matrix, ties by index
                rule = mask_rules.threshold_mask
                mask_rules.threshold_mask = lambda s, r: mask_rules.prune_lowest(
                    s.reshape(1, -1), mask_rules.pruned_count(s.numel(), r)
                ).view(s.shape)
            try:
                model, report, _ = ours(None, method="magnitude", sparsity=0.5)
            finally:
                if exact:
                    mask_rules.threshold_mask = rule
            return {"ppl": ppl(model), "sparsity": report["summary"]["sparsity_pruned_layers"]}

        run("magnitude50_threshold", lambda: magnitude_row(False))
        run("magnitude50_exact_count", lambda: magnitude_row(True))

    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
