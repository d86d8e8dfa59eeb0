"""RIA scores, N:M channel permutation and the ADMM update: hand-computed answers,
closed forms and the guarantees (or their absence) stated in the modules."""

import itertools
import json

import pytest
import torch

from calibprune.config import SparsityTarget
from calibprune.errors import CalibpruneError
from calibprune.pruning.admm import ADMMOptions, admm_prune, select_mask, sparsity_at
from calibprune.pruning.masks import nm_conformance, nm_mask, target_mask
from calibprune.pruning.methods import RIA, get_method
from calibprune.pruning.permutation import (
    assignment_gains,
    column_order,
    kept_score,
    lexsort,
    lsa_round,
    permuted_nm_mask,
    snake_allocation,
)
from calibprune.pruning.ria import RIAOptions, relative_importance, ria_scores
from calibprune.pruning.stats import InputStatistics

# Every row sums to 12 in |W|; the columns sum to 4 or 8.
W4x8 = torch.tensor(
    [
        [1.0, -2.0, 0.0, 4.0, 1.0, 1.0, -2.0, 1.0],
        [2.0, 2.0, -1.0, 0.0, 1.0, 3.0, 2.0, 1.0],
        [-1.0, 0.0, 3.0, -4.0, 1.0, 1.0, 0.0, 2.0],
        [0.0, 4.0, 0.0, 0.0, -1.0, 3.0, 4.0, 0.0],
    ]
)
# s_j = sum_t x_tj^2 / S chosen as t^4, so that sqrt(s_j)^0.5 = t = [1, 2, 1, 2, 3, 1, 2, 1]
S4x8 = torch.tensor([1.0, 16.0, 1.0, 16.0, 81.0, 1.0, 16.0, 1.0])


def _stats(sq_per_sample, samples=2, tokens=3):
    """Statistics whose sum_t x^2 / S is ``sq_per_sample``: S samples of T equal tokens."""
    stats = InputStatistics(sq_per_sample.numel(), frozenset({"sq"}))
    x = (sq_per_sample / tokens).sqrt().expand(samples, tokens, -1)
    stats.update(x)
    return stats


def test_ria_score_on_a_four_by_eight_matrix():
    # RI_ij = |W_ij| (1/colsum_j + 1/12): 1/4 + 1/12 = 1/3 for colsum 4, 1/8 + 1/12 = 5/24 for 8
    ri_factor = torch.tensor([1 / 3, 5 / 24, 1 / 3, 5 / 24, 1 / 3, 5 / 24, 5 / 24, 1 / 3])
    torch.testing.assert_close(relative_importance(W4x8), W4x8.abs() * ri_factor)
    # times sqrt(s_j)^0.5 = [1, 2, 1, 2, 3, 1, 2, 1]
    expected = W4x8.abs() * torch.tensor([1 / 3, 5 / 12, 1 / 3, 5 / 12, 1.0, 5 / 24, 5 / 12, 1 / 3])
    torch.testing.assert_close(ria_scores(W4x8, S4x8, 0.5), expected)
    # the method reads s_j in per-sample units from the running sums (2 samples x 3 tokens)
    stats = _stats(S4x8)
    torch.testing.assert_close(stats.sq_per_sample, S4x8)
    torch.testing.assert_close(RIA().scores(W4x8, stats), expected)
    # a = 0 is relative importance alone, a = 2 the full ||X_j||^2
    torch.testing.assert_close(ria_scores(W4x8, S4x8, 0.0), relative_importance(W4x8))
    torch.testing.assert_close(ria_scores(W4x8, S4x8, 2.0), relative_importance(W4x8) * S4x8)


def test_ria_masks_on_the_four_by_eight_matrix():
    scores = ria_scores(W4x8, S4x8)
    # row 0 scores: [1/3, 5/6, 0, 5/3 | 1, 5/24, 5/6, 1/3] -> prune (0, 1/3) and (5/24, 1/3)
    mask = target_mask(scores, SparsityTarget.nm(2, 4))
    assert mask[0].tolist() == [True, False, True, False, False, True, False, True]
    # unstructured: one threshold over the matrix (the reference's default), so rows differ
    mask = get_method("ria").prune([W4x8], _stats(S4x8), SparsityTarget.unstructured(0.5), None, ["x"])[0].mask
    threshold = scores.flatten().sort().values[16]
    assert torch.equal(mask, scores <= threshold)
    assert mask.sum(1).tolist() != [4, 4, 4, 4]
    # --per_outneuron: floor(8 * 0.5) per row
    per_row = RIA(RIAOptions(scope="row")).prune([W4x8], _stats(S4x8), SparsityTarget.unstructured(0.5), None, ["x"])
    assert per_row[0].mask.sum(1).tolist() == [4, 4, 4, 4]


