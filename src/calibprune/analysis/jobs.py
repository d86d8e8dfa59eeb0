"""``calibprune analyze similarity|membership``: compute, save JSON/CSV, draw, atomically."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import CalibpruneError
from ..options import OptionError
from ..utils.io import atomic_directory, check_output_dir, write_json
from ..utils.provenance import environment
from . import plots
from .membership import KINDS, membership_scores, summarize
from .options import MembershipOptions, SimilarityOptions
from .sets import load_sets, set_inputs, stream_texts
from .similarity import NgramHasher, ReferenceIndex, similarity_report


def run_similarity(
    specs: list[str],
    output: str | Path,
    options: SimilarityOptions = SimilarityOptions(),
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """``options.max_texts`` cuts the compared sets only; the reference is indexed whole, streamed."""
    from ..models.loading import model_folder

    o = options
    reference, model, n, unit, num_perm, seed = o.reference, o.model, o.ngram, o.unit, o.num_perm, o.seed
    reads = [("{reference}", reference), ("the {model} folder", model_folder(model) if model else None)]
    check_output_dir(output, overwrite, set_inputs(specs) + reads)
    if unit == "token" and model is None:
        raise OptionError("unit", "{unit=token} needs {model} (whose tokenizer defines the tokens)")
    tokenizer = None
    if model is not None:
        from ..models.loading import load_tokenizer, resolve_model

        tokenizer = load_tokenizer(resolve_model(model))
    sets = load_sets(specs, o.max_texts, seed, o.encoding)
    index = None
    if reference:
        texts, origin = stream_texts(reference, o.encoding)
        hasher = NgramHasher(n, unit, tokenizer)
        index = ReferenceIndex.build(reference, texts, hasher, num_perm, seed, o.lsh_threshold, origin, progress)
        if not len(index.hashes):
            raise CalibpruneError(f"reference {reference!r} holds no {n}-gram: check the path or corpus name")
    report = similarity_report(
        sets, index, n, unit, num_perm, seed, o.lsh_threshold, tokenizer, o.containment_threshold, progress
    )
    report["environment"] = environment()
    with atomic_directory(output, overwrite=overwrite) as tmp:
        write_json(tmp / "similarity.json", report)
        with open(tmp / "similarity.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["set", *report["names"]])
            for name, row in zip(report["names"], report["matrix"], strict=True):
                writer.writerow([name, *row])
        plots.heatmap(
            report["names"],
            report["matrix"],
            f"{n}-gram ({unit}) Jaccard, MinHash {num_perm} perms",
            tmp / "similarity.png",
        )
    return report


def run_membership(
    model: str,
    specs: list[str],
    output: str | Path,
    options: MembershipOptions = MembershipOptions(),
    overwrite: bool = False,
    progress: bool = True,
    device: str = "auto",
    dtype: str | None = None,
) -> dict:
    from ..models.loading import (
        load_model,
        load_tokenizer,
        model_folder,
        parse_dtype,
        resolve_model,
        special_tokens_added,
    )
    from ..utils.device import device_record, resolve_device

    run_device = resolve_device(device)
    parse_dtype(dtype)
    k = options.k
    check_output_dir(output, overwrite, set_inputs(specs) + [("the {model} folder", model_folder(model))])
    sets = load_sets(specs, options.max_texts, options.seed, options.encoding)
    resolved = resolve_model(model)
    tokenizer = load_tokenizer(resolved)
    loaded = load_model(resolved, dtype=dtype, device=run_device)
    scores = membership_scores(loaded, tokenizer, sets, k, options.max_tokens, options.batch_size, progress)
    report = {
        "model": model,
        "device": device_record(run_device, next(loaded.parameters()).dtype),
        "params": {"k": k, "max_texts": options.max_texts, "max_tokens": options.max_tokens, "seed": options.seed},
        "special_tokens": special_tokens_added(tokenizer),
        "sets": {s.name: s.origin | {"texts": len(s.texts)} for s in sets},
        "summary": {name: {kind: summarize(values) for kind, values in per.items()} for name, per in scores.items()},
        "scores": scores,
        "environment": environment(),
    }
    with atomic_directory(output, overwrite=overwrite) as tmp:
        write_json(tmp / "membership.json", report)
        with open(tmp / "summary.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["set", "score", "n", "mean", "median", "q1", "q3", "std"])
            for name, per in report["summary"].items():
                for kind, stats in per.items():
                    writer.writerow([name, kind, *(stats.get(c) for c in ("n", "mean", "median", "q1", "q3", "std"))])
        plots.violins(scores, KINDS, f"membership scores under {model} (k={k})", tmp / "membership.png")
    return report
