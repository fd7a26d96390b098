"""Latency from Prometheus histogram buckets: quantiles for status, "slower than t" counts for tests.

Buckets are (upper bound in seconds, cumulative count) pairs sorted by bound, the last bound +inf,
as in a histogram's `_bucket{le=...}` series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Buckets = tuple[tuple[float, float], ...]


def add_buckets(left: Sequence[tuple[float, float]], right: Sequence[tuple[float, float]]) -> Buckets:
    """Bucket-wise sum of two histograms; bounds missing on one side count as zero there.

    >>> add_buckets([(0.1, 2), (math.inf, 3)], [(0.1, 1), (math.inf, 1)])
    ((0.1, 3.0), (inf, 4.0))
    """
    totals: dict[float, float] = {}
    for bound, count in (*left, *right):
        totals[float(bound)] = totals.get(float(bound), 0.0) + float(count)
    return tuple(sorted(totals.items()))


def total_count(buckets: Sequence[tuple[float, float]]) -> float:
    """Observations in the histogram: the +inf bucket's cumulative count."""
    return float(buckets[-1][1]) if buckets else 0.0


def histogram_quantile(buckets: Sequence[tuple[float, float]], quantile: float) -> float | None:
    """The quantile by linear interpolation within its bucket, as Prometheus' histogram_quantile.

    The first bucket is taken to start at 0; a quantile falling in the +inf bucket returns the highest
    finite bound (Prometheus does the same). None when there are no observations.

    >>> histogram_quantile([(0.1, 50), (0.2, 90), (math.inf, 100)], 0.5)
    0.1
    >>> round(histogram_quantile([(0.1, 50), (0.2, 90), (math.inf, 100)], 0.7), 3)
    0.15
    """
    total = total_count(buckets)
    if total <= 0:
        return None
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def summarize_latency(buckets: Sequence[tuple[float, float]]) -> dict[str, float | None]:
    """p50, p90 and p99 in seconds, for status and the UI.

    >>> summarize_latency([(0.1, 50), (0.2, 90), (math.inf, 100)])
    {'p50': 0.1, 'p90': 0.2, 'p99': 0.2}
    """
    return {
        "p50": histogram_quantile(buckets, 0.5),
        "p90": histogram_quantile(buckets, 0.9),
        "p99": histogram_quantile(buckets, 0.99),
    }


def bound_at_or_above(buckets: Sequence[tuple[float, float]], seconds: float) -> float:
    """The smallest bucket bound >= seconds: counts are only observable at bounds, and rounding the
    threshold up keeps "slower than the threshold" from counting requests that were not slower.

    >>> bound_at_or_above([(0.05, 1), (0.1, 2), (math.inf, 3)], 0.06)
    0.1
    """
    for bound, _ in buckets:
        if bound >= seconds - 1e-12:
            return float(bound)
    return math.inf


def slower_than(buckets: Sequence[tuple[float, float]], bound: float) -> float:
    """Observations above the bucket bound `bound` (total minus the bucket's cumulative count).

    >>> slower_than([(0.05, 80), (0.1, 95), (math.inf, 100)], 0.05)
    20.0
    """
    for le, count in buckets:
        if le >= bound - 1e-12:
            return max(total_count(buckets) - float(count), 0.0)
    return 0.0


def bound_at_or_below(buckets: Sequence[tuple[float, float]], seconds: float) -> float | None:
    """The largest finite bucket bound <= seconds (None when seconds is below every bound).

    >>> bound_at_or_below([(0.1, 1), (0.25, 2), (math.inf, 3)], 0.24), bound_at_or_below([(0.1, 1)], 0.05)
    (0.1, None)
    """
    below = [float(bound) for bound, _ in buckets if math.isfinite(bound) and bound <= seconds + 1e-12]
    return below[-1] if below else None


def share_slower(buckets: Sequence[tuple[float, float]], seconds: float) -> float:
    """Share of observations slower than `seconds`, log-log interpolated between the bounds around it.

    Between two bounds l < t <= u the tail is taken as a power law (ln share linear in ln t). For tails that
    fall faster and faster (lognormal, normal) the chord lies below the true tail, so the share is not
    overstated. Below the smallest bound, or where a share is 0, the share above the next bound up is used
    (rounding up, never down). 0.0 for an empty histogram.

    >>> h = [(0.05, 50), (0.1, 90), (0.25, 99), (math.inf, 100)]
    >>> round(share_slower(h, 0.1), 3), round(share_slower(h, 0.0707), 3)   # sqrt(0.05 * 0.1): geometric middle
    (0.1, 0.224)
    """
    total = total_count(buckets)
    if total <= 0:
        return 0.0
    finite = [(float(bound), slower_than(buckets, bound) / total) for bound, _ in buckets if math.isfinite(bound)]
    lower: tuple[float, float] | None = None
    for bound, share in finite:
        if bound >= seconds - 1e-12:
            if lower is None or lower[1] <= 0 or share <= 0 or bound <= seconds + 1e-12:
                return share
            fraction = math.log(seconds / lower[0]) / math.log(bound / lower[0])
            return math.exp(math.log(lower[1]) + fraction * (math.log(share) - math.log(lower[1])))
        lower = (bound, share)
    return 0.0
