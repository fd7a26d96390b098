"""Tests on event counts: errors, "slower than t" requests, wrong predictions among labelled ones.

Two kinds of criterion, both updated tick by tick from increments:

* a **bound** ("canary error rate at most 1%"): each tick, canary events ~ Binomial(trials, p) with
  p <= bound under the null; the e-process mixes likelihood ratios over higher odds.
* a **comparison with stable** ("no worse than stable, within a margin"): conditions on the tick's
  events and realised canary share (see sequential.py), so ramped shares and a moving base rate do
  not bias it. The estimate is the Mantel-Haenszel (stratified) difference: with tick weights
  w = n_c n_s / (n_c + n_s), sum w (p_c - p_s) / sum w. Its score numerator equals the conditional
  test's sum of (canary events - r * events), so estimate and test agree in sign.

The interval printed beside a verdict comes from the test that decides it (inversion.py): for a
comparison, the rate ratios canary/stable the per-tick e-processes have not rejected, turned into
differences with always-valid bounds of both rates; for a bound, the canary rates not rejected. Pass is
"the interval lies below the tolerated limit" (non-inferiority) and is checked first; Fail is "the interval
lies above 0" (comparison) or "above the bound", which is the rollback test rejecting. The ends are running
(for comparisons in ratio and in difference): once a value is excluded it stays excluded, so neither a Pass
nor a Fail turns back, and a Pass never becomes a Fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from modelrollout.analysis.inversion import (
    LATTICE,
    binomial_rate_interval,
    difference_interval,
    excludes_zero_rate,
    log_e_value_at_one,
    log_ratio_interval,
    rate_interval,
    tick_log_likelihood,
)
from modelrollout.analysis.sequential import mixture_log_e_value, running_p_value, tick_log_likelihood_ratios
from modelrollout.analysis.state import CriterionState
from modelrollout.analysis.types import Verdict


@dataclass(frozen=True)
class CountObservation:
    """One tick's events and trials per version for one criterion."""

    canary_events: float
    canary_trials: float
    stable_events: float
    stable_trials: float
    # Latency `max` between two bucket bounds: canary requests between the bound below `max` and the bound above
    # it. Slower than `max` or not, nobody can tell, so a Pass counts them as slower and a rollback does not.
    canary_extra_events: float = 0.0


@dataclass(frozen=True)
class Judgement:
    """A criterion's verdict and the numbers behind it, in the units of the tested rate."""

    verdict: Verdict
    estimate: float
    interval: tuple[float, float]
    limit: float
    p_value: float
    e_value: float


def add_counts(state: CriterionState, obs: CountObservation) -> CriterionState:
    """Both versions' events and trials of one tick added to a criterion's running sums."""
    return replace(
        state,
        canary_events=state.canary_events + obs.canary_events,
        canary_trials=state.canary_trials + obs.canary_trials,
        stable_events=state.stable_events + obs.stable_events,
        stable_trials=state.stable_trials + obs.stable_trials,
    )


# The rate bounds that turn a ratio into a difference get a tenth of the criterion's alpha each, so each
# end of the difference interval misses with probability at most 1.2 alpha (ratio + two rates).
RATE_ALPHA_SHARE = 0.1


def running_end(previous: float | None, current: float, tighter: Callable[[float, float], float]) -> float | None:
    """Keep the tighter of the stored end and this tick's end; None stands for an unbounded end."""
    if not math.isfinite(current):
        return previous
    return current if previous is None else tighter(previous, current)


def update_bound(state: CriterionState, obs: CountObservation, bound: float, alpha: float) -> CriterionState:
    """Add one tick to a bound test: H0 is "the canary's rate is at most `bound` in every tick"."""
    events = min(max(obs.canary_events, 0.0), obs.canary_trials)
    extra = min(max(obs.canary_extra_events, 0.0), obs.canary_trials - events)
    tick_lr = tick_log_likelihood_ratios(events, obs.canary_trials, bound)
    log_lr = tuple(float(a + b) for a, b in zip(state.log_lr, tick_lr, strict=True))
    updated = add_counts(replace(state, log_lr=log_lr), replace(obs, canary_events=events))
    updated = replace(updated, pass_extra_events=state.pass_extra_events + extra)
    low, high = binomial_rate_interval(updated.canary_events, updated.canary_trials, alpha)
    if updated.pass_extra_events > 0:  # the upper end (Pass) counts the requests between the bounds as slower
        _, high = binomial_rate_interval(
            updated.canary_events + updated.pass_extra_events, updated.canary_trials, alpha
        )
    return replace(
        updated,
        p_value=running_p_value(state.p_value, float(mixture_log_e_value(log_lr))),
        lower=running_end(state.lower, low, max) if low > 0 else state.lower,
        upper=running_end(state.upper, high, min) if high < 1 else state.upper,
    )


