"""Studies: spec validation, content-hash caching, kill -9 safety, failures, executors,
aggregation (hand-computed), report and claims, shipped specs."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import scipy.stats
import yaml
from conftest import run_cli

from calibprune.errors import CalibpruneError
from calibprune.experiments.aggregate import diffs, ranges, rows_of, summarize
from calibprune.experiments.spec import parse_study
from calibprune.experiments.sweep import run_sweep, shipped_studies


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine OpenMP spin-waits cost seconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_spec(model_dir, corpus, **over) -> dict:
    spec = {
        "study": "tiny",
        "claims": ["C4"],
        "models": [str(model_dir)],
        "seeds": [0, 1],
        "calibration": {"nsamples": 4, "seqlen": 16, "strategies": [{"name": "a", "source": str(corpus)}]},
        "pruning": [{"method": "wanda", "sparsity": [0.3, 0.5], "runner": {"activation_store": "memory"}}],
        "evaluation": {"ppl": {"corpora": [str(corpus)], "seqlen": 32, "max_windows": 4}},
        "report": {"primary_metric": f"ppl/{corpus}"},
    }
    spec.update(over)
    return spec


def write_spec(tmp_path, spec, name="spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


# --- 1. validation ---------------------------------------------------------------------


def cli_words(error) -> str:
    """An error as the CLI says it: an OptionError's fields as flags, its commands as shell lines."""
    from calibprune.cli_options import cli_command, cli_name
    from calibprune.options import OptionError

    return error.render(cli_name, cli_command) if isinstance(error, OptionError) else str(error)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pruning": [{"method": "wanda", "sparsity": 0.5, "refin": "dsnot"}]}, "pruning[0].refin: unknown key"),
        ({"pruning": [{"method": "sparsegpt", "sparsity": 0.5, "refine": "dsnot"}]}, "pruning[0] (method=sparsegpt"),
        ({"pruning": [{"method": "wanda", "pattern": "2:4", "allocation": "owl"}]}, "OWL varies the sparsity"),
        ({"pruning": [{"method": "wanda", "sparsity": 1.5}]}, "sparsity 1.5 is outside [0, 1)"),
        ({"seeds": {"range": [0]}}, "seeds.range: expected [start, stop]"),
        ({"evaluation": {"ppl": {"corpora": ["nope-corpus"]}}}, "evaluation.ppl"),
        ({"colour": 1}, "spec.colour: unknown key"),
        ({"calibration": {"seqlen": 200, "strategies": [{"source": "wiki-en"}]}}, "exceeds the model's maximum"),
        ({"pruning": [{"method": "wanda", "pattern": "2:48"}]}, "pruning setting 'wanda 2:48'"),
    ],
)
def test_spec_refuses_bad_input_with_key_path(model_dir, text_corpus, change, message):
    with pytest.raises(CalibpruneError) as error:
        parse_study(tiny_spec(model_dir, text_corpus, **change))
    assert message in str(error.value)


def _strategy_spec(model_dir, text_corpus, source, **strategy) -> dict:
    spec = tiny_spec(model_dir, text_corpus)
    spec["calibration"]["strategies"] = [{"name": "a", "source": str(text_corpus)}, {"source": str(source), **strategy}]
    return spec


@pytest.mark.parametrize(
    "strategy, message",
    [
        ({"text_field": "bdy"}, "calibration.strategies[1].text_field: 'bdy' is not a field of"),
        ({"text_field": "Body"}, "set text_field: body"),
        ({}, "'text' (not set: the default) is not a field of"),
    ],
)
def test_spec_checks_text_field_against_the_source(tmp_path, model_dir, text_corpus, strategy, message):
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": i, "body": f"note {i} " * 20}) + "\n" for i in range(50)))
    with pytest.raises(CalibpruneError) as error:
        parse_study(_strategy_spec(model_dir, text_corpus, notes, **strategy))
    assert message in str(error.value) and "(its first record's fields: id, body)" in str(error.value)
    assert "--text-field" not in str(error.value)
    parse_study(_strategy_spec(model_dir, text_corpus, notes, text_field="body"))  # the fix works
    with pytest.raises(CalibpruneError, match=r"strategies\[0\]\.text_field: .* has no fields to choose from"):
        spec = tiny_spec(model_dir, text_corpus)
        spec["calibration"]["strategies"][0]["text_field"] = "body"  # a .txt file has no fields
        parse_study(spec)


def test_spec_refuses_a_pool_too_small_for_its_windows(tmp_path, model_dir, text_corpus):
    notes = tmp_path / "notes.jsonl"
    # 4 notes: ~100 bytes, so the exact count below stays under the tiny model's 128 positions
    # whichever of them the (path-dependent) held-out split takes
    texts = [f"note number {i} says hello" for i in range(4)]
    notes.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    # bound: a token is at least a byte, so ~100 bytes cannot fill 4 x 64 tokens; no tokenizer needed
    with pytest.raises(CalibpruneError) as error:
        parse_study(_strategy_spec(model_dir, text_corpus, notes, seqlen=64))
    text = str(error.value)
    assert text.startswith(f"calibration.strategies[1] (source={notes}): nsamples x seqlen = 4 x 64 = 256 tokens")
    assert "lower calibration.nsamples or calibration.strategies[1].seqlen" in text
    # a close call (bytes enough, tokens not) is counted with the model's tokenizer: the byte tokenizer
    # gives exactly the joined bytes of the calib pool (the held-out documents are not in it), 3 under the bound
    from calibprune.corpora import get_corpus

    stream = len("\n\n".join(get_corpus(str(notes)).texts("calib")).encode())
    with pytest.raises(CalibpruneError, match=f"holds {stream:,} tokens with this model's tokenizer"):
        parse_study(_strategy_spec(model_dir, text_corpus, notes, nsamples=1, seqlen=stream + 1))
    parse_study(_strategy_spec(model_dir, text_corpus, notes, nsamples=1, seqlen=stream))  # just enough
    # document sampling: every window inside one document longer than seqlen
    with pytest.raises(CalibpruneError, match=r"only 0 of the \d documents .* have 64 bytes or more"):
        parse_study(_strategy_spec(model_dir, text_corpus, notes, seqlen=64, nsamples=1, sampling="document"))


@pytest.mark.parametrize(
    "report, message",
    [
        ({"primary_metric": "ppl/jargn"}, "report.primary_metric: 'ppl/jargn' is not a metric this study's cells"),
        ({"primary_metric": "acc/average"}, "use one of ppl/"),
        ({"baseline": "wiki"}, "report.baseline: 'wiki' is not a strategy of this study: use one of ['a']"),
    ],
)
def test_spec_checks_report_names_against_what_the_study_produces(model_dir, text_corpus, report, message):
    with pytest.raises(CalibpruneError) as error:
        parse_study(tiny_spec(model_dir, text_corpus, report=report))
    assert message in str(error.value)


def test_dry_run_reports_the_same_problems(tmp_path, model_dir, text_corpus):
    spec = write_spec(tmp_path, tiny_spec(model_dir, text_corpus, report={"primary_metric": "ppl/jargn"}))
    proc = run_cli("sweep", str(spec), "--output", str(tmp_path / "run"), "--dry-run")
    assert proc.returncode == 2 and "report.primary_metric: 'ppl/jargn'" in proc.stdout + proc.stderr
    assert f"use one of ppl/{text_corpus}" in " ".join((proc.stdout + proc.stderr).split())


def test_spec_axes_expand_into_the_product(model_dir, text_corpus):
    spec = tiny_spec(model_dir, text_corpus, seeds="0..2")
    spec["pruning"].append({"method": "wanda", "pattern": ["2:4", "4:8"]})
    study = parse_study(spec)
    assert study.seeds == [0, 1, 2]
    assert [s.label for s in study.settings] == [
        "wanda 30% unstructured", "wanda 50% unstructured", "wanda 2:4", "wanda 4:8"
    ]  # fmt: skip
    from calibprune.experiments.plan import make_plan

    plan = make_plan(study)
    assert len(plan.cells) == 1 * 1 * 4 * 3 and len(plan.calibs) == 3 and len(plan.denses) == 1


