"""How each count-based metric type (errorRate, latency, accuracy) becomes count criteria, and the
sentence that explains its verdict.

* errorRate: events = errors among requests.
* latency with thresholdSeconds: events = requests slower than the SLO bucket.
* latency with quantile: criteria become "at most (1 - quantile) of canary requests slower than t",
  with t = `max` seconds, or `maxRatioToStable` x stable's quantile, or stable's quantile + `margin`,
  rounded up to a bucket bound. Stable's quantile comes from the ticks *before* this one, so the
  threshold is fixed before the tick's data is seen and the test stays valid.
* accuracy: events = wrong predictions among labelled ones (only labelled predictions count).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from modelrollout.analysis.config import MetricConfig, MetricType
from modelrollout.analysis.counts import CountObservation, Judgement, judge_bound, judge_comparison
from modelrollout.analysis.counts import update_bound as _update_bound
from modelrollout.analysis.counts import update_comparison as _update_comparison
from modelrollout.analysis.latency import bound_at_or_above, histogram_quantile, slower_than, total_count
from modelrollout.analysis.state import AnalysisState, CriterionState
from modelrollout.analysis.types import Tick, Verdict, VersionCounts

VERDICT_WORDS = {Verdict.FAIL: "rollback", Verdict.PASS: "promote", Verdict.INCONCLUSIVE: "keep collecting"}


def is_comparison(metric: MetricConfig, criterion: str) -> bool:
    """Whether the criterion compares per tick with stable (quantile latency compares to a bound)."""
    return criterion in ("margin", "maxRatioToStable", "minRatioToStable") and metric.quantile is None


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
    stable_quantile = histogram_quantile(state.stable_latency, metric.quantile)
    if stable_quantile is None or stable_quantile <= 0:
        return None
    wanted = stable_quantile * value if criterion == "maxRatioToStable" else stable_quantile + value
    return bound_at_or_above(buckets, wanted)


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
) -> CriterionState:
    """Fold one tick into a criterion; alpha is its share, at which the running interval ends are kept."""
    if metric.type is MetricType.LATENCY and threshold is None:
        return previous  # stable's quantile is not known yet: this tick cannot be tested
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
        return Wording(f"share slower than {_seconds(threshold)}{_derived_from(metric, criterion)}", flipped=False)
    return Wording("error rate", flipped=False)


def _derived_from(metric: MetricConfig, criterion: str) -> str:
    """Where a threshold relative to stable came from: rounding up to a bucket bound can loosen it a lot (1.2 x a
    233 ms p99 is tested at 500 ms with Prometheus' default buckets), so status says so."""
    if metric.quantile is None or criterion == "max":
        return ""
    value = metric.criteria[criterion]
    quantile = f"p{100 * metric.quantile:g}"
    if criterion == "maxRatioToStable":
        relative = f"{value:g} x stable's {quantile}"
    else:
        relative = f"stable's {quantile} + {value:g}s"
    return f" (the bucket bound at or above {relative})"


def describe(metric: MetricConfig, criterion: str, state: CriterionState, j: Judgement, level: float) -> str:
    """One sentence, e.g. "canary error rate 2.1% vs stable 1.0%, difference +1.1 pts, 95% always-valid
    interval [+0.4, +1.8]: rollback"."""
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
    return f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"