def test_ria_all_zero_line_scores_zero_not_nan():
    w = W4x8.clone()
    w[:, 2] = 0  # a dead column: the reference divides 0 by 0 there
    w[3] = 0  # and a dead row
    scores = ria_scores(w, S4x8)
    assert torch.isfinite(scores).all()
    assert (scores[:, 2] == 0).all() and (scores[3] == 0).all()


# -- channel permutation --------------------------------------------------------------


def _random_scores(seed, rows=16, cols=32):
    return torch.rand(rows, cols, generator=torch.Generator().manual_seed(seed)) ** 3


def test_snake_allocation_by_hand():
    # K = 2 groups of 4: slice q of the ranking goes to position q, odd slices reversed
    assert snake_allocation(torch.arange(8), 4).tolist() == [0, 3, 4, 7, 1, 2, 5, 6]
    assert snake_allocation(torch.tensor([5, 1, 7, 3]), 2).tolist() == [5, 3, 1, 7]


def test_lexsort_primary_key_is_the_last():
    pruned = torch.tensor([2, 0, 1, 0])
    kept = torch.tensor([1.0, 3.0, 1.0, 0.5])
    # by kept score: 0.5 (3), then 1.0 twice (0 and 2: fewer pruned first -> 2, 0), then 3.0 (1)
    assert lexsort([pruned, kept]).tolist() == [3, 2, 0, 1]
    scores = _random_scores(0)
    assert torch.equal(column_order(scores, "sum"), scores.sum(0).argsort(stable=True))


@pytest.mark.parametrize("n, m", [(1, 4), (2, 4), (3, 4), (4, 8)])
def test_assignment_gains_closed_form_equals_sorting_every_candidate_group(n, m):
    scores = _random_scores(n + m)
    k = scores.shape[1] // m
    for column in range(m):
        gains = assignment_gains(scores, n, m, column)
        for r, g in itertools.product(range(k), range(k)):
            group = scores[:, r * m : (r + 1) * m].clone()
            group[:, column] = scores[:, g * m + column]
            brute = group.sort(dim=1).values[:, n:].sum()
            assert float(gains[r, g]) == pytest.approx(float(brute), rel=1e-5)


