"""assess_tick: one analysis tick in, one verdict per metric out, plus the state to store.

>>> from modelrollout.analysis.types import Tick, VersionCounts
>>> config = AnalysisConfig.from_spec({"minSamples": 100, "metrics": [
...     {"name": "errors-vs-stable", "type": "errorRate", "margin": 0.005}]})
>>> state = AnalysisState.initial(config)
>>> tick = Tick(canary=VersionCounts(requests=100, errors=9), stable=VersionCounts(requests=300, errors=3),
...             expected_canary_share=0.25)
>>> for _ in range(3):
...     outcome, state = assess_tick(config, state, tick)
>>> outcome.overall.value
'Fail'
>>> print(outcome.results[0].message.replace(", tolerated", ",\\ntolerated"))
canary error rate 9.0% vs stable 1.0%, difference +8.0 pts, 95% always-valid interval [+2.4, +18.7],
tolerated +0.5 pts: rollback
"""

from __future__ import annotations

import math
from dataclasses import replace

from modelrollout.analysis.config import AnalysisConfig, MetricConfig, MetricType
from modelrollout.analysis.counts import Judgement
from modelrollout.analysis.latency import add_buckets
from modelrollout.analysis.mean_error import (
    describe_mae,
    judge_mae_bound,
    judge_mae_comparison,
    update_mae_bound,
    update_mae_comparison,
)
from modelrollout.analysis.progress import progress_note, requests_to_pass, requests_to_pass_ratio
from modelrollout.analysis.rules import describe, is_relative_latency, judge, needs_stable, observe, update_criterion
from modelrollout.analysis.sequential import mixture_rho, two_sided_log_e_value
from modelrollout.analysis.shift import describe_shift, judge_shift, update_shift
from modelrollout.analysis.state import AnalysisState, CriterionState, criterion_key
from modelrollout.analysis.tail import (
    describe_tail,
    judge_tail,
    plan_tail,
    tail_observation,
    update_tail,
    without_legacy,
)
from modelrollout.analysis.types import AnalysisOutcome, MetricResult, Tick, Verdict, VersionCounts

# The sample-ratio check only warns (it never rolls back), so it uses its own strict level and a
# practical tolerance: with heavy traffic a tiny, harmless imbalance would otherwise be "significant".
RATIO_CHECK_ALPHA = 0.001
RATIO_CHECK_TOLERANCE = 0.2  # relative deviation of the canary's share from the expected share
# Accuracy needs both versions to have a similar share of their predictions labelled.
MIN_COVERAGE_RATIO = 0.5


def assess_tick(config: AnalysisConfig, state: AnalysisState, tick: Tick) -> tuple[AnalysisOutcome, AnalysisState]:
    """Fold one tick into the state and judge every metric; a missing version leaves the state intact."""
    tick, notes = _clip_errors(tick)
    if tick.canary is None:
        reason = "; ".join(tick.errors) or "no data from the canary"
        missing = tuple(
            _inconclusive(m, f"no canary data this tick ({reason}): keep collecting") for m in config.metrics
        )
        return AnalysisOutcome(missing, Verdict.INCONCLUSIVE), replace(state, missing_ticks=state.missing_ticks + 1)
    traffic = _account_traffic(config, state, tick)
    results: list[MetricResult] = []
    updates: dict[str, CriterionState] = {}
    for metric in config.metrics:
        result, metric_updates = _assess_metric(config, metric, state, traffic, tick)
        results.append(_with_notes(result, notes))
        updates.update(metric_updates)
    new_state = traffic.with_criteria(updates)
    overall = _overall(tuple(r.verdict for r in results))
    requests = tick.canary.requests + (tick.stable.requests if tick.stable else 0.0)
    share = tick.canary.requests / requests if tick.stable and requests > 0 else None
    return AnalysisOutcome(tuple(results), overall, share, _sample_ratio_warning(new_state)), new_state


