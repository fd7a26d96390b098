"""How far an Inconclusive metric is from a Pass, in canary requests and time, for its status message.

A Pass needs the interval's upper end below the tolerated limit. The distance from the estimate to the upper
end shrinks about as 1 / sqrt(samples) (a little slower: the always-valid radius grows with log samples), so
if the canary keeps behaving as so far (same estimate) the upper end reaches the limit after about

    samples x ((upper - estimate) / (limit - estimate))^2

samples. That is a rough projection, not a promise: it is printed as "about", and `make bench-decisions`
measures how it compares with the requests a Pass really took.

>>> requests_to_pass(estimate=0.0, upper=0.01, limit=0.005, samples=2000.0, requests_per_sample=1.0)
6000.0
>>> requests_to_pass(estimate=0.006, upper=0.01, limit=0.005, samples=2000.0, requests_per_sample=1.0) is None
True
"""

from __future__ import annotations

import math


def requests_to_pass(
    estimate: float, upper: float, limit: float, samples: float, requests_per_sample: float
) -> float | None:
    """More canary requests a Pass would need at the current estimate; None when none would do."""
    if samples <= 0 or not math.isfinite(upper) or estimate >= limit:
        return None  # at this estimate the upper end cannot fall below the limit, however long we wait
    if upper < limit:
        return 0.0
    needed = samples * ((upper - estimate) / (limit - estimate)) ** 2
    return (needed - samples) * requests_per_sample


def requests_to_pass_ratio(
    estimate: float, upper: float, samples: float, requests_per_sample: float, floor: float = 1.0 / 16.0
) -> float | None:
    """As requests_to_pass for a ratio that passes below 1 (latency against stable, tail.py), whose interval shrinks
    in log scale; an estimate below `floor` (the smallest ratio the interval reports) counts as the floor.

    >>> requests_to_pass_ratio(estimate=0.0, upper=4.0, samples=100.0, requests_per_sample=1.0)
    125.0
    """
    if samples <= 0 or not math.isfinite(upper) or estimate >= 1.0:
        return None
    if upper < 1.0:
        return 0.0
    low = math.log(max(estimate, floor))
    needed = samples * ((math.log(upper) - low) / -low) ** 2
    return (needed - samples) * requests_per_sample


def progress_note(more_requests: float | None, requests_per_second: float | None) -> str:
    """The clause appended to an Inconclusive message.

    >>> progress_note(12_345.0, 20.0)
    'a Pass needs about 12,000 more canary requests (about 10m at 20/s) if the canary keeps behaving as so far'
    >>> progress_note(None, 20.0)
    'no Pass expected while the estimate stays at or above the tolerated limit'
    """
    if more_requests is None:
        return "no Pass expected while the estimate stays at or above the tolerated limit"
    rounded = float(f"{more_requests:.2g}") if more_requests >= 1 else 0.0
    text = f"a Pass needs about {rounded:,.0f} more canary requests"
    if requests_per_second and requests_per_second > 0:
        text += f" (about {_duration(more_requests / requests_per_second)} at {requests_per_second:.3g}/s)"
    return f"{text} if the canary keeps behaving as so far"


def _duration(seconds: float) -> str:
    """A short human duration.

    >>> _duration(42), _duration(617), _duration(3 * 3600 + 1200)
    ('42s', '10m', '3h20m')
    """
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