def update_comparison(state: CriterionState, obs: CountObservation, alpha: float) -> CriterionState:
    """Add one tick to a comparison: H0 is "the canary's rate is at most stable's in every tick".

    >>> s = update_comparison(CriterionState(), CountObservation(8, 100, 4, 300), 0.05)
    >>> round(s.score / s.weight, 4)  # 8% vs 1.33%: a stratified difference of +6.67 points
    0.0667
    """
    total = obs.canary_trials + obs.stable_trials
    if obs.canary_trials <= 0 or obs.stable_trials <= 0:
        return add_counts(state, obs)  # one version had no traffic: nothing to compare in this tick
    share = obs.canary_trials / total
    canary_events = min(max(obs.canary_events, 0.0), obs.canary_trials)
    stable_events = min(max(obs.stable_events, 0.0), obs.stable_trials)
    previous = np.asarray(state.log_likelihood) if state.log_likelihood else np.zeros(LATTICE.size)
    log_likelihood = previous + tick_log_likelihood(canary_events, canary_events + stable_events, share)
    tick_lr = tick_log_likelihood_ratios(canary_events, canary_events + stable_events, share)
    low, high = log_ratio_interval(log_likelihood, alpha)
    updated = replace(
        state,
        log_lr=tuple(float(a + b) for a, b in zip(state.log_lr, tick_lr, strict=True)),
        log_likelihood=tuple(float(x) for x in log_likelihood),
        score=state.score + (1.0 - share) * canary_events - share * stable_events,
        weighted_stable_events=state.weighted_stable_events + share * stable_events,
        weight=state.weight + obs.canary_trials * obs.stable_trials / total,
        p_value=running_p_value(state.p_value, log_e_value_at_one(log_likelihood)),
        lower=running_end(state.lower, low, max),
        upper=running_end(state.upper, high, min),
    )
    clean = CountObservation(canary_events, obs.canary_trials, stable_events, obs.stable_trials)
    return _with_difference_ends(add_counts(updated, clean), alpha)


def _with_difference_ends(state: CriterionState, alpha: float) -> CriterionState:
    """Intersect this tick's difference interval with the earlier ones: a confidence sequence stays valid when
    intersected over time, and Pass (upper end below the margin) and Fail (lower end above 0) then persist."""
    low, high = comparison_interval(state, alpha)
    return replace(
        state,
        difference_lower=running_end(state.difference_lower, low, max),
        difference_upper=running_end(state.difference_upper, high, min),
    )


def verdict_for(interval: tuple[float, float], harm_above: float, limit: float) -> Verdict:
    """Pass when the whole interval is below `limit` (tolerated), else Fail when it is above `harm_above`.

    Pass comes first: a canary proven within the tolerance is promoted even if it is also proven slightly worse
    than stable (0 < interval < limit); that is what the user's margin says.

    >>> verdict_for((0.004, 0.018), 0.0, 0.005).value, verdict_for((-0.002, 0.003), 0.0, 0.005).value
    ('Fail', 'Pass')
    >>> verdict_for((0.002, 0.015), 0.0, 0.02).value
    'Pass'
    """
    if interval[1] < limit:
        return Verdict.PASS
    if interval[0] > harm_above:
        return Verdict.FAIL
    return Verdict.INCONCLUSIVE


def judge_bound(state: CriterionState, bound: float, alpha: float) -> Judgement:
    """Canary rate against an absolute bound.

    >>> s = update_bound(CriterionState(), CountObservation(1, 4000, 0, 0), 0.01, 0.05)
    >>> j = judge_bound(s, 0.01, 0.05)
    >>> j.verdict.value, round(j.interval[1], 4)
    ('Pass', 0.0023)
    """
    trials = state.canary_trials
    estimate = state.canary_events / trials if trials > 0 else 0.0
    interval = (state.lower or 0.0, 1.0 if state.upper is None else state.upper)
    verdict = verdict_for(interval, bound, bound)
    return Judgement(verdict, estimate, interval, bound, state.p_value, _e_value(state))


def comparison_interval(state: CriterionState, alpha: float) -> tuple[float, float]:
    """The always-valid interval of the difference canary - stable, from the running ratio bounds."""
    rate_alpha = RATE_ALPHA_SHARE * alpha
    stable = rate_interval(state.weighted_stable_events, state.weight, rate_alpha)
    canary = rate_interval(state.score + state.weighted_stable_events, state.weight, rate_alpha)
    ratio = (
        0.0 if state.lower is None else math.exp(state.lower),
        math.inf if state.upper is None else math.exp(state.upper),
    )
    low, high = difference_interval(ratio, canary, stable)
    return max(low, -1.0), min(high, 1.0)


def judge_comparison(state: CriterionState, limit: float, alpha: float) -> Judgement:
    """Stratified difference canary - stable against a tolerated difference `limit`."""
    if state.weight <= 0:
        return Judgement(Verdict.INCONCLUSIVE, 0.0, (-1.0, 1.0), limit, state.p_value, _e_value(state))
    if state.difference_lower is not None and state.difference_upper is not None:
        # update_comparison already folded this tick's interval into the running ends: no second inversion.
        interval = (state.difference_lower, state.difference_upper)
    else:
        interval = comparison_interval(state, alpha)  # a state from a release without running difference ends
    verdict = verdict_for(interval, 0.0, limit)
    return Judgement(verdict, state.score / state.weight, interval, limit, state.p_value, _e_value(state))


def fails_comparison(
    log_e_at_one: npt.ArrayLike, canary_weighted: npt.ArrayLike, stable_weighted: npt.ArrayLike, alpha: float
) -> npt.NDArray[np.bool_]:
    """Vectorised Fail of a comparison (for the benchmark): the ratio test rejects 1 and a rate is above 0."""
    rate_alpha = RATE_ALPHA_SHARE * alpha
    above_zero = excludes_zero_rate(canary_weighted, rate_alpha) | excludes_zero_rate(stable_weighted, rate_alpha)
    return np.asarray((np.asarray(log_e_at_one) > math.log(1.0 / alpha)) & above_zero)


def _e_value(state: CriterionState) -> float:
    log_e = float(mixture_log_e_value(np.asarray(state.log_lr)))
    return math.exp(min(log_e, 700.0))
