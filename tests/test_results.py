"""The typed results (calibprune.results): to_json gives today's layout, from_json reads it
and older files, and the jobs, studies, reports and CLI read the typed objects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from calibprune.errors import CalibpruneError
from calibprune.results import (
    CellResult,
    CorpusPerplexity,
    DenseResult,
    EvalResult,
    PerplexityResult,
    PruneReport,
    StageOutcome,
    StageRecord,
)

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "replication" / "runs"

CONCAT = {
    "protocol": "concat-windows",
    "corpus": "wiki-en",
    "split": "heldout",
    "seqlen": 512,
    "windows": 8,
    "tokens_scored": 4088,
    "nll": 2.5,
    "ppl": 12.182493960703473,
}
PER_EXAMPLE = {
    "protocol": "per-example",
    "corpus": "jargon",
    "split": "heldout",
    "seqlen": 256,
    "examples": 3,
    "tokens_scored": 600,
    "ppl": 40.0,
    "ppl_median": 38.5,
    "special_tokens": {"bos": True, "eos": False},
}
TASKS = {
    "limit": 2,
    "seed": 0,
    "tasks": {"boolq": {"n": 2, "acc": 0.5, "acc_norm": None}, "piqa": {"n": 2, "acc": 1.0, "acc_norm": 0.5}},
    "average": {"acc": 0.75},
}
ENGINE = {
    "layers": {"model.layers.0.mlp.up_proj": {"pruned": 128, "total": 256, "sparsity": 0.5}},
    "allocation": {"method": "uniform"},
    "summary": {"layers_pruned": 1, "sparsity_pruned_layers": 0.5},
    "batching": {"batch_size": 4},
    "activations": None,
}


def job_report(perplexity) -> dict:
    """A ``prune_report.json`` as ``calibprune prune`` writes it, key for key, in order."""
    return {
        "command": "prune",
        "argv": ["calibprune", "prune"],
        "options": {"model": "tiny"},
        "model": {"source": "tiny", "resolved": "/m", "architecture": "LlamaForCausalLM", "dtype": "float32"},
        "device": {"device": "cpu"},
        "config": {"method": "wanda"},
        "calibration": {"source": "kjv", "seed": 0},
        "seeds": {"calibration": 0},
        **ENGINE,
        "perplexity": perplexity,
        "environment": {"python": "3.11"},
        "tasks": TASKS,
        "stages": {"prune": {"wall_s": 1.0}},
        "wall_s": 2.5,
    }


def committed(kind: str) -> list[Path]:
    return sorted(RUNS.glob(f"*/{kind}/*.json"))


def test_every_committed_cell_and_dense_evaluation_round_trips_key_for_key():
    files = committed("cells") + committed("dense")
    assert len(committed("cells")) >= 400 and committed("dense")
    for path in files:
        data = json.loads(path.read_text())
        record = StageRecord.from_json(data)
        assert record.to_json() == data and list(record.to_json()) == list(data), path
        assert record.ok and record.metrics and record.attrs["model"]
        assert dict(record) == data  # the mapping view reads the same JSON


def test_every_committed_run_folder_is_read_as_typed_records():
    from calibprune.experiments.store import RunStore

    for run in sorted(p for p in RUNS.iterdir() if (p / "cells").is_dir()):
        cells = RunStore(run).cells()
        assert len(cells) == len(list((run / "cells").glob("*.json")))
        assert all(isinstance(c, StageRecord) and c.ok and c.key and c.metrics for c in cells)
        assert all(isinstance(d, StageRecord) and d.ok for d in RunStore(run).denses())


@pytest.mark.parametrize("record", [CONCAT, PER_EXAMPLE], ids=["concat-windows", "per-example"])
def test_a_corpus_perplexity_round_trips_with_its_protocol_fields(record):
    score = CorpusPerplexity.from_json(record)
    assert score.to_json() == record and list(score.to_json()) == list(record)
    assert score.ppl == record["ppl"] and score.protocol == record["protocol"]
    assert ("windows" in score) == (record["protocol"] == "concat-windows")  # a protocol's keys only


def test_the_prune_report_of_the_cli_round_trips_with_typed_perplexity():
    data = job_report({"dense": {"wiki-en": CONCAT}, "pruned": {"wiki-en": CONCAT | {"ppl": 20.0}}})
    report = PruneReport.from_json(data)
    assert report.to_json() == data and list(report.to_json()) == list(data)
    assert isinstance(report.perplexity, PerplexityResult)
    assert report.perplexity.dense["wiki-en"].ppl == CONCAT["ppl"] and report.perplexity.pruned["wiki-en"].ppl == 20.0
    assert list(report.perplexity.columns()) == ["dense", "pruned"]
    assert report.metrics("pruned") == {
        "ppl/wiki-en": 20.0,
        "acc/boolq": 0.5,
        "acc/piqa": 1.0,
        "acc_norm/piqa": 0.5,
        "acc/average": 0.75,
    }
    assert report.metrics("dense") == {"ppl/wiki-en": CONCAT["ppl"]}  # the tasks are the pruned model's
    with pytest.raises(CalibpruneError, match="use dense or pruned"):
        report.metrics("wiki-en")  # no guessing between the shapes
    assert json.loads(json.dumps(report.to_json())) == data


def test_a_study_prune_report_without_the_dense_perplexity_keeps_that_layout():
    data = job_report({"pruned": {"jargon": PER_EXAMPLE}}) | {"perplexity": {"pruned": {"jargon": PER_EXAMPLE}}}
    report = PruneReport.from_json(data)
    assert report.perplexity.dense is None and "dense" not in report.to_json()["perplexity"]
    assert report.to_json() == data and list(report.perplexity.columns()) == ["pruned"]
    assert report.metrics("dense") == {}


def test_a_prune_report_without_perplexity_and_the_api_report_keep_their_layouts():
    no_ppl = job_report(None)
    assert PruneReport.from_json(no_ppl).to_json() == no_ppl  # "perplexity": null stays
    api = PruneReport.from_json(ENGINE)  # calibprune.prune: the engine's part only
    assert api.to_json() == ENGINE and list(api) == list(ENGINE) and api.perplexity is None
    assert api.metrics() == {}


def test_an_older_prune_report_is_read_and_written_back_as_it_was():
    """Before argv/options, device, tasks and the stages were recorded; and a key no type knows."""
    old = {
        k: v for k, v in job_report({"dense": {"wiki-en": CONCAT}}).items() if k not in ("argv", "options", "device")
    }
    old = {k: v for k, v in old.items() if k not in ("tasks", "stages", "wall_s")} | {"legacy_note": "kept"}
    report = PruneReport.from_json(old)
    assert report.argv is None and report.tasks is None and report.extra == {"legacy_note": "kept"}
    assert report.to_json() == old and list(report.to_json()) == list(old)
    report.stages = {"prune": {"wall_s": 1.0}}  # a value set now is written
    assert report.to_json()["stages"] == {"prune": {"wall_s": 1.0}}


def test_both_perplexity_shapes_are_read_each_by_its_own_type():
    """The prune report's ``{"dense": {...}, "pruned": {...}}`` and eval's ``{corpus: ...}``."""
    prune_file = job_report({"dense": {"wiki-en": CONCAT}, "pruned": {"wiki-en": CONCAT | {"ppl": 30.0}}})
    eval_file = {
        "command": "eval",
        "argv": None,
        "options": {"model": "tiny"},
        "model": {"source": "tiny", "resolved": "/m"},
        "device": {"device": "cpu"},
        "perplexity": {"wiki-en": CONCAT | {"ppl": 30.0}},
        "stages": {"perplexity": {"wall_s": 1.0}},
        "environment": {"python": "3.11"},
    }
    evaluated = EvalResult.from_json(eval_file)
    assert evaluated.to_json() == eval_file and list(evaluated.to_json()) == list(eval_file)
    assert evaluated.batch_size is None and "tasks" not in evaluated  # absent keys stay absent
    assert isinstance(evaluated.perplexity["wiki-en"], CorpusPerplexity)
    assert evaluated.metrics() == {"ppl/wiki-en": 30.0}
    assert PruneReport.from_json(prune_file).metrics("pruned")["ppl/wiki-en"] == evaluated.metrics()["ppl/wiki-en"]
    # a corpus named like a model is only ever a corpus of the eval file
    named = EvalResult.from_json(eval_file | {"perplexity": {"pruned": CONCAT}})
    assert named.metrics() == {"ppl/pruned": CONCAT["ppl"]}


def test_a_result_lacking_a_required_key_is_refused_by_name():
    with pytest.raises(CalibpruneError, match="PruneReport needs 'layers', 'summary'"):
        PruneReport.from_json({"command": "prune"})
    with pytest.raises(CalibpruneError, match="StageRecord needs 'attrs'"):
        StageRecord.from_json({"status": "ok"})
    with pytest.raises(CalibpruneError, match="is a JSON object, not a list"):
        EvalResult.from_json([1, 2])


def test_a_cell_outcome_is_stored_in_todays_cell_layout():
    committed_cell = json.loads(committed("cells")[0].read_text())
    value = CellResult.from_json({k: committed_cell[k] for k in CellResult.__dataclass_fields__ if k in committed_cell})
    outcome = StageOutcome(ok=True, value=value, wall_s=1.5, host="vm", threads=1, platform={"cpu": {"model": "x"}})
    record = StageRecord.of({"model": "m"}, outcome, calib_key="c", dense_key="d")
    expected = ["status", "attrs", "calib_key", "dense_key", "wall_s", "host", "threads", "platform"]
    expected += ["metrics", "summary", "allocation", "calibration", "stages", "prune_wall_s"]
    assert list(record.to_json()) == expected
    assert [k for k in committed_cell if k not in ("format", "key")] == [k for k in expected if k != "platform"]
    assert record.ok and record.metrics == committed_cell["metrics"]
    dense = StageRecord.of({"model": "m"}, StageOutcome(ok=True, value=DenseResult(metrics={"ppl/x": 2.0})))
    assert list(dense.to_json()) == ["status", "attrs", "wall_s", "host", "threads", "platform", "metrics", "stages"]


def test_a_failed_stage_outcome_round_trips_and_is_stored_with_its_error():
    failed = StageOutcome(ok=False, error="ValueError: boom", traceback="Traceback ...", wall_s=0.25, host="vm")
    again = StageOutcome.from_json(failed.to_json())
    assert again.to_json() == failed.to_json()
    assert (again.ok, again.error, again.traceback, again.value, again.status) == (
        False,
        "ValueError: boom",
        "Traceback ...",
        None,
        "failed",
    )
    record = StageRecord.of({"model": "m"}, again, calib_key="c", dense_key="d").to_json()
    assert record == {
        "status": "failed",
        "attrs": {"model": "m"},
        "calib_key": "c",
        "dense_key": "d",
        "wall_s": 0.25,
        "host": "vm",
        "threads": None,
        "platform": None,
        "error": "ValueError: boom",
        "traceback": "Traceback ...",
    }
    assert StageRecord.from_json(record).to_json() == record and not StageRecord.from_json(record).ok
    # a stage that never ran (its input failed, or its node was lost)
    lost = StageOutcome.failure("calib stage failed: boom")
    assert (lost.ok, lost.wall_s, lost.traceback, lost.host) == (False, 0.0, None, None)


def test_a_failing_stage_returns_a_typed_outcome():
    from calibprune.experiments.stages import execute

    outcome = execute("cell", {"bogus": True}, threads=1)
    assert isinstance(outcome, StageOutcome) and not outcome.ok and outcome.value is None
    assert outcome.error.startswith("KeyError") and "Traceback" in outcome.traceback
    assert outcome.threads == 1 and outcome.platform and outcome["threads"] == 1


def test_no_reader_guesses_the_perplexity_shape_any_more():
    src = ROOT / "src" / "calibprune"
    sources = {p: p.read_text() for p in src.rglob("*.py")}
    assert not [p for p, text in sources.items() if re.search(r"\.get\(which", text)]
    assert not [p for p, text in sources.items() if "metrics_of(" in text]
    stages = (src / "experiments" / "stages.py").read_text()
    assert "CellResult.of_report(report)" in stages and "report.metrics()" in stages


def test_prune_and_eval_return_typed_results_whose_files_load_back(model_dir, text_corpus, tmp_path):
    from calibprune.config import PruneConfig, SparsityTarget
    from calibprune.jobs.evaluate import run_eval
    from calibprune.jobs.prune import REPORT_NAME, run_prune
    from calibprune.jobs.requests import CalibrationRequest, PerplexityRequest

    ppl = PerplexityRequest([str(text_corpus)], seqlen=24, max_windows=3)
    report = run_prune(
        str(model_dir),
        PruneConfig(method="wanda", target=SparsityTarget.unstructured(0.5)),
        CalibrationRequest(str(text_corpus), nsamples=2, seqlen=16),
        tmp_path / "pruned",
        ppl=ppl,
        progress=False,
    )
    assert isinstance(report, PruneReport) and isinstance(report.perplexity, PerplexityResult)
    saved = json.loads((tmp_path / "pruned" / REPORT_NAME).read_text())
    assert saved == json.loads(json.dumps(report.to_json())) and PruneReport.from_json(saved).to_json() == saved
    assert list(saved)[:3] == ["command", "argv", "options"] and list(saved)[-2:] == ["stages", "wall_s"]
    assert "tasks" not in saved and saved["perplexity"].keys() == {"dense", "pruned"}
    name = str(text_corpus)
    assert report.metrics("pruned") == {f"ppl/{name}": saved["perplexity"]["pruned"][name]["ppl"]}
    assert report["perplexity"]["dense"][name]["windows"] == 3  # the mapping view, for readers of the JSON

    evaluated = run_eval(str(tmp_path / "pruned"), ppl, output=tmp_path / "eval.json", progress=False)
    assert isinstance(evaluated, EvalResult) and isinstance(evaluated.perplexity[name], CorpusPerplexity)
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert on_disk == json.loads(json.dumps(evaluated.to_json())) and EvalResult.from_json(on_disk).to_json() == on_disk
    assert "tasks" not in on_disk and "batch_size" not in on_disk
    assert evaluated.metrics()[f"ppl/{name}"] == pytest.approx(report.metrics("pruned")[f"ppl/{name}"], rel=1e-6)
