"""The power simulation (calibprune.experiments.power, benchmarks/power.py) against a case with
a known answer: one Welch difference of two arms with a known seed sd, where the normal
approximation gives the seeds for 80 % power at a one-sided 2.5 % level."""

from __future__ import annotations

import math

import pytest

from calibprune.experiments import power as pw


def welch_design(sd: float) -> pw.Design:
    """C3 with one setting: ``a`` (the training-like source) against ``b``, seed sd ``sd`` (log ppl)."""
    arms = [pw.Arm({"model": "m", "calib": c, "setting": "wanda 2:4"}, math.log(100.0), sd, False) for c in "ab"]
    context = pw.context_of(arms[0].attrs)
    return pw.Design(
        "toy", "C3", "m", "ppl/x", {"better": "a", "worse": ["b"]}, arms, [[0], [1]], [0.0, 0.0], 5,
        level={context: math.log(100.0)},
    )  # fmt: skip


def test_simulated_power_at_the_normal_approximation_seeds_is_80_percent():
    effect = pw.PAPER["C3"].shift({"calib": "a"}, {"better": "a"})  # log ppl, the paper's 1.3 points
    assert effect == pytest.approx(1.3 * pw.KAPPA)
    sd = effect * math.sqrt(30 / (2 * 7.8489))  # normal approximation: 30 seeds per arm
    n = pw.normal_seeds(sd, effect)
    assert n == pytest.approx(30.0, rel=1e-3)
    design = welch_design(sd)
    # a t test at 58 df has a little less power than the normal approximation (79 %); 400 runs: SE 2 %
    assert abs(pw.power(design, 30, reps=400, seed=1) - 0.8) < 0.06
    assert pw.power(design, 30, multiplier=0.0, reps=200, seed=2) <= 0.05  # no effect: 2.5 % one-sided
    assert 0.8 < pw.mde(design, 30, reps=100, seed=3) < 1.25


def test_seeds_for_finds_the_grid_answer_and_says_when_none_is_enough():
    effect = pw.PAPER["C3"].shift({"calib": "a"}, {"better": "a"})
    design = welch_design(effect * math.sqrt(8 / (2 * 7.8489)))  # about 8-9 seeds
    n, seen = pw.seeds_for(design, reps=100, seed=4)
    assert 6 <= n <= 12 and seen[n] >= 0.8 and all(p < 0.8 for k, p in seen.items() if k < n - 1)
    assert pw.seeds_for(welch_design(10 * effect), reps=20, most=5)[0] is None  # sd 10x the effect
