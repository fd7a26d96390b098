"""The live inputs of a sliding window, from each pod's cumulative drift counters read at a few moments.

A pod's counters only grow while it runs; a restarted pod starts again from zero. The window's counts of one
pod are its counters now minus its counters at the newest reading at least `window` old (or its oldest reading,
while the pod has not been watched that long); when any counter went down the pod restarted in between, and
everything it counted since then is in the window, as the analysis engine treats a counter reset.

>>> a = {("f0", 0): 10.0, ("f0", 1): 5.0}
>>> b = {("f0", 0): 14.0, ("f0", 1): 9.0}
>>> c = {("f0", 0): 20.0, ("f0", 1): 9.0}
>>> window_increase([Reading(0.0, a), Reading(5.0, b), Reading(10.0, c)], now=10.0, window=5.0)
({('f0', 0): 6.0, ('f0', 1): 0.0}, 5.0)
>>> window_increase([Reading(0.0, b), Reading(5.0, a)], now=5.0, window=5.0)  # restarted: counts since
({('f0', 0): 10.0, ('f0', 1): 5.0}, 5.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Key = tuple[str, int]  # (feature, bin)


@dataclass(frozen=True)
class Reading:
    at: float  # seconds on a monotonic clock
    counts: Mapping[Key, float]


def window_increase(readings: Sequence[Reading], now: float, window: float) -> tuple[dict[Key, float], float]:
    """One pod's counts over the window ending at its last reading, and the seconds they cover."""
    last = readings[-1]
    old = [r for r in readings if r.at <= now - window]
    base = old[-1] if old else readings[0]
    if any(last.counts.get(k, 0.0) < v for k, v in base.counts.items()):
        return dict(last.counts), last.at - base.at
    return {k: v - base.counts.get(k, 0.0) for k, v in last.counts.items()}, last.at - base.at


def kept(readings: Sequence[Reading], now: float, window: float) -> list[Reading]:
    """The readings a later window can still need: the newest one at least `window` old and all after it.

    >>> [r.at for r in kept([Reading(t, {}) for t in (0.0, 2.0, 4.0, 6.0)], now=6.0, window=3.0)]
    [2.0, 4.0, 6.0]
    """
    old = [i for i, r in enumerate(readings) if r.at <= now - window]
    return list(readings[old[-1]:] if old else readings)
