"""OWL allocation and DSnoT refinement: formulas, invariants, composition."""

import copy

import pytest
import torch
from conftest import run_cli, tiny_model

from calibprune.calibration import CalibrationSet
from calibprune.config import DSnoTOptions, OWLOptions, PruneConfig, SparsityTarget, pruned_count
from calibprune.errors import CalibpruneError
from calibprune.models.layers import all_block_layers, block_layers, weight_matrix
from calibprune.models.runner import SequentialRunner
from calibprune.pipeline import prune
from calibprune.pruning.allocation import measure_outlier_ratios, outlier_ratio, owl_nm, owl_sparsities
from calibprune.pruning.dsnot import dsnot_refine
from calibprune.pruning.masks import target_mask
from calibprune.pruning.stats import StatisticsCollector

# ----------------------------------------------------------------------------- OWL


def test_outlier_ratio_counts_scores_above_m_times_mean():
    scores = [torch.ones(99), torch.tensor([1000.0])]  # mean 10.99, threshold 54.95
    assert outlier_ratio(scores, 5.0) == pytest.approx(1.0)  # 1 of 100, in percent
    assert outlier_ratio(scores, 100.0) == 0.0


def test_owl_block_sparsities_follow_the_formula_and_average_to_the_target():
    ratios = [1.0, 2.0, 3.0, 6.0]
    # r' = (r - 1) / 5 * 0.16 = [0, .032, .064, .16]; mean .064; s_b = .6 - (r' - .064)
    got = owl_sparsities(ratios, 0.6, 0.08)
    assert got == pytest.approx([0.664, 0.632, 0.600, 0.504])
    assert sum(got) / len(got) == pytest.approx(0.6)
    assert owl_sparsities([2.0, 2.0, 2.0], 0.5, 0.08) == pytest.approx([0.5, 0.5, 0.5])


def test_owl_mixed_nm_gives_each_block_its_own_n():
    # r' = [0, .2, .4, 1]; minus mean .4 -> [-.4, -.2, 0, .6] -> round -> [0, 0, 0, 1]
    assert owl_nm([1.0, 2.0, 3.0, 6.0], 2, 4, 1.0) == [2, 2, 2, 1]
    assert owl_nm([1.0, 6.0], 4, 8, 2.0) == [5, 3]  # [-1, 1] around N=4


