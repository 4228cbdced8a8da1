"""What a reproduction reports over seeds: a mean with its 95 % Student-t interval."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95 % Student-t interval (nan with one value, both nan
    with none or a non-finite one): t₀.₉₇₅(n − 1) · s / √n."""
    from scipy.stats import t

    if not values or not all(math.isfinite(v) for v in values):
        return math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
