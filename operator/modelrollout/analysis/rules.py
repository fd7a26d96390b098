"""How each count-based metric type (errorRate, latency, accuracy) becomes count criteria, and the
sentence that explains its verdict.

* errorRate: events = errors among requests.
* latency with thresholdSeconds: events = requests slower than the SLO bucket.
* latency with quantile and `max`: "at most (1 - quantile) of canary requests slower than t", t = `max` seconds
  rounded up to a bucket bound.
* latency with quantile and `maxRatioToStable` k (or `margin` m seconds): a two-sample test on tail counts. Once
  stable has 2 / (1 - quantile) observations, b is fixed at the bucket bound at or below stable's quantile (so
  stable has at least 1 - quantile of its requests above it). "The canary is at most k times slower" (or m
  seconds slower) means its share above b is at most stable's share above b / k (b - m); with stable's tail
  interpolated between bounds (latency.share_slower) that is rho = share_s(b / k) / share_s(b) times stable's
  share above b. The test is the comparison of counts (counts.update_comparison: the rate-ratio interval of
  inversion.py), judged against rho instead of 1. b and rho come from stable's ticks *before* this one, so
  they are fixed before the tick's data is seen and the test stays valid at every look.
* accuracy: events = wrong predictions among labelled ones (only labelled predictions count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from modelrollout.analysis.config import MetricConfig, MetricType
from modelrollout.analysis.counts import CountObservation, Judgement, judge_bound, judge_comparison, verdict_for
from modelrollout.analysis.counts import update_bound as _update_bound
from modelrollout.analysis.counts import update_comparison as _update_comparison
from modelrollout.analysis.inversion import log_e_value_at
from modelrollout.analysis.latency import (
    Buckets,
    bound_at_or_above,
    bound_at_or_below,
    histogram_quantile,
    share_slower,
    slower_than,
    total_count,
)
from modelrollout.analysis.sequential import running_p_value
from modelrollout.analysis.state import AnalysisState, CriterionState
from modelrollout.analysis.types import Tick, Verdict, VersionCounts

VERDICT_WORDS = {Verdict.FAIL: "rollback", Verdict.PASS: "promote", Verdict.INCONCLUSIVE: "keep collecting"}


def is_comparison(metric: MetricConfig, criterion: str) -> bool:
    """Whether the criterion compares per tick with stable."""
    return criterion in ("margin", "maxRatioToStable", "minRatioToStable")


def is_relative_latency(metric: MetricConfig, criterion: str) -> bool:
    """Latency quantile against stable's: tail shares above a bucket bound, tolerance derived from the tail."""
    return metric.type is MetricType.LATENCY and metric.quantile is not None and is_comparison(metric, criterion)


def needs_stable(metric: MetricConfig) -> bool:
    return metric.quantile is not None or any(is_comparison(metric, c) for c in metric.criteria)


def _events(metric: MetricConfig, counts: VersionCounts, threshold: float | None) -> tuple[float, float]:
    if metric.type is MetricType.ERROR_RATE:
        return counts.errors, counts.requests
    if metric.type is MetricType.ACCURACY:
        return counts.feedback_incorrect, counts.feedback_correct + counts.feedback_incorrect
    if threshold is None or not counts.latency_buckets:
        return 0.0, 0.0
    return slower_than(counts.latency_buckets, threshold), total_count(counts.latency_buckets)


def latency_threshold(metric: MetricConfig, criterion: str, tick: Tick, state: AnalysisState) -> float | None:
    """The bucket bound that separates "slow" requests for this criterion this tick (None: not yet known)."""
    buckets = (tick.canary.latency_buckets if tick.canary else ()) or state.stable_latency
    if metric.threshold_seconds is not None:
        return bound_at_or_above(buckets, metric.threshold_seconds)
    value = metric.criteria[criterion]
    if criterion == "max":
        return bound_at_or_above(buckets, value)
    assert metric.quantile is not None
    previous = state.criterion(metric.name, criterion)
    if previous.threshold is not None and previous.tolerance is not None:
        return previous.threshold  # fixed once chosen: every tick's counts are then shares above the same bound
    if total_count(state.stable_latency) < 2.0 / (1.0 - metric.quantile):
        return None
    stable_quantile = histogram_quantile(state.stable_latency, metric.quantile)
    if stable_quantile is None or stable_quantile <= 0:
        return None
    bound = bound_at_or_below(state.stable_latency, stable_quantile)
    return bound if share_slower(state.stable_latency, bound) > 0 else None