def _clip_errors(tick: Tick) -> tuple[Tick, tuple[str, ...]]:
    """Errors outside [0, requests] in one tick (a counter reset or a scrape racing a restart) are clipped.

    Unclipped, 5 ticks of "0 requests, 1 error" showed a 16% canary error rate against a true 1%; the note
    goes into every metric's message so that the user sees the scrape was inconsistent.
    """
    notes: list[str] = []
    versions: dict[str, VersionCounts | None] = {"canary": tick.canary, "stable": tick.stable}
    for name, counts in versions.items():
        if counts is None or 0.0 <= counts.errors <= counts.requests:
            continue
        clipped = min(max(counts.errors, 0.0), max(counts.requests, 0.0))
        notes.append(
            f"{name} scrape reported {counts.errors:g} errors for {counts.requests:g} requests this tick, "
            f"counted as {clipped:g}"
        )
        versions[name] = replace(counts, errors=clipped)
    if not notes:
        return tick, ()
    return replace(tick, canary=versions["canary"], stable=versions["stable"]), tuple(notes)


def _with_notes(result: MetricResult, notes: tuple[str, ...]) -> MetricResult:
    return replace(result, message=f"{result.message} ({'; '.join(notes)})") if notes else result


def _overall(verdicts: tuple[Verdict, ...]) -> Verdict:
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if verdicts and all(v is Verdict.PASS for v in verdicts):
        return Verdict.PASS
    return Verdict.INCONCLUSIVE


def _account_traffic(config: AnalysisConfig, state: AnalysisState, tick: Tick) -> AnalysisState:
    assert tick.canary is not None
    duration = tick.duration_seconds if tick.duration_seconds is not None else config.interval_seconds
    # Exposure is time the canary actually served: an idle tick (no requests) proves nothing about it.
    exposed = duration if tick.canary.requests > 0 else 0.0
    updated = replace(
        state,
        ticks=state.ticks + 1,
        canary_requests=state.canary_requests + tick.canary.requests,
        exposure_seconds=state.exposure_seconds + exposed,
        canary_latency=add_buckets(state.canary_latency, tick.canary.latency_buckets),
    )
    if tick.stable is None:
        return replace(updated, missing_ticks=state.missing_ticks + 1)
    total = tick.canary.requests + tick.stable.requests
    expected = min(max(tick.expected_canary_share, 0.0), 1.0)
    return replace(
        updated,
        stable_requests=state.stable_requests + tick.stable.requests,
        stable_latency=add_buckets(state.stable_latency, tick.stable.latency_buckets),
        ratio_score=state.ratio_score + tick.canary.requests - expected * total,
        ratio_variance=state.ratio_variance + expected * (1.0 - expected) * total,
        expected_requests=state.expected_requests + expected * total,
    )


def _sample_ratio_warning(state: AnalysisState) -> str | None:
    total = state.canary_requests + state.stable_requests
    if total <= 0 or state.expected_requests <= 0:
        return None
    log_e = float(two_sided_log_e_value(state.ratio_score, state.ratio_variance, mixture_rho(RATIO_CHECK_ALPHA, False)))
    measured, expected = state.canary_requests / total, state.expected_requests / total
    if log_e < math.log(1.0 / RATIO_CHECK_ALPHA) or abs(measured - expected) <= RATIO_CHECK_TOLERANCE * expected:
        return None
    return (
        f"sample ratio mismatch: the canary received {measured:.1%} of requests but its ready pods imply "
        f"{expected:.1%}; routing may be uneven, so comparisons with stable are suspect"
    )


def _inconclusive(metric: MetricConfig, message: str) -> MetricResult:
    return MetricResult(name=metric.name, verdict=Verdict.INCONCLUSIVE, message=message)


def _assess_metric(
    config: AnalysisConfig, metric: MetricConfig, before: AnalysisState, traffic: AnalysisState, tick: Tick
) -> tuple[MetricResult, dict[str, CriterionState]]:
    if tick.stable is None and needs_stable(metric):
        reason = "; ".join(tick.errors) or "no data from stable"
        return _inconclusive(metric, f"no stable data this tick ({reason}): keep collecting"), {}
    alpha = config.alpha_for(metric.name) / len(metric.criteria)
    judged = [(c, *_judge_criterion(metric, c, before, traffic, tick, alpha)) for c in metric.criteria]
    updates = {criterion_key(metric.name, c): s for c, s, _, _ in judged}
    return _metric_result(config, metric, traffic, judged), updates


