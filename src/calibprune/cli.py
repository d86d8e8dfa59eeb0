"""``calibprune`` command line: thin wrappers around :mod:`calibprune.pipeline`."""

from __future__ import annotations

import json
import logging
import os
import sys

import typer
from rich.console import Console
from rich.table import Table

from .errors import CalibpruneError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Calibration-aware post-training pruning of LLMs.",
)
console = Console(stderr=True)
out = Console()


def _split(values: list[str] | None) -> tuple[str, ...]:
    """Options that take lists accept both repetition and commas: --ppl a,b --ppl c."""
    return tuple(v.strip() for value in values or [] for v in value.split(",") if v.strip())


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@app.command()
def prune(
    output: str = typer.Option(
        ..., "--output", "-o", help="Folder for the pruned model (save_pretrained + prune_report.json)."
    ),
    model: str = typer.Option("smollm2-135m", help="Preset name, local folder or Hugging Face id."),
    method: str = typer.Option("wanda", help="magnitude | wanda | sparsegpt"),
    sparsity: float | None = typer.Option(None, help="Unstructured sparsity in [0, 1)."),
    pattern: str | None = typer.Option(None, help="N:M pattern: N of every M consecutive inputs pruned (2:4, 4:8)."),
    calib: str = typer.Option("wiki-en", help="Calibration source: corpus name or local .txt/.jsonl file/folder."),
    nsamples: int = typer.Option(128, help="Calibration windows."),
    seqlen: int = typer.Option(2048, help="Tokens per calibration window."),
    seed: int = typer.Option(0, help="Seed of the window sampling."),
    sampling: str | None = typer.Option(None, help="stream | document (default: the corpus's own rule)."),
    text_field: str = typer.Option("text", help="Text field of .jsonl sources."),
    targets: list[str] | None = typer.Option(None, help="Only prune layers matching these globs (comma-separated)."),
    ignore: list[str] | None = typer.Option(None, help="Never prune layers matching these globs."),
    batch_size: int = typer.Option(4, help="Calibration samples per block call."),
    activation_store: str = typer.Option("disk", help="Where hidden states wait between blocks: disk | memory."),
    allocation: str = typer.Option("uniform", help="Per-block sparsity: uniform | owl."),
    refine: str = typer.Option("none", help="Mask refinement: none | dsnot."),
    owl_m: float = typer.Option(5.0, help="OWL outlier threshold M (scores above M x mean)."),
    owl_lambda: float = typer.Option(0.08, help="OWL lambda: block sparsities within target +/- 2 lambda."),
    owl_mixed_nm: bool = typer.Option(False, help="With --pattern and --allocation owl: a per-block N (mixed N:M)."),
    owl_nm_lambda: float = typer.Option(1.0, help="OWL mixed N:M spread, in units of N."),
    dsnot_cycles: int = typer.Option(50, help="DSnoT swap cycles per layer."),
    dsnot_threshold: float = typer.Option(0.1, help="DSnoT stops a row once |error proxy| <= this."),
    dsnot_var_power: float = typer.Option(1.0, help="DSnoT regrow priority: contribution / variance^power."),
    dsnot_skip: list[str] | None = typer.Option(
        None, help="Layers (globs inside a block) DSnoT leaves alone [default: mlp.*]; 'none' for none."
    ),
    blocksize: int = typer.Option(128, help="SparseGPT column block size."),
    percdamp: float = typer.Option(0.01, help="SparseGPT damping, fraction of the mean Hessian diagonal."),
    ppl: list[str] | None = typer.Option(None, help="Also report dense and pruned perplexity on these corpora."),
    ppl_seqlen: int = typer.Option(2048, help="Perplexity window length."),
    ppl_max_windows: int | None = typer.Option(None, help="Score at most this many perplexity windows."),
    dtype: str | None = typer.Option(None, help="Load dtype (float32, bfloat16); default: the checkpoint's."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output folder."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Prune a model layer by layer and save it as a plain Hugging Face folder."""
    from .config import DSnoTOptions, OWLOptions, PruneConfig, RunnerOptions, SparseGPTOptions, SparsityTarget
    from .pipeline import CalibrationRequest, PerplexityRequest, run_prune

    skip = _split(dsnot_skip) if dsnot_skip else DSnoTOptions.skip
    config = PruneConfig(
        method=method,
        target=SparsityTarget.parse(sparsity, pattern),
        targets=_split(targets),
        ignore=_split(ignore),
        allocation=allocation,
        refine=refine,
        owl=OWLOptions(hyper_m=owl_m, lam=owl_lambda, mixed_nm=owl_mixed_nm, nm_lambda=owl_nm_lambda),
        dsnot=DSnoTOptions(
            cycles=dsnot_cycles,
            threshold=dsnot_threshold,
            var_power=dsnot_var_power,
            skip=() if skip == ("none",) else skip,
        ),
        sparsegpt=SparseGPTOptions(blocksize=blocksize, percdamp=percdamp),
        runner=RunnerOptions(batch_size=batch_size, activation_store=activation_store),
    )
    request = CalibrationRequest(
        source=calib, nsamples=nsamples, seqlen=seqlen, seed=seed, sampling=sampling, text_field=text_field
    )
    ppl_request = PerplexityRequest(list(_split(ppl)), seqlen=ppl_seqlen, max_windows=ppl_max_windows)
    _quiet_libraries()
    report = run_prune(
        model, config, request, output, overwrite=overwrite, ppl=ppl_request, dtype=dtype, progress=not quiet
    )
    summary = report["summary"]
    out.print(
        f"[bold]pruned[/bold] {summary['layers_pruned']} layers of {model} with {config.describe()}: "
        f"{summary['sparsity_pruned_layers']:.2%} of their weights "
        f"({summary['sparsity_all_parameters']:.2%} of all parameters) -> {output}"
    )
    if report.get("perplexity"):
        _print_ppl_table(report["perplexity"])


def _print_ppl_table(results: dict) -> None:
    first = next(iter(next(iter(results.values())).values()))
    table = Table(title=f"perplexity ({first['protocol']}, {first['seqlen']} tokens, {first['split']} pool)")
    table.add_column("corpus")
    for column in results:
        table.add_column(column, justify="right")
    corpora = next(iter(results.values())).keys()
    for name in corpora:
        table.add_row(name, *(f"{results[c][name]['ppl']:.3f}" for c in results))
    out.print(table)


@app.command("eval")
def eval_(
    model: str = typer.Option(..., help="Preset, local folder (e.g. a pruned model) or Hugging Face id."),
    tasks: list[str] | None = typer.Option(
        None, help="lm-eval tasks (comma-separated): boolq,winogrande,piqa,hellaswag,arc_easy,arc_challenge,mmlu"
    ),
    limit: int | None = typer.Option(None, help="Evaluate a fixed, seeded subset of at most N documents per task."),
    seed: int = typer.Option(0, help="Seed of the --limit subsets and of lm-eval."),
    mmlu_shots: int = typer.Option(5, help="MMLU few-shot examples (paper text: 5; paper code: 0)."),
    ppl: list[str] | None = typer.Option(None, help="Corpora or local files for perplexity (comma-separated)."),
    ppl_protocol: str = typer.Option("concat-windows", help="concat-windows (Wanda/SparseGPT) | per-example (Alpaca)."),
    ppl_seqlen: int = typer.Option(2048, help="Perplexity window length (per-example: max tokens per document)."),
    ppl_max_windows: int | None = typer.Option(None, help="Score at most this many windows (or documents)."),
    ppl_split: str | None = typer.Option(None, help="calib | heldout | all [default: heldout; all for local files]."),
    batch_size: str = typer.Option(
        "8",
        help="Sequences per forward pass, at most (batches also hold <= 4096 tokens); 'auto': the largest "
        "that fits (GPU) or the fastest measured (CPU), reported in the output.",
    ),
    scoring: str = typer.Option(
        "shared-prefix", help="shared-prefix (each shared context computed once) | plain (lm-eval's way)."
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="Write the results as JSON here."),
    dtype: str | None = typer.Option(None, help="Load dtype; default: the checkpoint's."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Evaluate a model: lm-eval tasks (offline data) and perplexity with a named protocol."""
    from .evaluation.batching import parse_batch_size
    from .pipeline import PerplexityRequest, TaskRequest, run_eval

    _quiet_libraries()
    batch_size = parse_batch_size(batch_size)
    ppl_request = PerplexityRequest(
        list(_split(ppl)),
        seqlen=ppl_seqlen,
        max_windows=ppl_max_windows,
        batch_size=batch_size,
        protocol=ppl_protocol,
        split=ppl_split,
    )
    task_request = TaskRequest(
        list(_split(tasks)), limit=limit, seed=seed, mmlu_shots=mmlu_shots, batch_size=batch_size, scoring=scoring
    )
    report = run_eval(model, ppl_request, task_request, output=output, dtype=dtype, progress=not quiet)
    if "batch_size" in report:
        probe = report["batch_size"]
        out.print(f"--batch-size auto: {probe['chosen']} ({probe['rule']}: {probe['measured']})")
    if "tasks" in report:
        _print_task_table(report["tasks"])
        path = report["tasks"]["scoring"]
        out.print(
            f"scoring: {path['path']}" + (f" (fell back: {path['fallback_reason']})" if path["fallback_reason"] else "")
        )
    if "perplexity" in report:
        _print_ppl_table({model: report["perplexity"]})
    if output:
        out.print(f"results -> {output}")


def _print_task_table(results: dict) -> None:
    table = Table(title=f"lm-eval (limit={results['limit']}, seed={results['seed']})")
    for column in ("task", "n", "shots", "acc", "acc_norm"):
        table.add_column(column, justify="left" if column == "task" else "right")

    def fmt(value, stderr):
        return "" if value is None else f"{value:.4f}" + (f" ± {stderr:.4f}" if stderr is not None else "")

    for name, row in results["tasks"].items():
        table.add_row(
            name,
            str(row["n"]),
            str(row.get("num_fewshot")),
            fmt(row.get("acc"), row.get("acc_stderr")),
            fmt(row.get("acc_norm"), row.get("acc_norm_stderr")),
        )
    table.add_row("average", "", "", fmt(results["average"]["acc"], None), "")
    out.print(table)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List the bundled model presets and whether each is installed and converted."""
    from .models.presets import PRESETS

    rows = [
        {
            "preset": p.name,
            "installed": p.installed(),
            "converted": p.ready(),
            "folder": str(p.folder),
            "install": p.install,
            "description": p.description,
        }
        for p in PRESETS.values()
    ]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="model presets")
    for column in ("preset", "installed", "converted", "description"):
        table.add_column(column)
    for row in rows:
        state = "yes" if row["installed"] else f"no: {row['install']}"
        table.add_row(row["preset"], state, "yes" if row["converted"] else "on first use", row["description"])
    out.print(table)


@app.command()
def calib(
    output: str = typer.Option(..., "--output", "-o", help="Folder for the calibration set."),
    source: str = typer.Option(
        "wiki-en", help="Corpus name, hub name (c4, wikipedia, slimpajama, dclm) or local file/folder."
    ),
    model: str = typer.Option(
        "smollm2-135m", help="Model whose tokenizer (and, for --synthetic/--detect, weights) to use."
    ),
    nsamples: int = typer.Option(128, help="Calibration windows."),
    seqlen: int = typer.Option(2048, help="Tokens per window."),
    seed: int = typer.Option(0, help="Seed of sampling and generation."),
    sampling: str | None = typer.Option(None, help="stream | document (default: the source's own rule)."),
    text_field: str = typer.Option("text", help="Text field/column of .jsonl/.parquet/.arrow sources."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Self-generate from prefixes of the source's texts."),
    prefix_tokens: int = typer.Option(1, help="Source tokens after BOS in each prompt (0 = BOS only; paper: 1)."),
    temperature: float | None = typer.Option(None, help="Sampling temperature [default: 0.6; 0.8 for Llama-family]."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling mass."),
    top_k: int = typer.Option(50, help="Top-k sampling (0 = off)."),
    repetition_penalty: float = typer.Option(1.2, help="Repetition penalty (1 = none)."),
    max_new_tokens: int | None = typer.Option(None, help="Tokens per generated text [default: fill the window]."),
    num_texts: int | None = typer.Option(
        None, help="Texts to generate [default: rounds of batches until the kept texts fill nsamples x seqlen]."
    ),
    gen_batch_size: int = typer.Option(32, help="Prompts generated together."),
    filter_top: float = typer.Option(0.2, help="Drop this fraction of the most perplexing generated texts."),
    detect: str | None = typer.Option(None, help="Detect training-like texts with this score: mink++."),
    keep_top: float = typer.Option(0.5, help="With --detect: keep this fraction of highest-scoring texts."),
    mink_k: float = typer.Option(0.2, help="Min-K%++: fraction of lowest-scoring tokens averaged."),
    num_candidates: int | None = typer.Option(None, help="With --detect: score at most this many source texts."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output (and restart an unfinished generation)."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Build a calibration set: sample a source, self-generate (--synthetic) or detect (--detect mink++)."""
    from .calibration import GenerationOptions
    from .pipeline import CalibJob, run_calib

    if synthetic and detect:
        raise CalibpruneError("--synthetic and --detect are two strategies: pass only one")
    job = CalibJob(
        source=source,
        nsamples=nsamples,
        seqlen=seqlen,
        seed=seed,
        sampling=sampling,
        text_field=text_field,
        strategy="synthetic" if synthetic else "detect" if detect else "sample",
        generation=GenerationOptions(
            prefix_tokens=prefix_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            max_new_tokens=max_new_tokens,
            batch_size=gen_batch_size,
            num_texts=num_texts,
            filter_top=filter_top,
        ),
        detector=detect or "mink++",
        keep_top=keep_top,
        mink_k=mink_k,
        num_candidates=num_candidates,
    )
    _quiet_libraries()
    calibration = run_calib(model, job, output, overwrite=overwrite, progress=not quiet)
    manifest = calibration.manifest
    line = (
        f"[bold]calibration set[/bold] {calibration.nsamples} x {calibration.seqlen} tokens "
        f"from {manifest['source']} ({manifest['strategy']})"
    )
    if "filter" in manifest:
        pool = manifest["filter"].get("texts", manifest["filter"].get("candidates"))
        line += f"; kept {manifest['filter']['kept']} of {pool} texts"
    out.print(f"{line} -> {output}")


@app.command()
def corpora(
    install: bool = typer.Option(False, "--install", help="Fetch and convert the Debian-packaged corpora (once)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
):
    """List text corpora: what is available offline, sizes, held-out split."""
    from .corpora import CORPORA, OFFLINE_NAMES, install_all
    from .corpora.stats import availability, corpus_stats

    if install:
        for name, path in install_all().items():
            console.print(f"{name}: {path}")
    rows = []
    for name in CORPORA.names():
        corpus = CORPORA.create(name)
        row = {
            "name": name,
            "offline": name in OFFLINE_NAMES,
            "sampling": corpus.sampling,
            "description": corpus.description,
            "heldout_fraction": corpus.heldout_per_mille / 1000,
        }
        state = availability(corpus) if name in OFFLINE_NAMES else "needs network"
        row["status"] = state
        if state == "ready":
            row["pools"] = corpus_stats(corpus)
        rows.append(row)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="corpora: calibration / held-out pools (split by document); --json for descriptions")
    for column in ("name", "status", "sampling", "calib docs", "calib MB", "held-out docs", "held-out MB"):
        table.add_column(column, justify="right" if column[-2:] in ("cs", "MB") else "left")
    for row in rows:
        pools = row.get("pools")
        sizes = (
            [
                f"{pools[p][k] / (1e6 if k == 'characters' else 1):,.{1 if k == 'characters' else 0}f}"
                for p in ("calib", "heldout")
                for k in ("documents", "characters")
            ]
            if pools
            else ["", "", "", ""]
        )
        table.add_row(
            row["name"],
            row["status"] if row["status"] == "ready" else f"[yellow]{row['status']}[/yellow]",
            row["sampling"],
            *sizes,
        )
    out.print(table)


analyze_app = typer.Typer(no_args_is_help=True, help="Analyze calibration sets: n-gram similarity, membership scores.")
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("similarity")
def analyze_similarity(
    sets: list[str] = typer.Option(..., help="Calibration-set folders, corpus:NAME or local files (comma-separated)."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for similarity.json/.csv/.png."),
    reference: str | None = typer.Option(None, help="A set to compare every set with (e.g. corpus:pydocs)."),
    ngram: int = typer.Option(3, help="n of the n-grams."),
    unit: str = typer.Option("word", help="word | token (token needs --model)."),
    num_perm: int = typer.Option(128, help="MinHash permutations."),
    lsh_threshold: float = typer.Option(0.5, help="Jaccard above which a text counts as a near-duplicate (LSH)."),
    max_texts: int = typer.Option(2000, help="Cut large sources to this many documents (seeded)."),
    seed: int = typer.Option(0, help="Seed of MinHash and of the document subsets."),
    model: str | None = typer.Option(None, help="Tokenizer for --unit token."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output."),
):
    """Estimated n-gram Jaccard similarity (MinHash-LSH) between sets, as a matrix and heatmap."""
    from .analysis.jobs import run_similarity

    _quiet_libraries()
    report = run_similarity(
        list(_split(sets)), reference, output, ngram, unit, num_perm, max_texts, seed, lsh_threshold, model, overwrite
    )
    table = Table(title=f"{ngram}-gram ({unit}) Jaccard, MinHash {num_perm}")
    table.add_column("set")
    for name in report["names"]:
        table.add_column(name[-18:], justify="right")
    for name, row in zip(report["names"], report["matrix"], strict=True):
        table.add_row(name, *(f"{v:.4f}" for v in row))
    out.print(table)
    if report.get("lsh_near_duplicate_share"):
        shares = ", ".join(f"{k}: {v:.1%}" for k, v in report["lsh_near_duplicate_share"].items())
        out.print(f"texts with a near-duplicate in {report['reference']} (MinHash-LSH): {shares}")
    out.print(f"-> {output}/similarity.json, .csv, .png")


@analyze_app.command("membership")
def analyze_membership(
    sets: list[str] = typer.Option(..., help="Calibration-set folders, corpus:NAME or local files (comma-separated)."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for membership.json, summary.csv, membership.png."),
    model: str = typer.Option("smollm2-135m", help="The model whose view of the texts is measured."),
    k: float = typer.Option(0.2, help="Min-K%/Min-K%++: fraction of lowest-scoring tokens averaged."),
    max_texts: int = typer.Option(200, help="Texts scored per set (seeded subset)."),
    max_tokens: int = typer.Option(512, help="Tokens scored per text."),
    seed: int = typer.Option(0, help="Seed of the text subsets."),
    batch_size: int = typer.Option(8, help="Texts per forward pass."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Min-K%++, Min-K% and perplexity distributions of each set under a model."""
    from .analysis.jobs import run_membership

    _quiet_libraries()
    report = run_membership(
        model, list(_split(sets)), output, k, max_texts, max_tokens, seed, batch_size, overwrite, progress=not quiet
    )
    table = Table(title=f"membership scores under {model} (k={k}): median [q1, q3]")
    table.add_column("set")
    for kind in ("mink++", "mink", "ppl"):
        table.add_column(kind, justify="right")
    for name, per in report["summary"].items():
        table.add_row(
            name,
            *(
                f"{per[k_]['median']:.3f} [{per[k_]['q1']:.3f}, {per[k_]['q3']:.3f}]"
                for k_ in ("mink++", "mink", "ppl")
            ),
        )
    out.print(table)
    out.print(f"-> {output}/membership.json, summary.csv, membership.png")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except CalibpruneError as error:
        console.print(f"[bold red]error:[/bold red] {error}")
        sys.exit(2)


if __name__ == "__main__":
    main()
