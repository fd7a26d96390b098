"""How each count-based metric type (errorRate, latency, accuracy) becomes count criteria, and the
sentence that explains its verdict.

* errorRate: events = errors among requests.
* latency with thresholdSeconds: events = requests slower than the SLO bucket.
* latency with quantile and `max` t: "at most (1 - quantile) of canary requests slower than t". When t is not a
  bucket bound, nobody can tell whether a request between the bounds around t was slower than t: a rollback counts
  only requests above the bound above t, a Pass counts those above the bound below t (never in the canary's favour).
* latency with quantile and `maxRatioToStable` / `margin`: a two-sample test on tail counts (tail.py).
* accuracy: events = wrong predictions among labelled ones (only labelled predictions count).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from modelrollout.analysis.config import MetricConfig, MetricType
from modelrollout.analysis.counts import CountObservation, Judgement, judge_bound, judge_comparison
from modelrollout.analysis.counts import update_bound as _update_bound
from modelrollout.analysis.counts import update_comparison as _update_comparison
from modelrollout.analysis.latency import bound_at_or_above, bound_at_or_below, slower_than, total_count
from modelrollout.analysis.state import AnalysisState, CriterionState
from modelrollout.analysis.tail import seconds_text
from modelrollout.analysis.types import VERDICT_WORDS, Tick, VersionCounts


def is_comparison(metric: MetricConfig, criterion: str) -> bool:
    """Whether the criterion compares rates per tick with stable (a latency quantile against stable is tail.py's)."""
    return criterion in ("margin", "maxRatioToStable", "minRatioToStable") and metric.quantile is None


def is_relative_latency(metric: MetricConfig, criterion: str) -> bool:
    """Latency quantile against stable's: the tail-count test of tail.py."""
    return metric.quantile is not None and criterion in ("margin", "maxRatioToStable")


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
    """The bucket bound above which a request counts as slow for a rollback (None: no bucket bounds seen yet)."""
    buckets = (tick.canary.latency_buckets if tick.canary else ()) or state.stable_latency
    if not buckets:
        return None
    seconds = metric.threshold_seconds if metric.threshold_seconds is not None else metric.criteria[criterion]
    return bound_at_or_above(buckets, seconds)


def pass_threshold(metric: MetricConfig, criterion: str, tick: Tick, state: AnalysisState) -> float:
    """For a latency quantile `max`: the bucket bound at or below it, above which a request counts as slow for a
    Pass (0.0 when `max` is below every bound: then every request might have been slower than `max`)."""
    buckets = (tick.canary.latency_buckets if tick.canary else ()) or state.stable_latency
    below = bound_at_or_below(buckets, metric.criteria[criterion])
    return 0.0 if below is None else below


def observe(
    metric: MetricConfig, criterion: str, tick: Tick, state: AnalysisState
) -> tuple[CountObservation, float | None, float | None]:
    """The tick's counts for one criterion, the bound above which a request is slow for a rollback, and for a
    latency quantile `max` the bound for a Pass (None otherwise)."""
    threshold = latency_threshold(metric, criterion, tick, state) if metric.type is MetricType.LATENCY else None
    canary = _events(metric, tick.canary, threshold) if tick.canary else (0.0, 0.0)
    stable = _events(metric, tick.stable, threshold) if tick.stable else (0.0, 0.0)
    if metric.quantile is None or threshold is None:
        return CountObservation(canary[0], canary[1], stable[0], stable[1]), threshold, None
    below = pass_threshold(metric, criterion, tick, state)
    # below 0.0: no bound under `max`, so every canary request might have been slower than it
    slower = _events(metric, tick.canary, below)[0] if below > 0 and tick.canary else canary[1]
    extra = max(slower - canary[0], 0.0)
    return CountObservation(canary[0], canary[1], stable[0], stable[1], extra), threshold, below


def update_criterion(
    metric: MetricConfig,
    criterion: str,
    previous: CriterionState,
    obs: CountObservation,
    threshold: float | None,
    alpha: float,
    floor: float | None = None,
) -> CriterionState:
    """Fold one tick into a criterion; alpha is its share, at which the running interval ends are kept.
    floor: for a latency quantile `max`, the bound above which a request counts as slow for a Pass."""
    if metric.type is MetricType.LATENCY and threshold is None:
        return previous  # no bucket bounds seen yet: this tick cannot be tested
    if is_comparison(metric, criterion):
        return replace(_update_comparison(previous, obs, alpha), threshold=threshold)
    if floor is not None and previous.canary_trials > 0 and previous.pass_threshold != floor:
        # A state from the release that tested `max` rounded up for a Pass too: its upper end is in the canary's
        # favour, so the Pass side starts over (the rollback side keeps its evidence).
        previous = replace(previous, upper=None, pass_extra_events=0.0)
    updated = _update_bound(previous, obs, tested_bound(metric, criterion), alpha)
    return replace(updated, threshold=threshold, pass_threshold=floor)


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


def wording(metric: MetricConfig, threshold: float | None) -> Wording:
    if metric.type is MetricType.ACCURACY:
        return Wording("accuracy", flipped=True)
    if metric.type is MetricType.LATENCY:
        return Wording(f"share slower than {_seconds(threshold)}", flipped=False)
    return Wording("error rate", flipped=False)


def describe(metric: MetricConfig, criterion: str, state: CriterionState, j: Judgement, level: float) -> str:
    """One sentence, e.g. "canary error rate 2.1% vs stable 1.0%, difference +1.1 pts, 95% always-valid
    interval [+0.4, +1.8]: rollback"."""
    words = wording(metric, state.threshold)
    canary = words.rate(state.canary_events / state.canary_trials) if state.canary_trials else None
    stable = words.rate(state.stable_events / state.stable_trials) if state.stable_trials else None
    head = f"canary {words.quantity} {_pct(canary)} vs stable {_pct(stable)}"
    if _between_bounds(metric, criterion, state):
        head = _between_bounds_head(metric.criteria[criterion], state)
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


def _between_bounds(metric: MetricConfig, criterion: str, state: CriterionState) -> bool:
    """A latency quantile `max` that is not a bucket bound (counted differently for a rollback and for a Pass)."""
    return (
        metric.quantile is not None
        and criterion == "max"
        and state.threshold is not None
        and state.pass_threshold is not None
        and state.pass_threshold != state.threshold
    )


def _between_bounds_head(value: float, state: CriterionState) -> str:
    """E.g. "canary share slower than 240ms 0.5%-9.1% of 1,200 requests (240ms is no bucket bound: counted above
    250ms for a rollback, above 100ms for a promotion) vs stable 0.1% above 250ms"."""
    trials = state.canary_trials
    low = _pct(state.canary_events / trials) if trials else "n/a"
    high = _pct((state.canary_events + state.pass_extra_events) / trials) if trials else "n/a"
    below = (
        f"above {_seconds(state.pass_threshold)}"
        if state.pass_threshold
        else "every request, as no bucket bound lies below it"
    )
    stable = _pct(state.stable_events / state.stable_trials) if state.stable_trials else "n/a"
    return (
        f"canary share slower than {_seconds(value)} {low}-{high} of {trials:,.0f} requests ({_seconds(value)} is no "
        f"bucket bound: counted above {_seconds(state.threshold)} for a rollback, {below} for a promotion) vs stable "
        f"{stable} above {_seconds(state.threshold)}"
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
        return "(no bucket bounds seen yet)"
    return seconds_text(value)
