"""Throughput of the lm-eval path (InMemoryLM) on the default model: batched vs batch size 1.

Same task, same seeded documents, one process; examples/s counts evaluated documents.
Prints a table and writes ``benchmarks/results/eval_speed.json``.

    python benchmarks/eval_speed.py                          # hellaswag, 24 documents, batch 8 vs 1
    python benchmarks/eval_speed.py --task arc_easy --limit 40 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="hellaswag")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output", default=str(RESULTS / "eval_speed.json"))
    args = parser.parse_args()

    from calibprune.evaluation.harness import evaluate_tasks
    from calibprune.models.loading import load_model, load_tokenizer, resolve_model

    resolved = resolve_model(args.model)
    model, tokenizer = load_model(resolved), load_tokenizer(resolved)
    rows = []
    for batch_size in (args.batch_size, 1):
        start = time.perf_counter()
        result = evaluate_tasks(model, tokenizer, [args.task], limit=args.limit, batch_size=batch_size, progress=False)
        wall = time.perf_counter() - start
        task = result["tasks"][args.task]
        rows.append(
            {
                "batch_size": batch_size,
                "documents": task["n"],
                "wall_s": round(wall, 2),
                "examples_per_s": round(task["n"] / wall, 3),
                "acc": task["acc"],
            }
        )
        print(f"  batch {batch_size:>3}: {task['n']} documents in {wall:.1f} s (acc {task['acc']:.3f})", flush=True)
    assert rows[0]["acc"] == rows[1]["acc"], "batching changed the answers"
    speedup = rows[0]["examples_per_s"] / rows[1]["examples_per_s"]
    print("\n| batch size | documents | wall s | examples/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['documents']} | {r['wall_s']} | {r['examples_per_s']} |")
    print(f"\nbatched / batch-1 throughput: {speedup:.2f}x")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"model": args.model, "task": args.task, "rows": rows, "speedup": round(speedup, 3)}, indent=2)
        + "\n"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
