"""Pruning maths: Wanda against an independent computation, SparseGPT in closed form,
exact sparsity, determinism."""

import copy

import pytest
import torch
from conftest import ARCHITECTURES, tiny_model

from calibprune.api import prune
from calibprune.config import PruneConfig, RunnerOptions, SparseGPTOptions, SparsityTarget, pruned_count
from calibprune.errors import CalibpruneError
from calibprune.models.layers import all_block_layers, find_decoder_blocks, weight_matrix
from calibprune.pruning.catalog import needs_calibration
from calibprune.pruning.engine import validate
from calibprune.pruning.masks import target_mask
from calibprune.pruning.sparsegpt import sparsegpt_prune


def _inputs_of(model, layer_name, ids):
    """Independent capture: the rows a layer sees in one plain forward of the whole model."""
    captured = []
    layer = dict(model.named_modules())[layer_name]
    handle = layer.register_forward_pre_hook(lambda m, a: captured.append(a[0].reshape(-1, a[0].shape[-1]).clone()))
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    handle.remove()
    return torch.cat(captured)


def test_wanda_masks_equal_an_independent_sequential_computation(calib_ids):
    dense = tiny_model("llama")
    pruned = copy.deepcopy(dense)
    prune(pruned, calib_ids, method="wanda", sparsity=0.5, progress=False, runner=RunnerOptions(batch_size=4))
    path, blocks = find_decoder_blocks(dense)
    reference = copy.deepcopy(dense)
    for index in range(len(blocks)):
        # blocks < index come from the pruned model, block `index` is still dense: exactly
        # what the sequential scheme calibrates block `index` on.
        for name, layer in all_block_layers(reference).items():
            if name.startswith(f"{path}.{index}."):
                x = _inputs_of(reference, name, calib_ids)
                score = weight_matrix(layer).abs() * x.norm(dim=0)  # |W| * ||X_j||_2
                expected = target_mask(score, SparsityTarget.unstructured(0.5), "row")
                got = weight_matrix(dict(pruned.named_modules())[name]) == 0
                assert torch.equal(got, expected), name
        reference_block = reference.get_submodule(f"{path}.{index}")
        reference_block.load_state_dict(pruned.get_submodule(f"{path}.{index}").state_dict())