@pytest.mark.parametrize("permutation", ["heuristic", "lsa"])
def test_permuted_mask_folds_back_to_the_original_order(permutation):
    scores = _random_scores(1)
    weight = torch.randn(scores.shape, generator=torch.Generator().manual_seed(9))
    mask, index, _ = permuted_nm_mask(scores, 2, 4, permutation)
    assert sorted(index.tolist()) == list(range(scores.shape[1]))
    # permuted-then-unpermuted mask == the N:M mask of the permuted matrix, mapped back
    assert torch.equal(mask[:, index], nm_mask(scores[:, index], 2, 4))
    # N:M in the permuted order, group by group; in the stored order it is not
    pruned = weight.masked_fill(mask, 0)
    assert nm_conformance(pruned[:, index], 2, 4) == 1.0
    assert nm_conformance(pruned, 2, 4) < 1.0
    assert (mask.sum(1) == scores.shape[1] // 2).all()
    # the dense-with-zeros weight in the original order computes the permuted pruned layer
    x = torch.randn(5, scores.shape[1], generator=torch.Generator().manual_seed(3))
    permuted_layer = weight[:, index].masked_fill(nm_mask(scores[:, index], 2, 4), 0)
    torch.testing.assert_close(x @ pruned.t(), x[:, index] @ permuted_layer.t())


@pytest.mark.parametrize("seed", range(6))
def test_lsa_rounds_never_lower_the_kept_score(seed):
    scores = _random_scores(seed)
    _, _, info = permuted_nm_mask(scores, 2, 4, "lsa")
    rounds = info["nm_kept_score_rounds"]
    assert len(rounds) == 5  # the allocation, then one round per position
    assert all(after >= before - 1e-5 for before, after in zip(rounds, rounds[1:], strict=False))
    mask, _, _ = permuted_nm_mask(scores, 2, 4, "lsa")
    assert kept_score(scores, mask) == pytest.approx(info["nm_kept_score"], rel=1e-6)


def test_lsa_beats_plain_nm_where_the_allocation_is_the_original_order():
    # Column sums ranked so that the snake allocation is the identity: the permuted search
    # then starts from the plain mask, and no assignment round lowers the kept score.
    m, k, rows = 4, 8, 6
    identity_order = torch.empty(m * k, dtype=torch.long)
    for q in range(m):
        positions = torch.arange(k) * m + q
        identity_order[q * k : (q + 1) * k] = positions.flip(0) if q % 2 else positions
    assert torch.equal(snake_allocation(identity_order, m), torch.arange(m * k))
    scores = torch.rand(rows, m * k, generator=torch.Generator().manual_seed(4)) + 0.1
    rank = torch.empty(m * k)
    rank[identity_order] = torch.arange(m * k, dtype=torch.float32)
    scores = scores / scores.sum(0) * (1 + rank)  # column sum of column j = 1 + its rank
    assert torch.equal(column_order(scores, "sum"), identity_order)
    _, _, info = permuted_nm_mask(scores, 2, m, "lsa")
    assert info["nm_kept_score_rounds"][0] == pytest.approx(info["nm_kept_score_plain"], rel=1e-6)
    assert info["nm_kept_score"] > info["nm_kept_score_plain"]


def test_permutation_is_not_guaranteed_to_beat_plain_nm():
    # The allocation starts from a ranking, not from the original order: here both the
    # heuristic and the assignment rounds after it end below the plain 2:4 mask.
    scores = torch.tensor([[1.0, 6.0, 0.0, 6.0, 5.0, 0.0, 4.0, 1.0], [6.0, 5.0, 3.0, 3.0, 3.0, 9.0, 4.0, 5.0]])
    _, _, info = permuted_nm_mask(scores, 2, 4, "lsa")
    assert info["nm_kept_score_plain"] == 46.0
    assert info["nm_kept_score_rounds"] == [42.0, 43.0, 44.0, 45.0, 45.0]


def test_lsa_blocks_only_reorder_within_their_block():
    scores = _random_scores(2, cols=64)
    index = snake_allocation(column_order(scores), 4)
    moved = lsa_round(scores, index, 2, 4, column=1, blocks=2)
    for half in (slice(0, 32), slice(32, 64)):
        assert sorted(moved[half].tolist()) == sorted(index[half].tolist())
    assert torch.equal(moved[0::4], index[0::4])  # only position 1 of each group moves


def test_ria_method_returns_the_permuted_mask_and_its_scores():
    method = RIA(RIAOptions(permutation="lsa"))
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(7))
    stats = _stats(torch.rand(32, generator=torch.Generator().manual_seed(8)) + 0.1)
    [pruned] = method.prune([weight], stats, SparsityTarget.nm(2, 4), None, ["q"])
    scores = method.scores(weight, stats)
    expected, _, _ = permuted_nm_mask(scores, 2, 4, "lsa")
    assert torch.equal(pruned.mask, expected)
    assert pruned.info["nm_permutation"] == "lsa"
    with pytest.raises(CalibpruneError, match="^permutation 'random' is unknown: use one of none, heuristic, lsa$"):
        RIAOptions(permutation="random")


