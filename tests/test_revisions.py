"""Algorithm revisions: the golden fingerprints force a bump when an output moves, and a
bump changes exactly the stage keys of the stages that run the bumped algorithm."""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import fingerprints as F  # noqa: E402

from calibprune.experiments.revisions import BASE_REVISION, algorithms, bumped, closure  # noqa: E402
from calibprune.pruning.methods import METHODS, Wanda  # noqa: E402


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def today():
    """Every fingerprint, computed once for the module (~10 s)."""
    before = torch.get_num_threads()
    try:
        return F.compute()
    finally:
        torch.set_num_threads(before)


# --- the golden file ----------------------------------------------------------------------


def test_every_output_matches_its_recorded_revision(today):
    assert F.problems(F.load_golden(), today) == []


def test_every_algorithm_is_declared_fingerprinted_and_recorded():
    known = algorithms()
    assert set(known) == set(F.FINGERPRINTS) == set(F.load_golden()["algorithms"])
    assert {"method/wanda", "allocation/owl", "refine/dsnot", "calib/synthetic", "ppl/concat-windows"} <= set(known)
    assert known["method/sparsegpt"].file == "src/calibprune/pruning/methods.py"
    assert known["allocation/owl"].file == "src/calibprune/pruning/allocation.py"
    assert known["calib/sample"].file == "src/calibprune/calibration/sampling.py"
    assert closure(["refine/dsnot"]) == {"refine/dsnot", "method/wanda"}
    assert closure(["calib/detect"]) == {"calib/detect", "calib/sample", "scoring"}


def _wanda_squared(self, weight, stats):
    return weight.abs() * stats.col_norm.unsqueeze(0) ** 2  # another activation exponent


def test_a_changed_score_without_a_bump_fails_naming_the_file(monkeypatch, today):
    golden = F.load_golden()
    monkeypatch.setattr(Wanda, "scores", _wanda_squared)
    moved = F.compute(["method/wanda", "method/admm", "refine/dsnot", "method/magnitude"])
    assert moved["method/wanda"] != today["method/wanda"]
    assert moved["method/magnitude"] == today["method/magnitude"]
    problems = F.problems(golden, moved)
    assert (
        "algorithm method/wanda's output changed: bump its revision in src/calibprune/pruning/methods.py and "
        "update tests/golden/revisions.json (run `python tests/golden/update.py`)"
    ) in problems
    # DSnoT orders candidates by Wanda's score: its output moved too, and the message names the way out;
    # ADMM computes |W| ||X|| itself and magnitude reads no score of Wanda's: theirs did not
    assert any(p.startswith("algorithm refine/dsnot's output changed") and "method/wanda" in p for p in problems)
    assert moved["method/admm"] == today["method/admm"] and len(problems) == 2
    # the bump alone is not enough: the golden file must record it
    monkeypatch.setattr(Wanda, "revision", 2)
    problems = F.problems(golden, moved)
    assert problems == [
        "algorithm method/wanda's revision is 2 in src/calibprune/pruning/methods.py but tests/golden/revisions.json "
        "records 1: run `python tests/golden/update.py`"
    ]  # DSnoT's keys include Wanda's revision: nothing more to bump
    updated = copy.deepcopy(golden)
    for name, fingerprint in moved.items():
        updated["algorithms"][name].update(fingerprint=fingerprint, revision=algorithms()[name].revision)
    assert F.problems(updated, moved) == []


def test_a_bump_without_an_output_change_must_be_recorded_too(monkeypatch, today):
    monkeypatch.setitem(sys.modules["calibprune.calibration.sampling"].REVISIONS, "calib/sample", 2)
    assert F.problems(F.load_golden(), {"calib/sample": today["calib/sample"]}) == [
        "algorithm calib/sample's revision is 2 in src/calibprune/calibration/sampling.py but "
        "tests/golden/revisions.json records 1: run `python tests/golden/update.py`"
    ]