def test_sparsegpt_first_column_pruning_is_the_least_squares_optimum():
    """Pruning only column 0 of each row: the OBS update of the remaining columns is the
    exact least-squares reconstruction, W_rest = argmin ||W X - W'_rest X_rest||."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 400, generator=g)  # [cols, tokens]
    w = torch.randn(5, 8, generator=g)
    w[:, 0] = 0.01  # make column 0 the obvious one to prune (1 of 8 per row)
    hessian = 2 * x @ x.T / x.shape[1]
    options = SparseGPTOptions(percdamp=1e-8, mask_rule="row")  # exactly one weight per row
    new, mask, _ = sparsegpt_prune(w, hessian, SparsityTarget.unstructured(1 / 8), options)
    assert mask[:, 0].all() and mask.sum() == 5
    solution = torch.linalg.lstsq(x[1:].T, (w @ x).T).solution.T  # [rows, 7]
    torch.testing.assert_close(new[:, 1:], solution, rtol=1e-3, atol=1e-4)
    assert (new[:, 0] == 0).all()


@pytest.mark.parametrize("target", [SparsityTarget.unstructured(0.5), SparsityTarget.nm(2, 4)])
def test_sparsegpt_reconstructs_better_than_wanda(target):
    g = torch.Generator().manual_seed(0)
    # correlated inputs, as in real activations: that is what OBS updates exploit
    x = torch.randn(64, 32, generator=g) @ torch.randn(32, 2000, generator=g) + 0.1 * torch.randn(64, 2000, generator=g)
    w = torch.randn(48, 64, generator=g)
    hessian = 2 * x @ x.T / x.shape[1]
    new, mask, _ = sparsegpt_prune(w, hessian, target)
    wanda = w.masked_fill(target_mask(w.abs() * x.norm(dim=1), target, "row"), 0)

    def error(candidate):
        return float(((w - candidate) @ x).square().sum())

    assert error(new) < 0.9 * error(wanda)
    assert (new[mask] == 0).all()
    if target.is_nm:
        assert (mask.view(48, 16, 4).sum(-1) == 2).all()
    else:  # one threshold over the [48 x 64] block: int(3072 * 0.5) + 1 pruned, unevenly across rows
        assert int(mask.sum()) == 1537 and len(set(mask.sum(1).tolist())) > 1


@pytest.mark.parametrize("ratio", [0.3, 0.57])
def test_sparsegpt_exact_per_row_counts_across_blocks(ratio):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 500, generator=g)
    w = torch.randn(6, 200, generator=g)
    _, mask, _ = sparsegpt_prune(
        w, 2 * x @ x.T / 500, SparsityTarget.unstructured(ratio), SparseGPTOptions(blocksize=64, mask_rule="row")
    )
    assert (mask.sum(1) == pruned_count(200, ratio)).all()


@pytest.mark.parametrize("ratio", [0.3, 0.57])
def test_sparsegpt_block_rule_thresholds_each_column_block_jointly(ratio):
    # the reference: per [rows x 64] block, every saliency <= sorted[int(numel * r)] is pruned
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 500, generator=g)
    w = torch.randn(6, 200, generator=g)
    _, mask, _ = sparsegpt_prune(
        w, 2 * x @ x.T / 500, SparsityTarget.unstructured(ratio), SparseGPTOptions(blocksize=64)
    )
    for start in range(0, 200, 64):
        block = mask[:, start : start + 64]
        assert int(block.sum()) == int(block.numel() * ratio) + 1  # random floats: no ties at the threshold
    assert len(set(mask.sum(1).tolist())) > 1  # rows differ in sparsity


def test_sparsegpt_dead_inputs_are_zeroed_and_pruned_first():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 300, generator=g)
    x[3] = 0  # an input that is never active
    w = torch.randn(4, 16, generator=g) + 5
    new, mask, info = sparsegpt_prune(w, 2 * x @ x.T / 300, SparsityTarget.unstructured(0.25))
    assert info["dead_inputs"] == 1
    assert mask[:, 3].all() and (new[:, 3] == 0).all()


def test_sparsegpt_escalates_damping_then_names_the_layer():
    hessian = -torch.eye(4)  # never positive definite
    with pytest.raises(CalibpruneError, match="Hessian of my.layer is not positive definite"):
        sparsegpt_prune(torch.randn(2, 4), hessian, SparsityTarget.unstructured(0.5), name="my.layer")
    # A rank-deficient but fixable Hessian succeeds after escalation
    v = torch.randn(4, 1)
    _, _, info = sparsegpt_prune(
        torch.randn(2, 4), v @ v.T, SparsityTarget.unstructured(0.5), SparseGPTOptions(percdamp=1e-12)
    )
    assert info["damping"] > 0


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize(
    "method, sparsity, pattern",
    [
        ("magnitude", 0.5, None),
        ("wanda", 0.3, None),
        ("sparsegpt", 0.6, None),
        ("wanda", None, "2:4"),
        ("sparsegpt", None, "4:8"),
        ("magnitude", None, "1:4"),
    ],
)
def test_exact_target_sparsity_on_every_architecture(arch, method, sparsity, pattern, calib_ids):
    model = tiny_model(arch)
    report = prune(model, calib_ids, method=method, sparsity=sparsity, pattern=pattern, progress=False)
    target = SparsityTarget.parse(sparsity, pattern)
    for name, layer in all_block_layers(model).items():
        w = weight_matrix(layer)
        record = report["layers"][name]
        if target.is_nm:
            zeros = (w.reshape(w.shape[0], -1, target.m) == 0).sum(-1)
            assert (zeros >= target.n).all(), name
            assert record["nm_conformance"] == 1.0
            assert record["pruned"] == w.numel() * target.n // target.m
        elif method in ("magnitude", "sparsegpt"):  # one threshold per matrix / 128-column block
            assert w.shape[1] <= 128
            assert record["pruned"] == int(w.numel() * target.ratio) + 1
        else:
            assert record["pruned"] == w.shape[0] * pruned_count(w.shape[1], target.ratio)
        assert record["zeros"] >= record["sparsity"]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_same_inputs_same_mask_and_store_or_batching_do_not_matter(method, calib_ids):
    masks = []
    for options in (
        RunnerOptions(batch_size=4),
        RunnerOptions(batch_size=4),
        RunnerOptions(batch_size=6, activation_store="memory"),
    ):
        model = tiny_model("llama")
        prune(model, calib_ids, method=method, sparsity=0.5, progress=False, runner=options)
        masks.append({n: weight_matrix(layer) == 0 for n, layer in all_block_layers(model).items()})
    assert all(torch.equal(masks[0][n], masks[1][n]) for n in masks[0])
    agreement = sum(int((masks[0][n] == masks[2][n]).sum()) for n in masks[0]) / sum(
        m.numel() for m in masks[0].values()
    )
    assert agreement > 0.999  # float summation order differs with the batch size


def test_magnitude_needs_no_calibration():
    model = tiny_model("llama")
    report = prune(model, None, method="magnitude", sparsity=0.5, progress=False)
    # each matrix prunes int(numel / 2) + 1 weights (the reference threshold includes its own value)
    layers = report["layers"].values()
    assert all(r["pruned"] == r["shape"][0] * r["shape"][1] // 2 + 1 for r in layers)
    with pytest.raises(CalibpruneError, match="needs calibration data"):
        prune(tiny_model("llama"), None, method="wanda", sparsity=0.5, progress=False)


def test_targets_and_ignore_limit_what_is_pruned(calib_ids):
    model = tiny_model("llama")
    dense = copy.deepcopy(model)
    report = prune(
        model,
        calib_ids,
        method="wanda",
        sparsity=0.5,
        progress=False,
        targets=("model.layers.0.*",),
        ignore=("*.down_proj",),
    )
    assert set(report["layers"]) == {
        f"model.layers.0.{n}"
        for n in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
        )
    }
    for name, p in model.named_parameters():
        if not any(name.startswith(layer) for layer in report["layers"]):
            assert torch.equal(p, dense.get_parameter(name)), name


def test_the_engine_names_no_method_and_asks_the_registries(llama, calib_ids, monkeypatch):
    """What varies (scorer, allocation, refinement) is a registered object the engine asks:
    a method's own checks run through its ``validate`` hook, the allocation is dispatched."""
    from pathlib import Path

    from calibprune.calibration import CalibrationSet
    from calibprune.pruning import engine
    from calibprune.pruning.allocation import ALLOCATIONS, Uniform, get_allocation
    from calibprune.pruning.methods import METHODS, REFINERS, Wanda

    source = Path(engine.__file__).read_text()
    for name in METHODS.names() + REFINERS.names() + ALLOCATIONS.names():
        assert f'"{name}"' not in source and f"'{name}'" not in source, name

    class Picky(Wanda):
        def validate(self, config):
            raise CalibpruneError("picky refuses")

    monkeypatch.setitem(METHODS._factories, "picky", Picky)
    with pytest.raises(CalibpruneError, match="picky refuses"):
        validate(llama, PruneConfig(method="picky", target=SparsityTarget.unstructured(0.5)))
    assert not get_allocation("uniform").needs_calibration and get_allocation("owl").needs_calibration
    assert needs_calibration(PruneConfig("magnitude", SparsityTarget.unstructured(0.5), allocation="owl"))

    calls = []

    class Recorded(Uniform):
        def allocate(self, model, calibration, config, progress=True, placement=None):
            calls.append(config.allocation)
            return super().allocate(model, calibration, config, progress, placement)

    monkeypatch.setitem(ALLOCATIONS._factories, "uniform", Recorded)
    config = PruneConfig("wanda", SparsityTarget.unstructured(0.5), runner=RunnerOptions(activation_store="memory"))
    report = engine.prune_model(llama, CalibrationSet(calib_ids), config, progress=False)
    assert calls == ["uniform"] and report["allocation"] == {"method": "uniform"}


def test_validate_refuses_unknown_method_and_indivisible_widths(llama):
    # an unknown method is refused when the config is made, before any model is looked at
    with pytest.raises(
        CalibpruneError, match="method 'obs' is unknown: use one of magnitude, wanda, ria, sparsegpt, admm"
    ):
        PruneConfig(method="obs", target=SparsityTarget.unstructured(0.5))
    with pytest.raises(CalibpruneError, match="not divisible by M=3"):
        validate(llama, PruneConfig(method="wanda", target=SparsityTarget.nm(1, 3)))
    with pytest.raises(CalibpruneError, match="multiple of M=8"):
        validate(
            llama,
            PruneConfig(method="sparsegpt", target=SparsityTarget.nm(4, 8), sparsegpt=SparseGPTOptions(blocksize=12)),
        )