def test_stage_labels_tell_apart_strategies_that_share_a_name(model_dir, text_corpus):
    """A list inside one strategy (nsamples: [2, 3]) expands into variants of one name; the
    progress and --dry-run labels name what differs, and leave a strategy without siblings alone."""
    from calibprune.experiments.plan import make_plan

    strategies = [
        {"name": "a", "source": str(text_corpus), "nsamples": [2, 3]},
        {"name": "b", "source": str(text_corpus)},
    ]
    spec = tiny_spec(model_dir, text_corpus, seeds=[0])
    spec["calibration"]["strategies"] = strategies
    spec["pruning"] = [{"method": "wanda", "sparsity": 0.5, "runner": {"activation_store": "memory"}}]
    plan = make_plan(parse_study(spec))
    cells = sorted(stage.label for stage in plan.cells.values())
    assert cells == [
        f"{model_dir} | a (2 samples) | wanda 50% unstructured | seed 0",
        f"{model_dir} | a (3 samples) | wanda 50% unstructured | seed 0",
        f"{model_dir} | b | wanda 50% unstructured | seed 0",
    ]
    assert sorted(stage.label for stage in plan.calibs.values()) == [
        f"calib {model_dir} | a (2 samples) | 0", f"calib {model_dir} | a (3 samples) | 0", f"calib {model_dir} | b | 0"
    ]  # fmt: skip
    # the label is display only: the cells' attrs (what study.json and the report use) keep the name
    assert {stage.attrs["calib"] for stage in plan.cells.values()} == {"a", "b"}


def test_spec_encoding_reaches_the_job_and_keys_change_only_when_it_is_set(model_dir, tmp_path):
    """``encoding:`` beside ``text_field:`` decodes a local source; left at utf-8 it changes no
    stage key, so run folders keyed before the option existed stay valid."""
    from calibprune.experiments.plan import make_plan

    source = tmp_path / "latin1.txt"
    source.write_bytes("\n\n".join(f"Paragraphe {i}: café, données, façade." for i in range(80)).encode("latin-1"))
    with pytest.raises(CalibpruneError, match="is not valid utf-8 .*pass encoding='latin-1'"):
        parse_study(tiny_spec(model_dir, source))
    spec = tiny_spec(model_dir, source, seeds=[0], evaluation={"ppl": {"corpora": ["kjv"], "seqlen": 32}})
    spec["report"] = {"primary_metric": "ppl/kjv"}
    spec["calibration"]["strategies"][0]["encoding"] = "latin-1"
    job = parse_study(spec).calibrations[0].job
    assert job.encoding == "latin-1"
    ascii_source = tmp_path / "ascii.txt"
    ascii_source.write_text("\n\n".join(f"Paragraph {i}: plain words only." for i in range(80)))
    plain = tiny_spec(model_dir, ascii_source, seeds=[0])
    typed = tiny_spec(model_dir, ascii_source, seeds=[0])
    typed["calibration"]["strategies"][0]["encoding"] = "utf-8"
    other = tiny_spec(model_dir, ascii_source, seeds=[0])
    other["calibration"]["strategies"][0]["encoding"] = "latin-1"
    keys = {
        name: set(make_plan(parse_study(s)).calibs)
        for name, s in (("plain", plain), ("typed", typed), ("other", other))
    }
    assert keys["plain"] == keys["typed"]  # the default changes no key
    assert keys["plain"].isdisjoint(keys["other"])  # another encoding is another set


def test_a_study_sets_every_field_of_the_evaluation_requests_and_the_windows_rule(model_dir, text_corpus):
    """``windows`` (calibration) and ``scoring`` (tasks) were missing from the spec's hand lists;
    the evaluation keys are now the requests' own fields, and the windows rule changes the set's key."""
    from dataclasses import fields

    from calibprune.experiments.plan import make_plan
    from calibprune.experiments.spec import PPL_KEYS, TASK_KEYS
    from calibprune.pipeline import PerplexityRequest, TaskRequest

    assert PPL_KEYS == {f.name for f in fields(PerplexityRequest)} and "scoring" in TASK_KEYS
    assert TASK_KEYS == {f.name for f in fields(TaskRequest)}
    spec = tiny_spec(model_dir, text_corpus, seeds=[0])
    spec["calibration"]["strategies"][0]["windows"] = "random"
    study = parse_study(spec)
    assert study.calibrations[0].job.windows == "random"
    default = set(make_plan(parse_study(tiny_spec(model_dir, text_corpus, seeds=[0]))).calibs)
    assert default.isdisjoint(make_plan(study).calibs)  # another windows rule is another set
    spec["calibration"]["strategies"][0]["windows"] = "overlapping"
    with pytest.raises(CalibpruneError, match=r"calibration\.strategies\[0\].*overlapping"):
        parse_study(spec)
    spec = tiny_spec(model_dir, text_corpus, seeds=[0])
    spec["evaluation"]["tasks"] = {"names": ["boolq"], "scoring": "plain"}
    assert parse_study(spec).evaluation.tasks.scoring == "plain"
    spec["evaluation"]["tasks"]["scoring"] = "fast"
    with pytest.raises(CalibpruneError, match=r"evaluation\.tasks.*'fast' is unknown"):
        parse_study(spec)


# --- 2-4. sweeps on a tiny random model ------------------------------------------------


def _metrics(rundir) -> dict:
    out = {}
    for path in sorted((Path(rundir) / "cells").glob("*.json")):
        record = json.loads(path.read_text())
        out[path.stem] = record["metrics"]
    return out


@pytest.mark.parametrize(
    "where, message",
    [
        (lambda m, c: m, "--output '{m}' is models[0] '{m}'"),
        (lambda m, c: m / "run", "lies inside models[0]"),
        (lambda m, c: c.parent, "contains the calibration source of 'a'"),
        (lambda m, c: c, "--output '{c}' is a file: pass a run folder"),
    ],
)
def test_sweep_run_folder_overlapping_what_the_study_reads_is_refused(tmp_path, model_dir, text_corpus, where, message):
    (tmp_path / "specs").mkdir()  # the spec outside the folders a run could overlap
    (tmp_path / "texts").mkdir()
    text_corpus = text_corpus.rename(tmp_path / "texts" / text_corpus.name)
    spec = write_spec(tmp_path / "specs", tiny_spec(model_dir, text_corpus))
    output = where(model_dir, text_corpus)
    before = sorted(p.name for p in model_dir.iterdir())
    with pytest.raises(CalibpruneError) as error:
        run_sweep(spec, output)
    assert message.format(m=model_dir, c=text_corpus) in cli_words(error.value)
    assert sorted(p.name for p in model_dir.iterdir()) == before and not (model_dir / "run").exists()


