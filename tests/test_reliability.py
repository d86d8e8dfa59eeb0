"""Faults a user's run meets: kill -9, a full disk, debris of a crash. Each test drives
the real job and checks that nothing finished is lost and nothing half-written looks
finished (the README's reliability table points here)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calibprune.config import PruneConfig, SparsityTarget
from calibprune.jobs.prune import run_prune
from calibprune.jobs.requests import CalibrationRequest
from calibprune.utils.io import atomic_directory, sweep_dead_temporaries, temporary_sibling, write_json

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _config():
    return PruneConfig(method="wanda", target=SparsityTarget.parse(0.5, None))


def _request(corpus):
    return CalibrationRequest(source=str(corpus), nsamples=4, seqlen=32, seed=0)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


# --- disk full -----------------------------------------------------------------------------


def test_disk_full_while_saving_a_pruned_model_keeps_the_previous_output(model_dir, text_corpus, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    out = tmp_path / "out"
    run_prune(str(model_dir), _config(), _request(text_corpus), out, progress=False)
    before = _digests(out)
    real_save = PreTrainedModel.save_pretrained

    def save_then_fill_the_disk(self, folder, *args, **kwargs):
        real_save(self, folder, *args, **kwargs)  # the weights are written ...
        (Path(folder) / "tokenizer.json").write_text('{"trunc')  # ... the next file is cut off
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "tokenizer.json"))

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_then_fill_the_disk)
    with pytest.raises(OSError) as raised:
        run_prune(str(model_dir), _config(), _request(text_corpus), out, overwrite=True, progress=False)
    assert raised.value.errno == errno.ENOSPC
    assert _digests(out) == before  # the previous pruned model is intact, byte for byte
    assert _debris(out) == []  # and the half-written temporary is gone


def test_disk_full_while_saving_a_calibration_set_keeps_the_previous_set(tokenizer, text_corpus, tmp_path, monkeypatch):
    import safetensors.torch

    from calibprune.calibration import build_calibration

    out = tmp_path / "set"
    build_calibration(str(text_corpus), tokenizer, nsamples=4, seqlen=32, seed=0).save(out)
    before = _digests(out)
    other = build_calibration(str(text_corpus), tokenizer, nsamples=4, seqlen=32, seed=1)

    def fill_the_disk(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\x08\x00\x00")  # a torn header, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(safetensors.torch, "save_file", fill_the_disk)
    with pytest.raises(OSError):
        other.save(out, overwrite=True)
    assert _digests(out) == before
    assert _debris(out) == []


def test_disk_full_while_writing_json_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = write_json(tmp_path / "cell.json", {"status": "ok", "metrics": {"ppl": 12.5}})
    real_dump = json.dump

    def dump_then_fill_the_disk(obj, f, **kwargs):
        real_dump({"status": "o"}, f)  # a part of the new content reaches the temporary
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dump", dump_then_fill_the_disk)
    with pytest.raises(OSError):
        write_json(target, {"status": "ok", "metrics": {"ppl": 99.0}})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"status": "ok", "metrics": {"ppl": 12.5}}
    assert [p.name for p in tmp_path.iterdir()] == ["cell.json"]


def test_a_full_disk_is_one_line_with_the_fix_not_a_traceback(tmp_path):
    # the CLI's handler, driven through a real process whose save hits ENOSPC
    script = (
        "import errno, sys\n"
        "from calibprune.cli import app as application\n"
        "def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device', '/data/out/model.safetensors')\n"
        "application.app = full\n"
        "application.main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: no space left on the device writing /data/out/model.safetensors: free")
    assert "no finished output was replaced or left half-written" in proc.stderr


# --- kill -9 --------------------------------------------------------------------------------


def test_kill_9_during_a_prune_save_leaves_no_output_and_the_rerun_clears_the_debris(model_dir, text_corpus, tmp_path):
    out = tmp_path / "out"
    # a real prune whose save hangs once the weights are in the temporary folder: kill it there
    script = (
        "import sys, time\n"
        "from transformers import PreTrainedModel\n"
        "real = PreTrainedModel.save_pretrained\n"
        "def slow(self, folder, *a, **k):\n"
        "    real(self, folder, *a, **k)\n"
        "    print('saved', flush=True)\n"
        "    time.sleep(600)\n"
        "PreTrainedModel.save_pretrained = slow\n"
        "from calibprune import cli\n"
        "sys.argv = ['calibprune'] + sys.argv[1:]\n"
        "cli.main()\n"
    )
    args = ["prune", "--model", str(model_dir), "--method", "wanda", "--sparsity", "0.5", "--calib", str(text_corpus)]
    args += ["--nsamples", "4", "--seqlen", "32", "--output", str(out), "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "saved"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing that looks finished
    debris = _debris(out)
    assert len(debris) == 1 and debris[0].startswith(f".out.tmp-{proc.pid}-")
    report = run_prune(str(model_dir), _config(), _request(text_corpus), out, progress=False)
    assert report["summary"]["sparsity_pruned_layers"] == pytest.approx(0.5)
    assert _debris(out) == []  # the dead writer's temporary was swept by the next writer


def test_only_temporaries_of_dead_writers_are_swept(tmp_path):
    final = tmp_path / "set"
    alive = temporary_sibling(final)  # this process: alive
    alive.mkdir()
    dead = tmp_path / f".set.tmp-{_dead_pid()}-0123abcd"
    dead.mkdir()
    legacy = tmp_path / ".set.tmp-89abcdef"  # no pid: cannot be told dead from alive
    legacy.mkdir()
    other = tmp_path / f".settings.tmp-{_dead_pid()}-0123abcd"  # another output's
    other.mkdir()
    assert sweep_dead_temporaries(final) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, legacy.name, other.name])
    with atomic_directory(final) as tmp:  # a writer of `set` sweeps too, and keeps the live one
        (tmp / "x").write_text("1")
    assert alive.exists() and (final / "x").read_text() == "1"


def test_kill_9_during_self_generation_resumes_to_the_same_set(tmp_path, model_dir, text_corpus):
    def args(out):
        return [
            sys.executable, "-m", "calibprune.cli", "calib", "--model", str(model_dir), "--source", str(text_corpus),
            "--synthetic", "--nsamples", "2", "--seqlen", "48", "--num-texts", "24", "--gen-batch-size", "2",
            "--max-new-tokens", "64", "--output", str(out), "--quiet",
        ]  # fmt: skip

    killed = tmp_path / "killed"
    log = tmp_path / ".killed.generation" / "generations.jsonl"
    proc = subprocess.Popen(args(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not (log.exists() and len(log.read_text().splitlines()) >= 4):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not killed.exists()
    kept = len(log.read_text().splitlines())
    with open(log, "a") as f:
        f.write('{"index": 99, "batch": 9, "te')  # as if the kill tore the next append
    assert subprocess.run(args(killed), capture_output=True).returncode == 0
    clean = tmp_path / "clean"
    assert subprocess.run(args(clean), capture_output=True).returncode == 0
    assert kept >= 4
    assert _digests(killed)["tokens.safetensors"] == _digests(clean)["tokens.safetensors"]
    assert (
        json.loads((killed / "manifest.json").read_text())["fingerprint"]
        == json.loads((clean / "manifest.json").read_text())["fingerprint"]
    )


# --- platforms ------------------------------------------------------------------------------


def test_a_stage_runs_at_the_fixed_thread_count_and_records_its_platform(model_dir, text_corpus):
    import torch

    from calibprune.experiments.executors import DEFAULT_THREADS, LocalExecutor
    from calibprune.experiments.stages import execute

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert LocalExecutor(workers=1).threads == DEFAULT_THREADS == 1
        outcome = execute("cell", {"bogus": True}, threads=1)  # fails (no model), but is still recorded
    finally:
        torch.set_num_threads(before)
    assert not outcome["ok"] and outcome["threads"] == 1
    record = outcome["platform"]
    assert record["torch_threads"] == 1 and record["packages"]["torch"] and record["packages"]["transformers"]
    assert set(record["cpu"]) == {"model", "machine", "isa", "logical_cpus"} and record["cpu"]["model"]


def test_report_warns_when_cells_come_from_two_platforms():
    from calibprune.experiments.platforms import mixing_warning
    from calibprune.results import StageRecord

    def cell(**fields):  # a cell file's record, as the report reads it
        return StageRecord.from_json({"attrs": {}, **fields})

    record = {"cpu": {"model": "Xeon", "isa": ["avx2"]}, "torch_threads": 1, "packages": {"torch": "2.13.0"}}
    other = {**record, "cpu": {"model": "EPYC", "isa": ["avx2", "avx512f"]}}
    same = [cell(status="ok", platform=record), cell(status="ok", platform=dict(record))]
    assert mixing_warning(same) is None
    assert mixing_warning(same + [cell(status="failed", platform=other)]) is None  # failed cells carry no metric
    warning = mixing_warning(same + [cell(status="ok", platform=other)])
    assert warning.startswith("the cells were computed on 2 platforms (2 on Xeon [avx2], 1 threads, torch 2.13.0; 1 on")
    old = [cell(status="ok", threads=1), cell(status="ok", threads=2)]  # cells from before platforms were recorded
    assert "2 platforms" in mixing_warning(old)


def test_a_sweep_rerun_at_the_fixed_thread_count_is_bit_identical(tmp_path, model_dir, text_corpus):
    from test_experiments import tiny_spec, write_spec

    from calibprune.experiments.sweep import run_sweep

    spec = tiny_spec(model_dir, text_corpus, resources={"threads": 2})
    spec["pruning"][0]["method"] = "sparsegpt"  # the method whose sums most depend on the kernels
    path = write_spec(tmp_path, spec)
    run_sweep(path, tmp_path / "one")
    run_sweep(path, tmp_path / "two")

    def cells(run):
        return {p.stem: json.loads(p.read_text()) for p in sorted((run / "cells").glob("*.json"))}

    one, two = cells(tmp_path / "one"), cells(tmp_path / "two")
    assert len(one) == 4 and one.keys() == two.keys()
    for key in one:
        assert one[key]["metrics"] == two[key]["metrics"]  # exact floats, not approx
        assert one[key]["threads"] == 2 and one[key]["platform"] == two[key]["platform"]


def test_a_report_over_cells_from_two_platforms_says_so(tmp_path):
    from test_experiments import fake_run

    from calibprune.experiments.report import write_report
    from calibprune.experiments.store import RunStore

    run = fake_run(tmp_path)
    assert write_report(run, tmp_path / "same")["platforms"] is None  # every fake cell: unknown platform, 1 kind
    store = RunStore(run)
    record = store.read_cell("k0") | {"platform": {"cpu": {"model": "EPYC", "isa": ["avx512f"]}, "torch_threads": 2}}
    store.write_cell("k0", record)
    data = write_report(run, tmp_path / "mixed")
    assert data["platforms"].startswith("the cells were computed on 2 platforms")
    assert "**Warning:** the cells were computed on 2 platforms" in (tmp_path / "mixed" / "report.md").read_text()