def test_fingerprints_ignore_float_noise_but_not_a_real_change(today):
    def scaled(tree, factor):
        if isinstance(tree, dict):
            return {k: scaled(v, factor) for k, v in tree.items()}
        if isinstance(tree, list):
            return [scaled(v, factor) for v in tree]
        return tree * factor if isinstance(tree, float) else tree

    for name, fingerprint in today.items():
        assert F.same(fingerprint, scaled(fingerprint, 1 + 1e-7)), name  # fp32 rounding-sized noise
    assert not F.same(today["ppl/concat-windows"], scaled(today["ppl/concat-windows"], 1 + 1e-3))
    assert not F.same(today["method/sparsegpt"], scaled(today["method/sparsegpt"], 1 + 1e-3))
    # the two scoring paths of the task adapter agree to float rounding, not bit for bit
    assert today["tasks"]["shared-prefix"] != today["tasks"]["plain"]
    assert F.same(today["tasks"]["shared-prefix"], today["tasks"]["plain"])


def test_a_near_zero_projection_is_compared_at_its_vectors_scale():
    """SparseGPT's 2:4 weights on two CPUs: sum |w| = 5055.042, a projection of -0.10741
    moved by 5e-6 (the sum's float noise), 5e-5 of itself. At the vector's scale that is
    noise; a moved projection or sum beyond REL_TOL of the vector is still a change."""
    golden = [5055.042266, -21.64260906, -0.1074134916, -30.51853426]
    other_cpu = [5055.042227, -21.64260535, -0.1074081382, -30.51852244]
    assert F.same(golden, other_cpu)
    assert not F.same(golden, [5055.042266, -21.64260906, -0.1074134916 + 0.1, -30.51853426])
    assert not F.same(golden, [5055.042266 * (1 + 1e-4), -21.64260906, -0.1074134916, -30.51853426])
    assert not F.same([0.5, 0.25], [0.5, 0.2501])  # small vectors keep their tight tolerance


def test_a_new_algorithm_needs_a_fingerprint(monkeypatch, today):
    class Pruner(Wanda):
        name = "pruner"

    monkeypatch.setitem(METHODS._factories, "pruner", Pruner)
    problems = F.problems(F.load_golden(), today)
    assert problems[0].startswith("algorithm method/pruner has no fingerprint: add one to tests/golden/fingerprints.py")


# --- keys -------------------------------------------------------------------------------


def test_keys_at_base_revisions_are_the_keys_made_before_revisions_existed():
    from calibprune.experiments.plan import digest

    obj = {"stage": "cell", "model": "m", "prune": {"method": "wanda"}}
    before = hashlib.sha256(json.dumps({"calibprune": "0.1.0", "inputs": obj}, sort_keys=True).encode())
    everything = list(algorithms())
    assert all(a.revision == BASE_REVISION for a in algorithms().values())
    assert digest(obj, everything) == digest(obj) == before.hexdigest()[:16]


def test_a_bump_changes_exactly_the_keys_of_the_stages_that_run_it(monkeypatch, model_dir, text_corpus):
    from test_experiments import tiny_spec

    from calibprune.experiments.plan import make_plan
    from calibprune.experiments.spec import parse_study

    spec = tiny_spec(model_dir, text_corpus)
    memory = {"runner": {"activation_store": "memory"}}
    spec["pruning"] = [
        {"method": "wanda", "sparsity": 0.5, **memory},
        {"method": "magnitude", "sparsity": 0.5, **memory},
        {"method": "magnitude", "sparsity": 0.5, "refine": "dsnot", **memory},
        {"method": "magnitude", "sparsity": 0.5, "allocation": "owl", **memory},
    ]
    study = parse_study(spec)

    def keys():
        plan = make_plan(study)
        cells = {k: s.attrs["setting"] for k, s in plan.cells.items()}
        return cells, set(plan.calibs), set(plan.denses)

    cells, calibs, denses = keys()
    assert bumped(["refine/dsnot"]) == {}
    monkeypatch.setattr(Wanda, "revision", 2)
    assert bumped(["refine/dsnot"]) == {"method/wanda": 2}
    new_cells, new_calibs, new_denses = keys()
    # Wanda's cells and DSnoT's (which orders candidates by Wanda's score) move; nothing else does
    moved = sorted({cells[k] for k in set(cells) - set(new_cells)})
    assert moved == ["magnitude + dsnot 50% unstructured", "wanda 50% unstructured"]
    assert (new_calibs, new_denses) == (calibs, denses)
    monkeypatch.setattr(Wanda, "revision", 1)
    # a calibration strategy's bump moves its sets and every cell calibrated on them, not the dense evaluation
    # nor magnitude's cells (magnitude reads no calibration data)
    monkeypatch.setitem(sys.modules["calibprune.calibration.sampling"].REVISIONS, "calib/sample", 2)
    new_cells, new_calibs, new_denses = keys()
    assert new_calibs.isdisjoint(calibs) and new_denses == denses
    assert sorted({cells[k] for k in set(cells) & set(new_cells)}) == ["magnitude 50% unstructured"]
    monkeypatch.setitem(sys.modules["calibprune.calibration.sampling"].REVISIONS, "calib/sample", 1)
    # the perplexity protocol's bump moves every evaluation, no calibration set
    monkeypatch.setitem(sys.modules["calibprune.evaluation.perplexity"].REVISIONS, "ppl/concat-windows", 2)
    new_cells, new_calibs, new_denses = keys()
    assert new_calibs == calibs and new_denses.isdisjoint(denses) and set(new_cells).isdisjoint(cells)


