"""Shared-prefix vs plain scoring on the real tasks: the same answers, request by request.

Per task (each zero-shot task, each MMLU subject 5-shot): runs lm-eval once with shared-prefix
scoring, keeping every loglikelihood request and its answer; scores the same requests on
the plain path; then runs lm-eval again replaying the plain answers, so both accuracy
tables come from lm-eval's own metrics. Each task's result is saved on its own
(``benchmarks/results/eval_equivalence/<model>-limit<L>-seed<S>/<task>.json``), so the run
resumes where it stopped: the full set (all 57 subjects at ``--limit 20``: ~600k positions
on the plain path) can be measured across several idle windows. Prints and writes
(``benchmarks/results/eval_equivalence.json``) the largest |difference| of
log-likelihoods, the number of differing ``is_greedy`` flags and whether the tables are
identical, over the tasks done so far, and names the tasks still missing.

    python benchmarks/eval_equivalence.py --limit 20                    # every task, all 57 MMLU subjects
    python benchmarks/eval_equivalence.py --limit 20 --mmlu-subjects 4  # 4 seeded subjects
    python benchmarks/eval_equivalence.py --limit 20 --max-minutes 30   # stop starting tasks after 30 min
    python benchmarks/eval_equivalence.py --limit 20 --reverse          # beside the first: one process per core
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--mmlu-subjects", type=int, default=0, help="seeded MMLU subjects (0: all 57)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reverse", action="store_true", help="last task first: a second process meets the first")
    parser.add_argument("--max-minutes", type=float, default=0, help="start no new task after this (0: no limit)")
    parser.add_argument("--output", default=str(RESULTS / "eval_equivalence.json"))
    args = parser.parse_args()

    from calibprune.evaluation.harness import InMemoryLM
    from calibprune.evaluation.tasks import PAPER_TASKS, mmlu_subjects, task_configs
    from calibprune.models.loading import load_model, load_tokenizer, resolve_model

    class Recording(InMemoryLM):
        def __init__(self, *a, replay=None, **k):
            super().__init__(*a, **k)
            self.replay, self.requests, self.results = replay, None, None

        def _loglikelihood_tokens(self, requests, disable_tqdm=False, **kwargs):
            self.requests = requests
            self.results = self.replay or super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm)
            return self.results

    subjects = mmlu_subjects()
    if args.mmlu_subjects:
        subjects = sorted(random.Random(f"{args.seed}:mmlu").sample(subjects, args.mmlu_subjects))
    configs = [task_configs(name)[0] for name in PAPER_TASKS[:-1]]
    configs += [c for c in task_configs("mmlu", 5) if c["task"].removeprefix("mmlu_") in subjects]
    store = RESULTS / "eval_equivalence" / f"{args.model}-limit{args.limit}-seed{args.seed}"
    store.mkdir(parents=True, exist_ok=True)
    todo = [c for c in configs if not (store / f"{c['task']}.json").exists()]
    print(f"{len(configs) - len(todo)} of {len(configs)} tasks already measured in {store}")

    started = time.perf_counter()
    if todo:
        resolved = resolve_model(args.model)
        model, tokenizer = load_model(resolved), load_tokenizer(resolved)
    for config in reversed(todo) if args.reverse else todo:
        if args.max_minutes and time.perf_counter() - started > 60 * args.max_minutes:
            print(f"--max-minutes {args.max_minutes} reached: rerun the same command to go on")
            break
        if (store / f"{config['task']}.json").exists():  # done meanwhile by another process (--reverse)
            continue
        result = compare(model, tokenizer, config, args.limit, args.seed, Recording)
        partial = store / f".{config['task']}.json.tmp"
        partial.write_text(json.dumps(result, indent=2) + "\n")
        partial.replace(store / f"{config['task']}.json")  # a task's file is whole or absent
        print(
            f"  {config['task']}: {result['requests']} requests, max |diff| {result['max_abs_diff']:.2e}, "
            f"{result['greedy_flips']} greedy flips, identical table: {result['identical_table']} "
            f"({result['shared_run_s'] + result['plain_scoring_s']:.0f} s)",
            flush=True,
        )

    done = [
        json.loads((store / f"{c['task']}.json").read_text()) for c in configs if (store / f"{c['task']}.json").exists()
    ]
    missing = [c["task"] for c in configs if not (store / f"{c['task']}.json").exists()]
    report = {
        "model": args.model,
        "limit": args.limit,
        "seed": args.seed,
        "tasks_done": len(done),
        "tasks_total": len(configs),
        "mmlu_subjects_done": sum(d["task"].startswith("mmlu_") for d in done),
        "missing": missing,
        "documents": sum(d["documents"] for d in done),
        "requests": sum(d["requests"] for d in done),
        "max_abs_diff": max((d["max_abs_diff"] for d in done), default=None),
        "greedy_flips": sum(d["greedy_flips"] for d in done),
        "identical_tables": all(d["identical_table"] for d in done),
        "differing_tables": [d["task"] for d in done if not d["identical_table"]],
        "shared_run_s": round(sum(d["shared_run_s"] for d in done), 1),
        "plain_scoring_s": round(sum(d["plain_scoring_s"] for d in done), 1),
    }
    print(json.dumps(report, indent=2))
    out = Path(args.output)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


def compare(model, tokenizer, config: dict, limit: int, seed: int, recording) -> dict:
    """One task: shared-prefix run (recorded), plain scoring of the same requests, plain replay."""
    from calibprune.evaluation.harness import InMemoryLM, run_lm_eval, seeded_samples

    samples = seeded_samples([config], limit, seed)
    start = time.perf_counter()
    shared = recording(model, tokenizer)
    raw_shared = run_lm_eval(shared, [config], samples=samples, seed=seed)
    shared_s = time.perf_counter() - start
    start = time.perf_counter()
    plain = InMemoryLM(model, tokenizer, scoring="plain")._loglikelihood_tokens(shared.requests)
    plain_s = time.perf_counter() - start
    replay = recording(model, tokenizer, replay=plain)
    raw_plain = run_lm_eval(replay, [config], samples=samples, seed=seed)
    assert replay.requests == shared.requests, "lm-eval built different requests"
    task = config["task"]
    return {
        "task": task,
        "documents": sum(len(v) for v in samples.values()),
        "requests": len(plain),
        "max_abs_diff": max(abs(a - b) for (a, _), (b, _) in zip(shared.results, plain, strict=True)),
        "greedy_flips": sum(a != b for (_, a), (_, b) in zip(shared.results, plain, strict=True)),
        "identical_table": raw_shared["results"][task] == raw_plain["results"][task],
        "shared_run_s": round(shared_s, 1),
        "plain_scoring_s": round(plain_s, 1),
        "shared_stats": shared.report()["stats"],
    }


if __name__ == "__main__":
    main()