def _inputs_of(model, layer, ids):
    """All rows a layer sees in one plain forward of the whole (dense) model."""
    captured = []
    handle = layer.register_forward_pre_hook(lambda m, a: captured.append(a[0].reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        model(input_ids=ids)
    handle.remove()
    return torch.cat(captured)


def test_measured_outlier_ratios_equal_an_independent_dense_computation(calib_ids):
    model = tiny_model("llama")
    with torch.no_grad():  # make block 1 outlier-heavy
        model.model.layers[1].mlp.down_proj.weight[:, :3] *= 40
    config = PruneConfig(method="wanda", target=SparsityTarget.unstructured(0.5), allocation="owl")
    ratios = measure_outlier_ratios(model, CalibrationSet(calib_ids), config, progress=False)
    for index in range(3):
        scores = []
        for layer in block_layers(model.model.layers[index], f"model.layers.{index}").values():
            x = _inputs_of(model, layer, calib_ids)
            scores.append(weight_matrix(layer).abs() * x.norm(dim=0) / x.shape[0] ** 0.5)
        assert ratios[index] == pytest.approx(outlier_ratio(scores, 5.0), abs=1e-9)
    assert ratios[1] == max(ratios.values())


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude"])
def test_owl_prunes_each_block_at_its_allocated_sparsity(method, calib_ids):
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[:, :3] *= 40
    report = prune(model, calib_ids, method=method, sparsity=0.6, allocation="owl", progress=False)
    allocation = report["allocation"]
    block_sparsity = allocation["block_sparsity"]
    assert sum(block_sparsity.values()) / 3 == pytest.approx(0.6)
    assert block_sparsity[1] == min(block_sparsity.values())  # most outliers, least pruned
    for name, record in report["layers"].items():
        index = int(name.split(".")[2])
        assert record["target_sparsity"] == pytest.approx(block_sparsity[index])
        rows, cols = record["shape"]
        expected = (
            pruned_count(rows * cols, block_sparsity[index])
            if method == "magnitude"
            else rows * pruned_count(cols, block_sparsity[index])
        )
        assert record["pruned"] == expected


def test_owl_mixed_nm_reports_and_respects_block_n(calib_ids):
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[:, :3] *= 40
    report = prune(
        model,
        calib_ids,
        method="wanda",
        pattern="4:8",
        allocation="owl",
        owl=OWLOptions(mixed_nm=True, nm_lambda=2.0),
        progress=False,
    )
    block_n = report["allocation"]["block_n"]
    assert block_n[1] < 4 and len(set(block_n.values())) > 1
    for name, layer in all_block_layers(model).items():
        n = block_n[int(name.split(".")[2])]
        w = weight_matrix(layer)
        assert ((w.view(w.shape[0], -1, 8) == 0).sum(-1) >= n).all()
        assert report["layers"][name]["nm_pattern"] == f"{n}:8"
        assert report["layers"][name]["pruned"] == w.numel() * n // 8


# ----------------------------------------------------------------------------- DSnoT


def test_dsnot_hand_computed_swap():
    weight = torch.tensor([[2.0, 1.0, -0.5, 3.0]])
    mask = torch.tensor([[True, True, False, False]])  # e = 2 + 1 = 3
    ones = torch.ones(4)
    new, info = dsnot_refine(weight, mask, ones, ones, weight.abs())
    # regrow col 0 (largest D/var > 0), prune col 2 (the only kept D < 0): e = 3 - 2 - 0.5 = 0.5;
    # next: regrow col 1 would need another kept D < 0: none left, so the row stops.
    assert new.tolist() == [[False, True, True, False]]
    assert info["dsnot_swaps"] == 1
    assert info["dsnot_proxy_before"] == pytest.approx(3.0) and info["dsnot_proxy_after"] == pytest.approx(0.5)


def test_dsnot_never_accepts_a_swap_that_grows_the_error():
    weight = torch.tensor([[5.0, 0.1, -9.0, 1.0]])
    mask = torch.tensor([[True, True, False, False]])  # e = 5.1; swapping 0 for 2 gives 5.1 - 5 - 9 = -8.9
    ones = torch.ones(4)
    new, info = dsnot_refine(weight, mask, ones, ones, weight.abs())
    assert info["dsnot_proxy_after"] <= info["dsnot_proxy_before"]
    assert new.sum() == 2


def _block_statistics(model, ids, index=0):
    runner = SequentialRunner(model, ids)
    for step in runner:
        if step.index == index:
            layers = block_layers(step.block, step.name)
            collector = StatisticsCollector(frozenset({"sq", "sum"}))
            leader_of = step.observe(layers, collector)
            return layers, {name: collector.stats[leader_of[name]] for name in layers}
        step.advance()


@pytest.mark.parametrize("target", [SparsityTarget.unstructured(0.6), SparsityTarget.nm(2, 4), SparsityTarget.nm(3, 8)])
def test_dsnot_keeps_counts_and_nm_and_lowers_the_proxy_on_a_real_block(target):
    model = tiny_model("llama")
    ids = torch.randint(0, 256, (8, 32), generator=torch.Generator().manual_seed(3))
    layers, stats = _block_statistics(model, ids)
    total_before = total_after = 0.0
    for name, layer in layers.items():
        w = weight_matrix(layer).clone()
        importance = w.abs() * stats[name].col_norm
        initial = target_mask(importance, target, "row")
        mask, info = dsnot_refine(
            w,
            initial,
            stats[name].mean,
            stats[name].variance,
            importance,
            DSnoTOptions(threshold=0.0),
            nm_m=target.m if target.is_nm else None,
        )
        assert torch.equal(mask.sum(1), initial.sum(1)), name
        if target.is_nm:
            assert (mask.view(w.shape[0], -1, target.m).sum(-1) == target.n).all(), name

        def proxy(m, w=w, mean=stats[name].mean):  # |sum of pruned w * mean x| per row
            return float((w * mean * m).sum(1).abs().sum())

        assert proxy(mask) == pytest.approx(info["dsnot_proxy_after"], rel=1e-4)
        assert proxy(mask) <= proxy(initial) + 1e-6
        total_before, total_after = total_before + proxy(initial), total_after + proxy(mask)
    assert total_after < 0.9 * total_before


@pytest.mark.parametrize(
    "method, sparsity, pattern", [("wanda", 0.6, None), ("magnitude", None, "2:4"), ("wanda", None, "4:8")]
)
def test_dsnot_through_the_engine_skips_mlp_and_keeps_counts(method, sparsity, pattern, calib_ids):
    model = tiny_model("llama")
    baseline = copy.deepcopy(model)
    report = prune(model, calib_ids, method=method, sparsity=sparsity, pattern=pattern, refine="dsnot", progress=False)
    prune(baseline, calib_ids, method=method, sparsity=sparsity, pattern=pattern, progress=False)
    changed = 0
    for name, record in report["layers"].items():
        refined, plain = (
            weight_matrix(dict(model.named_modules())[name]),
            weight_matrix(dict(baseline.named_modules())[name]),
        )
        assert torch.equal((refined == 0).sum(1), (plain == 0).sum(1))
        if ".mlp." in name:
            assert "dsnot_swaps" not in record
            if name.startswith("model.layers.0."):  # later blocks see inputs changed by refined blocks
                assert torch.equal(refined, plain)
        else:
            changed += record["dsnot_swaps"]
            assert record["dsnot_proxy_after"] <= record["dsnot_proxy_before"]
        if pattern:
            assert record["nm_conformance"] == 1.0
    assert changed > 0


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="wanda", target=SparsityTarget.nm(2, 4), allocation="owl"), "pass --owl-mixed-nm"),
        (
            dict(
                method="wanda", target=SparsityTarget.unstructured(0.5), allocation="owl", owl=OWLOptions(mixed_nm=True)
            ),
            "N:M patterns only",
        ),
        (dict(method="sparsegpt", target=SparsityTarget.unstructured(0.5), refine="dsnot"), "SparseGPT rewrites"),
        (
            dict(method="wanda", target=SparsityTarget.unstructured(0.7), allocation="owl", owl=OWLOptions(lam=0.2)),
            r"lambda=0.2 is too large for sparsity 0.7",
        ),
        (
            dict(method="wanda", target=SparsityTarget.nm(1, 4), allocation="owl", owl=OWLOptions(mixed_nm=True)),
            "outside 1..3",
        ),
        (
            dict(method="wanda", target=SparsityTarget.unstructured(0.5), allocation="greedy"),
            "unknown allocation 'greedy'",
        ),
        (dict(method="wanda", target=SparsityTarget.unstructured(0.5), refine="ria"), "unknown refinement 'ria'"),
    ],
)
def test_refused_combinations_name_the_reason(kwargs, message):
    with pytest.raises(CalibpruneError, match=message):
        PruneConfig(**kwargs)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: OWLOptions(hyper_m=0), "OWL M=0 must be > 0"),
        (lambda: OWLOptions(hyper_m=-1), "OWL M=-1 must be > 0"),
        (lambda: OWLOptions(lam=-0.1), "OWL lambda=-0.1 must be >= 0"),
        (lambda: DSnoTOptions(cycles=-1), "DSnoT cycles=-1 must be >= 0"),
        (lambda: DSnoTOptions(threshold=-1), "threshold=-1 must be >= 0"),
    ],
)
def test_bad_hyperparameters(build, message):
    with pytest.raises(CalibpruneError, match=message):
        build()


def test_bad_owl_input_fails_before_any_work(tmp_path, monkeypatch):
    """Through the CLI: the error comes before the model is even resolved."""
    done = run_cli(
        "prune", "--model", "smollm2-135m", "--sparsity", "0.6", "--allocation", "owl", "--owl-lambda", "0.3",
        "--output", str(tmp_path / "o"),
    )  # fmt: skip
    assert done.returncode == 2 and "lambda=0.3 is too large for sparsity 0.6" in done.stderr
    assert not (tmp_path / "o").exists()


def test_magnitude_with_dsnot_samples_calibration_through_the_pipeline(model_dir, text_corpus, tmp_path):
    from calibprune.pipeline import CalibrationRequest, run_prune

    config = PruneConfig(
        method="magnitude", target=SparsityTarget.nm(2, 4), refine="dsnot", dsnot=DSnoTOptions(skip=())
    )
    report = run_prune(
        str(model_dir),
        config,
        CalibrationRequest(str(text_corpus), nsamples=4, seqlen=32),
        tmp_path / "out",
        progress=False,
    )
    assert report["calibration"]["nsamples"] == 4
    assert report["summary"]["nm_conformance_min"] == 1.0
    assert sum(r["dsnot_swaps"] for r in report["layers"].values()) > 0
