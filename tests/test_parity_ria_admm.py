"""Parity of RIA (with and without channel permutation) and ADMM with their reference
repositories, on the tiny two-block Llama of ``test_parity`` with fixed inputs, one
sample per forward as the references push them.

Masks must be identical. ADMM's weights are compared within atol 1e-5 / rtol 1e-4: the
engine stacks q/k/v into one solve (one [cols, 3 rows] product per iteration where the
reference does three) and the later block's inputs come from those weights, so the
float rounding may differ on other BLAS builds or devices; on this CPU they agree to
the bit. Twenty iterations of a contraction (the inverse's eigenvalues are < 1/(1 + rho))
do not amplify rounding, so 1e-5 is many times the expected difference and far below
the size of an ADMM update (~0.1 here).
"""

import pytest
import reference_loops as ref
import torch
from test_parity import ONE_SAMPLE, _assert_same_masks, _masks, _pair

from calibprune.api import prune
from calibprune.models.layers import all_block_layers, weight_matrix
from calibprune.pruning.admm import ADMMOptions
from calibprune.pruning.methods import RIA
from calibprune.pruning.permutation import permuted_nm_mask
from calibprune.pruning.ria import RIAOptions


@pytest.fixture(scope="module")
def calib():
    return torch.randint(0, 256, (4, 24), generator=torch.Generator().manual_seed(5))


def _run(model, calib, method, sparsity, n, m, **options):
    """The engine through the Python API, with the method's options as PruneConfig fields
    (``ria=RIAOptions(...)``, ``admm=ADMMOptions(...)``)."""
    target = {"pattern": f"{n}:{m}"} if n else {"sparsity": sparsity}
    return prune(model, calib, method=method, runner=ONE_SAMPLE, progress=False, **target, **options)


@pytest.mark.parametrize("sparsity, n, m", [(0.5, 0, 0), (0.7, 0, 0), (0.0, 2, 4), (0.0, 4, 8)])
def test_ria_matches_ria_repo_prune_ria(sparsity, n, m, calib):
    ours, theirs = _pair()
    target = {"pattern": f"{n}:{m}"} if n else {"sparsity": sparsity}
    prune(ours, calib, method="ria", runner=ONE_SAMPLE, progress=False, **target)
    ref.ria(theirs, calib, sparsity, n, m)
    _assert_same_masks(_masks(ours), _masks(theirs))


def test_ria_per_outneuron_matches_ria_repo(calib):
    ours, theirs = _pair()
    _run(ours, calib, "ria", 0.6, 0, 0, ria=RIAOptions(scope="row"))
    ref.ria(theirs, calib, 0.6, per_outneuron=True)
    _assert_same_masks(_masks(ours), _masks(theirs))


@pytest.mark.parametrize("permutation", ["heuristic", "lsa"])
def test_ria_channel_permutation_matches_ria_repo(permutation, calib):
    ours, theirs = _pair()
    report = _run(ours, calib, "ria", 0.0, 2, 4, ria=RIAOptions(permutation=permutation))
    # num_parallel=8 (the reference's own knob, 1 there): same score matrices, 8x fewer loop turns
    ref.ria(theirs, calib, n=2, m=4, reallocation=True, lsa=permutation == "lsa", num_parallel=8)
    ours_masks = _masks(ours)
    _assert_same_masks(ours_masks, _masks(theirs))
    records = report["layers"]
    assert all(r["nm_permutation"] == permutation for r in records.values())
    # the folded-back masks are 2:4 in the permuted order only: the stored order is not
    assert any(r["nm_conformance"] < 1.0 for r in records.values())


@pytest.mark.parametrize(
    "order, blocks",
    [("sum", 2), ("retained_degree_unstructured", 1), ("retained_degree_per_outneuron", 1)],
)
def test_ria_permutation_options_match_ria_repo_on_one_matrix(order, blocks):
    """The column orders and ``--fast`` blocks on one [32, 64] RIA score matrix (the
    reference's LSA loop is too slow on the CPU to run each option on the whole model)."""
    g = torch.Generator().manual_seed(11)
    weight, sq = torch.randn(32, 64, generator=g), torch.rand(64, generator=g) + 0.05
    scores = RIA().scores(weight, type("S", (), {"sq_per_sample": sq})())
    ours, _, _ = permuted_nm_mask(scores, 2, 4, "lsa", order, blocks)
    theirs = ref._ria_layer_mask(scores, 0.5, 2, 4, False, True, True, order, blocks)
    assert torch.equal(ours, theirs)


def test_ria_permutation_matches_ria_repo_on_integer_ties():
    scores = torch.tensor([[1.0, 6.0, 0.0, 6.0, 5.0, 0.0, 4.0, 1.0], [6.0, 5.0, 3.0, 3.0, 3.0, 9.0, 4.0, 5.0]])
    ours, _, _ = permuted_nm_mask(scores, 2, 4, "lsa")
    assert torch.equal(ours, ref._ria_layer_mask(scores, 0.5, 2, 4, False, True, True, "sum", 1))


def _assert_same_weights(ours, theirs):
    theirs_layers = dict(theirs.named_modules())
    for name, layer in all_block_layers(ours).items():
        w, w_ref = weight_matrix(layer), weight_matrix(theirs_layers[name])
        assert torch.equal(w == 0, w_ref == 0), name
        torch.testing.assert_close(w, w_ref, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    "options, reference, sparsity, n, m",
    [
        (ADMMOptions(), {}, 0.5, 0, 0),  # per matrix, full sparsity from the start (the reference's default)
        (ADMMOptions(scope="row"), {"per_out": True}, 0.6, 0, 0),  # per row, cubic schedule
        (ADMMOptions(), {}, 0.0, 2, 4),  # 2:4 candidates, cubic schedule over the matrix
        (ADMMOptions(gradual_steps=0), {"iterative_prune": 0}, 0.5, 0, 0),  # one Wanda-scored mask
    ],
)
def test_admm_matches_admm_repo_fasterprune(options, reference, sparsity, n, m, calib):
    ours, theirs = _pair()
    report = _run(ours, calib, "admm", sparsity, n, m, admm=options)
    ref.admm(theirs, calib, sparsity, n, m, **reference)
    _assert_same_weights(ours, theirs)
    dense = _pair()[0]
    changed = [
        float((weight_matrix(layer) - weight_matrix(dict(dense.named_modules())[name])).abs().max())
        for name, layer in all_block_layers(ours).items()
    ]
    assert min(changed) > 1e-2  # the kept weights were updated, not only masked
    assert all(r["admm_iters"] == 20 for r in report["layers"].values())


def test_admm_four_eight_differs_from_admm_repo_which_prunes_two_four():
    """The reference's N:M path hard-codes groups of 4 with 2 kept (and sparsity 0.5):
    asked for 4:8 it returns a 2:4 mask. Here 4:8 is 4:8."""
    from calibprune.config import SparsityTarget
    from calibprune.pruning.admm import admm_prune
    from calibprune.pruning.masks import nm_conformance

    g = torch.Generator().manual_seed(2)
    weight, x = torch.randn(16, 32, generator=g), torch.randn(96, 32, generator=g)
    gram = x.t() @ x
    ours, _, _ = admm_prune(weight, gram, SparsityTarget.nm(4, 8))
    layer = torch.nn.Linear(32, 16, bias=False)
    layer.weight.data = weight.clone()
    ref._admm_fasterprune(layer, gram.clone(), 0.5, 4, 8)
    assert nm_conformance(layer.weight.data, 2, 4) == 1.0
    assert nm_conformance(ours, 4, 8) == 1.0 and nm_conformance(ours, 2, 4) < 1.0