def _judge_criterion(
    metric: MetricConfig, criterion: str, before: AnalysisState, traffic: AnalysisState, tick: Tick, alpha: float
) -> tuple[CriterionState, Judgement, str]:
    """Fold the tick into one criterion's sums and judge it: (new sums, judgement, sentence)."""
    previous = before.criterion(metric.name, criterion)
    if is_relative_latency(metric, criterion):
        return _judge_tail(metric, criterion, without_legacy(previous), before, traffic, tick, alpha)
    canary = tick.canary or VersionCounts()
    stable = tick.stable or VersionCounts()
    if metric.type is MetricType.PREDICTION_SHIFT:
        updated = update_shift(previous, canary.class_counts, stable.class_counts)
        j = judge_shift(updated, metric.criteria[criterion], alpha)
        return updated, j, describe_shift(updated, j, 1.0 - alpha)
    if metric.type is MetricType.MEAN_ABSOLUTE_ERROR:
        return _judge_mae(metric, criterion, previous, canary, stable, alpha)
    obs, threshold, floor = observe(metric, criterion, tick, before)
    updated = update_criterion(metric, criterion, previous, obs, threshold, alpha, floor)
    j = judge(metric, criterion, updated, alpha)
    return updated, j, describe(metric, criterion, updated, j, 1.0 - alpha)


def _judge_tail(
    metric: MetricConfig,
    criterion: str,
    previous: CriterionState,
    before: AnalysisState,
    traffic: AnalysisState,
    tick: Tick,
    alpha: float,
) -> tuple[CriterionState, Judgement, str]:
    """Latency quantile against stable: the bound and tolerance come from stable's histogram before this tick."""
    plan = plan_tail(metric, criterion, before.stable_latency)
    updated, not_compared = previous, None
    if isinstance(plan, str):
        not_compared = plan
    else:
        canary = tick.canary.latency_buckets if tick.canary else ()
        stable = tick.stable.latency_buckets if tick.stable else ()
        updated = update_tail(previous, tail_observation(canary, stable, plan), plan, alpha)
    j = judge_tail(updated)
    histograms = (traffic.canary_latency, traffic.stable_latency)
    return updated, j, describe_tail(metric, criterion, updated, j, 1.0 - alpha, histograms, not_compared)


def _judge_mae(
    metric: MetricConfig,
    criterion: str,
    previous: CriterionState,
    canary: VersionCounts,
    stable: VersionCounts,
    alpha: float,
) -> tuple[CriterionState, Judgement, str]:
    value = metric.criteria[criterion]
    if criterion == "max":
        updated = update_mae_bound(previous, canary.abs_error_sum, canary.abs_error_count, value, alpha)
        j = judge_mae_bound(updated, value)
        return updated, j, describe_mae(updated, j, comparison=False, level=1.0 - alpha)
    updated = update_mae_comparison(
        previous, canary.abs_error_sum, canary.abs_error_count, stable.abs_error_sum, stable.abs_error_count, alpha
    )
    stable_mae = updated.stable_events / updated.stable_trials if updated.stable_trials > 0 else 0.0
    limit = (value - 1.0) * stable_mae if criterion == "maxRatioToStable" else value
    j = judge_mae_comparison(updated, limit)
    return updated, j, describe_mae(updated, j, comparison=True, level=1.0 - alpha)


