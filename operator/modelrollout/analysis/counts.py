"""Tests on event counts: errors, "slower than t" requests, wrong predictions among labelled ones.

Two kinds of criterion, both updated tick by tick from increments:

* a **bound** ("canary error rate at most 1%"): each tick, canary events ~ Binomial(trials, p) with
  p <= bound under the null; the e-process mixes likelihood ratios over higher odds.
* a **comparison with stable** ("no worse than stable, within a margin"): conditions on the tick's
  events and realised canary share (see sequential.py), so ramped shares and a moving base rate do
  not bias it. The estimate is the Mantel-Haenszel (stratified) difference: with tick weights
  w = n_c n_s / (n_c + n_s), sum w (p_c - p_s) / sum w. Its score numerator equals the conditional
  test's sum of (canary events - r * events), so estimate and test agree in sign.

Fail needs the running p-value at or below the criterion's alpha (harm detected); Pass needs the
always-valid upper bound below the limit (no harm beyond the tolerance, non-inferiority).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from modelrollout.analysis.sequential import (
    confidence_radius,
    mixture_log_e_value,
    running_p_value,
    tick_log_likelihood_ratios,
)
from modelrollout.analysis.state import CriterionState
from modelrollout.analysis.types import Verdict


@dataclass(frozen=True)
class CountObservation:
    """One tick's events and trials per version for one criterion."""

    canary_events: float
    canary_trials: float
    stable_events: float
    stable_trials: float


@dataclass(frozen=True)
class Judgement:
    """A criterion's verdict and the numbers behind it, in the units of the tested rate."""

    verdict: Verdict
    estimate: float
    interval: tuple[float, float]
    limit: float
    p_value: float
    e_value: float


def _add_counts(state: CriterionState, obs: CountObservation) -> CriterionState:
    return replace(
        state,
        canary_events=state.canary_events + obs.canary_events,
        canary_trials=state.canary_trials + obs.canary_trials,
        stable_events=state.stable_events + obs.stable_events,
        stable_trials=state.stable_trials + obs.stable_trials,
    )


def update_bound(state: CriterionState, obs: CountObservation, bound: float) -> CriterionState:
    """Add one tick to a bound test: H0 is "the canary's rate is at most `bound` in every tick"."""
    events = min(max(obs.canary_events, 0.0), obs.canary_trials)
    tick_lr = tick_log_likelihood_ratios(events, obs.canary_trials, bound)
    log_lr = tuple(float(a + b) for a, b in zip(state.log_lr, tick_lr, strict=True))
    updated = _add_counts(replace(state, log_lr=log_lr), obs)
    return replace(updated, p_value=running_p_value(state.p_value, float(mixture_log_e_value(log_lr))))


def update_comparison(state: CriterionState, obs: CountObservation) -> CriterionState:
    """Add one tick to a comparison: H0 is "the canary's rate is at most stable's in every tick".

    >>> s = update_comparison(CriterionState(), CountObservation(8, 100, 4, 300))
    >>> round(s.score / s.weight, 4)  # 8% vs 1.33%: a stratified difference of +6.67 points
    0.0667
    """
    total = obs.canary_trials + obs.stable_trials
    if obs.canary_trials <= 0 or obs.stable_trials <= 0:
        return _add_counts(state, obs)  # one version had no traffic: nothing to compare in this tick
    share = obs.canary_trials / total
    canary_events = min(max(obs.canary_events, 0.0), obs.canary_trials)
    stable_events = min(max(obs.stable_events, 0.0), obs.stable_trials)
    tick_lr = tick_log_likelihood_ratios(canary_events, canary_events + stable_events, share)
    log_lr = tuple(float(a + b) for a, b in zip(state.log_lr, tick_lr, strict=True))
    weight = obs.canary_trials * obs.stable_trials / total
    updated = replace(
        state,
        log_lr=log_lr,
        score=state.score + (1.0 - share) * canary_events - share * stable_events,
        weight=state.weight + weight,
        canary_spread=state.canary_spread + weight * weight / obs.canary_trials,
        stable_spread=state.stable_spread + weight * weight / obs.stable_trials,
        p_value=running_p_value(state.p_value, float(mixture_log_e_value(log_lr))),
    )
    return _add_counts(updated, obs)


def _smoothed_rate(events: float, trials: float) -> float:
    # Half an event either side keeps the interval from collapsing to a point while no event was seen.
    return (events + 0.5) / (trials + 1.0)


def verdict_for(p_value: float, upper: float, limit: float, alpha: float) -> Verdict:
    if p_value <= alpha:
        return Verdict.FAIL
    if upper < limit:
        return Verdict.PASS
    return Verdict.INCONCLUSIVE


def judge_bound(state: CriterionState, bound: float, alpha: float) -> Judgement:
    """Canary rate against an absolute bound.

    >>> j = judge_bound(CriterionState(canary_events=1, canary_trials=4000), 0.01, 0.05)
    >>> j.verdict.value, round(j.interval[1], 4)
    ('Pass', 0.0017)
    """
    trials = state.canary_trials
    estimate = state.canary_events / trials if trials > 0 else 0.0
    p = _smoothed_rate(state.canary_events, trials)
    radius = float(confidence_radius(p * (1.0 - p) * trials, alpha)) / max(trials, 1.0)
    interval = (max(estimate - radius, 0.0), min(estimate + radius, 1.0))
    e_value = _e_value(state)
    return Judgement(
        verdict_for(state.p_value, interval[1], bound, alpha), estimate, interval, bound, state.p_value, e_value
    )


def judge_comparison(state: CriterionState, limit: float, alpha: float) -> Judgement:
    """Stratified difference canary - stable against a tolerated difference `limit`."""
    if state.weight <= 0:
        return Judgement(Verdict.INCONCLUSIVE, 0.0, (-1.0, 1.0), limit, state.p_value, _e_value(state))
    estimate = state.score / state.weight
    p_c = _smoothed_rate(state.canary_events, state.canary_trials)
    p_s = _smoothed_rate(state.stable_events, state.stable_trials)
    variance = p_c * (1.0 - p_c) * state.canary_spread + p_s * (1.0 - p_s) * state.stable_spread
    radius = float(confidence_radius(variance, alpha)) / state.weight
    interval = (max(estimate - radius, -1.0), min(estimate + radius, 1.0))
    e_value = _e_value(state)
    return Judgement(
        verdict_for(state.p_value, interval[1], limit, alpha), estimate, interval, limit, state.p_value, e_value
    )


def _e_value(state: CriterionState) -> float:
    log_e = float(mixture_log_e_value(np.asarray(state.log_lr)))
    return math.exp(min(log_e, 700.0))
