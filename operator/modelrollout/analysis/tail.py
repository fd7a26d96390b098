"""Latency quantile against stable (`maxRatioToStable: k`, or `margin: m` seconds): a two-sample test on tail counts.

Latency exists only as histogram bucket counts, and two interpolated quantiles cannot see a 1.5x slowdown with
Prometheus' default buckets (a true stable p99 of 160 ms and a canary p99 of 240 ms share the 100-250 ms bucket).
So the criterion is read the way a scale change shows in counts: a canary at most k times slower has, above any
latency b, at most the share stable has above b / k (with `margin`, above b - m).

Each tick, from stable's histogram *before* the tick (so nothing below depends on the data it tests):

1. **Stable's bound b_s** is the highest bucket bound above which stable has at least 1 - quantile of its requests
   (so b_s is at or below stable's quantile) and at least MIN_TAIL_EVENTS of them. With a thin tail (few requests,
   or millisecond latencies where a handful lie in the top 1%) that is a lower bound: the comparison then happens
   at a lower quantile of stable, and the message says which. Stable's quantile is estimated only once it has
   2 / (1 - quantile) requests (200 for p99); a stable tail with fewer than MIN_TAIL_EVENTS requests above even
   the smallest bound is not compared at all: the tick is not tested, and the message says why (never a Pass).
2. **The canary's bound b_c** is the bucket bound at or below k x b_s (b_s + m): where a canary exactly k times
   slower would have about the share stable has above b_s. Rounding down makes it stricter, never looser.
3. **The tolerance rho** = share_s(b_c / k) / share_s(b_s) >= 1: a canary k times slower has above b_c the share
   stable has above b_c / k, so the canary's share above b_c may be at most rho times stable's share above b_s.
   b_c / k lies between bucket bounds (unless k is a ratio of two bounds), so stable's tail is read there by
   latency.share_slower (log-log interpolation, a power-law tail between the two bounds). For a lognormal tail
   that chord lies below the truth, so rho is stricter than the truth, never looser. With coarse buckets b_c can
   be b_s itself (Prometheus' defaults, k = 1.2, b_s = 100 ms): then the test compares the shares above one bound.
4. **The test.** Each tick's canary requests above b_c and stable requests above b_s go through the per-tick
   conditional test of counts (inversion.py), with the rate ratio measured in units of rho: the *excess* =
   (canary share above b_c / stable share above b_s) / rho. Given the tick's events the canary's share of them has
   log odds logit(r) + ln rho + ln(excess), so the tick's likelihood is inversion.tick_log_likelihood at the share
   whose log odds are logit(r) + ln rho, and the lattice measures the excess. Fail when the running always-valid
   interval of the excess lies above 1 (the p-value of "excess at most 1" is at or below the criterion's alpha),
   Pass when it lies below 1, Inconclusive in between.

Read at the quantile, "excess below 1" says: above about k times stable's quantile, the canary has less than the
1 - quantile share stable has above its quantile, i.e. the canary's quantile is below k times stable's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from modelrollout.analysis.config import MetricConfig
from modelrollout.analysis.counts import CountObservation, Judgement, add_counts, running_end, verdict_for
from modelrollout.analysis.inversion import LATTICE, log_e_value_at_one, log_ratio_interval, tick_log_likelihood
from modelrollout.analysis.latency import Buckets, bound_at_or_below, share_slower, slower_than, total_count
from modelrollout.analysis.sequential import running_p_value
from modelrollout.analysis.state import CriterionState
from modelrollout.analysis.types import VERDICT_WORDS

# Stable requests above the bound before it may be used: fewer make its share there, and so rho, mostly noise.
MIN_TAIL_EVENTS = 10


@dataclass(frozen=True)
class TailPlan:
    """Where this tick compares the two versions, fixed from stable's histogram before the tick."""

    bound: float  # b_s, the bucket bound at which stable's tail is counted
    canary_bound: float  # b_c, the bucket bound at which the canary's tail is counted
    tolerance: float  # rho: the canary's share above b_c may be at most rho x stable's share above b_s


def quantile_label(metric: MetricConfig) -> str:
    assert metric.quantile is not None
    return f"p{100 * metric.quantile:g}"


def tolerated_point(metric: MetricConfig, criterion: str, bound: float) -> float:
    """Where stable's share is read for "at most k times (or m seconds) slower" at a canary bound: b / k or b - m."""
    value = metric.criteria[criterion]
    return bound / value if criterion == "maxRatioToStable" else bound - value


def slower_point(metric: MetricConfig, criterion: str, bound: float) -> float:
    """Where a canary exactly k times (m seconds) slower has stable's share above `bound`: k x b or b + m."""
    value = metric.criteria[criterion]
    return bound * value if criterion == "maxRatioToStable" else bound + value


