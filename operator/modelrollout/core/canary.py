"""Canary: weights realised by replica counts behind one Service that selects every version.

Steps run in order. A setWeight step is done when the canary's pods for that weight are Ready,
the stable version has been scaled to its share, and (with analysis) a tick after the step
began did not fail. A pause waits its duration, or for `promote` when it has none. Reaching
`setWeight: 100` or the end of the steps is the promotion gate: with metrics it needs an
analysis Pass (or the analysis.timeout policy); then the canary scales to all replicas and,
once Ready, becomes the stable version.

The weight is stated as a TrafficIntent; the router (by default `replicas`) says which pods that
takes, and a step waits until those pods are Ready.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modelrollout.analysis.config import TimeoutAction
from modelrollout.analysis.types import Verdict
from modelrollout.core import shadowstep
from modelrollout.core.change import Change, roll_back
from modelrollout.core.observations import Observations, StrategyPlan, TrafficIntent
from modelrollout.core.phases import Phase
from modelrollout.core.routers import TrafficRouter
from modelrollout.core.spec import CanaryStrategy, RolloutSpec
from modelrollout.core.status import RolloutStatus
from modelrollout.core.steps import (
    POLL,
    deadline_passed,
    promote_if_ready,
    roll_back_if_unloadable,
    start_analysis,
    wait_for_pods,
)
from modelrollout.durations import format_duration

ROUTER = "replicas"


def weight_at(strategy: CanaryStrategy, index: int) -> int:
    """The canary weight in force at step `index`: the last setWeight below 100 up to there.

    >>> from modelrollout.core.spec import CanaryStep as S
    >>> steps = CanaryStrategy((S(set_weight=25), S(is_pause=True), S(set_weight=50), S(set_weight=100)))
    >>> [weight_at(steps, i) for i in range(5)]
    [25, 25, 50, 50, 50]
    """
    weights = [s.set_weight for s in strategy.steps[: index + 1] if s.set_weight not in (None, 100)]
    return weights[-1] if weights else 0


def is_gate(strategy: CanaryStrategy, index: int) -> bool:
    """Whether step `index` is the promotion gate (past the last step, or setWeight 100)."""
    return index >= len(strategy.steps) or strategy.steps[index].set_weight == 100


def plan(spec: RolloutSpec, status: RolloutStatus, obs: Observations, now: datetime,
         router: TrafficRouter) -> StrategyPlan:
    """Advance the canary as far as the observations allow within this tick."""
    assert isinstance(spec.strategy, CanaryStrategy)
    change = Change.of(status, now)
    if change.status.phase in (Phase.PROGRESSING, Phase.PAUSED):
        for _ in range(len(spec.strategy.steps) + 1):
            if not _advance_once(change, spec, obs, router):
                break
    elif change.status.phase == Phase.PROMOTING:
        promote_if_ready(change, spec, obs)
    return StrategyPlan(status=change.status, events=tuple(change.events), traffic=traffic(spec, change.status),
                        wake_at=tuple(change.wake_at))


def traffic(spec: RolloutSpec, st: RolloutStatus) -> TrafficIntent:
    """The desired weight while stepping, everything once Promoting, the stable version alone otherwise;
    with the canary's header route and pod floor, which routers that split by request honour."""
    if st.canary_model is None or st.stable_version is None:
        return TrafficIntent(stable=st.stable_version)
    assert isinstance(spec.strategy, CanaryStrategy)
    shadow = shadowstep.traffic(spec, st)
    if shadow is not None:  # the candidate answers copies only: no weight, no header route
        return TrafficIntent(stable=st.stable_version, shadow=shadow)
    weight = 100 if st.phase == Phase.PROMOTING else st.desired_weight or 0
    return TrafficIntent(stable=st.stable_version, canary=st.canary_model.version, canary_weight=weight,
                         canary_header=spec.strategy.header_route,
                         canary_pods_floor=spec.strategy.canary_replicas or 0)


def entry_services(spec: RolloutSpec) -> tuple[str, ...]:
    assert isinstance(spec.strategy, CanaryStrategy)
    if spec.strategy.has_shadow:
        return (spec.service.name, shadowstep.shadow_service(spec))
    return (spec.service.name,)


def promote(change: Change, spec: RolloutSpec) -> None:
    """Past the current step or pause; at the promotion gate a person overrides the analysis."""
    st = change.status
    assert isinstance(spec.strategy, CanaryStrategy)
    index = st.current_step_index or 0
    if is_gate(spec.strategy, index):
        change.move(Phase.PROMOTING, "ManualPromote", f"promoting version {st.canary_version} by request")
        return
    # Past this step only: a later promotion gate still wants its analysis Pass.
    st.current_step_index, st.step_started_at = index + 1, change.now
    change.move(Phase.PROGRESSING, "ManualPromote",
                f"continuing past step {index + 1}/{len(spec.strategy.steps)} by request")


