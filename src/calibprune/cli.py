"""``calibprune`` command line: thin wrappers around :mod:`calibprune.pipeline`."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .cli_options import Flags, Group, audit, flags_of, make, with_parameters
from .errors import CalibpruneError
from .options import OptionError, python_name

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Calibration-aware post-training pruning of LLMs.",
)
# Messages carry user text (paths, corpus names, "N:M: use ..."): rich must print them
# literally, with no markup ([...]), emoji (:M: -> a circled M) or highlighting.
console = Console(stderr=True, markup=False, emoji=False, highlight=False)
out = Console(markup=False, emoji=False, highlight=False)

# How an OptionError raised below the CLI is put in words: each command sets its flags' namer.
_namer: dict = {"name": python_name}

# What an interrupt (Ctrl-C) stops and what it keeps, set by each command before its long work.
_interrupt_note = {"text": "nothing was written", "newline": ""}


def _styled(label: str, rest: str, style: str = "bold") -> Text:
    """``label`` in ``style``, then ``rest`` printed literally."""
    return Text.assemble((label, style), rest)


def _on_interrupt(text: str, quiet: bool) -> None:
    """Say ``text`` if Ctrl-C stops the command: what was interrupted and what was kept."""
    _interrupt_note["text"] = text
    _interrupt_note["newline"] = "" if quiet else "\n"  # a progress bar may hold the current line


def _notice(quiet: bool):
    """Where one-line notices (estimates, resume points, resolved options) go: stderr,
    or nowhere under --quiet."""
    from .estimate import silent  # the pipeline measures no rate for a silent notice

    return silent if quiet else (lambda message: console.print(Text(message), soft_wrap=True))


def _split(values: list[str] | None) -> tuple[str, ...]:
    """Options that take lists accept both repetition and commas: --ppl a,b --ppl c."""
    return tuple(v.strip() for value in values or [] for v in value.split(",") if v.strip())


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


ENCODING_HELP = (
    "Encoding of local .txt/.jsonl files (e.g. latin-1, cp1252); text not valid in it is refused, never replaced."
)


# ----------------------------------------------------------------- option audit
# No option is silently ignored: an option typed on the command line that this
# invocation would not use is refused with the reason, before any work.


def _typed(ctx: typer.Context, *names: str) -> list[str]:
    """The options among ``names`` given on the command line (not left at their default)."""
    sources = {name: ctx.get_parameter_source(name) for name in names}
    # compared by name: typer may carry its own copy of click's ParameterSource enum
    return [name for name, src in sources.items() if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse_unused(ctx: typer.Context, names: tuple[str, ...], used: bool, why: str) -> None:
    """Refuse typed options among ``names`` when ``used`` is False; ``why`` completes
    "... has no effect ..." with the reason and the fix."""
    typed = _typed(ctx, *names)
    if typed and not used:
        flags = ", ".join(_flag(n) for n in typed)
        verb = "has" if len(typed) == 1 else "have"
        why = why.replace("drop them", "drop it") if len(typed) == 1 else why.replace("drop it", "drop them")
        raise CalibpruneError(f"{flags} {verb} no effect {why}")


# flags named before the rule --<path with dashes> (kept: the command lines in the wild use them)
PRUNE_FLAGS = {
    "sparsegpt.blocksize": "--blocksize",
    "sparsegpt.percdamp": "--percdamp",
    "sparsegpt.mask_rule": "--sparsegpt-mask",
    "runner.batch_size": "--batch-size",
    "runner.activation_store": "--activation-store",
    "owl.hyper_m": "--owl-m",
    "owl.lam": "--owl-lambda",
}


def _prune_groups():
    from .config import PruneConfig

    # the CLI resolves the activation store per device (auto); study specs and the Python API
    # keep disk, the value every committed study cell was keyed with (see DECLARED_EXCEPTIONS)
    return [Group(PruneConfig, "config", flags=PRUNE_FLAGS, defaults={"runner.activation_store": "auto"})]


def _target_flags(groups) -> Flags:
    # fields the prune command declares by hand (until their own groups are declared)
    return flags_of(groups, {"sparsity": "--sparsity", "pattern": "--pattern", "calibration.source": "--calib"})


def prune(
    ctx: typer.Context,
    output: str = typer.Option(
        ..., "--output", "-o", help="Folder for the pruned model (save_pretrained + prune_report.json)."
    ),
    model: str = typer.Option("smollm2-135m", help="Preset name, local folder or Hugging Face id."),
    sparsity: float | None = typer.Option(None, help="Unstructured sparsity in [0, 1)."),
    pattern: str | None = typer.Option(
        None, help="N:M pattern: N of every M consecutive inputs PRUNED (2:4, 4:8 = 50%; 1:4 = 25%)."
    ),
    calib: str = typer.Option(
        "wiki-en",
        help="Calibration data: a calibration-set folder (from `calibprune calib`), a corpus name, "
        "or a local .txt/.jsonl/.parquet/.arrow file or folder.",
    ),
    nsamples: int | None = typer.Option(
        None,
        help="Calibration windows. With a set folder: use its first N windows.",
        show_default="128; a set folder: all of its windows",
    ),
    seqlen: int | None = typer.Option(
        None,
        help="Tokens per calibration window. With a set folder: cut its windows to the first N tokens.",
        show_default="2048; a set folder: its window length",
    ),
    seed: int = typer.Option(0, help="Seed of the window sampling (sources only)."),
    sampling: str | None = typer.Option(
        None, help="stream | document (sources only).", show_default="the corpus's own rule"
    ),
    windows: str = typer.Option(
        "disjoint",
        help="Stream windows: disjoint (no overlaps) | random (independent starts, published loaders); sources only.",
    ),
    text_field: str = typer.Option("text", help="Text field/column of .jsonl/.parquet/.arrow sources."),
    encoding: str = typer.Option("utf-8", help=ENCODING_HELP),
    ppl: list[str] | None = typer.Option(None, help="Also report dense and pruned perplexity on these corpora."),
    ppl_seqlen: int = typer.Option(2048, help="Perplexity window length."),
    ppl_max_windows: int | None = typer.Option(
        None, help="Score at most this many perplexity windows.", show_default="all windows of the held-out pool"
    ),
    dtype: str | None = typer.Option(
        None, help="Weights dtype: auto | float32 | bfloat16 | float16.", show_default="auto: the checkpoint's"
    ),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N."),
    offload: str = typer.Option(
        "auto",
        help="Where weights wait while one block is pruned: none (all on the device) | cpu | disk (the checkpoint's "
        "safetensors; pruned blocks stream to --output).",
        show_default="auto: none if the model fits the device, else cpu (GPU) or disk",
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing --output folder."),
    quiet: bool = typer.Option(False, help="No progress bars, no notices: errors and the result line only."),
    **declared,
):
    """Prune a model layer by layer and save it as a plain Hugging Face folder."""
    from .config import SparsityTarget
    from .options import OptionError
    from .pipeline import CalibrationRequest, PerplexityRequest, run_prune

    groups = _prune_groups()
    flags = _target_flags(groups)
    try:
        target = SparsityTarget.parse(sparsity, pattern)
    except OptionError as error:
        raise CalibpruneError(error.render(flags.name)) from None
    config = make(groups[0], declared, flags, target=target)
    _namer["name"] = flags.scoped("config")  # an OptionError from deeper down, in this command's flags
    request = CalibrationRequest(
        source=calib,
        nsamples=nsamples,
        seqlen=seqlen,
        seed=seed,
        sampling=sampling,
        text_field=text_field,
        windows=windows,
        encoding=encoding,
    )
    ppl_request = PerplexityRequest(
        list(_split(ppl)), seqlen=ppl_seqlen, max_windows=ppl_max_windows, encoding=encoding
    )
    _audit_prune(ctx, config, request, ppl_request)
    audit(ctx, [(groups[0], config)], flags)
    say = _notice(quiet)
    if config.target.is_nm:
        say(config.target.explain(flags.name))
    _quiet_libraries()
    _on_interrupt(f"prune -> {output}: nothing written (the output appears only when complete)", quiet)
    report = run_prune(
        model,
        config,
        request,
        output,
        overwrite=overwrite,
        ppl=ppl_request,
        dtype=dtype,
        progress=not quiet,
        say=say,
        device=device,
        offload=offload,
        argv=sys.argv,
    )
    summary = report["summary"]
    target = config.target
    nm_meaning = f" ({target.n} pruned of every {target.m})" if target.is_nm else ""
    out.print(
        _styled(
            "pruned",
            f" {summary['layers_pruned']} layers of {model} with {config.describe()}{nm_meaning}: "
            f"{summary['sparsity_pruned_layers']:.2%} of their weights "
            f"({summary['sparsity_all_parameters']:.2%} of all parameters) -> {output}",
        ),
        soft_wrap=True,
    )
    if report.get("perplexity"):
        _print_ppl_table(report["perplexity"])


app.command()(with_parameters(prune, _prune_groups()))


def _refuse_text_field(ctx: typer.Context, source) -> None:
    """--text-field names a field of local .jsonl/.parquet/.arrow files; a registered corpus has none."""
    from .corpora import CORPORA

    if isinstance(source, str) and source in CORPORA:
        _refuse_unused(
            ctx,
            ("text_field",),
            False,
            f"with the corpus {source!r}: it names the text field of local .jsonl/.parquet/.arrow files; drop it",
        )


def _refuse_encoding(ctx: typer.Context, sources, what: str) -> None:
    """--encoding decodes local .txt/.jsonl files; refused when ``sources`` (what the
    command reads as text, set folders left out) hold none. ``what`` names the options."""
    from .corpora import is_local_source

    _refuse_unused(
        ctx,
        ("encoding",),
        any(is_local_source(s) for s in sources),
        f"when no local file is read ({what} name corpora or calibration-set folders): it is how local "
        ".txt/.jsonl files are decoded; drop it",
    )


def _audit_prune(ctx: typer.Context, config, request, ppl) -> None:
    """prune: refuse options this run would not use (see the option-audit section)."""
    from .pruning.engine import needs_calibration

    with_ppl = bool(ppl.corpora)
    read_calib = needs_calibration(config) and not request.prebuilt
    _refuse_encoding(ctx, ([request.source] if read_calib else []) + ppl.corpora, "--calib and --ppl")

    calibration_options = ("calib", "nsamples", "seqlen", "seed", "sampling", "windows", "text_field")
    _refuse_unused(
        ctx,
        calibration_options,
        needs_calibration(config),
        f"with --method {config.method}: it reads only the weights (|W|), no calibration data is used; "
        "drop them, or add --allocation owl / --refine dsnot, which do use calibration data",
    )
    _refuse_unused(
        ctx,
        ("seed", "sampling", "windows", "text_field"),
        not request.prebuilt,
        f"when --calib is a calibration-set folder ({request.source} was sampled when it was built; its "
        "manifest.json records how): drop them, or pass the source itself to --calib",
    )
    _refuse_text_field(ctx, request.source)
    _refuse_unused(ctx, ("ppl_seqlen", "ppl_max_windows"), with_ppl, "without --ppl: drop them or pass --ppl CORPUS")


def _print_ppl_table(results: dict) -> None:
    """One row per corpus; its pool is named per row (a local file is scored on all of it)."""
    columns = list(results)
    first = next(iter(results.values()))
    any_row = next(iter(first.values()))
    table = Table(title=f"perplexity ({any_row['protocol']}, {any_row['seqlen']} tokens)")
    table.add_column("corpus")
    table.add_column("pool")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in first.items():
        table.add_row(name, row["split"], *(f"{results[c][name]['ppl']:.3f}" for c in columns))
    out.print(table)


@app.command("eval")
def eval_(
    ctx: typer.Context,
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
    ppl_max_windows: int | None = typer.Option(
        None, help="Score at most this many windows (or documents).", show_default="all of the pool"
    ),
    ppl_split: str | None = typer.Option(
        None, help="calib | heldout | all.", show_default="heldout; all for local files"
    ),
    encoding: str = typer.Option("utf-8", help=ENCODING_HELP),
    batch_size: str = typer.Option(
        "8",
        help="Sequences per forward pass, at most (batches also hold <= 4096 tokens); 'auto': the largest "
        "that fits (GPU) or the fastest measured (CPU), reported in the output.",
    ),
    scoring: str = typer.Option(
        "shared-prefix", help="shared-prefix (each shared context computed once) | plain (lm-eval's way)."
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="Write the results as JSON here."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output file."),
    dtype: str | None = typer.Option(
        None, help="Weights dtype: auto | float32 | bfloat16 | float16.", show_default="auto: the checkpoint's"
    ),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N."),
    quiet: bool = typer.Option(False, help="No progress bars (lm-eval's included), no notices."),
):
    """Evaluate a model: lm-eval tasks (offline data) and perplexity with a named protocol."""
    from .evaluation.batching import parse_batch_size
    from .pipeline import PerplexityRequest, TaskRequest, run_eval

    with_tasks, with_ppl = bool(_split(tasks)), bool(_split(ppl))
    _refuse_unused(
        ctx,
        ("ppl_protocol", "ppl_seqlen", "ppl_max_windows", "ppl_split"),
        with_ppl,
        "without --ppl: drop them or pass --ppl CORPUS",
    )
    _refuse_unused(ctx, ("limit", "seed"), with_tasks, "without --tasks: drop them or pass --tasks")
    _refuse_unused(ctx, ("overwrite",), output is not None, "without --output: drop it or pass --output FILE")
    _refuse_encoding(ctx, _split(ppl), "--ppl")
    _refuse_unused(
        ctx,
        ("mmlu_shots",),
        "mmlu" in _split(tasks),
        "unless --tasks includes mmlu: drop it or add mmlu to --tasks",
    )
    _quiet_libraries()
    _on_interrupt(f"eval of {model}: no results written" + (f" to {output}" if output else ""), quiet)
    batch_size = parse_batch_size(batch_size)
    ppl_request = PerplexityRequest(
        list(_split(ppl)),
        seqlen=ppl_seqlen,
        max_windows=ppl_max_windows,
        batch_size=batch_size,
        protocol=ppl_protocol,
        split=ppl_split,
        encoding=encoding,
    )
    task_request = TaskRequest(
        list(_split(tasks)), limit=limit, seed=seed, mmlu_shots=mmlu_shots, batch_size=batch_size, scoring=scoring
    )
    report = run_eval(
        model,
        ppl_request,
        task_request,
        output=output,
        dtype=dtype,
        progress=not quiet,
        device=device,
        overwrite=overwrite,
        argv=sys.argv,
        say=_notice(quiet),
    )
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
        out.print(f"results -> {output}", soft_wrap=True)


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
    ctx: typer.Context,
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
    windows: str = typer.Option(
        "disjoint", help="Stream windows: disjoint (no overlaps) | random (independent starts, published loaders)."
    ),
    text_field: str = typer.Option("text", help="Text field/column of .jsonl/.parquet/.arrow sources."),
    encoding: str = typer.Option("utf-8", help=ENCODING_HELP),
    synthetic: bool = typer.Option(False, "--synthetic", help="Self-generate from prefixes of the source's texts."),
    prefix_tokens: int = typer.Option(1, help="Source tokens after BOS in each prompt (0 = BOS only; paper: 1)."),
    temperature: float = typer.Option(0.6, help="Sampling temperature (the paper's LLaMA runs used 0.8)."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling mass."),
    top_k: int = typer.Option(50, help="Top-k sampling (0 = off)."),
    repetition_penalty: float = typer.Option(1.2, help="Repetition penalty (1 = none)."),
    max_new_tokens: int | None = typer.Option(
        None, help="Tokens per generated text.", show_default="fill the window: seqlen - prompt length"
    ),
    num_texts: int | None = typer.Option(
        None,
        help="Texts to generate.",
        show_default="rounds of batches until the kept texts fill nsamples x seqlen",
    ),
    gen_batch_size: int = typer.Option(32, help="Prompts generated together."),
    filter_top: float = typer.Option(0.2, help="Drop this fraction of the most perplexing generated texts."),
    detect: str | None = typer.Option(None, help="Detect training-like texts with this score: mink++."),
    keep_top: float = typer.Option(0.5, help="With --detect: keep this fraction of highest-scoring texts."),
    mink_k: float = typer.Option(0.2, help="Min-K%++: fraction of lowest-scoring tokens averaged."),
    num_candidates: int | None = typer.Option(
        None, help="With --detect: score at most this many source texts.", show_default="all of the calib pool"
    ),
    dtype: str | None = typer.Option(
        None,
        help="With --synthetic/--detect: weights dtype, auto | float32 | bfloat16 | float16.",
        show_default="auto: the checkpoint's",
    ),
    device: str = typer.Option("auto", help="With --synthetic/--detect: auto | cpu | cuda | cuda:N."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output (and restart an unfinished generation)."),
    quiet: bool = typer.Option(False, help="No progress bars, no notices."),
):
    """Build a calibration set: sample a source, self-generate (--synthetic) or detect (--detect mink++)."""
    from .calibration import GenerationOptions
    from .pipeline import CalibJob, generation_work_dir, run_calib

    if synthetic and detect:
        raise CalibpruneError("--synthetic and --detect are two strategies: pass only one")
    generation_options = (
        "prefix_tokens",
        "temperature",
        "top_p",
        "top_k",
        "repetition_penalty",
        "max_new_tokens",
        "num_texts",
        "gen_batch_size",
        "filter_top",
    )
    _refuse_unused(ctx, generation_options, synthetic, "without --synthetic: drop them or pass --synthetic")
    _refuse_unused(
        ctx,
        ("sampling",),
        not (synthetic or detect),
        "with --synthetic or --detect: their windows are cut by a fixed rule (self-generated texts: stream; "
        "detected texts: the source's own rule); drop it",
    )
    _refuse_text_field(ctx, source)
    _refuse_encoding(ctx, [source], "--source")
    detect_options = ("keep_top", "mink_k", "num_candidates")
    _refuse_unused(ctx, detect_options, bool(detect), "without --detect: drop them or pass --detect mink++")
    _refuse_unused(
        ctx,
        ("device", "dtype"),
        bool(synthetic or detect),
        "without --synthetic or --detect: sampling a source runs no model (only its tokenizer); drop them",
    )
    job = CalibJob(
        source=source,
        nsamples=nsamples,
        seqlen=seqlen,
        seed=seed,
        sampling=sampling,
        text_field=text_field,
        windows=windows,
        encoding=encoding,
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
    note = f"calib -> {output}: nothing written (the set appears only when complete)"
    if synthetic:
        note += (
            f"; finished generation batches are kept in {generation_work_dir(output)}: "
            "rerun the same command to resume from them"
        )
    _on_interrupt(note, quiet)
    calibration = run_calib(
        model,
        job,
        output,
        overwrite=overwrite,
        progress=not quiet,
        say=_notice(quiet),
        device=device,
        dtype=dtype,
        argv=sys.argv,
    )
    manifest = calibration.manifest
    line = f" {calibration.nsamples} x {calibration.seqlen} tokens from {manifest['source']} ({manifest['strategy']})"
    if "filter" in manifest:
        pool = manifest["filter"].get("texts", manifest["filter"].get("candidates"))
        line += f"; kept {manifest['filter']['kept']} of {pool} texts"
    out.print(_styled("calibration set", f"{line} -> {output}"), soft_wrap=True)


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
            console.print(f"{name}: {path}", soft_wrap=True)
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
            pools = corpus_stats(corpus)  # without the per-document lengths a study's pool check reads
            row["pools"] = {p: {k: v for k, v in sizes.items() if k != "longest"} for p, sizes in pools.items()}
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
            Text(row["status"], style="" if row["status"] == "ready" else "yellow"),
            row["sampling"],
            *sizes,
        )
    out.print(table)


analyze_app = typer.Typer(no_args_is_help=True, help="Analyze calibration sets: n-gram similarity, membership scores.")
app.add_typer(analyze_app, name="analyze")


def _refuse_local_sets(ctx: typer.Context, specs: list[str], what: str) -> None:
    """analyze: --encoding only with a --sets/--reference entry read as local files."""
    from .analysis.sets import local_specs

    _refuse_encoding(ctx, local_specs(specs), what)


@analyze_app.command("similarity")
def analyze_similarity(
    ctx: typer.Context,
    sets: list[str] = typer.Option(..., help="Calibration-set folders, corpus:NAME or local files (comma-separated)."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for similarity.json/.csv/.png."),
    reference: str | None = typer.Option(
        None, help="Indexed whole (never cut): each set's texts are checked against it (e.g. corpus:wiki-en)."
    ),
    ngram: int = typer.Option(3, help="n of the n-grams."),
    unit: str = typer.Option("word", help="word | token (token needs --model)."),
    num_perm: int = typer.Option(128, help="MinHash permutations."),
    containment_threshold: float = typer.Option(
        0.5, help="A text counts as drawn from --reference when this share of its n-grams occurs in it."
    ),
    lsh_threshold: float = typer.Option(0.5, help="Jaccard above which a text counts as a near-duplicate (LSH)."),
    max_texts: int = typer.Option(
        2000, help="Cut each --sets source to this many documents (seeded); never --reference."
    ),
    seed: int = typer.Option(0, help="Seed of MinHash and of the document subsets."),
    model: str | None = typer.Option(None, help="Tokenizer for --unit token."),
    encoding: str = typer.Option("utf-8", help=ENCODING_HELP),
    overwrite: bool = typer.Option(False, help="Replace an existing --output."),
    quiet: bool = typer.Option(False, help="No progress bars, no notices."),
):
    """n-gram overlap between sets (MinHash Jaccard) and, against --reference, how many of
    each set's texts are contained in it (exact n-gram containment) or near-duplicates (LSH)."""
    from .analysis.jobs import run_similarity

    _refuse_unused(
        ctx,
        ("containment_threshold", "lsh_threshold"),
        reference is not None,
        "without --reference: drop them or pass --reference",
    )
    _refuse_unused(ctx, ("model",), unit == "token", "unless --unit token: drop it or pass --unit token")
    _refuse_local_sets(ctx, [*_split(sets), reference or ""], "--sets and --reference")
    _quiet_libraries()
    _on_interrupt(f"analyze similarity -> {output}: nothing written", quiet)
    report = run_similarity(
        list(_split(sets)),
        reference,
        output,
        ngram,
        unit,
        num_perm,
        max_texts,
        seed,
        lsh_threshold,
        model,
        overwrite,
        containment_threshold,
        progress=not quiet,
        encoding=encoding,
    )
    say = _notice(quiet)
    for name, origin in report["sets"].items():
        available = origin.get("available_texts", origin["texts"])
        cut = f" of {available:,} (--max-texts {max_texts})" if available > origin["texts"] else " (all)"
        say(f"set {name}: {origin['texts']:,} texts{cut}")
    if "reference_index" in report:
        index = report["reference_index"]
        grams = f"{index['ngrams']:,} distinct {ngram}-grams"
        say(f"reference {report['reference']}: {index['texts']:,} texts (all, never cut), {grams}")
    table = Table(title=f"{ngram}-gram ({unit}) Jaccard, MinHash {num_perm}")
    table.add_column("set", overflow="fold")
    for name in report["names"]:
        table.add_column(name, justify="right", overflow="fold")
    for name, row in zip(report["names"], report["matrix"], strict=True):
        table.add_row(name, *(f"{v:.4f}" for v in row))
    out.print(table)
    if "containment" in report:
        table = Table(title=f"drawn from {report['reference']}? ({ngram}-gram containment and near-duplicates)")
        table.add_column("set", overflow="fold")
        for column in ("texts", f"contained (>= {containment_threshold:g})", "mean containment", "near-dup (LSH)"):
            table.add_column(column, justify="right")
        for name, c in report["containment"].items():
            table.add_row(
                name,
                str(c["texts_scored"]),
                f"{c['share_contained']:.1%}",
                f"{c['mean']:.3f}",
                f"{report['lsh_near_duplicate_share'][name]:.1%}",
            )
        out.print(table)
    out.print(f"-> {output}/similarity.json (per-text containment), .csv, .png", soft_wrap=True)