def _metric_result(
    config: AnalysisConfig,
    metric: MetricConfig,
    traffic: AnalysisState,
    judged: list[tuple[str, CriterionState, Judgement, str]],
) -> MetricResult:
    verdict = _overall(tuple(j.verdict for _, _, j, _ in judged))
    # Headline: the criterion that decided (a failing one first), else the first configured.
    _, state, j, message = next((item for item in judged if item[2].verdict is verdict), judged[0])
    gate = _gate(config, metric, traffic, state, verdict)
    if traffic.canary_requests <= 0:
        # Rates of nothing read "n/a vs n/a"; what the user needs to know is that no traffic reached the canary.
        verdict, message = Verdict.INCONCLUSIVE, _no_canary_traffic(config, traffic)
    elif gate is not None:
        verdict, message = Verdict.INCONCLUSIVE, f"{message.rsplit(':', 1)[0]}: keep collecting ({gate})"
    elif verdict is Verdict.INCONCLUSIVE:
        message = f"{message}; {_progress(traffic, state, j)}"
    canary = state.canary_events / state.canary_trials if state.canary_trials else None
    stable = state.stable_events / state.stable_trials if state.stable_trials else None
    if metric.type is MetricType.ACCURACY:
        canary, stable = (None if v is None else 1.0 - v for v in (canary, stable))
    return MetricResult(
        name=metric.name,
        verdict=verdict,
        message=message,
        canary_value=canary,
        stable_value=stable,
        # status is JSON, which has no infinity (a tail test with canary but no stable events has no finite estimate)
        estimate=j.estimate if math.isfinite(j.estimate) else None,
        interval=j.interval if all(math.isfinite(end) for end in j.interval) else None,
        p_value=j.p_value,
        e_value=j.e_value,
        canary_samples=state.canary_trials,
        stable_samples=state.stable_trials,
    )


def _no_canary_traffic(config: AnalysisConfig, traffic: AnalysisState) -> str:
    """What an Inconclusive metric says while the canary has answered nothing since analysis began.

    >>> _no_canary_traffic(AnalysisConfig((), min_samples=100), AnalysisState(ticks=3))
    '0 canary requests in the last 3 ticks (minSamples 100): keep collecting'
    """
    ticks = f"{traffic.ticks} tick{'s' if traffic.ticks != 1 else ''}"
    return f"0 canary requests in the last {ticks} (minSamples {config.min_samples}): keep collecting"


def _progress(traffic: AnalysisState, state: CriterionState, j: Judgement) -> str:
    """How many more canary requests (and how long, at the rate seen so far) a Pass would need."""
    if not math.isfinite(j.interval[1]):
        return "too little data yet to project when a Pass could come"
    per_sample = traffic.canary_requests / state.canary_trials if state.canary_trials > 0 else 1.0
    estimate = j.estimate
    if state.pass_extra_events > 0 and state.canary_trials > 0:
        # A latency `max` between bucket bounds: a Pass counts the requests between them as slower; so does this.
        estimate = (state.canary_events + state.pass_extra_events) / state.canary_trials
    if state.tolerance is not None:  # latency against stable: an excess ratio, whose interval shrinks in log scale
        more = requests_to_pass_ratio(estimate, j.interval[1], state.canary_trials, per_sample)
    else:
        more = requests_to_pass(estimate, j.interval[1], j.limit, state.canary_trials, per_sample)
    rate = traffic.canary_requests / traffic.exposure_seconds if traffic.exposure_seconds > 0 else None
    return progress_note(more, rate)


def _gate(
    config: AnalysisConfig, metric: MetricConfig, traffic: AnalysisState, state: CriterionState, verdict: Verdict
) -> str | None:
    """Why a verdict must wait: too few canary requests, label coverage differs, or too little exposure."""
    if verdict is Verdict.INCONCLUSIVE:
        return None
    if traffic.canary_requests < config.min_samples:
        return f"{traffic.canary_requests:.0f} of {config.min_samples:.0f} canary requests so far"
    if metric.type is MetricType.ACCURACY and traffic.canary_requests > 0 and traffic.stable_requests > 0:
        coverage_c = state.canary_trials / traffic.canary_requests
        coverage_s = state.stable_trials / traffic.stable_requests
        if min(coverage_c, coverage_s) < MIN_COVERAGE_RATIO * max(coverage_c, coverage_s):
            return f"label coverage differs: canary {coverage_c:.0%} vs stable {coverage_s:.0%} of predictions labelled"
    if verdict is Verdict.PASS and traffic.exposure_seconds < config.min_exposure_seconds:
        return f"exposure {traffic.exposure_seconds:.0f}s of the minimum {config.min_exposure_seconds:.0f}s"
    return None
