"""The command line as a new user meets it: literal messages, no option silently ignored,
the N:M meaning and the cost said up front, one-line errors, visible interruptions."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import run_cli, run_cli_noting_heavy_imports

from calibprune.calibration import CalibrationSet, build_calibration
from calibprune.config import SparsityTarget
from calibprune.errors import CalibpruneError
from calibprune.estimate import Estimate, duration


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_cli_module_imports_no_heavy_library():
    """`calibprune --help` must not pay for torch/transformers/lm-eval (see benchmarks/cli_help_speed.py)."""
    code = (
        "import sys, calibprune.cli; print(sorted(m for m in ('torch', 'transformers', 'lm_eval') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args, message",
    [
        (["prune", "--model", "X", "--sparsity", "0.5", "--owl-lambda", "0.1"], "--owl-lambda has no effect unless"),
        (["prune", "--method", "magnitude", "--sparsity", "0.5", "--nsamples", "8"], "--nsamples has no effect with"),
        (["prune", "--sparsity", "0.5", "--ppl-max-windows", "3"], "--ppl-max-windows has no effect without --ppl"),
        (["prune", "--sparsity", "0.5", "--encoding", "latin-1"], "--encoding has no effect when no local file"),
        (["prune", "--sparsity", "0.5", "--method", "obs"], "--method 'obs' is unknown"),
        (["eval", "--model", "X", "--ppl", "wiki-en", "--limit", "5"], "--limit has no effect without --tasks"),
        (
            ["calib", "--temperature", "0.5"],
            "--temperature has no effect without --strategy synthetic: drop it or pass --strategy synthetic",
        ),
        (
            ["analyze", "similarity", "--sets", "corpus:kjv", "--lsh-threshold", "0.3"],
            "--lsh-threshold has no effect without --reference: drop it or pass --reference",
        ),
        (
            ["analyze", "membership", "--sets", "corpus:kjv", "--encoding", "latin-1"],
            "--encoding has no effect when no local file is read (--sets name corpora",
        ),
        (["analyze", "similarity", "--sets", "corpus:kjv", "--ngram", "0"], "--ngram 0 must be >= 1"),
    ],
)
def test_the_option_audit_refuses_before_torch_is_imported(tmp_path, args, message):
    """A refused command line costs an interpreter and typer, not torch (nor transformers)."""
    done = run_cli_noting_heavy_imports(*args, "--output", tmp_path / "o")
    assert _one_line_error(done).startswith(f"error: {message}")
    assert done.stdout.strip() == "heavy: []"


def test_messages_are_printed_literally(tmp_path):
    line = _one_line_error(run_cli("prune", "--pattern", "x", "--output", str(tmp_path / "o")))
    assert "is not of the form N:M: use e.g. --pattern 2:4" in line  # rich would print "NⓂ use"
    line = _one_line_error(run_cli("prune", "--pattern", "[bold]2:4", "--output", str(tmp_path / "o")))
    assert "'[bold]2:4'" in line  # markup in user text is not interpreted


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["prune", "--method", "magnitude", "--sparsity", "0.5", "--calib", "kjv", "--nsamples", "8"],
            "--calib, --nsamples have no effect with --method magnitude: it reads only the weights",
        ),
        (["prune", "--sparsity", "0.5", "--owl-m", "3"], "--owl-m has no effect without --allocation owl: drop it"),
        (
            ["prune", "--sparsity", "0.5", "--dsnot-cycles", "5"],
            "--dsnot-cycles has no effect without --refine dsnot",
        ),
        (["prune", "--sparsity", "0.5", "--percdamp", "0.1"], "--percdamp has no effect with --method wanda"),
        (["prune", "--sparsity", "0.5", "--ppl-seqlen", "128"], "--ppl-seqlen has no effect without --ppl"),
        (["eval", "--tasks", "piqa", "--ppl-split", "all"], "--ppl-split has no effect without --ppl"),
        (["eval", "--ppl", "wiki-en", "--limit", "5"], "--limit has no effect without --tasks"),
        (["eval", "--tasks", "piqa", "--mmlu-shots", "0"], "--mmlu-shots has no effect unless --tasks includes mmlu"),
        (
            ["calib", "--temperature", "0.7"],
            "--temperature has no effect without --strategy synthetic: drop it or pass --strategy synthetic",
        ),
        (["calib", "--synthetic", "--keep-top", "0.3"], "--keep-top has no effect without --strategy detect"),
        (
            ["calib", "--synthetic", "--sampling", "document"],
            "--sampling has no effect with --strategy synthetic: its windows are cut by a fixed rule",
        ),
        (["calib", "--source", "kjv", "--text-field", "body"], "--text-field has no effect with the corpus 'kjv'"),
        (
            ["prune", "--sparsity", "0.5", "--text-field", "body"],
            "--text-field has no effect with the corpus 'wiki-en'",
        ),
        (
            ["analyze", "similarity", "--sets", "corpus:kjv", "--lsh-threshold", "0.3"],
            "--lsh-threshold has no effect without --reference",
        ),
        (["analyze", "similarity", "--sets", "corpus:kjv", "--model", "x/y"], "--model has no effect unless --unit"),
        (["calib", "--source", "kjv", "--encoding", "latin-1"], "--encoding has no effect when no local file is read"),
        (["prune", "--sparsity", "0.5", "--encoding", "latin-1"], "--encoding has no effect when no local file"),
        (["eval", "--ppl", "wiki-en", "--encoding", "latin-1"], "--encoding has no effect when no local file"),
        (
            ["analyze", "similarity", "--sets", "corpus:kjv", "--encoding", "latin-1"],
            "--encoding has no effect when no local file is read (--sets and --reference name corpora",
        ),
    ],
)
def test_typed_options_that_would_be_ignored_are_refused(tmp_path, args, message):
    extra = ["--model", "smollm2-135m"] if args[0] == "eval" else []
    line = _one_line_error(run_cli(*args, *extra, "--output", str(tmp_path / "out")))
    assert message in line
    assert not (tmp_path / "out").exists()


@pytest.fixture
def saved_set(tmp_path, text_corpus, tokenizer):
    folder = tmp_path / "set8"
    build_calibration(str(text_corpus), tokenizer, nsamples=8, seqlen=32, seed=0).save(folder)
    return folder


def test_prune_honours_nsamples_and_seqlen_with_a_set_folder(tmp_path, model_dir, saved_set):
    out = tmp_path / "out"
    done = run_cli(
        "prune", "--model", str(model_dir), "--sparsity", "0.5", "--calib", str(saved_set),
        "--nsamples", "4", "--seqlen", "16", "--output", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    calibration = json.loads((out / "prune_report.json").read_text())["calibration"]
    expected = CalibrationSet.load(saved_set).input_ids[:4, :16]
    assert (calibration["nsamples"], calibration["seqlen"]) == (4, 16)
    assert calibration["fingerprint"] == CalibrationSet(expected).fingerprint  # the first 4 windows, cut to 16
    assert calibration["folder"] == str(saved_set.resolve())
    assert calibration["subset"] == {"of": [8, 32], "first": [4, 16]}
    assert "pruning calibrates on 4 windows x 16 tokens: 64 tokens x 1.6 model passes" in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nsamples", "16"], "--nsamples 16 asks for more windows than"),
        (["--seqlen", "64"], "--seqlen 64 is longer than the windows of"),
        (["--seed", "3"], "--seed has no effect when --calib is a calibration-set folder"),
    ],
)
def test_prune_refuses_what_a_set_folder_cannot_honour(tmp_path, model_dir, saved_set, args, message):
    done = run_cli(
        "prune", "--model", str(model_dir), "--sparsity", "0.5", "--calib", str(saved_set), *args,
        "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert message in _one_line_error(done)


def test_set_head_and_repr(saved_set):
    calib = CalibrationSet.load(saved_set)
    head = calib.head(3, 10)
    assert torch.equal(head.input_ids, calib.input_ids[:3, :10])
    assert head.windows_text is None  # cut windows: their decoded text is not the stored one
    assert calib.head(3).windows_text == calib.windows_text[:3]
    assert calib.head() is calib
    assert (
        repr(calib)
        == f"CalibrationSet(8 x 32 tokens, {calib.manifest['source']}, sample, fingerprint={calib.fingerprint})"
    )
    with pytest.raises(
        CalibpruneError,
        match=r"^nsamples 9 asks for more windows .*: pass nsamples=8 or less, "
        r"or build a larger set with `calib\(nsamples=9\)`$",
    ):
        calib.head(9)


def test_nm_meaning_is_resolved_in_words():
    assert SparsityTarget.parse(pattern="2:4").explain() == (
        "2:4 - prune 2 of every 4 consecutive inputs in each row (keep 2), 50% sparsity"
    )
    one_of_four = SparsityTarget.parse(pattern="1:4").explain()
    assert "prune 1 of every 4 consecutive inputs in each row (keep 3), 25% sparsity" in one_of_four
    assert 'read as "1 kept of 4" (hardware N:M sparsity) it would be 75% sparsity' in one_of_four
    assert one_of_four.endswith("pass pattern='3:4'")  # in Python's words; the CLI names its flag
    from calibprune.cli.prune import prune_groups, target_flags

    cli_words = SparsityTarget.parse(pattern="1:4").explain(target_flags(prune_groups()).name)
    assert cli_words.endswith("pass --pattern 3:4")


def test_prune_prints_the_nm_meaning_first_and_in_the_result(tmp_path, model_dir, text_corpus):
    done = run_cli(
        "prune", "--model", str(model_dir), "--pattern", "1:4", "--calib", str(text_corpus),
        "--nsamples", "2", "--seqlen", "16", "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0].startswith("1:4 - prune 1 of every 4 consecutive inputs")
    assert "with wanda 1:4 (1 pruned of every 4): 25.00% of their weights" in done.stdout


def test_estimate_arithmetic():
    estimate = Estimate("x", tokens=1000, passes=2.0, rate=100.0)
    assert estimate.seconds == 20.0
    assert estimate.describe() == "x: 1,000 tokens x 2 model passes; at 100 tokens/s measured here, about 20 s"
    assert Estimate("y", 5).describe() == "y: 5 tokens"
    assert [duration(s) for s in (0.2, 89, 600, 5400, 9000)] == ["1 s", "89 s", "10 min", "1.5 h", "2.5 h"]


def test_config_without_model_type_is_a_one_line_error(tmp_path, model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    del config["model_type"]
    (model_dir / "config.json").write_text(json.dumps(config))
    line = _one_line_error(
        run_cli("prune", "--model", str(model_dir), "--sparsity", "0.5", "--output", str(tmp_path / "o"))
    )
    assert 'config.json has no "model_type": add the architecture' in line


def test_hub_id_offline_fails_at_once(monkeypatch):
    from huggingface_hub import constants

    from calibprune.models.loading import resolve_model

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CalibpruneError, match="not in the local cache, and HF_HUB_OFFLINE is set: use a preset"):
        resolve_model("nobody/no-such-model")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(CalibpruneError, match=r"http://127.0.0.1:9 cannot be reached \(.*\): use a preset"):
        resolve_model("nobody/no-such-model")


def test_ctrl_c_says_what_was_kept_and_a_rerun_says_where_it_resumes(tmp_path, model_dir, text_corpus):
    out = tmp_path / "syn"
    args = [
        sys.executable, "-m", "calibprune.cli", "calib", "--model", str(model_dir), "--source", str(text_corpus),
        "--synthetic", "--nsamples", "2", "--seqlen", "64", "--num-texts", "150", "--gen-batch-size", "2",
        "--output", str(out),
    ]  # fmt: skip
    log = tmp_path / ".syn.generation" / "generations.jsonl"
    # a shell running the suite in the background (`pytest &`) ignores SIGINT, and children inherit
    # that; Python then installs no KeyboardInterrupt handler. Give the child the default disposition.
    interruptible = dict(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **interruptible)
    deadline = time.monotonic() + 120
    while first.poll() is None and not (log.exists() and len(log.read_text().splitlines()) >= 4):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130
    interrupted = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    assert len(interrupted) == 1 and f"finished generation batches are kept in {log.parent}" in interrupted[0]
    done_batches = len({json.loads(line)["batch"] for line in log.read_text().splitlines()})
    second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **interruptible)
    lines = []
    while not any("resuming" in line for line in lines) and second.poll() is None:
        lines.append(second.stderr.readline())
    second.send_signal(signal.SIGINT)
    second.communicate(timeout=60)
    resume = next(line for line in lines if "resuming" in line)
    assert resume.startswith(f"resuming from batch {done_batches + 1} of 75: {done_batches} finished batches")


def test_quiet_git_probe_prints_nothing_outside_a_repository(tmp_path, capfd):
    from calibprune.evaluation.harness import _git_hash_quietly

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert _git_hash_quietly() is None
    finally:
        os.chdir(cwd)
    assert capfd.readouterr().err == ""


def test_lm_eval_progress_bars_are_swapped_only_during_a_quiet_call():
    import lm_eval.api.task as lm_task
    import lm_eval.evaluator as lm_evaluator

    from calibprune.evaluation.harness import _lm_eval_quietly

    before = (lm_task.tqdm, lm_evaluator.get_git_commit_hash)
    with _lm_eval_quietly(progress=False):
        assert lm_task.tqdm([1, 2]).disable  # a bar lm-eval builds is disabled
        assert lm_evaluator.get_git_commit_hash is not before[1]
    assert (lm_task.tqdm, lm_evaluator.get_git_commit_hash) == before


# --- outputs never overlap inputs, and replace an existing output only with --overwrite ---------


@pytest.fixture
def inputs(tmp_path):
    """A bogus model folder (no config.json: loading it would fail, so a refusal proves it came
    first), a folder of local texts and a run folder copied from the committed replication runs."""
    import shutil

    model = tmp_path / "bogus-model"
    model.mkdir()
    (model / "weights.bin").write_text("precious")
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("Some text to calibrate on.\n\nAnd a second paragraph of it.")
    runs = tmp_path / "runs"
    shutil.copytree("docs/replication/runs/amount", runs / "amount")
    shutil.copytree("docs/replication/runs/mink", runs / "mink", ignore=shutil.ignore_patterns("pools"))
    return {"model": model, "texts": texts, "runs": runs, "tmp": tmp_path}


def _snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


OVERLAPS = [
    (["prune", "--model", "{model}", "--sparsity", "0.5", "--output", "{model}", "--overwrite"],
     "--output '{model}' is the --model folder '{model}', which this command reads"),
    (["prune", "--model", "{model}", "--sparsity", "0.5", "--calib", "{texts}", "--output", "{texts}/pruned"],
     "--output '{texts}/pruned' lies inside --calib '{texts}'"),
    (["prune", "--model", "{model}", "--sparsity", "0.5", "--calib", "{texts}/a.txt", "--output", "{texts}",
      "--overwrite"], "--output '{texts}' contains --calib '{texts}/a.txt'"),
    (["calib", "--source", "{texts}", "--output", "{texts}/set"], "--output '{texts}/set' lies inside --source"),
    (["calib", "--model", "{model}", "--source", "kjv", "--output", "{model}", "--overwrite"],
     "is the --model folder"),
    (["eval", "--model", "{model}", "--ppl", "{texts}/a.txt", "--output", "{texts}/a.txt", "--overwrite"],
     "--output '{texts}/a.txt' is --ppl '{texts}/a.txt'"),
    (["eval", "--model", "{model}", "--ppl", "kjv", "--output", "{model}/results.json"],
     "lies inside the --model folder"),
    (["analyze", "similarity", "--sets", "{texts},corpus:kjv", "--output", "{texts}", "--overwrite"],
     "--output '{texts}' is --sets '{texts}'"),
    (["analyze", "membership", "--model", "{model}", "--sets", "corpus:kjv,{texts}", "--output", "{texts}/m"],
     "lies inside --sets '{texts}'"),
    (["analyze", "membership", "--model", "{model}", "--sets", "corpus:kjv", "--output", "{model}", "--overwrite"],
     "is the --model folder"),
    (["report", "{runs}/amount", "--output", "{runs}/amount", "--overwrite"],
     "--output '{runs}/amount' is the run folder '{runs}/amount'"),
    (["report", "{runs}/amount", "--output", "{runs}/amount/reports"], "lies inside the run folder"),
    (["report", "{runs}/amount", "{runs}/mink", "--output", "{runs}", "--summary", "{tmp}/s.md", "--overwrite"],
     "--output '{runs}' contains the run folder '{runs}/amount'"),
    (["report", "{runs}/amount", "{runs}/mink", "--output", "{tmp}/out", "--summary", "{runs}/mink/s.md"],
     "--summary '{runs}/mink/s.md' lies inside the run folder '{runs}/mink'"),
]  # fmt: skip


@pytest.mark.parametrize("args, message", OVERLAPS, ids=[f"{a[0]}-{i}" for i, (a, _) in enumerate(OVERLAPS)])
def test_an_output_overlapping_an_input_is_refused_even_with_overwrite(inputs, args, message):
    paths = {k: str(v) for k, v in inputs.items()}
    before = _snapshot(inputs["tmp"])
    line = _one_line_error(run_cli(*(a.format(**paths) for a in args)))
    assert message.format(**paths) in line
    assert "choose a --" in line and "outside every input" in line
    assert _snapshot(inputs["tmp"]) == before  # nothing written, nothing deleted


def test_report_replaces_an_existing_output_or_summary_only_with_overwrite(inputs):
    runs, tmp = inputs["runs"], inputs["tmp"]
    (tmp / "out").mkdir()
    (tmp / "out" / "mine.txt").write_text("not a report")
    line = _one_line_error(run_cli("report", str(runs / "amount"), "--output", str(tmp / "out")))
    assert f"output folder '{tmp / 'out'}' already exists: choose another --output or pass --overwrite" in line
    assert (tmp / "out" / "mine.txt").exists()
    (tmp / "s.md").write_text("my notes")
    args = ["report", str(runs / "amount"), "--output", str(tmp / "new"), "--summary", str(tmp / "s.md")]
    line = _one_line_error(run_cli(*args))
    assert f"output file '{tmp / 's.md'}' already exists: choose another --summary or pass --overwrite" in line
    assert (tmp / "s.md").read_text() == "my notes" and not (tmp / "new").exists()
    done = run_cli(*args, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert (tmp / "new" / "amount" / "report.md").exists() and "# Replication report" in (tmp / "s.md").read_text()
    assert (runs / "amount" / "cells").is_dir()  # the inputs are still there


def test_eval_replaces_an_existing_results_file_only_with_overwrite(inputs):
    results = inputs["tmp"] / "results.json"
    results.write_text("{}")
    args = ["eval", "--model", str(inputs["model"]), "--ppl", "kjv", "--output", str(results)]
    line = _one_line_error(run_cli(*args))
    assert f"output file '{results}' already exists: choose another --output or pass --overwrite" in line
    assert "has no config.json" in _one_line_error(run_cli(*args, "--overwrite"))  # past the check: the model
    assert results.read_text() == "{}"
    assert "--overwrite has no effect without --output" in _one_line_error(
        run_cli("eval", "--model", str(inputs["model"]), "--ppl", "kjv", "--overwrite")
    )


def test_a_latin1_source_is_refused_before_any_model_and_read_with_encoding(tmp_path, model_dir):
    from calibprune.jobs.calibrate import CalibJob, run_calib

    source = tmp_path / "latin1.txt"
    texts = [f"Paragraphe {i}: données, café, naïveté et façade numéro {i}." for i in range(60)]
    data = "\n\n".join(texts).encode("latin-1")
    source.write_bytes(data)
    offset = data.index("é".encode("latin-1"))
    fix = "pass --encoding latin-1 (or the file's encoding)"
    line = _one_line_error(run_cli("calib", "--source", str(source), "--model", str(model_dir), "--nsamples", "2",
                                   "--seqlen", "32", "--output", str(tmp_path / "set")))  # fmt: skip
    assert f"{source}: byte {offset} (line 1) is not valid utf-8" in line and fix in line
    line = _one_line_error(run_cli("prune", "--model", str(model_dir), "--sparsity", "0.5", "--calib", str(source),
                                   "--nsamples", "2", "--seqlen", "32", "--output", str(tmp_path / "out")))  # fmt: skip
    assert f"byte {offset} (line 1)" in line and not (tmp_path / "out").exists()
    # self-generation reads its source before loading the model: a model that does not exist is never reached
    with pytest.raises(CalibpruneError, match=f"byte {offset} \\(line 1\\) is not valid utf-8"):
        run_calib("no/such-model", CalibJob(source=str(source), nsamples=2, seqlen=32, strategy="synthetic"), None)
    from calibprune.jobs.evaluate import run_eval  # eval --ppl: the same, before the model
    from calibprune.jobs.requests import PerplexityRequest

    with pytest.raises(CalibpruneError, match=f"byte {offset} \\(line 1\\) is not valid utf-8"):
        run_eval("no/such-model", PerplexityRequest([str(source)]))
    done = run_cli("calib", "--source", str(source), "--encoding", "latin-1", "--model", str(model_dir),
                   "--nsamples", "8", "--seqlen", "32", "--output", str(tmp_path / "set"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    calibration = CalibrationSet.load(tmp_path / "set")
    assert calibration.manifest["source_reading"] == {"encoding": "latin-1", "text_field": "text"}
    # the byte tokenizer may cut a character at a window's edges, never inside: each paragraph of a window's inner
    # text is a piece of the source as latin-1 decodes it (a wrong decoding would not be; the stream joins the
    # paragraphs in a seeded order), and the pieces hold its accents (which words a window holds depends on where
    # the seeded sampler starts it, so no word is named)
    inner = [w[1:-1] for w in calibration.windows_text]
    decoded = "\n\n".join(texts)
    assert all("\ufffd" not in w and all(p in decoded for p in w.split("\n\n")) for w in inner), inner
    assert set("éïç") & set("".join(inner)), inner


def test_reports_record_the_command_line_and_the_options(tmp_path, model_dir, text_corpus):
    prune_args = ["prune", "--model", str(model_dir), "--sparsity", "0.5", "--calib", str(text_corpus),
                  "--nsamples", "2", "--seqlen", "16", "--quiet", "--output", str(tmp_path / "out")]  # fmt: skip
    done = run_cli(*prune_args)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "prune_report.json").read_text())
    assert report["command"] == "prune" and report["argv"][1:] == prune_args
    options = report["options"]
    assert options["calibration"] == {"source": str(text_corpus), "nsamples": 2, "seqlen": 16, "seed": 0,
                                      "sampling": None, "text_field": "text", "windows": "disjoint",
                                      "encoding": "utf-8"}  # fmt: skip
    assert (options["device"], options["offload"], options["dtype"]) == ("auto", "auto", None)
    eval_args = ["eval", "--model", str(tmp_path / "out"), "--ppl", str(text_corpus), "--ppl-seqlen", "16",
                 "--ppl-max-windows", "2", "--quiet", "--output", str(tmp_path / "eval.json")]  # fmt: skip
    done = run_cli(*eval_args)
    assert done.returncode == 0, done.stderr
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["argv"][1:] == eval_args and evaluated["options"]["perplexity"]["max_windows"] == 2
    calib_args = ["calib", "--source", str(text_corpus), "--model", str(model_dir), "--nsamples", "2",
                  "--seqlen", "16", "--seed", "4", "--quiet", "--output", str(tmp_path / "set")]  # fmt: skip
    done = run_cli(*calib_args)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["argv"][1:] == calib_args
    # from Python there is no command line: None, never a made-up one
    from calibprune.jobs.calibrate import CalibJob, run_calib

    assert (
        run_calib(str(model_dir), CalibJob(source=str(text_corpus), nsamples=2, seqlen=16), None).manifest["argv"]
        is None
    )


def test_prune_estimate_is_printed_before_the_dense_perplexity_pass_starts(tmp_path, model_dir, text_corpus):
    done = run_cli(
        "prune", "--model", str(model_dir), "--sparsity", "0.5", "--calib", str(text_corpus),
        "--nsamples", "2", "--seqlen", "16", "--ppl", str(text_corpus), "--ppl-seqlen", "24",
        "--ppl-max-windows", "5", "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    estimate = done.stderr.find("prune: dense perplexity on 5 windows x 24 tokens")
    first_bar = done.stderr.find(f"ppl {text_corpus}")  # the dense pass's progress bar
    assert 0 <= estimate < first_bar < done.stderr.find("wanda 50%")
    assert "= 291 tokens of model passes" in done.stderr
    quiet = run_cli(
        "eval", "--model", str(model_dir), "--ppl", str(text_corpus), "--ppl-seqlen", "24",
        "--ppl-max-windows", "5", "--quiet",
    )  # fmt: skip
    assert quiet.returncode == 0 and "measured here" not in quiet.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sparsity", "0.5", "--ria-a", "0.3"], "--ria-a has no effect with --method wanda: they are RIA's; drop it"),
        (
            ["--method", "admm", "--admm-mask", "magnitude", "--sparsity", "0.5", "--ria-a", "1"],
            "--ria-a has no effect with --admm-mask magnitude: they are RIA's; drop it, or pass --method ria or "
            "--admm-mask ria",
        ),
        (
            ["--method", "ria", "--pattern", "2:4", "--ria-lsa-blocks", "2"],
            "--ria-lsa-blocks has no effect with --ria-permutation none: drop it or pass --ria-permutation lsa",
        ),
        (["--method", "ria", "--pattern", "2:4", "--ria-scope", "row"], "--ria-scope has no effect with --pattern"),
        (["--sparsity", "0.5", "--admm-rho", "2"], "--admm-rho has no effect with --method wanda: they are ADMM's"),
        (
            ["--method", "admm", "--sparsity", "0.5", "--admm-mask", "wanda", "--admm-gradual-steps", "5"],
            "--admm-gradual-steps has no effect with --admm-mask wanda: that method's mask is kept as it is, only "
            "the weights are updated; drop it or pass --admm-mask gradual",
        ),
        (
            ["--method", "ria", "--sparsity", "0.5", "--ria-permutation", "lsa"],
            "--ria-permutation lsa with --sparsity 0.5: channel permutation chooses which inputs share an M-group, "
            "so it applies to N:M patterns only; pass --pattern N:M (e.g. --pattern 2:4) or drop it",
        ),
        (
            ["--method", "ria", "--pattern", "2:4", "--ria-permutation", "heuristic", "--refine", "dsnot"],
            "--ria-permutation heuristic with --refine dsnot: the mask is N:M in the permuted column order",
        ),
        (
            ["--method", "admm", "--pattern", "2:4", "--refine", "dsnot"],
            "--refine dsnot with --method admm: DSnoT swaps weights in and out of a mask",
        ),
        (
            ["--method", "admm", "--sparsity", "0.5", "--admm-iters", "10"],
            "--admm-gradual-steps 15 is more than --admm-iters 10: the mask must reach the target sparsity by the "
            "last iteration; lower --admm-gradual-steps or raise --admm-iters",
        ),
        (["--method", "ria", "--pattern", "2:4", "--ria-permutation", "x"], "--ria-permutation 'x' is unknown"),
    ],
)
def test_ria_and_admm_options_that_cannot_apply_are_refused_before_torch_is_imported(tmp_path, args, message):
    """RIA's and ADMM's options are audited by their own rules, and their impossible
    combinations refused with the reason, before torch (or any model) is loaded."""
    done = run_cli_noting_heavy_imports("prune", "--model", "no-such-model", *args, "--output", tmp_path / "o")
    assert _one_line_error(done).startswith(f"error: {message}")
    assert done.stdout.strip() == "heavy: []"
    assert not (tmp_path / "o").exists()