def tolerated_point(metric: MetricConfig, criterion: str, bound: float) -> float:
    """Where stable's share must be read for "at most k times (or m seconds) slower" at the bound."""
    value = metric.criteria[criterion]
    return bound / value if criterion == "maxRatioToStable" else bound - value


def tolerated_ratio(metric: MetricConfig, criterion: str, bound: float, stable_history: Buckets) -> float | None:
    """rho: how many times stable's share above `bound` the canary's may be (None: stable has none above it).

    A canary k times slower than stable has, above b, the share stable has above b / k.
    """
    above = share_slower(stable_history, bound)
    if above <= 0:
        return None
    point = tolerated_point(metric, criterion, bound)
    return max((share_slower(stable_history, point) if point > 0 else 1.0) / above, 1.0)


def observe(
    metric: MetricConfig, criterion: str, tick: Tick, state: AnalysisState
) -> tuple[CountObservation, float | None]:
    threshold = latency_threshold(metric, criterion, tick, state) if metric.type is MetricType.LATENCY else None
    canary = _events(metric, tick.canary, threshold) if tick.canary else (0.0, 0.0)
    stable = _events(metric, tick.stable, threshold) if tick.stable else (0.0, 0.0)
    return CountObservation(canary[0], canary[1], stable[0], stable[1]), threshold


def update_criterion(
    metric: MetricConfig,
    criterion: str,
    previous: CriterionState,
    obs: CountObservation,
    threshold: float | None,
    alpha: float,
    stable_history: Buckets = (),
) -> CriterionState:
    """Fold one tick into a criterion; alpha is its share, at which the running interval ends are kept.
    stable_history: stable's latency histogram before this tick (for a latency quantile against stable)."""
    if metric.type is MetricType.LATENCY and threshold is None:
        return previous  # stable's quantile is not known yet: this tick cannot be tested
    if is_relative_latency(metric, criterion) and threshold is not None:
        rho = tolerated_ratio(metric, criterion, threshold, stable_history)
        if rho is None:
            return previous
        if previous.tolerance is None:
            # First tick of this test, or a state written by a release that tested a rounded-up threshold with a
            # bound test: its sums mean something else (rates, not log ratios), so the test starts over.
            previous = CriterionState()
        updated = _update_comparison(previous, obs, alpha)
        log_e = log_e_value_at(np.asarray(updated.log_likelihood), math.log(rho)) if updated.log_likelihood else 0.0
        return replace(
            updated, threshold=threshold, tolerance=rho, p_value=running_p_value(previous.p_value, log_e)
        )
    if is_comparison(metric, criterion):
        updated = _update_comparison(previous, obs, alpha)
    else:
        updated = _update_bound(previous, obs, tested_bound(metric, criterion), alpha)
    return replace(updated, threshold=threshold)


def tested_bound(metric: MetricConfig, criterion: str) -> float:
    """The event rate a bound criterion allows: e.g. accuracy min 0.9 allows 10% wrong predictions."""
    if metric.quantile is not None:
        return 1.0 - metric.quantile
    value = metric.criteria[criterion]
    return 1.0 - value if criterion == "min" else value


def judge(metric: MetricConfig, criterion: str, state: CriterionState, alpha: float) -> Judgement:
    if is_relative_latency(metric, criterion):
        return judge_tail_ratio(state)
    if not is_comparison(metric, criterion):
        return judge_bound(state, tested_bound(metric, criterion), alpha)
    value = metric.criteria[criterion]
    stable_rate = state.stable_events / state.stable_trials if state.stable_trials > 0 else 0.0
    if criterion == "maxRatioToStable":
        limit = (value - 1.0) * stable_rate
    elif criterion == "minRatioToStable":
        limit = (1.0 - value) * (1.0 - stable_rate)  # accuracy_c >= k accuracy_s, in wrong-prediction units
    else:
        limit = value
    return judge_comparison(state, limit, alpha)


def judge_tail_ratio(state: CriterionState) -> Judgement:
    """Latency against stable, in units of the ratio canary share / stable share above the bound: Pass when the
    running interval lies below the tolerated ratio rho, Fail when it lies above it (the test at rho rejects)."""
    rho = state.tolerance if state.tolerance is not None else 1.0
    interval = (
        0.0 if state.lower is None else math.exp(state.lower),
        math.inf if state.upper is None else math.exp(state.upper),
    )
    canary = state.score + state.weighted_stable_events  # sum of (1 - r) x canary events: stratified
    estimate = canary / state.weighted_stable_events if state.weighted_stable_events > 0 else 1.0
    verdict = verdict_for(interval, rho, rho) if state.weight > 0 else Verdict.INCONCLUSIVE
    e_value = 1.0 / state.p_value if state.p_value > 0 else math.inf
    return Judgement(verdict, estimate, interval, rho, state.p_value, min(e_value, 1e300))


