"""OWL allocation and DSnoT refinement: formulas, invariants, composition."""

import copy

import pytest
import torch
from conftest import run_cli, tiny_model

from calibprune.api import prune
from calibprune.calibration import CalibrationSet
from calibprune.config import DSnoTOptions, OWLOptions, PruneConfig, SparsityTarget, pruned_count
from calibprune.errors import CalibpruneError
from calibprune.models.layers import all_block_layers, block_layers, weight_matrix
from calibprune.models.runner import SequentialRunner
from calibprune.pruning.allocation import measure_outlier_ratios, outlier_ratio, owl_nm, owl_sparsities
from calibprune.pruning.dsnot import dsnot_refine
from calibprune.pruning.masks import target_mask
from calibprune.pruning.stats import InputStatistics, StatisticsCollector

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
    # r' = [0, .2, .4, 1]; minus mean .4 -> [-.4, -.2, 0, .6] -> round -> [0, 0, 0, 1];
    # the reference (prune_wanda_outlier_structure_special) turns a shift of exactly 1 into 2
    assert owl_nm([1.0, 2.0, 3.0, 6.0], 4, 8, 1.0) == [4, 4, 4, 2]
    assert owl_nm([1.0, 6.0], 4, 8, 2.0) == [5, 2]  # shifts [-1, 1 -> 2] around N=4
    with pytest.raises(CalibpruneError, match="outside 1..3"):
        owl_nm([1.0, 2.0, 3.0, 6.0], 2, 4, 1.0)  # N = 2 - 2 = 0


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
        if method == "wanda":
            expected = rows * pruned_count(cols, block_sparsity[index])
        else:  # one threshold over the matrix (one 128-column SparseGPT block here): <= the int(n*s)-th smallest
            assert cols <= 128
            expected = int(rows * cols * block_sparsity[index]) + 1
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


def test_dsnot_reference_unstructured_swaps_while_error_above_threshold_overshoot_included():
    # row 0: D = W (u = 1), e = 2 + 1 = 3. Cycle 1: e > 0 regrows the largest priority (col 0),
    # prunes the lowest-Wanda kept weight with D < 0 (col 2): e = 3 - 0.5 - 2 = 0.5.
    # Cycle 2: |e| > 0.1, regrow col 1; the next prune candidate from the same end is col 3
    # (D = 3 > 0): the reference takes it anyway (no sign rule), e = 0.5 + 3 - 1 = 2.5.
    # row 1: |e| = 0.07 <= 0.1 from the start: frozen, untouched.
    weight = torch.tensor([[2.0, 1.0, -0.5, 3.0], [0.05, 0.02, 1.0, 2.0]])
    mask = torch.tensor([[True, True, False, False], [True, True, False, False]])
    ones = torch.ones(4)
    new, info = dsnot_refine(weight, mask, ones, ones, weight.abs(), weight.abs(), DSnoTOptions(cycles=2))
    assert new.tolist() == [[False, False, True, True], [True, True, False, False]]
    assert info["dsnot_swaps"] == 2 and info["dsnot_cycles"] == 2
    assert info["dsnot_proxy_before"] == pytest.approx(3.07) and info["dsnot_proxy_after"] == pytest.approx(2.57)


def test_dsnot_improve_takes_only_swaps_that_lower_the_error():
    weight = torch.tensor([[2.0, 1.0, -0.5, 3.0]])
    mask = torch.tensor([[True, True, False, False]])
    ones = torch.ones(4)
    new, info = dsnot_refine(weight, mask, ones, ones, weight.abs(), weight.abs(), DSnoTOptions(accept="improve"))
    # cycle 1 as above (e = 0.5); cycle 2's prune candidate has D > 0: not a real candidate, the row stops
    assert new.tolist() == [[False, True, True, False]]
    assert info["dsnot_swaps"] == 1 and info["dsnot_proxy_after"] == pytest.approx(0.5)
    weight = torch.tensor([[5.0, 0.1, -9.0, 1.0]])  # swapping 0 for 2 gives 5.1 - 5 - 9 = -8.9: refused
    new, info = dsnot_refine(weight, mask, ones, ones, weight.abs(), weight.abs(), DSnoTOptions(accept="improve"))
    assert new.tolist() == mask.tolist() and info["dsnot_swaps"] == 0


