"""Statistics for few-shot results: means with 95% confidence intervals, paired differences."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


@dataclass(frozen=True)
class MeanCI:
    """A mean and the half-width of its 95% confidence interval (``mean +- ci95``), over ``n`` values."""

    mean: float
    ci95: float
    n: int

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f} +- {100 * self.ci95:.2f}"


def mean_ci(values) -> MeanCI:
    """Mean and 95% CI half-width ``1.96 * std / sqrt(n)`` (sample std, ddof=1), the convention of the papers."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values")
    if v.size == 1:
        return MeanCI(float(v[0]), float("nan"), 1)
    return MeanCI(float(v.mean()), Z95 * float(v.std(ddof=1)) / math.sqrt(v.size), int(v.size))


def paired_difference(a, b) -> MeanCI:
    """Mean of ``a - b`` over the same episodes, with the 95% CI of that paired difference."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal shapes, got {a.shape} and {b.shape}")
    return mean_ci(a - b)


def unpaired_difference(a, b) -> MeanCI:
    """``mean(a) - mean(b)`` for independent samples, with the 95% CI ``1.96 * sqrt(s_a^2/n_a + s_b^2/n_b)``.

    The test meta-dataset's leaderboard uses to rank methods evaluated on different episodes; for results on the
    same episodes :func:`paired_difference` is the right (and more powerful) one.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("no values")
    if a.size < 2 or b.size < 2:
        return MeanCI(float(a.mean() - b.mean()), float("nan"), int(min(a.size, b.size)))
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return MeanCI(float(a.mean() - b.mean()), Z95 * se, int(min(a.size, b.size)))


def is_significant(difference: MeanCI) -> bool:
    """Whether a difference's 95% CI excludes zero (``|mean| > ci95``); an undefined CI is never significant."""
    return bool(math.isfinite(difference.ci95) and abs(difference.mean) > difference.ci95)


def tied_ranks(values: dict[str, "np.ndarray | list[float]"], paired: bool = True) -> dict[str, float]:
    """Ranks (1 = best, higher values are better) in which statistically indistinguishable entries share a rank.

    The rule of meta-dataset's ``Leaderboard.ipynb`` (``compute_ranks``): take the remaining entry with the highest
    mean; every remaining entry whose difference to it is not significant (its 95% CI contains zero) is tied with
    it; the tied group shares the mean of the ranks it occupies (``next + (k - 1) / 2`` for ``k`` entries); remove
    the group and repeat with the next free rank. Differences are paired (per-episode differences, same episodes,
    equal lengths) when ``paired``, else unpaired as in meta-dataset. Equal means are broken by name, so the result
    does not depend on the order of ``values``. Where a difference has no CI (a single episode, as in a fixed
    evaluation set scored once), only equal values tie: every entry would otherwise tie with every other.
    """
    arrays = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    if paired:
        sizes = {a.shape for a in arrays.values()}
        if len(sizes) > 1:
            raise ValueError(f"paired ranks need values of equal length, got shapes {sorted(sizes)}")
    compare = paired_difference if paired else unpaired_difference
    remaining = sorted(arrays, key=lambda n: (-float(arrays[n].mean()), n))
    ranks: dict[str, float] = {}
    next_rank = 1
    while remaining:
        best = remaining[0]
        tied = [best] + [n for n in remaining[1:] if not _distinguishable(compare(arrays[best], arrays[n]))]
        shared = next_rank + (len(tied) - 1) / 2
        for name in tied:
            ranks[name] = shared
        next_rank += len(tied)
        remaining = [n for n in remaining if n not in tied]
    return ranks


def _distinguishable(difference: MeanCI) -> bool:
    """Whether two entries get different ranks: a significant difference, or any nonzero one where no CI exists."""
    if not math.isfinite(difference.ci95):
        return difference.mean != 0.0
    return is_significant(difference)
