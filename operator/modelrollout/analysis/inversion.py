"""Intervals obtained by inverting the tests that decide, so that a verdict and its interval cannot disagree.

An always-valid confidence set is the set of effect sizes an e-process has not rejected. The rollback
test of sequential.py asks "is the canary's rate ratio above 1?"; asking the same question for every
ratio psi ("is it above psi?", with alternatives psi*q) and, downwards, "is it below psi?" (psi/q) gives
the ratios that are still possible. Fail is the test at psi = 1, so Fail <=> the lower end is above 1.

**Why it is valid for the rate ratio psi = p_c / p_s.** Given the tick's requests (n_c, n_s), the
per-tick likelihood ratio of Binomial(E, theta(psi*q)) to Binomial(E, theta(psi)) for the canary's share
of the E events is exp(A e_c + B E) with constants A, B. With independent binomial counts,
E exp(A e_c + B E) = (1 - p_c + p_c e^(A+B))^n_c (1 - p_s + p_s e^B)^n_s, and a binomial moment generating
function is at most the Poisson one, exp(n p (e^x - 1)). For Poisson counts, conditioning on E makes the
canary's share exactly Binomial(E, theta(p_c/p_s)), where the likelihood ratio has expectation 1 (or at most
1 when the true ratio is on the null side, by monotone likelihood ratio). So every test of the family is an
e-process whatever the stable rate does between ticks, as long as the ratio stays on its null side.

**Why it can be stored.** With ratios on a lattice of step h = ln 2 / 8 (9% apart) and alternatives q that
are lattice steps too (2^(5/8), 2, 2^(13/8), 2^(19/8)), the likelihood ratio of psi*q to psi is
L(psi*q) / L(psi): the state keeps one cumulative log likelihood per lattice ratio, not one per pair.
Each test's log e-value falls as psi rises (per tick its derivative is -E (theta(psi q) - theta(psi)) < 0),
so the rejected ratios below are one interval and the ends are found where the e-value crosses 1/alpha,
interpolated between the two lattice ratios around the crossing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq
from scipy.special import expit, log_expit, logit

FloatArray = npt.NDArray[np.float64]

STEP = math.log(2.0) / 8.0
ODDS_STEPS: tuple[int, ...] = (5, 8, 13, 19)  # alternatives q = 2^(j/8): 1.54, 2, 3.08, 5.19
ODDS_WEIGHTS: tuple[float, ...] = (0.2, 0.35, 0.35, 0.1)
# The upper end decides Pass (non-inferiority within a margin, often a ratio of 1.1-1.5), so the downward
# tests also look for small changes: a test cannot exclude ratios closer than about half its smallest
# alternative, and the rollback grid alone would keep the upper end 24% above the estimate for ever.
DOWN_STEPS: tuple[int, ...] = (1, 2, 3, 5, 8, 13)  # 1.09, 1.19, 1.30, 1.54, 2, 3.08
DOWN_WEIGHTS: tuple[float, ...] = (0.25, 0.25, 0.2, 0.15, 0.1, 0.05)
RATIO_STEPS = 32  # ratios reported between 2^-4 and 2^4 (1/16 to 16); beyond, the bound is clamped there
_PAD = max(ODDS_STEPS)
LATTICE: FloatArray = np.arange(-RATIO_STEPS - _PAD, RATIO_STEPS + _PAD + 1, dtype=np.float64) * STEP
_UNIT_INDEX = RATIO_STEPS  # position of ratio 1 among the reported ratios


def _log_sum_exp(terms: FloatArray, axis: int = -1) -> FloatArray:
    """ln sum exp(terms) along axis; numpy only, since scipy's version costs ~100x more on a few terms and
    the root finders below call this thousands of times per tick."""
    top = np.max(terms, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.asarray(np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(terms - top), axis=axis)))


def tick_log_likelihood(canary_events: float, events: float, share: float) -> FloatArray:
    """Log likelihood of the canary having `canary_events` of the tick's `events`, at every lattice ratio.

    >>> ll = tick_log_likelihood(3.0, 4.0, 0.25)
    >>> int(np.argmax(ll)) - (len(LATTICE) - 1) // 2   # best ratio: 3 of 4 events at share 1/4 is psi = 9
    25
    """
    if events <= 0 or not 0.0 < share < 1.0:
        return np.zeros(LATTICE.size)
    logits = float(logit(share)) + LATTICE
    return np.asarray(canary_events * log_expit(logits) + (events - canary_events) * log_expit(-logits))


def _log_e_values(log_likelihood: FloatArray, upwards: bool) -> FloatArray:
    """Log e-value of "ratio at most psi" (upwards) or "at least psi" for each reported lattice ratio."""
    centre = log_likelihood[_PAD : _PAD + 2 * RATIO_STEPS + 1]
    steps, weights = (ODDS_STEPS, ODDS_WEIGHTS) if upwards else (tuple(-j for j in DOWN_STEPS), DOWN_WEIGHTS)
    shifted = np.stack([log_likelihood[_PAD + j : _PAD + j + centre.size] for j in steps])
    return _log_sum_exp(shifted - centre + np.log(np.asarray(weights))[:, None], axis=0)


def log_e_value_at_one(log_likelihood: FloatArray) -> float:
    """The rollback test: log e-value of "the canary's rate is at most stable's"."""
    return float(_log_e_values(log_likelihood, upwards=True)[_UNIT_INDEX])


def _crossing(log_e: FloatArray, index: int, threshold: float) -> float:
    """Log ratio where log_e crosses threshold between lattice ratios index and index + 1 (linear)."""
    a, b = float(log_e[index]), float(log_e[index + 1])
    fraction = (a - threshold) / (a - b) if a != b else 0.0
    return (index - RATIO_STEPS + min(max(fraction, 0.0), 1.0)) * STEP


def log_ratio_interval(log_likelihood: FloatArray, alpha: float) -> tuple[float, float]:
    """(lower, upper) log rate ratio still possible at level alpha on each side; -inf / inf when unbounded.

    >>> ll = sum(tick_log_likelihood(6.0, 12.0, 0.25) for _ in range(10))  # half the events at a 25% share
    >>> low, high = log_ratio_interval(ll, 0.05)
    >>> round(math.exp(low), 2), round(math.exp(high), 2)   # the estimate is a ratio of 3
    (1.8, 5.08)
    """
    threshold = math.log(1.0 / alpha)
    up = _log_e_values(log_likelihood, upwards=True)  # falls as the ratio rises
    rejected_below = np.flatnonzero(up >= threshold)
    if rejected_below.size == 0:
        lower = -math.inf
    elif rejected_below[-1] == up.size - 1:
        lower = float(RATIO_STEPS * STEP)
    else:
        lower = _crossing(up, int(rejected_below[-1]), threshold)
    down = _log_e_values(log_likelihood, upwards=False)  # rises with the ratio
    rejected_above = np.flatnonzero(down >= threshold)
    if rejected_above.size == 0:
        upper = math.inf
    elif rejected_above[0] == 0:
        upper = float(-RATIO_STEPS * STEP)
    else:
        upper = _crossing(-down, int(rejected_above[0]) - 1, -threshold)
    return lower, upper


# Rate bounds: a Poisson-type e-process for a weighted count X with compensator m W (weights in [0, 1]),
# mixed over these log ratios; the largest lets one or two events already exclude a zero rate.
_RATE_UP = np.log(np.array([1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0, 1000.0]))
_RATE_DOWN = np.log(np.array([0.95, 0.9, 0.8, 0.67, 0.5, 0.33, 0.2, 0.1, 0.01]))


def _rate_log_e(events: float, exposure: float, rate: float, log_ratios: FloatArray) -> float:
    terms = log_ratios * events - np.expm1(log_ratios) * rate * exposure
    return float(_log_sum_exp(terms)) - math.log(log_ratios.size)


def excludes_zero_rate(events: npt.ArrayLike, alpha: float) -> npt.NDArray[np.bool_]:
    """Whether the rate's lower bound is above zero: the e-value at rate 0 reaches 1/alpha."""
    x = np.asarray(events, dtype=np.float64)[..., None]
    log_e = _log_sum_exp(_RATE_UP * x) - math.log(_RATE_UP.size)
    return np.asarray(log_e >= math.log(1.0 / alpha))