def test_permutation_and_admm_refuse_what_they_cannot_do():
    """Refused when the config is built, before any model is loaded (and by the method
    itself when called directly)."""
    from calibprune.config import PruneConfig
    from calibprune.options import OptionError

    weight = torch.randn(4, 8)
    stats = _stats(S4x8)
    with pytest.raises(CalibpruneError, match="N:M patterns only"):
        RIA(RIAOptions(permutation="lsa")).prune([weight], stats, SparsityTarget.unstructured(0.5), None, ["q"])
    half, two_four = SparsityTarget.unstructured(0.5), SparsityTarget.nm(2, 4)
    lsa = RIAOptions(permutation="lsa")
    with pytest.raises(OptionError, match="N:M patterns only") as raised:
        PruneConfig("ria", half, ria=lsa)
    assert raised.value.path == "ria.permutation"
    with pytest.raises(OptionError, match="permuted column order") as raised:
        PruneConfig("ria", two_four, ria=lsa, refine="dsnot")
    assert raised.value.path == "ria.permutation"
    with pytest.raises(OptionError, match="ADMM rewrites those values") as raised:
        PruneConfig("admm", two_four, refine="dsnot")
    assert raised.value.path == "refine"
    # ADMM on RIA's mask honours RIA's options, so the same refusals hold there
    with pytest.raises(OptionError, match="N:M patterns only"):
        PruneConfig("admm", half, ria=lsa, admm=ADMMOptions(mask="ria"))
    # the options are RIA's only when RIA makes the mask: with Wanda they are not checked against
    # the pattern here (the CLI's audit refuses them as unused, see test_cli)
    assert PruneConfig("wanda", half, ria=lsa).ria.permutation == "lsa"
    assert PruneConfig("ria", two_four, ria=lsa).describe() == "ria (lsa permutation) 2:4"
    assert PruneConfig("admm", half, admm=ADMMOptions(mask="wanda")).describe() == "admm on wanda 50% unstructured"


# -- ADMM -----------------------------------------------------------------------------