def test_sweep_caches_by_content_and_resumes(tmp_path, model_dir, text_corpus):
    spec = write_spec(tmp_path, tiny_spec(model_dir, text_corpus))
    first = run_sweep(spec, tmp_path / "run")
    # one calibration set per seed, shared by both settings; one dense evaluation
    assert first.executed == {"pool": 0, "calib": 2, "dense": 1, "cell": 4, "analysis": 0}
    again = run_sweep(spec, tmp_path / "run")
    assert again.executed == {"pool": 0, "calib": 0, "dense": 0, "cell": 0, "analysis": 0}
    # --dry-run sees them done and nothing left to pay for
    from calibprune.experiments.store import RunStore
    from calibprune.experiments.sweep import dry_run_table

    dry = run_sweep(spec, tmp_path / "run", dry_run=True)
    listing = dry_run_table(dry, RunStore(tmp_path / "run"))
    assert [status for _, status in listing["cells"]] == ["done"] * 4
    assert listing["estimate"]["to_run"] == {"pool": 0, "calib": 0, "dense": 0, "cell": 0}
    # a new axis value computes only the new cells (and no calibration set or dense evaluation)
    grown = tiny_spec(model_dir, text_corpus)
    grown["pruning"][0]["sparsity"] = [0.3, 0.5, 0.6]
    third = run_sweep(write_spec(tmp_path, grown, "grown.yaml"), tmp_path / "run")
    assert third.executed == {"pool": 0, "calib": 0, "dense": 0, "cell": 2, "analysis": 0}
    cells = [json.loads(p.read_text()) for p in (tmp_path / "run" / "cells").glob("*.json")]
    assert len(cells) == 6 and all(c["status"] == "ok" for c in cells)
    # the folder now holds both specs' cells: a report counts only the cells of the spec swept last
    from calibprune.experiments.report import build_report

    assert len(build_report(tmp_path / "run")["cells"]) == 6
    # the first spec's grid is smaller than the folder's: taken back only with overwrite, which deletes nothing
    assert run_sweep(spec, tmp_path / "run", overwrite=True).executed["cell"] == 0
    assert len(build_report(tmp_path / "run")["cells"]) == 4
    # the same cells under other setting names (names are labels, not content): nothing runs, and the
    # report shows this study's names
    named = tiny_spec(model_dir, text_corpus)
    named["pruning"] = [
        {"method": "wanda", "sparsity": s, "name": f"w{int(s * 100)}", "runner": {"activation_store": "memory"}}
        for s in (0.3, 0.5)
    ]
    assert run_sweep(write_spec(tmp_path, named, "named.yaml"), tmp_path / "run").executed["cell"] == 0
    assert {c["attrs"]["setting"] for c in build_report(tmp_path / "run")["cells"]} == {"w30", "w50"}
    assert not list((tmp_path / "run").rglob("model.safetensors"))  # no weights kept by default
    dense = json.loads(next((tmp_path / "run" / "dense").glob("*.json")).read_text())
    # the cell (pruned and evaluated in memory) equals `calibprune prune` on the stored calibration set
    from calibprune.config import PruneConfig, RunnerOptions, SparsityTarget
    from calibprune.jobs.prune import run_prune
    from calibprune.jobs.requests import CalibrationRequest, PerplexityRequest

    cell = next(c for c in cells if c["attrs"]["sparsity"] == 0.6 and c["attrs"]["seed"] == 1)
    config = PruneConfig(
        method="wanda", target=SparsityTarget.unstructured(0.6), runner=RunnerOptions(activation_store="memory")
    )
    request = CalibrationRequest(source=str(tmp_path / "run" / "calib" / cell["calib_key"]))
    ppl = PerplexityRequest([str(text_corpus)], seqlen=32, max_windows=4)
    report = run_prune(str(model_dir), config, request, tmp_path / "direct", ppl=ppl, progress=False)
    key = f"ppl/{text_corpus}"
    assert cell["metrics"][key] == pytest.approx(report["perplexity"]["pruned"][str(text_corpus)]["ppl"], rel=1e-9)
    assert dense["metrics"][key] == pytest.approx(report["perplexity"]["dense"][str(text_corpus)]["ppl"], rel=1e-9)


def _same_size_edit(path: Path, old: str = "the", new: str = "THE") -> None:
    """Rewrite a file with ``old`` replaced by ``new`` (same length) and put its mtime back, as `touch -d` would."""
    assert len(old) == len(new)
    before = path.stat()
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_file_hash_cache_sees_a_same_size_edit_with_mtime_put_back(tmp_path, monkeypatch):
    from calibprune.utils import content

    monkeypatch.setenv("CALIBPRUNE_CACHE", str(tmp_path / "cache"))
    reads = []
    real = content._read_sha256
    monkeypatch.setattr(content, "_read_sha256", lambda path: reads.append(path) or real(path))
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"text": "the notes"}\n')
    first = content.file_sha256(notes)
    assert content.file_sha256(notes) == first and len(reads) == 1  # unchanged: from the cache, not reread
    assert str(notes.resolve()) in json.loads((tmp_path / "cache" / "hashes.json").read_text())
    _same_size_edit(notes)  # size and mtime as before; ctime is now
    assert content.file_sha256(notes) != first and len(reads) == 2


