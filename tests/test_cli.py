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
from conftest import run_cli

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
        (["calib", "--temperature", "0.7"], "--temperature has no effect without --synthetic"),
        (["calib", "--synthetic", "--keep-top", "0.3"], "--keep-top has no effect without --detect"),
        (["calib", "--synthetic", "--sampling", "document"], "--sampling has no effect with --synthetic or --detect"),
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
    with pytest.raises(CalibpruneError, match="--nsamples 9 asks for more windows"):
        calib.head(9)


def test_nm_meaning_is_resolved_in_words():
    assert SparsityTarget.parse(pattern="2:4").explain() == (
        "2:4 - prune 2 of every 4 consecutive inputs in each row (keep 2), 50% sparsity"
    )
    one_of_four = SparsityTarget.parse(pattern="1:4").explain()
    assert "prune 1 of every 4 consecutive inputs in each row (keep 3), 25% sparsity" in one_of_four
    assert 'read as "1 kept of 4" (hardware N:M sparsity) it would be 75% sparsity' in one_of_four
    assert one_of_four.endswith("pass --pattern 3:4")


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
