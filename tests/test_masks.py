"""Mask rules, checked against hand-computed answers."""

import pytest
import torch

from calibprune.config import SparsityTarget, pruned_count
from calibprune.errors import CalibpruneError
from calibprune.pruning.masks import nm_conformance, nm_mask, prune_lowest, target_mask, unstructured_mask
from calibprune.pruning.methods import get_method
from calibprune.pruning.stats import InputStatistics


def test_two_four_on_a_one_by_eight_row():
    row = torch.tensor([[0.9, -0.1, 0.5, 0.2, -0.05, 0.7, -0.8, 0.3]])
    mask = target_mask(row.abs(), SparsityTarget.parse(pattern="2:4"))
    # group 1: |.9 .1 .5 .2| -> prune .1 and .2; group 2: |.05 .7 .8 .3| -> prune .05 and .3
    assert mask.tolist() == [[False, True, False, True, True, False, False, True]]


@pytest.mark.parametrize(
    "pattern, expected",
    [
        # N counts PRUNED weights: 1:4 prunes the single smallest of each group of 4 ...
        ("1:4", [[False, True, False, False, True, False, False, False]]),
        # ... and 3:4 prunes all but the largest.
        ("3:4", [[False, True, True, True, True, False, True, True]]),
    ],
)
def test_nm_convention_n_is_pruned(pattern, expected):
    row = torch.tensor([[0.9, 0.1, 0.5, 0.2, 0.05, 0.7, 0.6, 0.3]])
    target = SparsityTarget.parse(pattern=pattern)
    mask = target_mask(row, target)
    assert mask.tolist() == expected
    assert target.ratio == pytest.approx(int(pattern[0]) / 4)


def test_ties_prune_lower_index_first():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0, 2.0, 2.0]])
    assert prune_lowest(scores, 2).tolist() == [[True, True, False, False, False, False]]


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.57, 0.7])
def test_unstructured_row_scope_is_exact_per_row(ratio):
    scores = torch.rand(37, 100, generator=torch.Generator().manual_seed(0))
    mask = unstructured_mask(scores, ratio, "row")
    assert (mask.sum(1) == pruned_count(100, ratio)).all()
    # and the pruned ones are the lowest of their row
    kept_min = scores.masked_fill(mask, float("inf")).min(1).values
    pruned_max = scores.masked_fill(~mask, float("-inf")).max(1).values
    assert (pruned_max <= kept_min).all()


def test_unstructured_matrix_scope_is_one_threshold():
    scores = torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    mask = unstructured_mask(scores, 0.5, "matrix")
    # Wanda's prune_magnitude: W_metric <= sort(flat)[int(6 * 0.5)] = 10, so 4 of 6, not 50% per row
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    # and every tie at the threshold goes too: sort([1, 2, 2, 2])[int(4 * 0.25)] = 2
    assert unstructured_mask(torch.tensor([[1.0, 2.0, 2.0, 2.0]]), 0.25, "matrix").all()


def test_pruned_count_survives_float_rounding():
    assert 100 * 0.57 < 57  # the float product is 56.99999...
    assert pruned_count(100, 0.57) == 57


def test_wanda_and_magnitude_differ_when_activations_reverse_the_order():
    weight = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    # input column norms 1, 2, 4, 8 -> Wanda scores 4*1, 3*2, 2*4, 1*8 = 4, 6, 8, 8
    x = torch.tensor([[1.0, 2.0, 4.0, 8.0]])
    stats = InputStatistics(4, frozenset({"sq"}))
    stats.update(x)
    target = SparsityTarget.unstructured(0.5)
    wanda = get_method("wanda")
    magnitude = get_method("magnitude")
    assert torch.allclose(wanda.scores(weight, stats), torch.tensor([[4.0, 6.0, 8.0, 8.0]]))
    wanda_mask = target_mask(wanda.scores(weight, stats), target, wanda.scope)
    magnitude_mask = target_mask(magnitude.scores(weight, None), target, magnitude.scope)
    # the reference threshold: every |w| <= sorted(|w|)[int(4 * 0.5)] = 3 is pruned
    assert magnitude_mask.tolist() == [[False, True, True, True]]
    assert wanda_mask.tolist() == [[True, True, False, False]]  # smallest |w|*||x||: 4 and 6


def test_nm_conformance_counts_groups():
    w = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]])
    assert nm_conformance(w, 2, 4) == 0.5
    assert nm_conformance(torch.rand(8, 16) + 1, 2, 4) == 0.0  # no zeros at all
    w2 = torch.rand(8, 16) + 1
    w2[nm_mask(torch.rand(8, 16), 2, 4)] = 0
    assert nm_conformance(w2, 2, 4) == 1.0


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, float("nan")])
def test_sparsity_out_of_range(sparsity):
    with pytest.raises(CalibpruneError, match=r"outside \[0, 1\)"):
        SparsityTarget.parse(sparsity=sparsity)


@pytest.mark.parametrize("pattern", ["4:4", "5:4", "0:4", "2:0"])
def test_bad_nm(pattern):
    with pytest.raises(CalibpruneError, match="0 < N < M"):
        SparsityTarget.parse(pattern=pattern)


def test_pattern_syntax_and_exclusivity():
    with pytest.raises(CalibpruneError, match="not of the form N:M"):
        SparsityTarget.parse(pattern="2-4")
    with pytest.raises(CalibpruneError, match="only one"):
        SparsityTarget.parse(sparsity=0.5, pattern="2:4")
    with pytest.raises(CalibpruneError, match="no sparsity given"):
        SparsityTarget.parse()


def test_width_not_divisible_by_m():
    with pytest.raises(CalibpruneError, match="not divisible by M=3"):
        nm_mask(torch.rand(2, 8), 1, 3)


def test_prune_lowest_equals_the_first_positions_of_a_stable_sort():
    """The linear-time selection against an independent rule, on heavily tied scores."""
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        scores = torch.randint(0, 5, (7, 33), generator=g).float()
        count = int(torch.randint(0, 34, (1,), generator=g))
        expected = torch.zeros_like(scores, dtype=torch.bool)
        if count:
            expected.scatter_(-1, torch.sort(scores, dim=-1, stable=True).indices[:, :count], True)
        assert torch.equal(prune_lowest(scores, count), expected)