@analyze_app.command("membership")
def analyze_membership(
    ctx: typer.Context,
    sets: list[str] = typer.Option(..., help="Calibration-set folders, corpus:NAME or local files (comma-separated)."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for membership.json, summary.csv, membership.png."),
    model: str = typer.Option("smollm2-135m", help="The model whose view of the texts is measured."),
    k: float = typer.Option(0.2, help="Min-K%/Min-K%++: fraction of lowest-scoring tokens averaged."),
    max_texts: int = typer.Option(200, help="Texts scored per set (seeded subset)."),
    max_tokens: int = typer.Option(512, help="Tokens scored per text."),
    seed: int = typer.Option(0, help="Seed of the text subsets."),
    batch_size: int = typer.Option(8, help="Texts per forward pass."),
    encoding: str = typer.Option("utf-8", help=ENCODING_HELP),
    dtype: str | None = typer.Option(
        None, help="Weights dtype: auto | float32 | bfloat16 | float16.", show_default="auto: the checkpoint's"
    ),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N."),
    overwrite: bool = typer.Option(False, help="Replace an existing --output."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Min-K%++, Min-K% and perplexity distributions of each set under a model."""
    from .analysis.jobs import run_membership

    _refuse_local_sets(ctx, list(_split(sets)), "--sets")
    _quiet_libraries()
    _on_interrupt(f"analyze membership -> {output}: nothing written", quiet)
    report = run_membership(
        model,
        list(_split(sets)),
        output,
        k,
        max_texts,
        max_tokens,
        seed,
        batch_size,
        overwrite,
        progress=not quiet,
        device=device,
        dtype=dtype,
        encoding=encoding,
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
    out.print(f"-> {output}/membership.json, summary.csv, membership.png", soft_wrap=True)


@app.command()
def studies(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List the shipped study specs (paper and small scale), one per experiment of the paper."""
    from .experiments.claims import claims
    from .experiments.sweep import shipped_studies

    rows = shipped_studies()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="shipped studies: calibprune sweep SPEC --output RUNDIR")
    for column in ("spec", "scale", "claims", "models", "cells", "seeds"):
        table.add_column(column, justify="right" if column in ("cells", "seeds") else "left", overflow="fold")
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("spec", "scale", "claims", "models", "cells", "seeds")))
    out.print(table)
    tested = {c for row in rows for c in row["claim_texts"]}
    out.print("claims (the paper's, as each study tests them):")
    for claim in claims():
        if claim.id in tested:
            out.print(f"  {claim.id}: {claim.text}", soft_wrap=True)