def test_dsnot_reference_nm_sign_rule_freezes_the_row_and_marks_rejected_candidates():
    # 2:4 on one row; initial score |W|: group 0 prunes cols 3, 0; group 1 prunes cols 5, 4.
    # e = 1 + 0.5 + 2 - 0.2 = 3.3 (> 0). Regrow order (priority ascending): [5, 1, 2, 6, 7, 3, 0, 4].
    # 1: regrow 4, prune 7 (lowest |W| kept in its group): e = 3.3 + 4 - 2 = 5.3, sign kept: swap
    # 2: regrow 0, prune 2: e = 6.3. 3: regrow 3, prune 1: e = 2.8.
    # 4: regrow 7 (priority 0, pruned by cycle 1), prune 6: e = 3.8. 5: regrow 6, group used up ->
    #    lowest index, col 4: e = 0.8. 6: regrow 2, prune 0: e would be -0.2, the sign flips:
    #    rejected and the row frozen. Every group still holds exactly 2 pruned.
    weight = torch.tensor([[1.0, -3.0, 2.0, 0.5, 2.0, -0.2, 5.0, 4.0]])
    ones = torch.ones(8)
    initial = target_mask(weight.abs(), SparsityTarget.nm(2, 4))
    assert initial.tolist() == [[True, False, False, True, True, True, False, False]]
    new, info = dsnot_refine(weight, initial, ones, ones, weight.abs(), weight.abs(), nm_m=4)
    assert new.tolist() == [[False, True, True, False, True, True, False, False]]
    assert info["dsnot_swaps"] == 5 and info["dsnot_cycles"] == 6
    assert info["dsnot_proxy_before"] == pytest.approx(3.3) and info["dsnot_proxy_after"] == pytest.approx(0.8)
    improved, info = dsnot_refine(
        weight, initial, ones, ones, weight.abs(), weight.abs(), DSnoTOptions(accept="improve"), nm_m=4
    )
    assert torch.equal(improved, initial) and info["dsnot_swaps"] == 0  # every swap would raise |e|


def test_statistics_are_in_the_reference_per_sample_units():
    x = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))  # 3 samples x 5 tokens
    stats = InputStatistics(4, frozenset({"sq", "sum", "svar"}))
    stats.update(x[:2])
    stats.update(x[2:])
    assert stats.samples == 3 and stats.n == 15
    assert torch.allclose(stats.sum_per_sample, x.sum((0, 1)) / 3)  # layerwrapper's sum_metric_row
    per_sample_var = x.var(dim=1, unbiased=False).mean(0)  # layerwrapper's running var, one sample per call
    assert torch.allclose(stats.sample_variance, per_sample_var, atol=1e-6)
    assert not torch.allclose(stats.sample_variance, x.reshape(-1, 4).var(0, unbiased=False), atol=1e-3)


def _block_statistics(model, ids, index=0):
    runner = SequentialRunner(model, ids)
    for step in runner:
        if step.index == index:
            layers = block_layers(step.block, step.name)
            collector = StatisticsCollector(frozenset({"sq", "sum", "svar"}))
            leader_of = step.observe(layers, collector)
            return layers, {name: collector.stats[leader_of[name]] for name in layers}
        step.advance()


