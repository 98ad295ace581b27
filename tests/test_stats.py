"""Statistics: CIs and paired / unpaired differences against direct computations, and ranks with statistical ties."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fewshot.evaluate.stats import (MeanCI, is_significant, mean_ci, paired_difference, tied_ranks,
                           unpaired_difference)

Z = scipy_stats.norm.ppf(0.975)


def test_mean_ci_is_the_normal_95_interval():
    v = np.random.default_rng(0).random(37)
    s = mean_ci(v)
    assert s.n == 37 and s.mean == pytest.approx(v.mean())
    assert s.ci95 == pytest.approx(Z * scipy_stats.sem(v), rel=1e-9)
    assert np.isnan(mean_ci([0.5]).ci95)
    with pytest.raises(ValueError):
        mean_ci([])


def test_paired_difference_uses_per_episode_differences():
    rng = np.random.default_rng(1)
    base = rng.random(200)
    a, b = base + 0.01 + 0.02 * rng.standard_normal(200), base + 0.02 * rng.standard_normal(200)
    d = paired_difference(a, b)
    assert d.mean == pytest.approx((a - b).mean())
    assert d.ci95 == pytest.approx(Z * (a - b).std(ddof=1) / np.sqrt(200), rel=1e-9)
    # Pairing removes the shared per-episode difficulty: much narrower than the unpaired interval.
    u = unpaired_difference(a, b)
    assert u.mean == pytest.approx(d.mean)
    assert u.ci95 == pytest.approx(Z * np.sqrt(a.var(ddof=1) / 200 + b.var(ddof=1) / 200), rel=1e-9)
    assert d.ci95 < u.ci95 / 5
    with pytest.raises(ValueError, match="equal shapes"):
        paired_difference(a, b[:-1])


def test_significance_and_undefined_ci():
    assert is_significant(MeanCI(0.02, 0.01, 100)) and is_significant(MeanCI(-0.02, 0.01, 100))
    assert not is_significant(MeanCI(0.01, 0.01, 100)) and not is_significant(MeanCI(0.3, float("nan"), 1))


def constant_plus(mean: float, spread: float, n: int = 400, seed: int = 0) -> np.ndarray:
    """Values with an exact mean and a sample standard deviation of ``spread`` (so the CI is known)."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + spread * z


def test_tied_ranks_follow_meta_datasets_rule():
    # Unpaired CI of a difference between two of these: 1.96 * sqrt(2 * 0.1^2 / 400) = 0.0139.
    values = {"a": constant_plus(0.800, 0.1, seed=1), "b": constant_plus(0.790, 0.1, seed=2),
              "c": constant_plus(0.780, 0.1, seed=3), "d": constant_plus(0.700, 0.1, seed=4),
              "e": constant_plus(0.700, 0.1, seed=5)}
    ranks = tied_ranks(values, paired=False)
    # a is best; b (0.010 below) is tied with it, c (0.020 below) is not, although c is tied with b: the rule
    # compares with the best of the remaining group only. Tied groups share the mean of their places.
    assert ranks == {"a": 1.5, "b": 1.5, "c": 3.0, "d": 4.5, "e": 4.5}


def test_tied_ranks_paired_use_episode_differences():
    rng = np.random.default_rng(3)
    difficulty = rng.random(300)
    better = np.clip(difficulty + 0.03, 0, 1)
    values = {"x": better, "y": difficulty, "z": difficulty.copy()}
    # Paired, x's +0.03 on every episode is significant; y and z are identical and tie.
    assert tied_ranks(values, paired=True) == {"x": 1.0, "y": 2.5, "z": 2.5}
    # Unpaired, the episodes' spread hides the same difference: all three tie.
    assert tied_ranks(values, paired=False) == {"x": 2.0, "y": 2.0, "z": 2.0}
    with pytest.raises(ValueError, match="equal length"):
        tied_ranks({"x": better, "y": difficulty[:-1]}, paired=True)


def test_tied_ranks_of_one_episode_rank_by_value():
    # A fixed evaluation set scored once has no CI across episodes: ranks follow the values, equal ones tie.
    values = {"a": [0.80], "b": [0.86], "c": [0.80], "d": [0.75]}
    assert tied_ranks(values, paired=True) == {"b": 1.0, "a": 2.5, "c": 2.5, "d": 4.0}
    assert tied_ranks(values, paired=False) == {"b": 1.0, "a": 2.5, "c": 2.5, "d": 4.0}


def test_tied_ranks_do_not_depend_on_order():
    values = {"m1": constant_plus(0.6, 0.2, seed=6), "m2": constant_plus(0.6, 0.2, seed=7),
              "m3": constant_plus(0.9, 0.01, seed=8)}
    assert tied_ranks(values, paired=False) == tied_ranks(dict(reversed(list(values.items()))), paired=False)
    assert tied_ranks(values, paired=False)["m3"] == 1.0