@app.command()
def sweep(
    spec: str = typer.Argument(..., help="Study spec (YAML); studies/<scale>/<name>.yaml finds a shipped one."),
    output: str = typer.Option(..., "--output", "-o", help="Run folder; rerunning the same command resumes."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells, which are done, and the estimated cost."),
    executor: str = typer.Option("local", help="local | ray"),
    address: str | None = typer.Option(None, help="With --executor ray: a cluster to join (auto); default: local Ray."),
    workers: int = typer.Option(1, help="With --executor local: parallel processes (CPU threads divided)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Rerun the cells whose last run failed."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Make SPEC the run folder's spec even if the folder holds another one (its results are kept).",
    ),
):
    """Run a study: every cell of the grid, cached by content, resumable, on one machine or a Ray cluster."""
    from .experiments.progress import Progress
    from .experiments.store import RunStore
    from .experiments.sweep import dry_run_table, run_sweep

    _quiet_libraries()
    result = run_sweep(
        spec,
        output,
        executor,
        address,
        workers,
        retry_failed,
        dry_run,
        progress=Progress(enabled=not dry_run),
        overwrite=overwrite,
    )
    if dry_run:
        listing = dry_run_table(result, RunStore(output))
        table = Table(title=f"study {result.study.name}: {len(listing['cells'])} cells")
        table.add_column("cell")
        table.add_column("status")
        for label, status in listing["cells"]:
            table.add_row(label, status)
        out.print(table)
        est = listing["estimate"]
        to_run = ", ".join(f"{v} {k}" for k, v in est["to_run"].items())
        hours = est["total_s"] / 3600
        out.print(f"to run: {to_run}; estimated {est['total_s']:,.0f} s ({hours:.2f} h) on one worker")
        return
    counts = {s: sum(v == s for v in result.status.values()) for s in ("done", "failed", "pending")}
    out.print(
        f"study {result.study.name}: {counts['done']} cells done, {counts['failed']} failed; "
        f"ran {result.executed} in {result.wall_s:.1f} s -> {output}"
    )
    if result.failed:
        typer.echo("failed:\n  " + "\n  ".join(result.failed), err=True)  # unwrapped: one line per cell
        typer.echo("rerun them with --retry-failed", err=True)
        raise typer.Exit(1)


@app.command()
def report(
    rundirs: list[str] = typer.Argument(..., help="Run folder(s) of `calibprune sweep`."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for report.md, CSV tables and PNG plots."),
    summary: str | None = typer.Option(
        None, "--summary", help="Also write one markdown with every claim's verdict across the run folders."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing --output folder and --summary file."),
    partial: bool = typer.Option(
        False, help="Report a run folder that lacks some of its study's cells (a sweep not finished yet)."
    ),
):
    """Aggregate run folders: mean/std/n over seeds, ranges across sources, differences vs a baseline, claims.

    One run folder: its report in OUTPUT. Several (or --summary): each study's report in
    OUTPUT/<run folder name>/, and --summary FILE gathers the claims across them. An existing
    OUTPUT or FILE is replaced only with --overwrite; one that is, lies inside or contains a
    run folder is refused.
    """
    from .experiments.report import write_report, write_reports

    if len(rundirs) == 1 and summary is None:
        studies = [write_report(rundirs[0], output, overwrite, partial) | {"name": None}]
    else:
        studies = write_reports(rundirs, output, summary, overwrite, partial)
    for data in studies:
        where = os.path.join(output, data["name"]) if data["name"] else output
        if data["platforms"]:
            console.print(_styled("warning:", f" {where}: {data['platforms']}", "bold yellow"), soft_wrap=True)
        for claim in data["claims"]:
            if claim["addressed"]:
                out.print(f"{claim['claim']}: {claim['verdict']} ({claim['reason']})")
        out.print(f"-> {where}/report.md, summary.csv, ranges.csv, diffs.csv, claims.csv, {len(data['figures'])} plots")
    if summary:
        out.print(f"-> {summary}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except OptionError as error:
        console.print(_styled("error:", f" {error.render(_namer['name'])}", "bold red"), soft_wrap=True)
        sys.exit(2)
    except CalibpruneError as error:
        console.print(_styled("error:", f" {error}", "bold red"), soft_wrap=True)
        sys.exit(2)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {error.filename}" if error.filename else ""
        console.print(
            _styled(
                "error:",
                f" no space left on the device{where}: free some space (or point --output or CALIBPRUNE_CACHE "
                "elsewhere) and rerun; outputs are written to a temporary sibling first, so no finished output "
                "was replaced or left half-written",
                "bold red",
            ),
            soft_wrap=True,
        )
        sys.exit(2)
    except SystemExit as exit_:
        if exit_.code == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into exit status 130, silently
            note = _interrupt_note
            console.print(_styled(f"{note['newline']}interrupted:", f" {note['text']}", "bold yellow"), soft_wrap=True)
        raise


if __name__ == "__main__":
    main()
