"""Self-generation throughput: batched next to one-sequence-at-a-time, one run.

Both arms go through the real code path (`calibration.synthetic.generate_texts`) with
the same prompts (BOS + 1 source token from wiki-en), the same sampling settings
(paper defaults) and the same ``--max-new-tokens``; tokens/s counts generated tokens
(up to EOS). Prints a table and writes ``benchmarks/results/generation_speed.json``.

    python benchmarks/generation_speed.py                    # 32 prompts, batch 32 vs 1
    python benchmarks/generation_speed.py --batch-size 16 --prompts 16 --max-new-tokens 128
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
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(RESULTS / "generation_speed.json"))
    args = parser.parse_args()

    import torch

    from calibprune.calibration.synthetic import GenerationOptions, build_prompts, generate_texts
    from calibprune.corpora import get_corpus
    from calibprune.models.loading import load_model, load_tokenizer, resolve_model

    resolved = resolve_model(args.model)
    tokenizer, model = load_tokenizer(resolved), load_model(resolved)
    prompts = build_prompts(get_corpus("wiki-en"), tokenizer, args.prompts, 1, args.seed)
    rows = []
    for batch_size in (args.batch_size, 1):
        options = GenerationOptions(batch_size=batch_size, max_new_tokens=args.max_new_tokens).resolve(
            model.config.model_type, args.max_new_tokens + 2
        )
        start = time.perf_counter()
        records = generate_texts(model, tokenizer, prompts, options, args.seed, progress=False)
        wall = time.perf_counter() - start
        tokens = sum(r["generated_tokens"] for r in records)
        rows.append(
            {
                "batch_size": batch_size,
                "prompts": len(prompts),
                "generated_tokens": tokens,
                "wall_s": round(wall, 2),
                "tokens_per_s": round(tokens / wall, 2),
                "temperature": options.temperature,
                "top_p": options.top_p,
                "top_k": options.top_k,
                "repetition_penalty": options.repetition_penalty,
                "threads": torch.get_num_threads(),
            }
        )
        print(f"  batch {batch_size:>3}: {tokens} tokens in {wall:.1f} s = {tokens / wall:.1f} tokens/s", flush=True)
    speedup = rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"]
    print("\n| batch size | prompts | generated tokens | wall s | tokens/s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['prompts']} | {r['generated_tokens']} | {r['wall_s']} | {r['tokens_per_s']} |")
    print(f"\nbatched / sequential throughput: {speedup:.2f}x")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"model": args.model, "max_new_tokens": args.max_new_tokens, "rows": rows, "speedup": round(speedup, 3)},
            indent=2,
        )
        + "\n"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