def rate_interval(events: float, exposure: float, alpha: float) -> tuple[float, float]:
    """Always-valid (lower, upper) bounds for the running average rate behind a weighted event count.

    events = sum c_u e_u and exposure = sum c_u n_u with weights c_u in [0, 1] fixed before the tick:
    exp(lambda X - (e^lambda - 1) m W) is then a supermartingale (binomial <= Poisson, and e^(lambda c) - 1
    <= c (e^lambda - 1) for c in [0, 1]). Each side at alpha.

    >>> [round(x, 4) for x in rate_interval(20.0, 2000.0, 0.05)]
    [0.0045, 0.0183]
    """
    if exposure <= 0:
        return 0.0, math.inf
    threshold = math.log(1.0 / alpha)
    scale = max(events, 1.0) / exposure

    def above(rate: float) -> float:
        return _rate_log_e(events, exposure, rate, _RATE_UP) - threshold

    def below(rate: float) -> float:
        return _rate_log_e(events, exposure, rate, _RATE_DOWN) - threshold

    lower = 0.0
    if bool(excludes_zero_rate(events, alpha)):
        lower = float(brentq(above, 0.0, _bracket(above, scale, rising=False), xtol=1e-9 * scale))
    upper = float(brentq(below, 0.0, _bracket(below, scale, rising=True), xtol=1e-9 * scale))
    return lower, upper