def _jsonl_corpus(path: Path, word: str) -> Path:
    records = [{"id": i, "text": f"{word} {i}: the quick brown fox jumps."} for i in range(150)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_changed_source_content_recomputes_exactly_the_stages_that_read_it(tmp_path, model_dir, text_corpus):
    from calibprune.experiments.store import RunStore
    from calibprune.experiments.sweep import dry_run_table

    a, b = _jsonl_corpus(tmp_path / "a.jsonl", "notes"), _jsonl_corpus(tmp_path / "b.jsonl", "memos")
    spec = tiny_spec(model_dir, text_corpus)
    spec["calibration"]["strategies"] = [{"name": "a", "source": str(a)}, {"name": "b", "source": str(b)}]
    path = write_spec(tmp_path, spec)
    first = run_sweep(path, tmp_path / "run")
    assert first.executed == {"pool": 0, "calib": 4, "dense": 1, "cell": 8, "analysis": 0}
    _same_size_edit(a, "notes", "NOTES")
    dry = run_sweep(path, tmp_path / "run", dry_run=True)
    listing = dry_run_table(dry, RunStore(tmp_path / "run"))
    assert sorted({(label.split(" | ")[1], status) for label, status in listing["cells"]}) == [
        ("a", "pending"), ("b", "done")
    ]  # fmt: skip
    assert listing["estimate"]["to_run"] == {"pool": 0, "calib": 2, "dense": 0, "cell": 4}
    again = run_sweep(path, tmp_path / "run")
    assert again.executed == {"pool": 0, "calib": 2, "dense": 0, "cell": 4, "analysis": 0}
    assert set(again.status.values()) == {"done"} and set(again.plan.cells) - set(first.plan.cells) == {
        k for k, s in dry.status.items() if s == "pending"
    }  # the 4 new keys are a's, b's keys are the first sweep's
    # the windows really are the new text
    calib = next(k for k, s in again.plan.calibs.items() if s.attrs["calib"] == "a")
    windows = (tmp_path / "run" / "calib" / calib / "windows.jsonl").read_text()
    assert "NOTES" in windows and "notes" not in windows
    # the perplexity corpus is read by the dense evaluation and every cell, not by a calibration set
    _same_size_edit(text_corpus)
    third = run_sweep(path, tmp_path / "run")
    assert third.executed == {"pool": 0, "calib": 0, "dense": 1, "cell": 8, "analysis": 0}
    assert run_sweep(path, tmp_path / "run").executed["cell"] == 0


def test_a_bumped_revision_recomputes_exactly_the_cells_that_run_it(tmp_path, model_dir, text_corpus, monkeypatch):
    """Wanda's revision bumped (its output changed): its cells are recomputed, magnitude's are
    reused, as are the calibration sets and the dense evaluation; the old results stay."""
    from calibprune.experiments.store import RunStore
    from calibprune.experiments.sweep import dry_run_table
    from calibprune.pruning.methods import Wanda

    spec = tiny_spec(model_dir, text_corpus)
    spec["pruning"][0] = {"method": ["wanda", "magnitude"], "sparsity": 0.5, "runner": {"activation_store": "memory"}}
    path = write_spec(tmp_path, spec)
    first = run_sweep(path, tmp_path / "run")
    # wanda: a cell per seed; magnitude reads no calibration data, so both seeds are one cell
    assert first.executed == {"pool": 0, "calib": 2, "dense": 1, "cell": 3, "analysis": 0}
    monkeypatch.setattr(Wanda, "revision", Wanda.revision + 1)
    dry = dry_run_table(run_sweep(path, tmp_path / "run", dry_run=True), RunStore(tmp_path / "run"))
    assert sorted({(label.split(" | ")[2], status) for label, status in dry["cells"]}) == [
        ("magnitude 50% unstructured", "done"), ("wanda 50% unstructured", "pending")
    ]  # fmt: skip
    again = run_sweep(path, tmp_path / "run")
    assert again.executed == {"pool": 0, "calib": 0, "dense": 0, "cell": 2, "analysis": 0}
    recomputed = set(again.plan.cells) - set(first.plan.cells)
    assert {again.plan.cells[k].attrs["method"] for k in recomputed} == {"wanda"} and len(recomputed) == 2
    assert {first.plan.cells[k].attrs["method"] for k in set(first.plan.cells) & set(again.plan.cells)} == {"magnitude"}
    assert len(list((tmp_path / "run" / "cells").glob("*.json"))) == 5  # the old wanda cells are kept
    assert run_sweep(path, tmp_path / "run").executed["cell"] == 0


def test_run_folder_keeps_its_spec_unless_the_grid_grows_or_overwrite(tmp_path, model_dir, text_corpus):
    run = tmp_path / "run"
    one = write_spec(tmp_path, tiny_spec(model_dir, text_corpus, seeds=[0]), "one.yaml")
    run_sweep(one, run)
    assert run_sweep(one, run).executed["cell"] == 0 and not list(run.glob("study.*.yaml"))  # same spec: fine
    grown = tiny_spec(model_dir, text_corpus, seeds=[0, 1])  # a new seed: every old stage is still planned
    grown_path = write_spec(tmp_path, grown, "grown.yaml")
    assert run_sweep(grown_path, run).executed["cell"] == 2
    assert (run / "study.yaml").read_text() == grown_path.read_text()
    kept = list(run.glob("study.*.yaml"))
    assert len(kept) == 1 and kept[0].read_text() == one.read_text()
    assert json.loads((run / "sweeps.jsonl").read_text().splitlines()[-1])["replaced_spec"] == kept[0].name
    other = tiny_spec(model_dir, text_corpus, seeds=[0, 1])
    other["pruning"][0]["sparsity"] = [0.3, 0.6]  # drops 50 %: another spec
    other_path = write_spec(tmp_path, other, "other.yaml")
    for dry_run in (True, False):
        with pytest.raises(CalibpruneError) as error:
            run_sweep(other_path, run, dry_run=dry_run)
        assert "holds the results of another study spec" in cli_words(error.value)
        assert "2 of its 7 stages are not in" in cli_words(error.value)
        assert "sweep into another --output, or pass --overwrite" in cli_words(error.value)
    assert (run / "study.yaml").read_text() == grown_path.read_text() and len(list(run.glob("study.*.yaml"))) == 1
    cells = len(list((run / "cells").glob("*.json")))
    assert run_sweep(other_path, run, overwrite=True).executed["cell"] == 2
    assert (run / "study.yaml").read_text() == other_path.read_text() and len(list(run.glob("study.*.yaml"))) == 2
    assert len(list((run / "cells").glob("*.json"))) == cells + 2  # nothing deleted: the 50 % cells stay
    assert run_sweep(grown_path, run, overwrite=True).executed["cell"] == 0  # and are reused
    proc = run_cli("sweep", str(other_path), "--output", str(run), "--dry-run")
    assert proc.returncode == 2 and "--overwrite" in proc.stdout + proc.stderr
    assert run_cli("sweep", str(other_path), "--output", str(run), "--dry-run", "--overwrite").returncode == 0


def test_a_second_sweep_into_a_locked_run_folder_is_refused(tmp_path, model_dir, text_corpus):
    spec = write_spec(tmp_path, tiny_spec(model_dir, text_corpus, seeds=[0]))
    run = tmp_path / "run"
    run.mkdir()
    hold = (
        "import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "f.seek(0); f.truncate(); f.write(str(os.getpid())); f.flush(); print('held', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CalibpruneError) as error:
            run_sweep(spec, run)
        assert cli_words(error.value) == (
            f"another sweep (pid {holder.pid}) is writing into {run}: wait for it or use another --output"
        )
        assert not (run / "cells").exists() and not (run / "study.yaml").exists()  # refused before any write
        assert run_sweep(spec, run, dry_run=True).status  # a dry run only reads: no lock needed
    finally:
        holder.kill()
        holder.wait()
    assert run_sweep(spec, run).executed["cell"] == 2  # the kernel dropped the lock with its holder


def test_keep_models_saves_loadable_pruned_weights(tmp_path, model_dir, text_corpus):
    from transformers import AutoModelForCausalLM

    spec = tiny_spec(model_dir, text_corpus, seeds=[0], keep_models=True)
    spec["pruning"][0]["sparsity"] = 0.5
    result = run_sweep(write_spec(tmp_path, spec), tmp_path / "run")
    (key,) = result.plan.cells
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "models" / key)
    weight = model.model.layers[0].mlp.down_proj.weight  # 64 inputs per row, 32 pruned
    assert int((weight == 0).sum(dim=1).min()) == 32
    assert (
        json.loads((tmp_path / "run" / "models" / key / "prune_report.json").read_text())["config"]["method"] == "wanda"
    )


def test_progress_counts_the_plan_from_the_first_line(tmp_path, model_dir, text_corpus):
    import io

    from calibprune.experiments.progress import Progress

    progress = Progress(stream=io.StringIO())
    progress.start({"cell": 3}, parallelism=1, before={"done": 2, "failed": 1})
    assert progress.line().startswith("cells 2 done / 1 failed / 3 pending")
    progress.update("cell", True, 1.0, "x")
    progress.update("cell", False, 1.0, "y")
    assert progress.line().startswith("cells 3 done / 2 failed / 1 pending")
    assert progress.eta_s() == pytest.approx(1.0)  # timed on this sweep's cells only
    # a sweep over a finished run folder: the plan's counts, as the final summary gives them
    spec = write_spec(tmp_path, tiny_spec(model_dir, text_corpus))
    run_sweep(spec, tmp_path / "run")
    stream = io.StringIO()
    again = run_sweep(spec, tmp_path / "run", progress=Progress(stream=stream))
    first = stream.getvalue().splitlines()[0]
    assert list(again.status.values()).count("done") == 4
    assert first.startswith("[sweep] cells 4 done / 0 failed / 0 pending") and first.endswith("-- start")


def test_progress_eta_charges_each_kind_its_mean_time():
    import io

    from calibprune.experiments.progress import Progress

    progress = Progress(stream=io.StringIO())
    progress.start({"calib": 2, "dense": 0, "cell": 4}, parallelism=1)
    assert progress.eta_s() is None  # nothing measured yet
    progress.update("calib", True, 1.0, "c0")
    # the cells have no time of their own yet: they are charged the mean of all (1 s)
    assert progress.eta_s() == pytest.approx(1.0 + 4 * 1.0)
    progress.update("calib", True, 3.0, "c1")
    progress.update("cell", True, 10.0, "x")
    progress.update("cell", False, 20.0, "y")
    assert progress.eta_s() == pytest.approx(2 * 15.0)
    progress.parallel = 2
    assert progress.eta_s() == pytest.approx(15.0)
    assert "cells 1 done / 1 failed / 2 pending" in progress.line()


def test_failed_cell_is_recorded_and_retried(tmp_path, model_dir, text_corpus):
    spec = tiny_spec(model_dir, text_corpus)
    # detection keeps 5% of 40 paragraphs (2 x ~70 tokens), too few for 4 windows of 100 tokens: no check
    # before the run can know which texts the model keeps, so that strategy's calibration stages fail in
    # the worker, its cells record why, the others go on
    strategy = {"name": "long", "source": str(text_corpus), "seqlen": 100, "strategy": "detect"}
    strategy["detect"] = {"keep_top": 0.05, "num_candidates": 40}
    spec["calibration"]["strategies"].append(strategy)
    path = write_spec(tmp_path, spec)
    result = run_sweep(path, tmp_path / "run")
    assert result.executed["cell"] == 4 and len(result.failed) == 6  # 2 calib stages + their 4 cells
    records = [json.loads(p.read_text()) for p in (tmp_path / "run" / "cells").glob("*.json")]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 4 and all(
        "calib stage failed" in r["error"] and "fewer than nsamples x seqlen" in r["error"] for r in failed
    )
    proc = run_cli("sweep", str(path), "--output", str(tmp_path / "run"))
    assert proc.returncode == 1 and "long | wanda" in proc.stderr and "--retry-failed" in proc.stderr
    again = run_sweep(path, tmp_path / "run", retry_failed=True)
    assert again.executed["cell"] == 0 and again.executed["calib"] == 2  # rebuilt, failed again, cells marked


def test_kill_9_then_resume_recomputes_only_cells_in_flight(tmp_path, model_dir, text_corpus):
    spec = tiny_spec(model_dir, text_corpus, seeds=[0, 1])
    spec["pruning"][0]["sparsity"] = [0.2, 0.3, 0.4]
    path = write_spec(tmp_path, spec)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "calibprune.cli", "sweep", str(path), "--output", str(run)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(list((run / "cells").glob("*.json"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.stem: json.loads(p.read_text()) for p in (run / "cells").glob("*.json")}
    assert 2 <= len(finished) < 6
    assert all(r["status"] == "ok" and r["metrics"] for r in finished.values())  # nothing partial looks finished
    result = run_sweep(path, run)
    assert result.executed["cell"] == 6 - len(finished)
    after = _metrics(run)
    assert len(after) == 6 and all(after[k] == r["metrics"] for k, r in finished.items())
    reference = run_sweep(path, tmp_path / "clean")
    assert reference.executed["cell"] == 6 and _metrics(tmp_path / "clean") == after


def test_local_workers_and_ray_give_the_same_metrics(tmp_path, model_dir, text_corpus):
    spec = write_spec(tmp_path, tiny_spec(model_dir, text_corpus))
    run_sweep(spec, tmp_path / "local")
    run_sweep(spec, tmp_path / "workers", workers=2)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        result = run_sweep(spec, tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()
    assert result.executed["cell"] == 4
    local = _metrics(tmp_path / "local")
    assert len(local) == 4
    for other in ("workers", "ray"):
        theirs = _metrics(tmp_path / other)
        assert theirs.keys() == local.keys()
        for key, metrics in local.items():
            assert theirs[key] == pytest.approx(metrics, rel=1e-6)


# --- 5. aggregation and report on fixed fake cell files ----------------------------------

# ppl/x of two strategies over three seeds at two settings (hand-chosen numbers)
FAKE = {
    ("wanda 50% unstructured", 0.5, "unstructured"): {"a": [10.0, 12.0, 14.0], "b": [11.0, 14.0, 16.0]},
    ("wanda 2:4", 0.5, "2:4"): {"a": [20.0, 22.0, 27.0], "b": [30.0, 31.0, 35.0]},
}


def fake_run(tmp_path) -> Path:
    from calibprune.experiments.store import RunStore
    from calibprune.utils.io import write_json

    store = RunStore(tmp_path / "fake")
    n = 0
    for (setting, sparsity, pattern), per in FAKE.items():
        for calib, values in per.items():
            for seed, value in enumerate(values):
                attrs = {"model": "m", "calib": calib, "source": calib, "strategy": "sample", "nsamples": 8,
                         "seqlen": 16, "setting": setting, "method": "wanda", "allocation": "uniform",
                         "refine": "none", "sparsity": sparsity, "pattern": pattern, "seed": seed}  # fmt: skip
                store.write_cell(f"k{n}", {"status": "ok", "attrs": attrs, "metrics": {"ppl/x": value}})
                n += 1
    store.write_cell("bad", {"status": "failed", "attrs": {}, "error": "boom"})
    meta = {"study": "fake", "claims": ["C1", "C3"], "seeds": [0, 1, 2],
            "report": {"baseline": "b", "claims": {"C3": {"better": "a", "worse": ["b"]}}}}  # fmt: skip
    write_json(store.root / "study.json", meta)
    return store.root


def test_aggregates_are_the_hand_computed_ones(tmp_path):
    from calibprune.experiments.store import RunStore

    rows = rows_of(RunStore(fake_run(tmp_path)).cells())
    assert len(rows) == 12  # the failed cell contributes nothing
    summary = {(r["setting"], r["calib"]): r for r in summarize(rows)}
    a50 = summary[("wanda 50% unstructured", "a")]
    assert (a50["mean"], a50["std"], a50["n"]) == (12.0, 2.0, 3)  # (10+12+14)/3; sqrt((4+0+4)/2)
    b24 = summary[("wanda 2:4", "b")]
    assert b24["mean"] == 32.0 and b24["std"] == pytest.approx(math.sqrt((4 + 1 + 9) / 2))
    spread = {r["setting"]: r for r in ranges(summarize(rows))}
    assert spread["wanda 50% unstructured"]["range"] == pytest.approx(41.0 / 3.0 - 12.0)
    assert spread["wanda 2:4"]["range"] == pytest.approx(32.0 - 23.0)
    assert spread["wanda 2:4"]["argmax"] == "b"
    d = {r["setting"]: r for r in diffs(rows, "b")}
    # a - b per seed at 50%: -1, -2, -2 -> mean -5/3, std sqrt(1/3), half width t(0.975, 2) * sqrt(1/3) / sqrt(3)
    half = 4.302652729911275 * math.sqrt(1 / 3) / math.sqrt(3)
    assert d["wanda 50% unstructured"]["mean"] == pytest.approx(-5 / 3)
    assert d["wanda 50% unstructured"]["std"] == pytest.approx(math.sqrt(1 / 3))
    assert d["wanda 50% unstructured"]["ci_low"] == pytest.approx(-5 / 3 - half)
    assert d["wanda 50% unstructured"]["ci_high"] == pytest.approx(-5 / 3 + half)
    # at 2:4: -10, -9, -8 -> mean -9, std 1
    assert d["wanda 2:4"]["mean"] == pytest.approx(-9.0) and d["wanda 2:4"]["n"] == 3


def test_report_writes_tables_plots_and_verdicts(tmp_path):
    from calibprune.experiments.report import write_report

    data = write_report(fake_run(tmp_path), tmp_path / "report")
    out = tmp_path / "report"
    with open(out / "diffs.csv") as f:
        header = f.readline().strip().split(",")
    assert {"mean", "ci_low", "ci_high", "n", "baseline"} <= set(header)
    assert (out / "range_vs_setting.png").stat().st_size > 1000
    verdicts = {c["claim"]: c for c in data["claims"]}
    # lower ppl is better: a beats b at both settings (means 5/3 and 9), but a and b are other
    # sources, their seeds unpaired: Welch. At 2:4, a = 20, 22, 27 (mean 23, var 13) and b = 30,
    # 31, 35 (mean 32, var 7): se = sqrt(13/3 + 7/3), df = (20/3)^2 / ((13/3)^2/2 + (7/3)^2/2).
    # At 50 % Welch's interval includes 0, so Holm over the 2 effects rejects neither way.
    c3 = verdicts["C3"]
    assert [e["mean"] for e in c3["effects"]] == pytest.approx([5 / 3, 9.0])
    se, df = math.sqrt(20 / 3), (20 / 3) ** 2 / ((13 / 3) ** 2 / 2 + (7 / 3) ** 2 / 2)
    half = scipy.stats.t.ppf(0.975, df) * se
    assert (c3["effects"][1]["ci_low"], c3["effects"][1]["ci_high"]) == pytest.approx((9 - half, 9 + half))
    assert c3["effects"][1]["p_above"] == pytest.approx(scipy.stats.t.sf(9 / se, df))
    assert c3["effects"][0]["ci_low"] < 0 < c3["effects"][0]["ci_high"]
    assert c3["verdict"] == "inconclusive" and "Holm over 2 effects" in c3["reason"]
    # C1: no second unstructured sparsity, and only two of the three patterns -> no effect formed
    assert (
        verdicts["C1"]["verdict"] == "inconclusive"
        and "studies/paper/sparsity-pattern.yaml" in verdicts["C1"]["reason"]
    )
    assert [c["claim"] for c in data["claims"] if c["addressed"]] == ["C1", "C3"]  # what study.json claims
    assert verdicts["C8"]["verdict"] == "inconclusive" and not verdicts["C8"]["addressed"]
    text = (out / "report.md").read_text()
    assert "### C3:" in text and "**Verdict: inconclusive**" in text and "![range_vs_setting.png]" in text
    # only the claims the study addresses: no section, table row or printed line for the six others
    assert re.findall(r"^### (C\d):", text, re.M) == ["C1", "C3"] and "does not address" not in text
    with open(out / "claims.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["C1", "C3"]
    proc = run_cli("report", str(tmp_path / "fake"), "--output", str(tmp_path / "report2"))
    assert proc.returncode == 0 and "C3: inconclusive" in proc.stdout
    assert re.findall(r"^(C\d):", proc.stdout, re.M) == ["C1", "C3"]


def test_replication_summary_gathers_the_claims_each_study_addresses(tmp_path):
    import shutil

    from calibprune.experiments.report import write_reports

    first = fake_run(tmp_path)  # addresses C1 and C3
    second = tmp_path / "other"
    shutil.copytree(first, second)
    meta = json.loads((second / "study.json").read_text())
    (second / "study.json").write_text(json.dumps(meta | {"study": "other", "claims": ["C3"]}))
    summary = tmp_path / "docs" / "replication.md"
    with pytest.raises(CalibpruneError, match="appear twice"):
        write_reports([first, first], tmp_path / "out", summary)
    with pytest.raises(CalibpruneError, match="does not exist"):
        write_reports([first, tmp_path / "missing"], tmp_path / "out", summary)
    assert not (tmp_path / "out").exists() and not summary.exists()  # refused before writing anything
    studies = write_reports([first, second], tmp_path / "out", summary)
    assert [s["name"] for s in studies] == ["fake", "other"]
    assert (tmp_path / "out" / "fake" / "report.md").exists() and (tmp_path / "out" / "other" / "claims.csv").exists()
    text = summary.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| C")]
    # C3 from both studies (inconclusive: Welch at 50 %, see above), C1 from the first only, six claims unaddressed
    c3 = [r for r in rows if r.startswith("| C3 ")]
    assert len(c3) == 2 and all("**inconclusive**" in r for r in c3)
    assert "weakest of 2: a - b @ wanda 50% unstructured: 1.667" in c3[0]
    assert len([r for r in rows if r.startswith("| C1 ")]) == 1
    assert sum("no study here addresses it" in r for r in rows) == 6
    # every link is relative to the summary and points at a file that exists
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert len(links) >= 5 and all((summary.parent / link).is_file() for link in links)
    assert "metric_by_source.png" in text  # C3's figure: the metric per source and setting
    proc = run_cli("report", str(first), str(second), "--output", str(tmp_path / "out2"), "--summary", str(summary))
    assert proc.returncode == 2 and "already exists: choose another --summary or pass --overwrite" in proc.stderr
    proc = run_cli(
        "report", str(first), str(second), "--output", str(tmp_path / "out2"), "--summary", str(summary), "--overwrite"
    )
    assert proc.returncode == 0 and "C3: inconclusive" in proc.stdout and proc.stdout.count("C3:") == 2


def _committed_run(tmp_path, name: str) -> Path:
    """A copy of a committed replication run folder (without its pools: a report reads none)."""
    import shutil

    shutil.copytree(f"docs/replication/runs/{name}", tmp_path / name, ignore=shutil.ignore_patterns("pools"))
    return tmp_path / name


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {
    "truncated": _truncate,
    "not json": lambda path: path.write_text("not json at all"),
    "a list": lambda path: path.write_text("[1, 2]"),
    "deleted": lambda path: path.unlink(),
}
WHAT_IS_WRONG = {
    "truncated": "is not valid JSON (",
    "not json": "is not valid JSON (",
    "a list": "holds a JSON list, not an object",
}


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize(
    "run, where, fix",
    [
        ("amount", "cells/07ec023a67425342.json", "delete it and rerun `{rerun}` to recompute that cell"),
        ("amount", "dense/716320163976b310.json", "delete it and rerun `{rerun}` to recompute that dense evaluation"),
        ("amount", "study.json", "rerun `{rerun}` to rewrite it (finished cells are kept)"),
        ("mink", "analysis/membership-74a64fbcd62129e5/membership.json",
         "delete {run}/analysis/membership-74a64fbcd62129e5 and membership-74a64fbcd62129e5.labels.json, "
         "and rerun `{rerun}` to recompute that analysis"),
        ("mink", "analysis/membership-74a64fbcd62129e5.labels.json", "to recompute that analysis"),
    ],
)  # fmt: skip
def test_a_damaged_run_folder_is_refused_naming_the_file_and_the_fix(tmp_path, run, where, fix, damage):
    from calibprune.experiments.report import build_report

    folder = _committed_run(tmp_path, run)
    build_report(folder)  # intact: reports
    DAMAGES[damage](folder / where)
    rerun = f"calibprune sweep {folder}/study.yaml --output {folder}"
    if damage == "deleted" and where == "study.json":
        assert build_report(folder)["meta"] == {}  # an older run folder without one: every cell is reported
        return
    with pytest.raises(CalibpruneError) as error:
        build_report(folder)
    message = cli_words(error.value)
    if damage != "deleted":
        assert message.startswith(f"{folder / where} {WHAT_IS_WRONG[damage]}") and "it is damaged" in message
        assert fix.format(rerun=rerun, run=folder) in message
    elif where.startswith("analysis"):
        assert message.startswith(f"{folder / where} is missing: ") and fix.format(rerun=rerun, run=folder) in message
    else:  # a cell or dense evaluation study.json lists
        kind = "1 of its 45 cells (e.g. cells/" if where.startswith("cells") else "1 dense evaluation(s) (e.g. dense/"
        assert f"{kind}{Path(where).name})" in message and f"run `{rerun}` to compute them" in message
        assert "or pass --partial" in message
        data = build_report(folder, partial=True)
        assert data["missing"] and len(data["cells"]) == (44 if where.startswith("cells") else 45)


def test_report_of_a_damaged_run_is_one_line_with_the_fix_and_writes_nothing(tmp_path):
    folder = _committed_run(tmp_path, "amount")
    cell = folder / "cells" / "07ec023a67425342.json"
    _truncate(cell)
    proc = run_cli("report", str(folder), "--output", str(tmp_path / "report"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(f"error: {cell} is not valid JSON") and "to recompute that cell" in lines[0]
    assert not (tmp_path / "report").exists()
    cell.unlink()
    proc = run_cli("report", str(folder), "--output", str(tmp_path / "report"), "--partial")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "**Partial report** (--partial): missing 1 of its 45 cells (e.g. cells/07ec023a67425342.json)." in text
    assert "Cells: 44 ok, 0 failed." in text


def test_plots_order_settings_by_sparsity_and_draw_the_dense_model(tmp_path, monkeypatch):
    from calibprune.experiments import plots

    labels = {"2:4": (0.5, "2:4"), "30 %": (0.3, "unstructured"), "4:8": (0.5, "4:8"), "50 %": (0.5, "unstructured"),
              "60 %": (0.6, "unstructured"), "1:4": (0.25, "1:4")}  # fmt: skip
    rows = [{"setting": k, "sparsity": v[0], "pattern": v[1]} for k, v in labels.items()]
    assert [r["setting"] for r in sorted(rows, key=plots.setting_key)] == ["30 %", "50 %", "60 %", "1:4", "4:8", "2:4"]
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    summary = [{"model": "m", "method": "wanda", "nsamples": 8, "metric": "ppl/x", "calib": c, "mean": 10.0 + i,
                "std": 1.0, **r} for r in rows for i, c in enumerate(("a", "b"))]  # fmt: skip
    assert plots.metric_bars(summary, "ppl/x", tmp_path / "bars.png", {"m": 7.5})
    ax = figures[-1].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["30 %", "50 %", "60 %", "1:4", "4:8", "2:4"]
    dense = [line for line in ax.get_lines() if line.get_label() == "dense"]
    assert len(dense) == 1 and list(dense[0].get_ydata()) == [7.5, 7.5] and dense[0].get_linestyle() == "--"
    unstructured = [r for r in summary if r["pattern"] == "unstructured"]
    assert plots.metric_vs(unstructured, "ppl/x", "sparsity", tmp_path / "vs.png", "t", dense={"m": 7.5})
    assert [line.get_label() for line in figures[-1].axes[0].get_lines()].count("dense") == 1
    plots.metric_bars(summary, "ppl/x", tmp_path / "bars.png", {"other": 1.0})  # no dense value for this model
    assert not [line for line in figures[-1].axes[0].get_lines() if line.get_label() == "dense"]
    long = "ppl/wiki-en per calibration source (mean ± std over seeds) and a much longer tail than fits"
    assert all(len(line) <= 54 for line in plots._fit(long, 5).splitlines())  # a 5-inch figure's title wraps


# --- 6. shipped studies --------------------------------------------------------------------


def test_shipped_studies_cover_every_experiment_at_both_scales():
    rows = shipped_studies()
    by_scale = {scale: {r["spec"].split("/")[-1] for r in rows if r["scale"] == scale} for scale in ("paper", "small")}
    experiments = {"sparsity-pattern.yaml", "amount.yaml", "sources.yaml", "table2-main.yaml", "settings.yaml",
                   "prefix.yaml", "filter.yaml", "mink.yaml"}  # fmt: skip
    assert experiments <= by_scale["paper"] and experiments <= by_scale["small"]
    claims = {c for r in rows if r["scale"] == "small" for c in r["claims"].split(",")}
    assert claims == {f"C{i}" for i in range(1, 9)}
    assert all(r["seeds"] >= 5 for r in rows if r["scale"] == "small")
    assert all(r["seeds"] == 20 for r in rows if r["scale"] == "paper")


def test_studies_listing_says_what_each_claim_means():
    from calibprune.experiments.claims import claims

    TEXT = {c.id: c.text for c in claims()}
    rows = {r["spec"]: r for r in shipped_studies()}
    assert rows["studies/small/filter.yaml"]["claim_texts"] == {"C7": TEXT["C7"]}
    proc = run_cli("studies")
    assert proc.returncode == 0, proc.stderr
    listed = [line.strip() for line in proc.stdout.splitlines()]
    for claim in [f"C{i}" for i in range(1, 9)]:  # every claim the shipped specs test, once, with its meaning
        assert listed.count(f"{claim}: {TEXT[claim]}") == 1, claim
    assert "C7: dropping the 10-20 % most perplexing texts helps; more filtering helps less" in listed


def test_dry_run_lists_cells_and_cost_without_running(tmp_path):
    proc = run_cli("sweep", "studies/small/settings.yaml", "--output", str(tmp_path / "run"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "pending" in proc.stdout and "estimated" in proc.stdout
    assert not (tmp_path / "run").exists()


def test_summary_shows_the_effect_the_verdict_hinges_on():
    from calibprune.experiments.claims import verdict
    from calibprune.experiments.report import deciding_effect

    def e(what, low, high):  # an effect with a normal 95% interval and its one-sided p-values
        mean, se = (low + high) / 2, (high - low) / (2 * 1.959964)
        p_above = scipy.stats.norm.sf(mean / se)
        return {"what": what, "mean": mean, "ci_low": low, "ci_high": high, "p_above": p_above, "p_below": 1 - p_above}

    # not replicated by the 4:8 interval (below 0), though 2:4's reaches lower
    effects = [e("2:4", -838.0, 296.0), e("4:8", -461.0, -12.0), e("50%", -138.0, 16.0), e("65%", -3.0, -1.0)]
    # Holm over the p_below: 65 % (4e-5 <= 2.5 % / 4) is rejected, 4:8 (0.019 > 2.5 % / 3) is not
    assert verdict(effects) == ("not replicated", "Holm over 4 effects at 2.5 %: 1 below 0 (the opposite of the claim)")
    # the summary names what Holm rejected (65 %), not every interval below 0
    assert deciding_effect(effects) == ("against the claim (Holm), 1 of 4", effects[3])
    # without 65 %, 4:8's interval below 0 is not enough: 0.019 > 2.5 % / 3
    assert verdict([effects[0], effects[1], effects[2]])[0] == "inconclusive"
    assert deciding_effect(effects[:3]) == ("below 0 before Holm, 1 of 3", effects[1])
    # inconclusive or replicated: the interval that reaches lowest
    effects = [e("a", 1.0, 3.0), e("b", -0.5, 2.0)]
    assert verdict(effects)[0] == "inconclusive" and deciding_effect(effects) == ("weakest of 2", effects[1])
    assert verdict(effects, over="texts")[1].endswith("the texts do not resolve the effect")  # C8's wording
    effects = [e("a", 1.0, 3.0), e("b", 0.5, 2.0)]
    assert verdict(effects)[0] == "replicated" and deciding_effect(effects) == ("weakest of 2", effects[1])
    # both intervals above 0 (p_above 0.024, 0.023), but Holm needs the smaller <= 2.5 % / 2
    assert verdict([e("a", 0.01, 2.0), e("b", 0.02, 2.0)])[0] == "inconclusive"
    assert verdict([e("a", 0.01, 2.0)])[0] == "replicated"  # one effect: its 95% interval above 0
    assert deciding_effect([]) == ("", None)


def test_claim_verdicts_from_hand_made_rows():
    from calibprune.experiments.claims import evaluate_claims

    rows = []
    # C7: filtering 20 % lowers ppl by 2 on every seed vs none (interval above 0 after orientation);
    # 40 % is between them. C6 is not claimed by this study -> inconclusive.
    for seed, base in enumerate([30.0, 31.0, 33.0]):
        for filter_top, value in ((0.0, base), (0.2, base - 2.0), (0.4, base - 1.0 + 0.1 * seed)):
            attrs = {"model": "m", "calib": "syn", "source": "w", "strategy": "synthetic", "prefix_tokens": 1,
                     "filter_top": filter_top, "setting": "wanda 60%", "seed": seed}  # fmt: skip
            rows.append({**attrs, "metric": "ppl/x", "value": value})
    meta = {"claims": ["C7"], "seeds": [0, 1, 2], "report": {"primary_metric": "ppl/x"}}
    verdicts = {c["claim"]: c for c in evaluate_claims(meta, rows, None)}
    c7 = verdicts["C7"]
    assert [e["what"] for e in c7["effects"]] == ["filter 20% - no filter", "filter 20% - filter 40%"]
    assert c7["effects"][0]["mean"] == pytest.approx(2.0) and c7["effects"][0]["ci_low"] == pytest.approx(2.0)
    # 40 % vs 20 %: differences 1.0, 1.1, 1.2 -> mean 1.1 > 0 with a tight interval -> replicated
    assert c7["effects"][1]["mean"] == pytest.approx(1.1)
    assert c7["verdict"] == "replicated"
    assert verdicts["C6"]["verdict"] == "inconclusive"
    # the same data read as accuracy (higher is better) contradicts the claim
    flipped = [{**r, "metric": "acc/x"} for r in rows]
    meta["report"]["primary_metric"] = "acc/x"
    assert {c["claim"]: c for c in evaluate_claims(meta, flipped, None)}["C7"]["verdict"] == "not replicated"


def test_shared_pool_analysis_steps_and_membership_verdict(tmp_path, model_dir, text_corpus):
    from calibprune.calibration import CalibrationSet
    from calibprune.experiments.report import write_report

    generation = {"num_texts": 8, "max_new_tokens": 24, "batch_size": 8, "filter_top": 0.25, "temperature": 0.6}
    spec = tiny_spec(model_dir, text_corpus, claims=["C8"], pruning=[], evaluation={})
    spec["calibration"]["strategies"].append(
        {"name": "syn", "source": str(text_corpus), "strategy": "synthetic", "pool": "shared", "generation": generation}
    )
    spec["analysis"] = [
        {"kind": "similarity", "reference": str(text_corpus), "max_texts": 50},
        {"kind": "membership", "max_texts": 8, "max_tokens": 16},
    ]
    spec["report"] = {"claims": {"C8": {"strategy": "syn"}}}
    result = run_sweep(write_spec(tmp_path, spec), tmp_path / "run")
    # one generated pool per seed (its own generation run); 2 seeds x 2 strategies of windows; 2 analysis steps
    assert result.executed == {"pool": 2, "calib": 4, "dense": 0, "cell": 0, "analysis": 2}
    syn = [
        CalibrationSet.load(tmp_path / "run" / "calib" / k) for k in result.plan.sets[(str(model_dir), "syn")].values()
    ]
    # the two seeds' sets share no generated text: each seed generated its own pool
    generated = [{t["text"] for t in s.texts} for s in syn]
    assert len(generated[0]) == len(syn[0].texts) == 8 and generated[0].isdisjoint(generated[1])
    assert syn[0].manifest["strategy"] == "synthetic"
    assert [s.manifest["pool_seed"] for s in syn] == [0, 1] and [s.manifest["seed"] for s in syn] == [0, 1]
    again = run_sweep(write_spec(tmp_path, spec), tmp_path / "run")
    assert again.executed == {"pool": 0, "calib": 0, "dense": 0, "cell": 0, "analysis": 0}
    data = write_report(tmp_path / "run", tmp_path / "report")
    assert set(data["membership"]) == {"a", "syn"} and len(data["membership"]["a"]) == 4  # 4 windows of seed 0
    c8 = {c["claim"]: c for c in data["claims"]}["C8"]
    assert [e["what"] for e in c8["effects"]] == ["syn - a (mean Min-K%++)"]
    assert c8["seeds"] == 1 and c8["effects"][0]["n"] == 4  # one seed's set, its 4 windows: not 2 seeds
    assert c8["effects"][0]["ci_low"] < c8["effects"][0]["mean"] < c8["effects"][0]["ci_high"]
    assert (tmp_path / "report" / "mink_distributions.png").exists() and (
        tmp_path / "report" / "similarity.png"
    ).exists()


def test_filter_arms_filter_one_pool_per_seed(tmp_path, model_dir, text_corpus):
    """Arms differing only in filter_top share seed s's generated pool (generated once, for the
    highest rate), each keeping its own share of the same texts; seeds share no text."""
    from calibprune.calibration import CalibrationSet

    generation = {"num_texts": 8, "max_new_tokens": 24, "batch_size": 8, "filter_top": [0.0, 0.25]}
    pruning = [{"method": "wanda", "sparsity": 0.5, "runner": {"activation_store": "memory"}}]
    spec = tiny_spec(model_dir, text_corpus, claims=["C7"], pruning=pruning)
    spec["calibration"]["strategies"] = [
        {"name": "syn", "source": str(text_corpus), "strategy": "synthetic", "pool": "shared", "generation": generation}
    ]
    result = run_sweep(write_spec(tmp_path, spec), tmp_path / "run")
    assert result.executed["pool"] == 2 and result.executed["calib"] == 4  # a pool per seed; 2 arms x 2 seeds
    sets: dict = {}
    for key, stage in result.plan.calibs.items():
        calib = CalibrationSet.load(tmp_path / "run" / "calib" / key)
        sets[(stage.attrs["seed"], calib.manifest["parameters"]["filter_top"])] = calib
    for seed in (0, 1):
        none, quarter = sets[(seed, 0.0)], sets[(seed, 0.25)]
        assert [t["text"] for t in none.texts] == [t["text"] for t in quarter.texts]  # the same 8 generated texts
        assert sum(t["keep"] for t in none.texts) == 8 and sum(t["keep"] for t in quarter.texts) == 6
        assert none.manifest["filter"]["kept"] == 8 and quarter.manifest["filter"]["dropped"] == 2
        assert none.manifest["pool_filter_top"] == quarter.manifest["pool_filter_top"] == 0.25
        assert none.manifest["pool_seed"] == seed
        assert none.manifest["pool_fingerprint"] == quarter.manifest["pool_fingerprint"]
    assert {t["text"] for t in sets[(0, 0.0)].texts}.isdisjoint(t["text"] for t in sets[(1, 0.0)].texts)


def test_c1_spread_grows_with_sparsity_and_structure():
    from calibprune.experiments.claims import evaluate_claims

    # source b is worse than a by a gap that grows: 30 % 1, 50 % 2, 60 % 4; 4:8 3; 2:4 5 (+ small seed noise)
    gaps = {("u30", 0.3, "unstructured"): 1.0, ("u50", 0.5, "unstructured"): 2.0, ("u60", 0.6, "unstructured"): 4.0,
            ("48", 0.5, "4:8"): 3.0, ("24", 0.5, "2:4"): 5.0}  # fmt: skip
    rows = []
    for (setting, sparsity, pattern), gap in gaps.items():
        for seed in range(5):
            common = {"model": "m", "setting": setting, "sparsity": sparsity, "pattern": pattern, "seed": seed}
            rows.append({**common, "calib": "a", "metric": "ppl/x", "value": 20.0 + 0.1 * seed})
            rows.append({**common, "calib": "b", "metric": "ppl/x", "value": 20.0 + gap + 0.05 * (seed % 2)})
    meta = {"claims": ["C1"], "seeds": list(range(5)), "report": {"primary_metric": "ppl/x"}}
    c1 = {c["claim"]: c for c in evaluate_claims(meta, rows, None)}["C1"]
    assert [e["what"] for e in c1["effects"]] == [
        "spread at 60% - spread at 30% (unstructured)",
        "spread at 4:8 - spread at 50% unstructured",
        "spread at 2:4 - spread at 4:8",
    ]

    def tau2(gap):  # by hand: between-source variance of the log seed means minus mean s^2 / n
        a = [math.log(20.0 + 0.1 * s) for s in range(5)]
        b = [math.log(20.0 + gap + 0.05 * (s % 2)) for s in range(5)]
        means = [sum(a) / 5, sum(b) / 5]
        noise = [statistics.variance(a) / 5, statistics.variance(b) / 5]
        return statistics.variance(means) - statistics.fmean(noise)

    expected = [tau2(4.0) - tau2(1.0), tau2(3.0) - tau2(2.0), tau2(5.0) - tau2(3.0)]
    assert [e["mean"] for e in c1["effects"]] == pytest.approx(expected)
    assert all(e["n"] == 5 and e["sources"] == 2 for e in c1["effects"])  # 5 seeds per source, 2 sources
    assert all(e["ci_low"] > 0 and e["p_above"] < 0.025 / 3 for e in c1["effects"])
    assert c1["verdict"] == "replicated"


def test_a_new_claim_is_one_registered_class_and_reaches_every_report(tmp_path):
    """A toy claim C99, registered here only: the spec accepts it and checks its parameters,
    and the study report, claims.csv and the replication summary give it its section."""
    from calibprune.experiments.claims import CLAIMS, Claim, Evidence, Param, evaluate_claims, register
    from calibprune.experiments.report import write_reports

    @register
    class Toy(Claim):
        """Strategy ``better`` minus every other one, as a constant effect of 1 [0.5, 1.5], p 0.001."""

        id = "C99"
        text = "a toy claim that always holds"
        paper_spec = "studies/paper/toy.yaml"
        figure = "range_vs_setting.png"
        params = {"better": Param("the strategy that wins")}
        needs_strategies = True

        def effects(self, ev: Evidence, params: dict) -> list[dict]:
            others = sorted({dict(key)["calib"] for key in ev.cells} - {params["better"]})
            return [{"what": f"{params['better']} - {o}", "mean": 1.0, "ci_low": 0.5, "ci_high": 1.5, "n": 3,
                     "p_above": 0.001, "p_below": 0.999} for o in others]  # fmt: skip

    try:
        run = fake_run(tmp_path)
        meta = json.loads((run / "study.json").read_text())
        meta["claims"].append("C99")
        meta["report"]["claims"]["C99"] = {"better": "a"}
        (run / "study.json").write_text(json.dumps(meta))
        summary = tmp_path / "replication.md"
        (data,) = write_reports([run], tmp_path / "out", summary)
        toy = {c["claim"]: c for c in data["claims"]}["C99"]
        assert toy["verdict"] == "replicated" and [e["what"] for e in toy["effects"]] == ["a - b"]
        text = (tmp_path / "out" / "fake" / "report.md").read_text()
        assert re.findall(r"^### (C\d+):", text, re.M) == ["C1", "C3", "C99"]
        assert "### C99: a toy claim that always holds" in text
        with open(tmp_path / "out" / "fake" / "claims.csv") as f:
            assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["C1", "C3", "C99"]
        replication = summary.read_text()
        assert "## C99: a toy claim that always holds" in replication
        assert "| C99 | **replicated** | [fake]" in replication
        # without strategies named it is inconclusive, naming its paper-scale spec
        del meta["report"]["claims"]["C99"]
        toy = {c["claim"]: c for c in evaluate_claims(meta, rows_of(data["cells"]), None)}["C99"]
        assert toy["reason"] == (
            "report.claims.C99 names no strategies to compare; would be tested at paper scale by "
            "`calibprune sweep studies/paper/toy.yaml`"
        )
    finally:
        CLAIMS.unregister("C99")
    assert "C99" not in CLAIMS


@pytest.mark.parametrize(
    "change, message",
    [
        ({"claims": ["C4", "C9"]}, "claims[1]: 'C9' is not a claim: use one of C1, C2"),
        ({"report": {"claims": {"C9": {}}}}, "report.claims.C9: unknown key"),
        ({"report": {"claims": {"C4": {"strategy": "a", "colour": 1}}}}, "report.claims.C4.colour: unknown key"),
        ({"report": {"claims": {"C4": {"strategy": ["a"]}}}}, "report.claims.C4.strategy: expected one strategy"),
        ({"report": {"claims": {"C4": {"over": ["a", 2]}}}}, "report.claims.C4.over: expected a strategy label or"),
        ({"report": {"claims": {"C3": {"worse": ["a", "b"]}}}}, "report.claims.C3.worse: 'b' is not a strategy"),
        ({"report": {"claims": {"C8": "a"}}}, "report.claims.C8: expected a mapping with keys among strategy"),
        ({"report": {"claims": {"C1": {"better": "a"}}}}, "report.claims.C1: C1 reads no parameters"),
    ],
)
def test_spec_checks_each_claims_declared_parameters(model_dir, text_corpus, change, message):
    with pytest.raises(CalibpruneError) as error:
        parse_study(tiny_spec(model_dir, text_corpus, **change))
    assert message in str(error.value)
    parse_study(tiny_spec(model_dir, text_corpus, report={"claims": {"C4": {"strategy": "a", "over": "a"}}}))