@pytest.mark.parametrize("target", [SparsityTarget.unstructured(0.6), SparsityTarget.nm(2, 4), SparsityTarget.nm(3, 8)])
def test_dsnot_improve_keeps_counts_and_nm_and_lowers_the_proxy_on_a_real_block(target):
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
            stats[name].sum_per_sample,
            stats[name].sample_variance,
            importance,
            importance,
            DSnoTOptions(threshold=0.0, accept="improve"),
            nm_m=target.m if target.is_nm else None,
        )
        assert torch.equal(mask.sum(1), initial.sum(1)), name
        if target.is_nm:
            assert (mask.view(w.shape[0], -1, target.m).sum(-1) == target.n).all(), name

        def proxy(m, w=w, u=stats[name].sum_per_sample):  # |sum of pruned w * u| per row
            return float((w * u * m).sum(1).abs().sum())

        assert proxy(mask) == pytest.approx(info["dsnot_proxy_after"], rel=1e-4)
        assert proxy(mask) <= proxy(initial) + 1e-6
        total_before, total_after = total_before + proxy(initial), total_after + proxy(mask)
    assert total_after < 0.9 * total_before


@pytest.mark.parametrize(
    "method, sparsity, pattern", [("wanda", 0.6, None), ("magnitude", None, "2:4"), ("wanda", None, "4:8")]
)
def test_dsnot_improve_through_the_engine_skips_mlp_and_keeps_counts(method, sparsity, pattern, calib_ids):
    model = tiny_model("llama")
    baseline = copy.deepcopy(model)
    options = dict(method=method, sparsity=sparsity, pattern=pattern, progress=False)
    report = prune(model, calib_ids, refine="dsnot", dsnot=DSnoTOptions(accept="improve"), **options)
    prune(baseline, calib_ids, **options)
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


def test_dsnot_makes_the_magnitude_mask_per_row_as_the_reference(calib_ids):
    # prune_DSnoT sorts the initial method's score per output row, magnitude included (plain
    # magnitude thresholds the whole matrix); with 0 cycles that initial mask is the result
    model, plain = tiny_model("llama"), tiny_model("llama")
    dense = {n: weight_matrix(m).clone() for n, m in all_block_layers(model).items()}
    prune(
        model, calib_ids, method="magnitude", sparsity=0.5, refine="dsnot", dsnot=DSnoTOptions(cycles=0), progress=False
    )
    prune(plain, calib_ids, method="magnitude", sparsity=0.5, progress=False)
    for name, layer in all_block_layers(model).items():
        expected = target_mask(dense[name].abs(), SparsityTarget.unstructured(0.5), "row")
        assert torch.equal(weight_matrix(layer) == 0, expected), name
    name = "model.layers.0.self_attn.q_proj"
    per_matrix = weight_matrix(dict(plain.named_modules())[name]) == 0
    assert not torch.equal(per_matrix.sum(1), per_matrix.sum(1)[:1].expand_as(per_matrix.sum(1)))


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="wanda", target=SparsityTarget.nm(2, 4), allocation="owl"), "pass owl.mixed_nm=True"),
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
            "allocation 'greedy' is unknown: use one of uniform, owl",
        ),
        (
            dict(method="wanda", target=SparsityTarget.unstructured(0.5), refine="ria"),
            "refine 'ria' is unknown: use one of none, dsnot",
        ),
    ],
)
def test_refused_combinations_name_the_reason(kwargs, message):
    with pytest.raises(CalibpruneError, match=message):
        PruneConfig(**kwargs)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: OWLOptions(hyper_m=0), "hyper_m 0 must be > 0"),
        (lambda: OWLOptions(hyper_m=-1), "hyper_m -1 must be > 0"),
        (lambda: OWLOptions(lam=-0.1), "lam -0.1 must be >= 0"),
        (lambda: DSnoTOptions(cycles=-1), "cycles -1 must be >= 0"),
        (lambda: DSnoTOptions(threshold=-1), "threshold -1 must be >= 0"),
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
    from calibprune.jobs.prune import run_prune
    from calibprune.jobs.requests import CalibrationRequest

    config = PruneConfig(
        method="magnitude",
        target=SparsityTarget.nm(2, 4),
        refine="dsnot",
        dsnot=DSnoTOptions(skip=(), accept="improve"),  # 32-wide layers: the reference rules need longer rows
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