def _advance_once(change: Change, spec: RolloutSpec, obs: Observations, router: TrafficRouter) -> bool:
    """Work on the current step; True when it completed and the next one should be looked at."""
    st = change.status
    strategy = spec.strategy
    assert isinstance(strategy, CanaryStrategy) and st.canary_model is not None
    index = st.current_step_index or 0
    st.desired_weight = weight_at(strategy, index)
    if is_gate(strategy, index):
        _promotion_gate(change, spec, obs)
        return False
    if st.phase == Phase.PAUSED:
        return False  # a person paused it (or a pause step / analysis did): hold everything
    step = strategy.steps[index]
    if step.shadow is not None:
        # Pinned: the main Service already selects the stable version alone (the router's selector for it).
        intent = traffic(spec, st)
        pinned = intent.shadow is None or router.is_routed(spec, intent, obs)
        done = shadowstep.advance(change, spec, step.shadow, obs, pinned)
    elif step.set_weight is not None:
        done = _set_weight_done(change, spec, obs, router)
    else:
        done = _pause_done(change, spec)
    if done:
        st.current_step_index = index + 1
        st.step_started_at = change.now
        change.note("StepCompleted", f"step {index + 1}/{len(strategy.steps)} completed")
    return done


def _set_weight_done(change: Change, spec: RolloutSpec, obs: Observations, router: TrafficRouter) -> bool:
    st = change.status
    assert st.canary_model is not None and st.stable_version is not None and st.step_started_at
    wanted = router.pods(spec, traffic(spec, st))
    canary_pods, stable_pods = wanted.get(st.canary_model.version, 0), wanted.get(st.stable_version, 0)
    version = st.canary_model.version
    if not obs.is_version_ready(version, canary_pods):
        if roll_back_if_unloadable(change, obs, version, "the canary"):
            return False
        if deadline_passed(change, spec):
            roll_back(change, "ProgressDeadlineExceeded",
                      f"canary pods not Ready after {format_duration(spec.progress_deadline_seconds)} "
                      f"({obs.ready_pods(version)}/{canary_pods} ready{obs.why_not_ready(version)})")
            return False
        wait_for_pods(change, obs, version, f"weight {st.desired_weight}%: waiting for {canary_pods} canary "
                      f"pod(s) to be Ready ({obs.ready_pods(version)} ready)")
        return False
    if not router.is_routed(spec, traffic(spec, st), obs):
        # A route (gatewayAPI) carries the weight only once the gateway took it in: measure after that.
        change.move(Phase.PROGRESSING, "AwaitingRoute",
                    f"weight {st.desired_weight}%: canary pods Ready, waiting for the traffic router "
                    "to carry the weight (spec.trafficRouting)")
        change.wake_at.append(change.now + POLL)
        return False
    start_analysis(change, spec)
    stable_seen = obs.deployments.get(st.stable_version)
    if stable_seen is not None and stable_seen.replicas > stable_pods:
        change.wake_at.append(change.now + POLL)  # the stable scale-down is applied after this tick
        return False
    if spec.analysis is None:
        return True
    a = st.analysis
    measured = a.last_tick_at is not None and a.last_tick_at > st.step_started_at
    if measured and a.last_verdict != Verdict.FAIL.value:
        return True
    change.move(Phase.PROGRESSING, "Measuring",
                f"weight {st.desired_weight}%: waiting for an analysis tick that does not fail")
    return False


def _pause_done(change: Change, spec: RolloutSpec) -> bool:
    st = change.status
    assert isinstance(spec.strategy, CanaryStrategy) and st.step_started_at is not None
    index = st.current_step_index or 0
    seconds = spec.strategy.steps[index].pause_seconds
    position = f"step {index + 1}/{len(spec.strategy.steps)}"
    if seconds is None:
        change.move(Phase.PAUSED, "StepPause",
                    f"paused at {position} (weight {st.desired_weight}%): "
                    "run `kubectl modelrollout promote` to continue")
        return False
    ends = st.step_started_at + timedelta(seconds=seconds)
    if change.now >= ends:
        return True
    change.move(Phase.PROGRESSING, "StepPause",
                f"{position}: pausing {format_duration(seconds)} at weight {st.desired_weight}%")
    change.wake_at.append(ends)
    return False


def _promotion_gate(change: Change, spec: RolloutSpec, obs: Observations) -> None:
    st = change.status
    assert st.canary_model is not None and st.step_started_at is not None
    if st.phase == Phase.PAUSED:
        return
    analysis = spec.analysis
    if analysis is None or (st.desired_weight or 0) == 0:
        change.move(Phase.PROMOTING, "StepsComplete", f"promoting version {st.canary_model.version}")
    elif st.analysis.last_verdict == Verdict.PASS.value:
        change.move(Phase.PROMOTING, "AnalysisPassed",
                    f"promoting version {st.canary_model.version}: every metric passed")
    elif change.now >= st.step_started_at + timedelta(seconds=analysis.timeout.after_seconds):
        _on_timeout(change, analysis.timeout.action, format_duration(analysis.timeout.after_seconds))
    else:
        change.wake_at.append(st.step_started_at + timedelta(seconds=analysis.timeout.after_seconds))
        change.move(Phase.PROGRESSING, "AwaitingAnalysis",
                    f"all steps done at weight {st.desired_weight}%: promotion waits for analysis to pass "
                    f"(last verdict {st.analysis.last_verdict or 'none yet'})")
    if st.phase == Phase.PROMOTING:
        promote_if_ready(change, spec, obs)


def _on_timeout(change: Change, action: TimeoutAction, after: str) -> None:
    what = f"analysis did not pass within {after} of reaching the promotion gate"
    if action == TimeoutAction.PROMOTE:
        change.move(Phase.PROMOTING, "AnalysisTimeout", f"{what}: promoting as analysis.timeout.action says")
    elif action == TimeoutAction.ROLLBACK:
        roll_back(change, "AnalysisTimeout", what)
    else:
        change.move(Phase.PAUSED, "AnalysisTimeout",
                    f"{what}: paused; run `kubectl modelrollout promote` or `abort`")
