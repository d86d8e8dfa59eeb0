"""Evaluation speed, side by side in one process: lm-eval's own HFLM, the plain adapter
path and shared-prefix scoring, on the same in-memory model and the same seeded documents.

Three paths, each run on the six zero-shot tasks and on MMLU (5-shot) separately:

* ``hflm``   lm-eval's ``HFLM`` wrapped around the loaded model, at its best batch size: each of
  ``--hf-batch-sizes`` is first timed on a seeded probe subset of both parts (``--probe-limit``
  documents per task) and the fastest is used for the comparison (the probe table is printed
  and saved);
* ``plain``  calibprune's adapter as it was before shared-prefix scoring (``scoring="plain"``);
* ``shared`` shared-prefix scoring (each shared context computed once).

Per path and part: wall and CPU seconds of the whole lm-eval run (task building
included, the same for every path), the seconds spent scoring (inside the LM's
``loglikelihood``), examples/s (documents / scoring s), positions
computed (the input ids of every forward, padding included, counted by a forward
hook — the work the model actually did), peak RSS during the part (the kernel's
high-water mark, reset before each run), and the accuracy table (must be identical).
Rows run interleaved (part by part, path by path) so machine noise hits all paths alike;
ratios are wall-time ratios within this one run, and CPU-time ratios beside them (the
process's CPU seconds for the whole lm-eval run, task building included): with one torch
thread per path, CPU time is what a path costs, while wall time also counts the time it
waited for a core that another tenant held. Writes ``benchmarks/results/eval_speed.json``.

One torch thread by default: on the shared 2-core machines, two threads wait on each
other whenever another tenant holds a core (one forward of 8 x 200 tokens took 28-46 s
with two threads and 10 s with one, in the same minute), which swamps every ratio.

    python benchmarks/eval_speed.py                               # --limit 8, MMLU on 4 seeded subjects
    python benchmarks/eval_speed.py --limit 20 --mmlu-subjects 0  # MMLU on all 57 subjects (slow on CPU)
    python benchmarks/eval_speed.py --hf-batch-sizes 8            # skip the probe: HFLM at batch 8
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ZERO_SHOT = ("boolq", "winogrande", "piqa", "hellaswag", "arc_easy", "arc_challenge")
PATHS = ("hflm", "plain", "shared")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=8, help="seeded documents per task (per MMLU subject)")
    parser.add_argument("--mmlu-subjects", type=int, default=4, help="seeded MMLU subjects (0: all 57)")
    parser.add_argument("--mmlu-shots", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8, help="rows per forward, plain and shared paths")
    parser.add_argument(
        "--hf-batch-sizes", default="1,4,8,16,32", help="HFLM batch sizes to probe; the fastest is compared"
    )
    parser.add_argument("--probe-limit", type=int, default=3, help="seeded documents per task in the HFLM probe")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (0: torch's default); see the module docstring"
    )
    parser.add_argument("--output", default=str(RESULTS / "eval_speed.json"))
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from calibprune.evaluation.harness import InMemoryLM, run_lm_eval, seeded_samples
    from calibprune.evaluation.tasks import mmlu_subjects, task_configs
    from calibprune.models.loading import load_model, load_tokenizer, resolve_model
    from calibprune.utils.resources import GIB, peak_rss_bytes, reset_peak_rss

    resolved = resolve_model(args.model)
    model, tokenizer = load_model(resolved), load_tokenizer(resolved)
    subjects = mmlu_subjects()
    if args.mmlu_subjects:
        subjects = sorted(random.Random(f"{args.seed}:mmlu").sample(subjects, args.mmlu_subjects))
    parts = {
        "zero-shot": [task_configs(name)[0] for name in ZERO_SHOT],
        "mmlu": [c for c in task_configs("mmlu", args.mmlu_shots) if c["task"].removeprefix("mmlu_") in subjects],
    }
    positions = [0, 0]  # forwards, input positions (padding included)

    def count(module, inputs, kwargs):
        ids = kwargs.get("input_ids", inputs[0] if inputs else None)
        positions[0] += 1
        positions[1] += ids.numel()

    model.register_forward_pre_hook(count, with_kwargs=True)

    hf_sizes = [int(b) for b in args.hf_batch_sizes.split(",")]

    def make_lm(path: str, hf_batch_size: int = 0):
        if path == "hflm":
            from lm_eval.models.huggingface import HFLM

            return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=hf_batch_size, device="cpu")
        scoring = "plain" if path == "plain" else "shared-prefix"
        return InMemoryLM(model, tokenizer, batch_size=args.batch_size, progress=False, scoring=scoring)

    def timed_run(lm, configs, samples) -> tuple[dict, float, float, float]:
        """lm-eval on ``samples``: (raw results, wall s, CPU s, s inside ``loglikelihood``)."""
        scoring = [0.0]
        inner = lm.loglikelihood

        def timed(requests, *a, inner=inner, scoring=scoring, **k):
            start = time.perf_counter()
            out = inner(requests, *a, **k)
            scoring[0] += time.perf_counter() - start
            return out

        lm.loglikelihood = timed  # lm-eval looks the method up on the instance
        start, cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            raw = run_lm_eval(lm, configs, samples=samples, seed=args.seed)
        return raw, time.perf_counter() - start, time.process_time() - cpu, scoring[0]

    probe = []
    if len(hf_sizes) > 1:
        print(f"probing HFLM batch sizes {hf_sizes} on {args.probe_limit} seeded documents per task")
        for size in hf_sizes:
            seconds = 0.0
            for configs in parts.values():
                samples = seeded_samples(configs, args.probe_limit, args.seed + 1)
                seconds += timed_run(make_lm("hflm", size), configs, samples)[3]
            probe.append({"hf_batch_size": size, "scoring_s": round(seconds, 2)})
            print(f"  HFLM batch {size:>3}: scored in {seconds:.1f} s", flush=True)
    hf_batch_size = min(probe, key=lambda r: r["scoring_s"])["hf_batch_size"] if probe else hf_sizes[0]
    print(f"HFLM compared at batch {hf_batch_size}")

    rows = []
    for part, configs in parts.items():
        samples = seeded_samples(configs, args.limit, args.seed)
        documents = sum(len(v) for v in samples.values())
        for path in PATHS:
            lm = make_lm(path, hf_batch_size)
            positions[:] = [0, 0]
            reset_peak_rss()
            raw, wall, cpu_s, scoring_s = timed_run(lm, configs, samples)
            acc = {t: round(v.get("acc,none", float("nan")), 6) for t, v in sorted(raw["results"].items())}
            row = {
                "part": part,
                "path": path,
                "documents": documents,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu_s, 2),
                "scoring_s": round(scoring_s, 2),
                "examples_per_s": round(documents / scoring_s, 3),
                "forwards": positions[0],
                "positions": positions[1],
                "peak_rss_gib": round(peak_rss_bytes() / GIB, 3),
                "acc": acc,
            }
            if path == "shared":
                row["stats"] = lm.report()["stats"]
            rows.append(row)
            print(
                f"  {part:>9} {path:>6}: {documents} docs, scored in {scoring_s:.1f} s ({wall:.1f} s in all), "
                f"{positions[1]} positions",
                flush=True,
            )

    def find(part, path):
        return next(r for r in rows if r["part"] == part and r["path"] == path)

    summary = {}
    print(
        "\n| part | path | documents | scoring s | × HFLM | examples/s | forwards | positions | all s | × HFLM (all) "
        "| CPU s (all) | × HFLM (CPU) | peak RSS GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for part in [*parts, "suite"]:
        for path in PATHS:
            if part == "suite":
                pieces = [find(p, path) for p in parts]
                keys = ("documents", "wall_s", "cpu_s", "scoring_s", "forwards", "positions")
                r = {k: round(sum(x[k] for x in pieces), 2) for k in keys}
                r |= {"examples_per_s": round(r["documents"] / r["scoring_s"], 3)}
                r |= {"peak_rss_gib": max(x["peak_rss_gib"] for x in pieces)}
            else:
                r = find(part, path)
            base = summary.get((part, "hflm"), r)
            speedup, overall = base["scoring_s"] / r["scoring_s"], base["wall_s"] / r["wall_s"]
            cpu_ratio = base["cpu_s"] / r["cpu_s"]
            summary[(part, path)] = r | {
                "speedup_vs_hflm": round(speedup, 2),
                "overall_vs_hflm": round(overall, 2),
                "cpu_vs_hflm": round(cpu_ratio, 2),
            }
            print(
                f"| {part} | {path} | {r['documents']} | {r['scoring_s']} | {speedup:.2f} | {r['examples_per_s']} | "
                f"{r['forwards']} | {r['positions']} | {r['wall_s']} | {overall:.2f} | "
                f"{r['cpu_s']} | {cpu_ratio:.2f} | {r['peak_rss_gib']} |"
            )
    same = {part: len({json.dumps(find(part, p)["acc"]) for p in PATHS}) == 1 for part in parts}
    print(f"\nidentical accuracy tables across the three paths: {same}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "model": args.model,
        "limit": args.limit,
        "seed": args.seed,
        "mmlu_subjects": subjects,
        "mmlu_shots": args.mmlu_shots,
        "batch_size": args.batch_size,
        "hf_batch_size": hf_batch_size,
        "hf_batch_probe": probe,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "summary": [{"part": k[0], "path": k[1], **v} for k, v in summary.items()],
        "identical_accuracy": same,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
