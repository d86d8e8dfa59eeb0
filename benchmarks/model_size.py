"""Peak host memory against model size: ``--offload disk`` beside the in-memory path.

Builds random Llama-shaped checkpoints locally (no download): every model has the same
block shape and differs only in depth, so "the largest block" is one fixed size and
the model grows by whole blocks. Tensors are drawn and written one block at a time
(sharded safetensors, as ``save_pretrained`` writes them), so building a model never
holds it whole either. Each model is then pruned (Wanda, 50 %, a tiny calibration set
so that the time goes to loading and saving) twice, each in a fresh process:

* ``none``: ``from_pretrained`` + prune + ``save_pretrained`` (the whole model in RAM);
* ``disk``: the skeleton + one block at a time from the checkpoint + streaming save.

Peak RSS is the child's kernel high-water mark (``VmHWM``, which counts touched pages
of memory-mapped files too), the largest over its stages. Both children run with
glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed (``--mmap-threshold``, 128 KiB; 0 keeps glibc's
dynamic threshold), so that the transient peak of each block's step is the same for
every block instead of wandering with heap placement. The claim to check: with ``disk`` the peak grows by less
than one block from the smallest to the largest model; with ``none`` it grows with
the model. Both paths are run on the same checkpoint, side by side.

    python benchmarks/model_size.py --quick                 # ~0.1-0.4 GB models, a few minutes
    python benchmarks/model_size.py --sizes 0.5 2 6         # GB of bf16 weights

Prints a table and writes ``benchmarks/results/model_size.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
GB = 1e9
# block shapes: (hidden, intermediate, heads); the vocabulary is SmolLM2's (its tokenizer is bundled)
SHAPES = {"full": (2048, 5632, 16), "quick": (512, 1408, 8)}


def llama_config(hidden: int, intermediate: int, heads: int, layers: int, vocab: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        dtype="bfloat16",
    )


def layers_for(size_gb: float, shape: tuple[int, int, int], vocab: int) -> int:
    hidden, intermediate, _ = shape
    block = (4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden) * 2
    rest = (vocab * hidden + hidden) * 2
    return max(1, round((size_gb * GB - rest) / block))


def build_checkpoint(folder: Path, config, tokenizer_folder: Path) -> dict:
    """Random N(0, 0.02) bf16 weights, written one block per shard (never whole in RAM)."""
    import torch

    from calibprune.models.checkpoint import ShardWriter
    from calibprune.models.layers import find_decoder_blocks
    from calibprune.models.loading import meta_model
    from calibprune.models.placement import BlockPlacement

    folder.mkdir(parents=True)
    skeleton = meta_model(config, torch.bfloat16)
    path, blocks = find_decoder_blocks(skeleton)
    names = BlockPlacement(skeleton, "cpu")
    writer = ShardWriter(folder, len(blocks) + 1)
    generator = torch.Generator().manual_seed(0)
    params = dict(skeleton.named_parameters())

    def draw(keys):
        out = {}
        for key in keys:
            shape = params[key].shape
            value = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=generator) * 0.02
            out[key] = value.to(torch.bfloat16)
        return out

    block_bytes = 0
    for index in range(len(blocks)):
        tensors = draw([n for n in names._block_names(index) if n in params])
        block_bytes = max(block_bytes, sum(t.numel() * 2 for t in tensors.values()))
        writer.write(index, tensors)
    writer.write(len(blocks), draw([n for n in names._rest_names() if n in params]))
    writer.finish()
    config.save_pretrained(folder)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_folder / file, folder / file)
    return {"weights_gb": round(writer.total_size / GB, 3), "largest_block_gb": round(block_bytes / GB, 4)}


def worker(model: str, offload: str, output: str, nsamples: int, seqlen: int) -> dict:
    import torch

    from calibprune.calibration import CalibrationSet
    from calibprune.config import PruneConfig, RunnerOptions, SparsityTarget
    from calibprune.jobs.prune import run_prune
    from calibprune.jobs.requests import CalibrationRequest
    from calibprune.utils.resources import GIB, peak_rss_bytes

    ids = torch.randint(0, 49152, (nsamples, seqlen), generator=torch.Generator().manual_seed(0))
    config = PruneConfig(
        method="wanda", target=SparsityTarget.unstructured(0.5), runner=RunnerOptions(batch_size=nsamples)
    )
    started = time.perf_counter()
    run_prune(
        model,
        config,
        CalibrationRequest(source=CalibrationSet(ids, manifest={"source": "random"})),
        output,
        offload=offload,
        device="cpu",
        progress=False,
    )
    report = json.loads((Path(output) / "prune_report.json").read_text())
    # each stage resets the kernel's high-water mark, so the run's peak is the largest stage peak
    peak = max([v["peak_rss_gib"] for v in report["stages"].values()] + [peak_rss_bytes() / GIB])
    return {
        "offload": offload,
        "wall_s": round(time.perf_counter() - started, 2),
        "peak_rss_gib": round(peak, 3),
        "stages": {k: {"wall_s": v["wall_s"], "peak_rss_gib": v["peak_rss_gib"]} for k, v in report["stages"].items()},
    }


def run_child(model: Path, offload: str, output: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(model), offload, str(output)]
    cmd += ["--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if args.mmap_threshold:
        # glibc otherwise raises its mmap threshold as large blocks are freed, and where later
        # tensors land in the heap makes each block's peak wander (over 24 identical 0.1 GB
        # blocks: 875-967 MB by default, 834 MB for every block with the threshold fixed)
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{offload} on {model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict]) -> None:
    columns = ["weights GB", "blocks", "largest block GB", "peak RSS none GiB", "peak RSS disk GiB", "wall none s"]
    columns.append("wall disk s")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        cells = [
            f"{r['weights_gb']:.2f}",
            str(r["blocks"]),
            f"{r['largest_block_gb']:.3f}",
            f"{r['none']['peak_rss_gib']:.2f}",
            f"{r['disk']['peak_rss_gib']:.2f}",
            f"{r['none']['wall_s']:.0f}",
            f"{r['disk']['wall_s']:.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        grow_disk = last["disk"]["peak_rss_gib"] - first["disk"]["peak_rss_gib"]
        grow_none = last["none"]["peak_rss_gib"] - first["none"]["peak_rss_gib"]
        block = last["largest_block_gb"] * GB / 1024**3
        verdict = "PASS" if grow_disk < block else "FAIL"
        print(
            f"\nfrom {first['weights_gb']:.2f} to {last['weights_gb']:.2f} GB of weights: disk peak RSS grew "
            f"{grow_disk:+.3f} GiB (one block = {block:.3f} GiB: {verdict}), in-memory {grow_none:+.3f} GiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=None, help="GB of bf16 weights (default 0.5 2 6)")
    parser.add_argument("--quick", action="store_true", help="small blocks, sizes 0.1 0.2 0.4 GB unless --sizes")
    parser.add_argument("--nsamples", type=int, default=4)
    parser.add_argument("--seqlen", type=int, default=64)
    parser.add_argument("--workdir", default=None, help="where the checkpoints are built (default: a temp folder)")
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=131072,
        help="MALLOC_MMAP_THRESHOLD_ of both children (glibc; 0: the default dynamic threshold)",
    )
    parser.add_argument("--output", default=None)
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "OFFLOAD", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        model, offload, output = args.worker
        print(json.dumps(worker(model, offload, output, args.nsamples, args.seqlen)))
        return

    from calibprune.models.presets import ensure_preset

    shape = SHAPES["quick" if args.quick else "full"]
    sizes = args.sizes or ([0.1, 0.2, 0.4] if args.quick else [0.5, 2.0, 6.0])
    tokenizer_folder = Path(ensure_preset("smollm2-135m"))
    vocab = 49152
    rows = []
    root = Path(tempfile.mkdtemp(prefix="model-size-", dir=args.workdir))
    try:
        for size in sizes:
            layers = layers_for(size, shape, vocab)
            config = llama_config(*shape, layers=layers, vocab=vocab)
            source = root / f"model-{size:g}gb"
            row = {"target_gb": size, "blocks": layers, "shape": list(shape)}
            row.update(build_checkpoint(source, config, tokenizer_folder))
            for offload in ("none", "disk"):
                out = root / f"out-{size:g}-{offload}"
                row[offload] = run_child(source, offload, out, args)
                shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(source, ignore_errors=True)
            rows.append(row)
            print(f"{size:g} GB: {json.dumps(row)}", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(rows)
    output = Path(args.output or RESULTS / f"model_size{'_quick' if args.quick else ''}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = {"nsamples": args.nsamples, "seqlen": args.seqlen, "malloc_mmap_threshold": args.mmap_threshold}
    output.write_text(json.dumps({"rows": rows, **meta}, indent=2) + "\n")
    print(f"-> {output}")


if __name__ == "__main__":
    main()