@dataclass(frozen=True)
class Wording:
    """How a metric's rate reads to a person: accuracy is 1 - the tested wrong-prediction rate."""

    quantity: str
    flipped: bool

    def rate(self, value: float) -> float:
        return 1.0 - value if self.flipped else value

    def difference(self, value: float) -> float:
        return -value if self.flipped else value


def wording(metric: MetricConfig, threshold: float | None, criterion: str = "max") -> Wording:
    if metric.type is MetricType.ACCURACY:
        return Wording("accuracy", flipped=True)
    if metric.type is MetricType.LATENCY:
        return Wording(f"share slower than {_seconds(threshold)}", flipped=False)
    return Wording("error rate", flipped=False)


def describe(metric: MetricConfig, criterion: str, state: CriterionState, j: Judgement, level: float) -> str:
    """One sentence, e.g. "canary error rate 2.1% vs stable 1.0%, difference +1.1 pts, 95% always-valid
    interval [+0.4, +1.8]: rollback"."""
    if is_relative_latency(metric, criterion):
        return _describe_tail_ratio(metric, criterion, state, j, level)
    words = wording(metric, state.threshold, criterion)
    canary = words.rate(state.canary_events / state.canary_trials) if state.canary_trials else None
    stable = words.rate(state.stable_events / state.stable_trials) if state.stable_trials else None
    head = f"canary {words.quantity} {_pct(canary)} vs stable {_pct(stable)}"
    interval = sorted((words.difference(j.interval[0]), words.difference(j.interval[1])))
    if is_comparison(metric, criterion):
        body = (
            f"difference {_pts(words.difference(j.estimate))} pts, {level:.0%} always-valid interval "
            f"[{_pts(interval[0])}, {_pts(interval[1])}], tolerated {_pts(words.difference(j.limit))} pts"
        )
    else:
        body = (
            f"{level:.0%} always-valid interval for canary [{_pct(interval[0])}, {_pct(interval[1])}], "
            f"{'minimum' if words.flipped else 'limit'} {_pct(words.rate(j.limit))}"
        )
    return f"{head}, {body}: {VERDICT_WORDS[j.verdict]}"


def _describe_tail_ratio(
    metric: MetricConfig, criterion: str, state: CriterionState, j: Judgement, level: float
) -> str:
    """E.g. "canary share slower than 100ms (the bucket bound at or below stable's p99) 28.1% of 2,400 requests vs
    stable 8.3% of 7,200, ratio 3.39, 95% always-valid interval [2.61, 4.40], tolerated 1.60 (1.2 x slower: stable's
    share above 83.3ms / above 100ms): rollback"."""
    assert metric.quantile is not None
    quantile = f"p{100 * metric.quantile:g}"
    if state.threshold is None:
        return f"canary {quantile} vs stable: stable's {quantile} not known yet: {VERDICT_WORDS[j.verdict]}"
    canary = state.canary_events / state.canary_trials if state.canary_trials else None
    stable = state.stable_events / state.stable_trials if state.stable_trials else None
    value = metric.criteria[criterion]
    slower = f"{value:g} x slower" if criterion == "maxRatioToStable" else f"{_seconds(value)} slower"
    point = tolerated_point(metric, criterion, state.threshold)
    high = "unbounded" if not math.isfinite(j.interval[1]) else f"{j.interval[1]:.2f}"
    return (
        f"canary share slower than {_seconds(state.threshold)} (the bucket bound at or below stable's {quantile}) "
        f"{_pct(canary)} of {state.canary_trials:,.0f} requests vs stable {_pct(stable)} of "
        f"{state.stable_trials:,.0f}, ratio {j.estimate:.2f}, {level:.0%} always-valid interval "
        f"[{j.interval[0]:.2f}, {high}], tolerated {j.limit:.2f} ({slower}: stable's share above "
        f"{_seconds(max(point, 0.0))} / above {_seconds(state.threshold)}): {VERDICT_WORDS[j.verdict]}"
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _pts(value: float) -> str:
    """Points with one decimal, or one significant digit below 0.05 so that an end just above 0 (a Fail)
    never reads as +0.0.

    >>> _pts(0.011), _pts(0.0003), _pts(0.0)
    ('+1.1', '+0.03', '+0.0')
    """
    if value != 0 and abs(100 * value) < 0.05:
        return f"{100 * value:+.1g}"
    return f"{100 * value:+.1f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "(stable's quantile, not known yet)"
    return f"{value * 1000:.3g}ms" if value < 1 else f"{value:g}s"
