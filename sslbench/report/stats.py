"""The statistics of a leaderboard: a mean over seeds with its 95 % confidence interval, and
whether two rows can be told apart.

A row's interval is Student's t interval of the mean of its n runs (one per seed)::

    mean ± t(0.975, n − 1) · s / √n        s: the sample standard deviation (n − 1)

A row of one run has no interval: it says so rather than showing ± 0. Two rows are **tied** when
their intervals overlap. That is the rule the leaderboard marks ties by, and a conservative test:
two 95 % intervals that do not overlap always differ at p < 0.05 by Welch's two-sided t-test
(checked in ``tests/report/test_stats.py``), while some overlapping pairs would pass Welch's test
too. Welch's p-value itself (unequal variances, Welch–Satterthwaite degrees of freedom) is given
beside the mark in the exports.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval; ``half`` is None for a single value."""

    mean: float
    half: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None else self.mean + self.half

    def overlaps(self, other: Interval) -> bool | None:
        """Whether the two intervals share a point; None when either has no interval."""
        if self.half is None or other.half is None:
            return None
        return abs(self.mean - other.mean) <= self.half + other.half


def t_quantile(probability: float, df: float) -> float:
    """The ``probability`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(probability, df))


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of ``values`` and its two-sided ``level`` t interval (none for one value)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, None, n)
    sem = statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, t_quantile(0.5 + level / 2, n - 1) * sem, n)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Welch's two-sided p-value for equal means of ``a`` and ``b`` (None with fewer than two
    values on a side); 1.0 for two constant samples with the same mean, 0.0 with different."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return 1.0 if diff == 0 else 0.0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    from scipy.stats import t

    return float(2 * t.sf(abs(diff) / math.sqrt(va + vb), df))