def plan_tail(metric: MetricConfig, criterion: str, stable_history: Buckets) -> TailPlan | str:
    """The bound and tolerance for this tick, or why stable's tail cannot be compared yet.

    >>> from modelrollout.analysis.config import AnalysisConfig
    >>> m = AnalysisConfig.from_spec({"metrics": [{"name": "p99", "type": "latency", "quantile": 0.99,
    ...                                            "maxRatioToStable": 2}]}).metrics[0]
    >>> hist = ((0.05, 500.0), (0.1, 900.0), (0.25, 990.0), (math.inf, 1000.0))
    >>> p = plan_tail(m, "maxRatioToStable", hist)
    >>> p.bound, p.canary_bound, round(p.tolerance, 2)   # 10 of 1,000 above 250ms; 2 x 250ms is in the last bucket
    (0.25, 0.25, 5.71)
    >>> hist = ((0.05, 800.0), (0.1, 950.0), (0.2, 990.0), (0.25, 996.0), (math.inf, 1e3))
    >>> p = plan_tail(m, "maxRatioToStable", hist)
    >>> p.bound, p.canary_bound, round(p.tolerance, 2)  # 2 x 200ms rounds down to 250ms: share above 125ms / 200ms
    (0.2, 0.25, 2.98)
    >>> plan_tail(m, "maxRatioToStable", ((0.05, 150.0), (math.inf, 150.0)))
    "stable's p99 not known yet (150 of the 200 stable requests it needs)"
    """
    assert metric.quantile is not None
    total = total_count(stable_history)
    needed = 2.0 / (1.0 - metric.quantile)
    if total < needed:
        label = quantile_label(metric)
        return f"stable's {label} not known yet ({total:,.0f} of the {needed:,.0f} stable requests it needs)"
    wanted = max(float(MIN_TAIL_EVENTS), (1.0 - metric.quantile) * total)
    finite = [float(b) for b, _ in stable_history if math.isfinite(b)]
    candidates = [b for b in finite if slower_than(stable_history, b) >= wanted - 1e-9]
    if not candidates:
        smallest = finite[0] if finite else math.inf
        above = slower_than(stable_history, smallest) if finite else 0.0
        return (
            f"stable's tail too thin to compare: {above:,.0f} of its {total:,.0f} requests are slower than "
            f"{seconds_text(smallest)}, the smallest bucket bound (at least {MIN_TAIL_EVENTS} needed)"
        )
    bound = candidates[-1]
    canary_bound = bound_at_or_below(stable_history, slower_point(metric, criterion, bound)) or bound
    point = tolerated_point(metric, criterion, canary_bound)
    # A canary more than b_c slower than stable may have all its requests above b_c: stable's "share above <= 0" is 1.
    tolerated = share_slower(stable_history, point) if point > 0 else 1.0
    rho = max(tolerated / share_slower(stable_history, bound), 1.0)
    return TailPlan(bound, canary_bound, rho)


def update_tail(previous: CriterionState, obs: CountObservation, plan: TailPlan, alpha: float) -> CriterionState:
    """Fold one tick's requests above the plan's bound into the test of "excess at most 1"."""
    if obs.canary_trials <= 0 or obs.stable_trials <= 0:
        untested = add_counts(previous, obs)
        return replace(untested, threshold=plan.bound, canary_bound=plan.canary_bound, tolerance=plan.tolerance)
    share = obs.canary_trials / (obs.canary_trials + obs.stable_trials)
    canary = min(max(obs.canary_events, 0.0), obs.canary_trials)
    stable = min(max(obs.stable_events, 0.0), obs.stable_trials)
    # The share whose log odds are logit(share) + ln rho: the lattice then measures the excess over the tolerance.
    shifted = share * plan.tolerance / (share * plan.tolerance + 1.0 - share)
    before = np.asarray(previous.log_likelihood) if previous.log_likelihood else np.zeros(LATTICE.size)
    log_likelihood = before + tick_log_likelihood(canary, canary + stable, shifted)
    low, high = log_ratio_interval(log_likelihood, alpha)
    updated = replace(
        previous,
        log_likelihood=tuple(float(x) for x in log_likelihood),
        # Mantel-Haenszel: sum (1 - r) canary events / sum r rho stable events estimates the excess.
        score=previous.score + (1.0 - share) * canary,
        weighted_stable_events=previous.weighted_stable_events + share * plan.tolerance * stable,
        weight=previous.weight + obs.canary_trials * obs.stable_trials / (obs.canary_trials + obs.stable_trials),
        p_value=running_p_value(previous.p_value, log_e_value_at_one(log_likelihood)),
        lower=running_end(previous.lower, low, max),
        upper=running_end(previous.upper, high, min),
        threshold=plan.bound,
        canary_bound=plan.canary_bound,
        tolerance=plan.tolerance,
    )
    return add_counts(updated, CountObservation(canary, obs.canary_trials, stable, obs.stable_trials))