def _bracket(function: object, start: float, rising: bool) -> float:
    """Double `start` until the monotone function has changed sign (a root lies below)."""
    assert callable(function)
    point = start
    while (function(point) < 0) if rising else (function(point) >= 0):
        point *= 2.0
    return point


def _binomial_log_e(events: float, trials: float, log_odds: float, upwards: bool) -> float:
    """Log e-value of "the rate's log odds is at most (upwards) / at least log_odds" from cumulative counts.

    With a constant null rate the per-tick likelihood ratios multiply into one of the totals.
    """
    steps, weights = (ODDS_STEPS, ODDS_WEIGHTS) if upwards else (tuple(-j for j in DOWN_STEPS), DOWN_WEIGHTS)
    alternative = log_odds + np.asarray(steps, dtype=np.float64) * STEP

    def log_likelihood(a: FloatArray | float) -> FloatArray:
        return np.asarray(events * log_expit(a) + (trials - events) * log_expit(-np.asarray(a)))

    terms = log_likelihood(alternative) - log_likelihood(log_odds)
    return float(_log_sum_exp(terms + np.log(np.asarray(weights))))


_LOG_ODDS_RANGE = 30.0  # rates between 1e-13 and 1 - 1e-13


def binomial_rate_interval(events: float, trials: float, alpha: float) -> tuple[float, float]:
    """(lower, upper) canary rate not rejected by the bound test asked for every rate, each side at alpha.

    The bound test of counts.py ("rate at most `bound`") is this family at the bound, so Fail <=> lower > bound.

    >>> [round(x, 4) for x in binomial_rate_interval(40.0, 2000.0, 0.05)]
    [0.0123, 0.0301]
    """
    if trials <= 0:
        return 0.0, 1.0
    threshold = math.log(1.0 / alpha)

    def above(a: float) -> float:
        return _binomial_log_e(events, trials, a, upwards=True) - threshold

    def below(a: float) -> float:
        return _binomial_log_e(events, trials, a, upwards=False) - threshold

    return _end(above, falls=True), _end(below, falls=False)


def _end(excess: Callable[[float], float], falls: bool) -> float:
    """The rate where a monotone log e-value excess (over ln 1/alpha) changes sign, clamped to [0, 1].

    falls: the excess falls as the rate rises (a lower end); otherwise it rises (an upper end).
    """
    low, high = -_LOG_ODDS_RANGE, _LOG_ODDS_RANGE
    rejected_low, rejected_high = excess(low) >= 0, excess(high) >= 0
    if rejected_low == rejected_high:  # no sign change: everything or nothing in range is rejected
        return 1.0 if rejected_high == falls else 0.0
    return float(expit(brentq(excess, low, high, xtol=1e-10)))


def difference_interval(
    ratio: tuple[float, float], canary_rate: tuple[float, float], stable_rate: tuple[float, float]
) -> tuple[float, float]:
    """Bounds of the difference p_c - p_s = p_s (psi - 1) = p_c (1 - 1/psi) from bounds of psi and the rates.

    On the event that all three intervals hold, the difference lies in the result, so its ends inherit
    their always-valid coverage (union bound). Above ratio 1 the lower end is positive as soon as either
    rate's lower bound is, which keeps "ratio above 1" (Fail) and "difference above 0" the same statement.

    >>> [round(x, 4) for x in difference_interval((2.0, 4.0), (0.02, 0.04), (0.008, 0.012))]
    [0.01, 0.03]
    """
    (low, high), (c_low, c_high), (s_low, s_high) = ratio, canary_rate, stable_rate
    if low >= 1.0:
        lower = max(s_low * (low - 1.0), c_low * (1.0 - 1.0 / low), c_low - s_high)
    else:
        candidates = [s_high * (low - 1.0), min(c_low - s_high, 0.0)]
        if low > 0:
            candidates.append(c_high * (1.0 - 1.0 / low))
        lower = max(candidates)
    if high <= 1.0:
        upper = min(s_low * (high - 1.0), c_low * (1.0 - 1.0 / high) if high > 0 else -math.inf)
    else:
        upper = min(s_high * (high - 1.0), c_high * (1.0 - 1.0 / high), c_high - s_low)
    return lower, upper