def _layer(seed=0, rows=12, cols=16, tokens=80):
    """A weight and G = X^T X of correlated inputs (rank-4 signal + noise, uneven scales)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, 4, generator=g) @ torch.randn(4, cols, generator=g)
    x = (x + 0.3 * torch.randn(tokens, cols, generator=g)) * torch.linspace(0.2, 3.0, cols)
    return torch.randn(rows, cols, generator=g), x.t() @ x


def test_cubic_schedule():
    assert sparsity_at(15, 15, 0.5, "cubic") == 0.5
    assert sparsity_at(1, 15, 0.5, "cubic") == pytest.approx(0.5 * (1 - (14 / 15) ** 3))
    values = [sparsity_at(t, 15, 0.5, "cubic") for t in range(1, 16)]
    assert values == sorted(values)
    assert sparsity_at(1, 15, 0.5, "full") == 0.5
    # the reference's schedule choice: full sparsity only on its default unstructured path
    assert ADMMOptions().schedule_for(SparsityTarget.unstructured(0.5)) == "full"
    assert ADMMOptions(scope="row").schedule_for(SparsityTarget.unstructured(0.5)) == "cubic"
    assert ADMMOptions().schedule_for(SparsityTarget.nm(2, 4)) == "cubic"


def test_admm_options_refuse_a_schedule_longer_than_the_iterations():
    with pytest.raises(CalibpruneError, match="^gradual_steps 15 is more than iters 10: .* raise iters$"):
        ADMMOptions(iters=10, gradual_steps=15)


def test_admm_on_a_fixed_mask_converges_to_the_damped_least_squares_optimum():
    # With a fixed mask, ADMM minimises (w - w0)^T (G + lambda diag(d^2)) (w - w0) per row
    # over the kept weights (lambda ~ percdamp, d_j = sqrt(G_jj)): closed form per row.
    weight, gram = _layer()
    target = SparsityTarget.unstructured(0.5)
    mask = target_mask(weight.abs() * torch.diagonal(gram).sqrt(), target, "row")
    new, out_mask, info = admm_prune(weight, gram, target, ADMMOptions(iters=400, gradual_steps=0), mask=mask)
    assert torch.equal(out_mask, mask) and (new[mask] == 0).all()
    d = torch.diagonal(gram).sqrt() + 1e-8
    h = (gram + info["admm_damping"] * torch.diag(d * d)).double()
    for i in range(weight.shape[0]):
        keep, drop = ~mask[i], mask[i]
        w0 = weight[i].double()
        expected = w0[keep] + torch.linalg.solve(h[keep][:, keep], h[keep][:, drop] @ w0[drop])
        torch.testing.assert_close(new[i][keep].double(), expected, atol=1e-4, rtol=1e-4)


def test_admm_default_twenty_iterations_lower_the_reconstruction_error():
    weight, gram = _layer(1)
    target = SparsityTarget.unstructured(0.5)
    new, mask, _ = admm_prune(weight, gram, target)
    masked = weight.masked_fill(mask, 0)

    def error(w):
        e = w - weight
        return float(torch.einsum("ij,jk,ik->", e, gram, e))

    assert error(new) < 0.5 * error(masked)


@pytest.mark.parametrize(
    "target, options",
    [
        (SparsityTarget.unstructured(0.5), ADMMOptions()),
        (SparsityTarget.unstructured(0.6), ADMMOptions(schedule="cubic")),
        (SparsityTarget.unstructured(0.6), ADMMOptions(scope="row")),
        (SparsityTarget.nm(2, 4), ADMMOptions()),
        (SparsityTarget.nm(4, 8), ADMMOptions()),
        (SparsityTarget.nm(1, 4), ADMMOptions()),
    ],
)
def test_admm_reaches_the_target_exactly(target, options):
    weight, gram = _layer(2)
    new, mask, _ = admm_prune(weight, gram, target, options)
    assert (new[mask] == 0).all()
    if target.is_nm:
        assert nm_conformance(new, target.n, target.m) == 1.0
        assert int(mask.sum()) == mask.numel() * target.n // target.m
    elif options.scope == "row":
        assert (mask.sum(1) == int(16 * target.ratio)).all()
    else:
        assert int(mask.sum()) == int(mask.numel() * target.ratio)


def test_admm_nm_selection_prunes_only_candidates_at_intermediate_sparsity():
    scores = torch.rand(6, 16, generator=torch.Generator().manual_seed(3))
    target = SparsityTarget.nm(2, 4)
    mask = select_mask(scores, target, 0.2, "matrix", [6])
    assert int(mask.sum()) == int(96 * 0.2)
    assert not (mask & ~nm_mask(scores, 2, 4)).any()


def test_admm_stacked_layers_equal_separate_solves():
    (w1, gram), (w2, _) = _layer(3), _layer(4)
    target = SparsityTarget.unstructured(0.5)
    stacked, mask, _ = admm_prune(torch.cat([w1, w2]), gram, target, row_groups=[12, 12])
    for part, w, m in zip(stacked.split(12), (w1, w2), mask.split(12), strict=True):
        alone, alone_mask, _ = admm_prune(w, gram, target)
        assert torch.equal(m, alone_mask)
        torch.testing.assert_close(part, alone, atol=1e-6, rtol=1e-5)


def test_admm_solves_in_fp32_and_zero_iterations_is_the_masked_weight():
    weight, gram = _layer(5)
    new, mask, _ = admm_prune(weight.half(), gram, SparsityTarget.unstructured(0.5))
    assert new.dtype == torch.float32 and new.device == weight.device
    target = SparsityTarget.unstructured(0.5)
    new, mask, _ = admm_prune(weight, gram, target, ADMMOptions(iters=0, gradual_steps=0))
    # one Wanda-scored selection over the matrix (|W_ij| d_j), no update
    wanda = weight.abs() * (torch.diagonal(gram).sqrt() + 1e-8)
    assert torch.equal(mask, select_mask(wanda, target, 0.5, "matrix", [12]))
    torch.testing.assert_close(new, weight.masked_fill(mask, 0))


def test_admm_method_on_a_wanda_mask_keeps_that_mask():
    from calibprune.pruning.methods import ADMM, Wanda

    weight, _ = _layer(6)
    stats = InputStatistics(16, frozenset({"xxt"}))
    stats.update(torch.randn(2, 40, 16, generator=torch.Generator().manual_seed(1)))
    method = ADMM(mask_method=Wanda())
    assert method.needs == {"xxt", "sq"}
    target = SparsityTarget.unstructured(0.5)
    [pruned] = method.prune([weight], stats, target, None, ["x"])
    assert torch.equal(pruned.mask, Wanda().prune([weight], stats, target, None, ["x"])[0].mask)
    assert (pruned.weight[pruned.mask] == 0).all()
    assert not torch.allclose(pruned.weight, weight.masked_fill(pruned.mask, 0))


# -- end to end: the CLI's checkpoint of a permuted RIA mask -----------------------------


class _PermutedLinear(torch.nn.Module):
    """A layer computed in the permuted column order: y = (W[:, index] * ~mask_p) x[index],
    with ``mask_p`` the N:M mask of the permuted order (what the reference computes before
    folding back)."""

    def __init__(self, dense: torch.Tensor, index: torch.Tensor, mask_p: torch.Tensor):
        super().__init__()
        self.index = index
        self.weight_p = dense[:, index].masked_fill(mask_p, 0)

    def forward(self, x):
        return torch.nn.functional.linear(x[..., self.index], self.weight_p)


def test_cli_ria_permutation_saves_a_plain_checkpoint_computing_the_permuted_model(
    tmp_path, monkeypatch, llama, model_dir, text_corpus, tokenizer
):
    """``prune --method ria --ria-permutation lsa --pattern 2:4``: the saved folder loads with
    plain transformers, its layers are the folded-back masks (2:4 in the permuted order, not
    in the stored one), and it computes what the permuted, unfolded model computes."""
    import copy

    from conftest import run_cli
    from transformers import AutoModelForCausalLM

    from calibprune.api import prune
    from calibprune.calibration import CalibrationSet, build_calibration
    from calibprune.models.layers import all_block_layers, weight_matrix
    from calibprune.pruning import methods

    folder = tmp_path / "set"
    build_calibration(str(text_corpus), tokenizer, nsamples=4, seqlen=16, seed=0).save(folder)
    out = tmp_path / "out"
    done = run_cli(
        "prune", "--model", str(model_dir), "--method", "ria", "--ria-permutation", "lsa", "--pattern", "2:4",
        "--calib", str(folder), "--output", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "prune_report.json").read_text())
    assert report["config"]["ria"]["permutation"] == "lsa"
    saved = AutoModelForCausalLM.from_pretrained(out).eval()  # plain transformers, no calibprune code

    # the same run in process, recording each layer's permutation and its permuted-order mask
    seen = {}

    def recording(scores, n, m, *args):
        mask, index, info = permuted_nm_mask(scores, n, m, *args)
        seen[args[-1]] = (index, mask[:, index])
        return mask, index, info

    monkeypatch.setattr(methods, "permuted_nm_mask", recording)
    dense = copy.deepcopy(llama)
    pruned = copy.deepcopy(llama)
    prune(pruned, CalibrationSet.load(folder), method="ria", pattern="2:4", ria=RIAOptions(permutation="lsa"))

    permuted = copy.deepcopy(llama)
    saved_layers, dense_layers = dict(all_block_layers(saved)), dict(all_block_layers(dense))
    assert set(seen) == set(saved_layers)
    unaligned = 0
    for name, (index, mask_p) in seen.items():
        assert (mask_p.reshape(mask_p.shape[0], -1, 4).sum(-1) == 2).all()  # exactly 2:4 in the permuted order
        stored = weight_matrix(saved_layers[name])
        dense_w = weight_matrix(dense_layers[name])
        # the checkpoint is the folded-back mask: W' = W * ~mask, mask[:, index] = mask_p
        torch.testing.assert_close(stored[:, index], dense_w[:, index].masked_fill(mask_p, 0), rtol=0, atol=0)
        unaligned += nm_conformance(stored, 2, 4) < 1.0
        parent, _, child = name.rpartition(".")
        setattr(permuted.get_submodule(parent), child, _PermutedLinear(dense_w, index, mask_p))
    assert unaligned > 0  # the stored order is not 2:4: the permutation moved some groups
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = permuted(ids).logits
        torch.testing.assert_close(saved(ids).logits, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pruned(ids).logits, expected, rtol=1e-5, atol=1e-5)


def test_the_engine_builds_each_method_with_the_configs_own_options():
    from calibprune.config import PruneConfig
    from calibprune.pruning.methods import ADMM, Wanda, build_method

    two_four = SparsityTarget.nm(2, 4)
    ria = build_method(PruneConfig("ria", two_four, ria=RIAOptions(a=1.0, permutation="heuristic")))
    assert isinstance(ria, RIA) and ria.options.a == 1.0 and ria.options.permutation == "heuristic"
    # a = 1 on the 4x8 matrix: RI * sqrt(s_j), with sqrt(S4x8) = [1, 4, 1, 4, 9, 1, 4, 1]
    torch.testing.assert_close(ria.scores(W4x8, _stats(S4x8)), relative_importance(W4x8) * S4x8.sqrt())
    gradual = build_method(PruneConfig("admm", two_four, admm=ADMMOptions(rho=2.0)))
    assert isinstance(gradual, ADMM) and gradual.mask_method is None and gradual.options.rho == 2.0
    assert gradual.needs == {"xxt"}
    on_ria = build_method(PruneConfig("admm", two_four, admm=ADMMOptions(mask="ria"), ria=RIAOptions(a=0.0)))
    assert isinstance(on_ria.mask_method, RIA) and on_ria.mask_method.options.a == 0.0
    assert on_ria.needs == {"xxt", "sq"}
    on_wanda = build_method(PruneConfig("admm", two_four, admm=ADMMOptions(mask="wanda")))
    assert type(on_wanda.mask_method) is Wanda


def test_admm_on_a_ria_mask_keeps_ria_s_mask_and_updates_the_weights(llama):
    """Through the engine: in the first block (same inputs for both runs) ADMM on RIA's mask
    prunes exactly RIA's positions and changes the kept weights."""
    import copy

    from calibprune.api import prune
    from calibprune.models.layers import all_block_layers, weight_matrix

    calib = torch.randint(0, 256, (4, 24), generator=torch.Generator().manual_seed(5))
    ria_model, admm_model = copy.deepcopy(llama), copy.deepcopy(llama)
    prune(ria_model, calib, method="ria", sparsity=0.5, progress=False)
    prune(admm_model, calib, method="admm", sparsity=0.5, admm=ADMMOptions(mask="ria"), progress=False)
    ria_layers, dense_layers = all_block_layers(ria_model), all_block_layers(llama)
    first = [n for n in all_block_layers(admm_model) if ".layers.0." in n]
    assert first
    for name, layer in all_block_layers(admm_model).items():
        if name not in first:
            continue
        ours, theirs = weight_matrix(layer), weight_matrix(ria_layers[name])
        assert torch.equal(ours == 0, theirs == 0), name
        kept = theirs != 0
        assert not torch.allclose(ours[kept], weight_matrix(dense_layers[name])[kept]), name