def tail_observation(canary: Buckets, stable: Buckets, plan: TailPlan) -> CountObservation:
    """One tick's requests slower than each version's bound, among all its requests in the histogram."""
    return CountObservation(
        slower_than(canary, plan.canary_bound) if canary else 0.0,
        total_count(canary),
        slower_than(stable, plan.bound) if stable else 0.0,
        total_count(stable),
    )


def without_legacy(state: CriterionState) -> CriterionState:
    """A state written by the release that tested a rounded-up threshold with a bound test holds canary rates, not
    log ratios; read as such it would pass a canary at once, so that test starts over.

    >>> without_legacy(CriterionState(threshold=0.5, upper=0.01, canary_trials=200.0)) == CriterionState()
    True
    """
    return CriterionState() if state.tolerance is None and state.canary_trials > 0 else state



def judge_tail(state: CriterionState) -> Judgement:
    """The excess over the tolerance: Pass when its running interval lies below 1, Fail when above 1."""
    interval = (
        0.0 if state.lower is None else math.exp(state.lower),
        math.inf if state.upper is None else math.exp(state.upper),
    )
    if state.weighted_stable_events > 0:
        estimate = state.score / state.weighted_stable_events
    else:
        estimate = 0.0 if state.score <= 0 else math.inf
    verdict = verdict_for(interval, 1.0, 1.0)
    e_value = 1.0 / state.p_value if state.p_value > 0 else 1e300
    return Judgement(verdict, estimate, interval, 1.0, state.p_value, min(e_value, 1e300))


def seconds_text(value: float) -> str:
    """Three significant digits in milliseconds below a second.

    >>> seconds_text(0.0833), seconds_text(0.005), seconds_text(2.5)
    ('83.3ms', '5ms', '2.5s')
    """
    if not math.isfinite(value):
        return "+Inf"
    return f"{value * 1000:.3g}ms" if value < 1 else f"{value:g}s"


def describe_tail(
    metric: MetricConfig,
    criterion: str,
    state: CriterionState,
    j: Judgement,
    level: float,
    histograms: tuple[Buckets, Buckets],
    not_compared: str | None = None,
) -> str:
    """One sentence with both bounds, both shares and their samples, the tolerance, the excess and its interval, e.g.
    "canary p99 at most 3 x stable's: canary 0.1% of 700 requests slower than 10ms vs stable 2.4% of 2,100 slower
    than 4ms (stable's p97.6: the highest bucket bound with at least 1% and 10 of stable's requests above it); a
    canary 3 x slower would have 7.2% above 10ms (stable's share above 3.33ms); the canary has 0.02 x that, 95%
    always-valid interval [0.00, 0.31]: promote".

    histograms: the cumulative (canary, stable) latency histograms, for shares a person can check against them.
    not_compared: why this tick was not tested (stable's quantile not known yet, or its tail too thin).
    """
    quantile = quantile_label(metric)
    value = metric.criteria[criterion]
    if criterion == "maxRatioToStable":
        head, slower = f"canary {quantile} at most {value:g} x stable's", f"{value:g} x slower"
    else:
        head = f"canary {quantile} at most {seconds_text(value)} above stable's"
        slower = f"{seconds_text(value)} slower"
    verdict = VERDICT_WORDS[j.verdict]
    if state.threshold is None or state.tolerance is None or state.canary_bound is None:
        return f"{head}: {not_compared or 'not compared yet'}: {verdict}"
    canary_hist, stable_hist = histograms
    canary_share, canary_n = _share(canary_hist, state.canary_bound)
    stable_share, stable_n = _share(stable_hist, state.threshold)
    allowed = None if stable_share is None else min(state.tolerance * stable_share, 1.0)
    point = max(tolerated_point(metric, criterion, state.canary_bound), 0.0)
    stable_at = "?" if stable_share is None else f"p{100 * (1 - stable_share):.3g}"
    high = "unbounded" if not math.isfinite(j.interval[1]) else f"{j.interval[1]:.2f}"
    estimate = "n/a" if not math.isfinite(j.estimate) else f"{j.estimate:.2f}"
    skipped = f" (not compared this tick: {not_compared})" if not_compared else ""
    return (
        f"{head}: canary {_pct(canary_share)} of {canary_n:,.0f} requests slower than "
        f"{seconds_text(state.canary_bound)} vs stable {_pct(stable_share)} of {stable_n:,.0f} slower than "
        f"{seconds_text(state.threshold)} (stable's {stable_at}: the highest bucket bound with at least "
        f"{1 - (metric.quantile or 0):.0%} and {MIN_TAIL_EVENTS} of stable's requests above it); a canary {slower} "
        f"would have {_pct(allowed)} above {seconds_text(state.canary_bound)} (stable's share above "
        f"{seconds_text(point)}); the canary has {estimate} x that, {level:.0%} always-valid interval "
        f"[{j.interval[0]:.2f}, {high}]{skipped}: {verdict}"
    )


def _share(histogram: Buckets, bound: float) -> tuple[float | None, float]:
    total = total_count(histogram)
    return (slower_than(histogram, bound) / total if total > 0 else None), total


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