def test_update_refuses_a_moved_output_without_a_bump(monkeypatch, tmp_path, capsys):
    import update

    golden, recorded_before = tmp_path / "revisions.json", F.GOLDEN.read_text()
    golden.write_text(recorded_before)
    monkeypatch.setattr(F, "GOLDEN", golden)
    monkeypatch.setattr(Wanda, "scores", _wanda_squared)
    assert update.main([]) == 1
    assert "method/wanda's output changed: bump its revision in src/calibprune/pruning/methods.py first" in (
        capsys.readouterr().err
    )
    assert golden.read_text() == recorded_before  # nothing written
    monkeypatch.setattr(Wanda, "revision", 2)
    assert update.main([]) == 0  # DSnoT moved with it: it uses Wanda, whose revision moved
    recorded = json.loads(golden.read_text())["algorithms"]
    assert recorded["method/wanda"]["revision"] == 2 and recorded["refine/dsnot"]["revision"] == 1
    assert F.problems(json.loads(golden.read_text()), F.compute(["method/wanda", "refine/dsnot"])) == []


# --- options added after cells were keyed ----------------------------------------------------

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "replication" / "runs"
RUNS = sorted(p for p in COMMITTED.iterdir() if p.is_dir())


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_every_committed_cell_is_where_todays_plan_keys_it(run, monkeypatch):
    """A field added to PruneConfig (``ria``, ``admm``) must not move the stage key of any
    committed study cell: today's plan of each committed spec keys exactly its cell files."""
    from calibprune.experiments.plan import make_plan
    from calibprune.experiments.spec import load_study

    monkeypatch.chdir(run.parents[3])  # specs name corpora and models as the repository root sees them
    stems = {path.stem for path in (run / "cells").glob("*.json")}
    plan = make_plan(load_study(run / "study.yaml"))
    # issue 20: each seed now generates its own pool, so a cell calibrated with generated
    # text of another pool is another computation and is keyed anew (seed 0's pool is the
    # one the old design shared, so its cells may keep their keys); every other cell keeps
    # the key it was committed under
    generated = {k for k, cell in plan.cells.items() if plan.calibs[cell.needs].needs in plan.pools}
    assert set(plan.cells) - generated <= stems
    assert len(plan.cells) == len(stems)


def test_ria_and_admm_options_enter_a_key_only_when_used_or_set():
    from calibprune.config import ADMMOptions, PruneConfig, RIAOptions, SparsityTarget

    half = SparsityTarget.unstructured(0.5)
    assert not {"ria", "admm"} & set(PruneConfig("wanda", half).to_dict())  # the keys cells were made with
    assert not {"ria", "admm"} & set(PruneConfig("sparsegpt", half).to_dict())
    ria = PruneConfig("ria", half).to_dict()
    assert ria["ria"] == {"a": 0.5, "scope": "matrix", "permutation": "none", "column_order": "sum", "lsa_blocks": 1}
    assert "admm" not in ria
    admm = PruneConfig("admm", half).to_dict()
    assert admm["admm"]["percdamp"] == 0.1 and admm["admm"]["iters"] == 20 and "ria" not in admm
    assert "ria" in PruneConfig("admm", half, admm=ADMMOptions(mask="ria")).to_dict()  # RIA makes its mask
    # set where it is not used (the CLI refuses it; Python and specs keep it): keyed, so not mistaken for the default
    assert PruneConfig("wanda", half, ria=RIAOptions(a=1.0)).to_dict()["ria"]["a"] == 1.0
