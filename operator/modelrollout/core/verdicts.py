"""Turning one analysis tick's outcome into counters, numbers in status, and maybe a transition.

Inconclusive never counts as pass or fail: it leaves the failure streak as it is and only
feeds its own counter, which pauses the rollout at analysis.inconclusiveLimit. failureLimit
consecutive Fail verdicts roll back, with the failing metrics' own sentences as the message.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.types import AnalysisOutcome, MetricResult, Verdict
from modelrollout.core.change import Change, roll_back
from modelrollout.core.observations import AnalysisObservation
from modelrollout.core.phases import Phase
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import MetricStatus, RolloutStatus


def needs_analysis(spec: RolloutSpec, status: RolloutStatus, now: datetime) -> bool:
    """Whether an analysis tick is due: the adapter asks before gathering, so it scrapes and runs
    the engine only then, and `decide` is called once with the outcome among the observations.

    The canary must still be the version spec names: a tick that finds spec moved on supersedes
    (or reverts) the canary instead of judging it once more.
    """
    a = status.analysis
    return (
        spec.analysis is not None
        and status.canary_model is not None
        and status.canary_model.version == spec.model.version
        and status.phase in (Phase.PROGRESSING, Phase.PAUSED)
        and a.next_tick_at is not None
        and now >= a.next_tick_at
    )


def metric_status(result: MetricResult) -> MetricStatus:
    return MetricStatus(
        name=result.name, verdict=result.verdict.value, message=result.message,
        canary_value=result.canary_value, stable_value=result.stable_value, estimate=result.estimate,
        interval=None if result.interval is None else [result.interval[0], result.interval[1]],
        p_value=result.p_value, e_value=result.e_value,
        canary_samples=result.canary_samples, stable_samples=result.stable_samples,
    )


def record_outcome(change: Change, spec: RolloutSpec, seen: AnalysisObservation | None) -> None:
    """Count this tick's verdict once (a repeated tick finds next_tick_at moved on and does nothing)."""
    st = change.status
    if seen is None or spec.analysis is None or not needs_analysis(spec, st, change.now):
        return
    outcome, a = seen.outcome, st.analysis
    a.ticks += 1
    a.last_tick_at = change.now
    a.next_tick_at = next_tick = change.now + timedelta(seconds=spec.analysis.interval_seconds)
    a.engine_state = dict(seen.engine_state)
    a.results = [metric_status(r) for r in outcome.results]
    a.last_verdict = outcome.overall.value
    a.sample_ratio_warning = outcome.sample_ratio_warning
    if outcome.effective_canary_share is not None:
        st.effective_weight = round(100 * outcome.effective_canary_share, 1)
    if outcome.overall == Verdict.FAIL:
        _on_fail(change, spec.analysis, outcome)
    elif outcome.overall == Verdict.INCONCLUSIVE:
        _on_inconclusive(change, spec.analysis, outcome)
    else:
        a.consecutive_failures = a.consecutive_inconclusive = 0
    if change.status.analysis.next_tick_at is not None:  # None: the outcome ended the analysis
        change.wake_at.append(next_tick)


def _on_fail(change: Change, settings: AnalysisConfig, outcome: AnalysisOutcome) -> None:
    a = change.status.analysis
    a.consecutive_failures += 1
    a.consecutive_inconclusive = 0
    detail = failure_summary(outcome)
    if a.consecutive_failures >= settings.failure_limit:
        roll_back(change, "AnalysisFailed",
                  f"{detail} ({a.consecutive_failures} failed analysis tick(s) in a row, failureLimit "
                  f"{settings.failure_limit})")
    else:
        change.note("AnalysisFailed", f"{detail} ({a.consecutive_failures}/{settings.failure_limit} "
                    "failed ticks before rollback)", warning=True)


def _on_inconclusive(change: Change, settings: AnalysisConfig, outcome: AnalysisOutcome) -> None:
    st = change.status
    st.analysis.consecutive_inconclusive += 1
    count = st.analysis.consecutive_inconclusive
    if count >= settings.inconclusive_limit and st.phase == Phase.PROGRESSING:
        reasons = "; ".join(r.message for r in outcome.results if r.verdict == Verdict.INCONCLUSIVE)
        change.move(Phase.PAUSED, "Inconclusive",
                    f"paused: {count} analysis ticks in a row were inconclusive (inconclusiveLimit "
                    f"{settings.inconclusive_limit}): {reasons or 'no data'}. Run `kubectl modelrollout "
                    "resume` to keep measuring, `promote` to go on, or `abort`")


def failure_summary(outcome: AnalysisOutcome) -> str:
    """The failing metrics named with their own sentences (numbers included).

    >>> r = MetricResult("error-rate", Verdict.FAIL, "canary error rate 5.0% above max 1.0%")
    >>> failure_summary(AnalysisOutcome(results=(r,), overall=Verdict.FAIL))
    'error-rate: canary error rate 5.0% above max 1.0%'
    """
    failed = [f"{r.name}: {r.message}" for r in outcome.results if r.verdict == Verdict.FAIL]
    return "; ".join(failed) or "analysis failed"
