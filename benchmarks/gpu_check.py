"""A prepared check for one GPU: agreement with the CPU, speed and memory of pruning, generation, scoring.

Needs only torch, transformers, accelerate and calibprune, and no network: every model
is random-initialised from a config on the machine. On one GPU it finishes in a few
minutes; ``--tiny`` runs the same steps with tiny shapes on whatever device there is
(the CPU included), so the script is tested end to end without a GPU.

1. **CPU vs GPU masks** (fp32, a tiny Llama): Wanda and SparseGPT on a copy on the CPU
   and a copy on the device, same calibration tokens; the share of equal mask entries.
2. **Pruning a Llama-2-7B-shaped model** (hidden 4096, MLP 11008, 32 heads; ``--blocks``
   of its 32 blocks, bf16, 128 x 2048 calibration tokens) with ``--offload cpu``
   onloading: time per block and the ratio to one dense forward of the block (the same
   runner, block by block, advancing only), peak GPU memory.
3. **Self-generation throughput**: new tokens/s of ``generate`` at batch 1, 32 and 128
   (sampling settings of ``calibprune calib --synthetic``), on the same model whole.
4. **lm-eval-style scoring**: loglikelihood requests (context + short continuation,
   random tokens) per second through calibprune's scorer at the batch size
   ``--batch-size auto`` picks.

Targets (issue 11, acceptance 7) are printed with PASS/FAIL: Wanda <= 1.6x and SparseGPT
<= 2.5x one dense forward per block; peak GPU memory <= 6 GiB with onloading at
128 x 2048; generation at batch 128 >= 20x batch 1. With ``--tiny`` the same columns are
filled but the shapes are not the targets' (the verdicts then only show the plumbing).

    python benchmarks/gpu_check.py                 # on a GPU machine (< 8 min)
    python benchmarks/gpu_check.py --tiny          # anywhere, seconds

Prints a table and writes ``benchmarks/results/gpu_check.json`` (``gpu_check_tiny.json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
GIB = 1024**3
TARGETS = {"wanda_x_dense": 1.6, "sparsegpt_x_dense": 2.5, "peak_gpu_gib": 6.0, "gen_b128_over_b1": 20.0}
SHAPES = {
    # hidden, intermediate, heads, vocab, nsamples, seqlen, runner batch
    "7b": dict(hidden=4096, intermediate=11008, heads=32, vocab=32000, nsamples=128, seqlen=2048, batch=8),
    "tiny": dict(hidden=64, intermediate=176, heads=4, vocab=512, nsamples=16, seqlen=64, batch=4),
}


def llama(shape: dict, blocks: int, dtype: torch.dtype, seed: int = 0):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["hidden"],
        intermediate_size=shape["intermediate"],
        num_hidden_layers=blocks,
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["heads"],
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=dtype).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn) -> float:
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


def calibration(shape: dict, nsamples: int | None = None):
    from calibprune.calibration import CalibrationSet

    ids = torch.randint(3, shape["vocab"], (nsamples or shape["nsamples"], shape["seqlen"]))
    return CalibrationSet(ids, manifest={"source": "random"})


def mask_agreement(device: torch.device) -> dict:
    """Prune copies of one tiny fp32 model on the CPU and on ``device``; compare masks."""
    from calibprune.config import PruneConfig, RunnerOptions, SparsityTarget
    from calibprune.pruning.engine import prune_model

    shape = SHAPES["tiny"]
    torch.manual_seed(0)
    calib = calibration(shape)
    base = llama(shape, 2, torch.float32)
    out = {}
    for method in ("wanda", "sparsegpt"):
        config = PruneConfig(method=method, target=SparsityTarget.unstructured(0.5), runner=RunnerOptions(batch_size=4))
        masks = []
        for where in (torch.device("cpu"), device):
            model = copy.deepcopy(base).to(where)
            prune_model(model, calib, config, progress=False)
            masks.append(torch.cat([(p.detach().cpu() == 0).flatten() for p in model.model.layers.parameters()]))
        out[method] = round(float((masks[0] == masks[1]).float().mean()), 6)
    return out


def prune_timing(device: torch.device, shape: dict, blocks: int, store: str) -> dict:
    """Dense pass and Wanda/SparseGPT on a model whose weights wait on the CPU (onloading)."""
    from calibprune.config import PruneConfig, RunnerOptions, SparsityTarget
    from calibprune.models.placement import CpuOffload
    from calibprune.models.runner import SequentialRunner
    from calibprune.pruning.engine import prune_model

    calib = calibration(shape)
    runner_options = RunnerOptions(batch_size=shape["batch"], activation_store=store)
    result: dict = {"blocks": blocks, "tokens": f"{shape['nsamples']} x {shape['seqlen']}", "store": store}
    for name in ("dense", "wanda", "sparsegpt"):
        model = llama(shape, blocks, torch.bfloat16)  # fresh weights on the CPU each time
        placement = CpuOffload(model, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        if name == "dense":

            def run(model=model, placement=placement):
                for step in SequentialRunner(model, calib.input_ids, runner_options, placement):
                    step.advance()
        else:
            config = PruneConfig(method=name, target=SparsityTarget.unstructured(0.5), runner=runner_options)

            def run(model=model, placement=placement, config=config):
                prune_model(model, calib, config, progress=False, placement=placement)

        # the dense pass runs twice and keeps the faster: its first run also pays one-off
        # costs (kernel loading, allocator growth) that the methods after it no longer pay
        seconds = min(timed(device, run) for _ in range(2 if name == "dense" else 1))
        result[f"{name}_s_per_block"] = round(seconds / blocks, 4)
        if device.type == "cuda":
            result[f"{name}_peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device) / GIB, 3)
        del model, placement
    for name in ("wanda", "sparsegpt"):
        result[f"{name}_x_dense"] = round(result[f"{name}_s_per_block"] / result["dense_s_per_block"], 3)
    return result


def generation(device: torch.device, shape: dict, blocks: int, batches: list[int], steps: int) -> dict:
    from calibprune.calibration.synthetic import GenerationOptions
    from calibprune.estimate import generation_rate

    sampling = GenerationOptions().sampling()
    model = llama(shape, blocks, torch.bfloat16).to(device)
    rates = {str(b): round(generation_rate(model, b, 1, sampling, steps=steps), 1) for b in batches}
    return {"tokens_per_s": rates, "b128_over_b1": round(rates[str(batches[-1])] / rates[str(batches[0])], 2)}


def scoring(device: torch.device, shape: dict, blocks: int, requests: int, context: int) -> dict:
    from calibprune.evaluation.batching import pick_batch_size
    from calibprune.scoring.tokens import score_sequences

    model = llama(shape, blocks, torch.bfloat16).to(device)
    chosen = pick_batch_size(model)["chosen"]
    generator = torch.Generator().manual_seed(0)
    sequences = [
        torch.randint(3, shape["vocab"], (context + 8,), generator=generator).tolist() for _ in range(requests)
    ]
    score_sequences(model, sequences[:chosen], max_batch_size=chosen)  # warm-up
    seconds = timed(device, lambda: score_sequences(model, sequences, max_batch_size=chosen))
    return {
        "batch_size": chosen,
        "requests": requests,
        "tokens_each": context + 8,
        "per_s": round(requests / seconds, 2),
    }


def verdicts(result: dict) -> list[tuple[str, float | None, str, str]]:
    prune, gen = result["prune"], result["generation"]
    rows = [
        ("Wanda x dense forward per block", prune["wanda_x_dense"], f"<= {TARGETS['wanda_x_dense']}"),
        ("SparseGPT x dense forward per block", prune["sparsegpt_x_dense"], f"<= {TARGETS['sparsegpt_x_dense']}"),
        (
            "peak GPU GiB (onloading, max of wanda/sparsegpt)",
            max(prune.get("wanda_peak_gpu_gib", -1), prune.get("sparsegpt_peak_gpu_gib", -1)),
            f"<= {TARGETS['peak_gpu_gib']}",
        ),
        ("generation batch 128 / batch 1", gen["b128_over_b1"], f">= {TARGETS['gen_b128_over_b1']}"),
    ]
    out = []
    for name, value, target in rows:
        if value is None or value < 0:
            out.append((name, None, target, "n/a (no GPU)"))
            continue
        bound = float(target.split()[-1])
        ok = value <= bound if target.startswith("<=") else value >= bound
        out.append((name, value, target, "PASS" if ok else "FAIL"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on any device (the CPU included)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--blocks", type=int, default=4, help="blocks of the 7B-shaped model (it has 32)")
    parser.add_argument("--store", default="memory", help="activation store of the runner: memory | disk")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    from calibprune.utils.device import device_record, resolve_device

    device = resolve_device(args.device)
    shape = SHAPES["tiny" if args.tiny else "7b"]
    blocks = 2 if args.tiny else args.blocks
    result: dict = {"device": device_record(device, torch.bfloat16), "shape": shape, "tiny": args.tiny}
    started = time.perf_counter()
    result["mask_agreement_cpu_vs_device"] = mask_agreement(device)
    result["prune"] = prune_timing(device, shape, blocks, args.store)
    result["generation"] = generation(device, shape, blocks, [1, 32, 128], steps=4 if args.tiny else 16)
    result["scoring"] = scoring(
        device, shape, blocks, requests=64 if args.tiny else 512, context=48 if args.tiny else 512
    )
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["targets"] = [
        dict(zip(("check", "value", "target", "verdict"), row, strict=True)) for row in verdicts(result)
    ]

    where = result["device"].get("gpu", str(device))
    print(f"device: {where}; shapes: {'tiny (plumbing only, not the targets)' if args.tiny else 'Llama-2-7B blocks'}")
    agreement = result["mask_agreement_cpu_vs_device"]
    print(f"mask agreement CPU vs {device}: wanda {agreement['wanda']:.6f}, sparsegpt {agreement['sparsegpt']:.6f}")
    prune = result["prune"]
    print(f"pruning {prune['blocks']} blocks, {prune['tokens']} tokens, store {prune['store']}:")
    for name in ("dense", "wanda", "sparsegpt"):
        ratio = "" if name == "dense" else f"  x dense {prune[f'{name}_x_dense']:.2f}"
        peak = f"  peak GPU {prune[f'{name}_peak_gpu_gib']:.2f} GiB" if f"{name}_peak_gpu_gib" in prune else ""
        print(f"  {name:9s} {prune[f'{name}_s_per_block']:.3f} s/block{ratio}{peak}")
    print(f"generation tokens/s by batch: {result['generation']['tokens_per_s']}")
    score = result["scoring"]
    print(f"scoring: {score['per_s']:.1f} requests/s of {score['tokens_each']} tokens at batch {score['batch_size']}")
    print("\n| check | value | target | verdict |\n|---|---|---|---|")
    for row in result["targets"]:
        value = "" if row["value"] is None else f"{row['value']:.3f}"
        print(f"| {row['check']} | {value} | {row['target']} | {row['verdict']} |")
    output = Path(args.output or RESULTS / f"gpu_check{'_tiny' if args.tiny else ''}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {output} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
