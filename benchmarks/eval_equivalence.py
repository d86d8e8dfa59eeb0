"""Shared-prefix vs plain scoring on the real tasks: the same answers, request by request.

Runs lm-eval once with shared-prefix scoring, keeping every loglikelihood request and
its answer; scores the same requests on the plain path; then runs lm-eval again
replaying the plain answers, so both accuracy tables come from lm-eval's own metrics.
Prints the largest |difference| of log-likelihoods, the number of differing
``is_greedy`` flags and whether the tables are identical; writes
``benchmarks/results/eval_equivalence.json``.

    python benchmarks/eval_equivalence.py --limit 20                    # every task, all 57 MMLU subjects
    python benchmarks/eval_equivalence.py --limit 20 --mmlu-subjects 4  # 4 seeded subjects
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
    parser.add_argument("--output", default=str(RESULTS / "eval_equivalence.json"))
    args = parser.parse_args()

    from calibprune.evaluation.harness import InMemoryLM, run_lm_eval, seeded_samples
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

    resolved = resolve_model(args.model)
    model, tokenizer = load_model(resolved), load_tokenizer(resolved)
    subjects = mmlu_subjects()
    if args.mmlu_subjects:
        subjects = sorted(random.Random(f"{args.seed}:mmlu").sample(subjects, args.mmlu_subjects))
    configs = [task_configs(name)[0] for name in PAPER_TASKS[:-1]]
    configs += [c for c in task_configs("mmlu", 5) if c["task"].removeprefix("mmlu_") in subjects]
    samples = seeded_samples(configs, args.limit, args.seed)

    start = time.perf_counter()
    shared = Recording(model, tokenizer)
    raw_shared = run_lm_eval(shared, configs, samples=samples, seed=args.seed)
    shared_s = time.perf_counter() - start
    start = time.perf_counter()
    plain = InMemoryLM(model, tokenizer, scoring="plain")._loglikelihood_tokens(shared.requests)
    plain_s = time.perf_counter() - start
    replay = Recording(model, tokenizer, replay=plain)
    raw_plain = run_lm_eval(replay, configs, samples=samples, seed=args.seed)

    assert replay.requests == shared.requests, "lm-eval built different requests"
    diffs = [abs(a - b) for (a, _), (b, _) in zip(shared.results, plain, strict=True)]
    flips = sum(a != b for (_, a), (_, b) in zip(shared.results, plain, strict=True))
    tables = {c["task"]: raw_shared["results"][c["task"]] == raw_plain["results"][c["task"]] for c in configs}
    report = {
        "model": args.model,
        "limit": args.limit,
        "seed": args.seed,
        "mmlu_subjects": len(subjects),
        "documents": sum(len(v) for v in samples.values()),
        "requests": len(plain),
        "max_abs_diff": max(diffs),
        "greedy_flips": flips,
        "identical_tables": all(tables.values()),
        "differing_tables": [t for t, same in tables.items() if not same],
        "shared_run_s": round(shared_s, 1),
        "plain_scoring_s": round(plain_s, 1),
        "shared_stats": shared.report()["stats"],
    }
    print(json.dumps(report, indent=2))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