def _combinations():
    for method, extra in (
        ("ria", {}),
        ("ria", {"ria": RIAOptions(permutation="heuristic")}),
        ("admm", {}),
        ("admm", {"admm": ADMMOptions(mask="magnitude", iters=4, gradual_steps=2)}),
    ):
        for allocation in ("uniform", "owl"):
            for refine in ("none", "dsnot"):
                for target in ("50%", "4:8"):
                    yield method, extra, allocation, refine, target


def _refusal(method, extra, refine, target):
    """What PruneConfig must refuse among the combinations, and why (None: it runs)."""
    permuted = "ria" in extra and extra["ria"].permutation != "none"
    if permuted and target == "50%":
        return "N:M patterns only"
    if permuted and refine == "dsnot":
        return "permuted column order"
    if method == "admm" and refine == "dsnot":
        return "ADMM rewrites those values"
    return None


@pytest.mark.parametrize(
    "method, extra, allocation, refine, target",
    list(_combinations()),
    ids=lambda v: getattr(v, "permutation", None) or getattr(v, "mask", None) or str(v) if v != {} else "default",
)
def test_ria_and_admm_run_with_every_allocation_refinement_and_pattern_that_makes_sense(
    method, extra, allocation, refine, target, llama
):
    import copy

    from calibprune.config import OWLOptions, PruneConfig
    from calibprune.pruning.engine import prune_model

    sparsity = SparsityTarget.nm(4, 8) if target == "4:8" else SparsityTarget.unstructured(0.5)
    owl = OWLOptions(mixed_nm=True) if target == "4:8" else OWLOptions()
    why = _refusal(method, extra, refine, target)
    if why is not None:
        with pytest.raises(CalibpruneError, match=why):
            PruneConfig(method, sparsity, allocation=allocation, refine=refine, owl=owl, **extra)
        return
    config = PruneConfig(method, sparsity, allocation=allocation, refine=refine, owl=owl, **extra)
    calib = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    from calibprune.calibration import CalibrationSet

    report = prune_model(copy.deepcopy(llama), CalibrationSet(calib), config, progress=False)
    summary = report["summary"]
    # OWL moves block sparsities (mixed N:M: by whole N per block, here 3 blocks) and DSnoT's reference
    # rules let counts drift (its `improve` rule keeps them): only uniform, unrefined runs hit the target
    exact = allocation == "uniform" and refine == "none"
    assert summary["sparsity_pruned_layers"] == pytest.approx(0.5, abs=0.02 if exact else 0.15)
    if refine == "dsnot":
        assert sum(r.get("dsnot_swaps", 0) for r in report["layers"].values()) > 0
    if target == "4:8" and allocation == "uniform" and refine == "none" and "ria" not in extra:
        assert summary["nm_conformance_min"] == 1.0
