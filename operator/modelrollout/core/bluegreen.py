"""Blue-green: the new version runs at full size behind the preview Service, then the main
Service's selector switches to it in one patch, and the old version is scaled down after
scaleDownDelaySeconds (so clients with open connections drain).

current_step_index: 0 while the preview starts, 1 once it is Ready (step_started_at = since when).
Without autoPromotionSeconds the rollout waits in Paused for `kubectl modelrollout promote`.
The switch is stated as a TrafficIntent (canary weight 0, then 100, with a preview); the `service`
router realises it as selectors on the main and preview Services.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modelrollout.core.change import Change, finish_promotion, roll_back
from modelrollout.core.observations import Observations, Preview, StrategyPlan, TrafficIntent
from modelrollout.core.phases import Phase
from modelrollout.core.routers import TrafficRouter
from modelrollout.core.spec import BlueGreenStrategy, RolloutSpec
from modelrollout.core.status import RolloutStatus
from modelrollout.core.steps import POLL, deadline_passed, roll_back_if_unloadable, start_analysis, wait_for_pods
from modelrollout.durations import format_duration

ROUTER = "service"


def plan(spec: RolloutSpec, status: RolloutStatus, obs: Observations, now: datetime,
         router: TrafficRouter) -> StrategyPlan:
    """Bring up the preview, wait for promotion, switch, then retire the old version."""
    assert isinstance(spec.strategy, BlueGreenStrategy)
    change = Change.of(status, now)
    st = change.status
    switched = False
    if st.canary_model is not None and st.phase in (Phase.PROGRESSING, Phase.PAUSED):
        _preview(change, spec, obs)
    if st.canary_model is not None and st.phase == Phase.PROMOTING:
        switched = _switch(change, spec, obs, router)
    return StrategyPlan(status=st, events=tuple(change.events), traffic=_traffic(spec, st, switched),
                        wake_at=tuple(change.wake_at))


def _traffic(spec: RolloutSpec, st: RolloutStatus, switched: bool) -> TrafficIntent:
    """Both versions at full size while one is in flight; the main traffic moves only at the switch."""
    assert isinstance(spec.strategy, BlueGreenStrategy)
    preview = st.canary_version or st.stable_version
    if st.phase == Phase.HEALTHY:
        preview = st.stable_version
    return TrafficIntent(
        stable=st.stable_version, canary=st.canary_version, canary_weight=100 if switched else 0,
        preview=None if preview is None else Preview(spec.strategy.preview_service, preview),
    )


def entry_services(spec: RolloutSpec) -> tuple[str, ...]:
    assert isinstance(spec.strategy, BlueGreenStrategy)
    return (spec.service.name, spec.strategy.preview_service)


def promote(change: Change, spec: RolloutSpec) -> None:
    """Switch now (the pods must still be Ready before the selector moves)."""
    change.move(Phase.PROMOTING, "ManualPromote", f"promoting version {change.status.canary_version} by request")


def _preview(change: Change, spec: RolloutSpec, obs: Observations) -> None:
    st = change.status
    strategy = spec.strategy
    assert isinstance(strategy, BlueGreenStrategy) and st.canary_model and st.step_started_at
    version = st.canary_model.version
    if not obs.is_version_ready(version, spec.replicas):
        if st.current_step_index == 1:
            st.current_step_index = 0  # a preview pod was lost: wait for it again
            st.step_started_at = change.now
        if roll_back_if_unloadable(change, obs, version, "the preview"):
            return
        if deadline_passed(change, spec):
            roll_back(change, "ProgressDeadlineExceeded",
                      f"preview pods not Ready after {format_duration(spec.progress_deadline_seconds)} "
                      f"({obs.ready_pods(version)}/{spec.replicas} ready{obs.why_not_ready(version)})")
        elif st.phase == Phase.PROGRESSING:
            wait_for_pods(change, obs, version,
                          f"preview of version {version}: {obs.ready_pods(version)}/{spec.replicas} pods Ready")
        return
    if st.current_step_index != 1:
        st.current_step_index = 1
        st.step_started_at = change.now
    start_analysis(change, spec)
    if st.phase == Phase.PAUSED:
        return
    preview = f"preview of version {version} Ready on Service {strategy.preview_service}"
    if strategy.auto_promotion_seconds is None:
        change.move(Phase.PAUSED, "AwaitingPromotion",
                    f"{preview}: run `kubectl modelrollout promote` to switch traffic")
        return
    due = st.step_started_at + timedelta(seconds=strategy.auto_promotion_seconds)
    if st.analysis.consecutive_failures > 0:
        change.move(Phase.PROGRESSING, "AnalysisFailing", f"{preview}: auto-promotion held, analysis failing")
    elif change.now >= due:
        change.move(Phase.PROMOTING, "AutoPromotion",
                    f"switching traffic to version {version} after {format_duration(strategy.auto_promotion_seconds)}")
    else:
        change.move(Phase.PROGRESSING, "AwaitingAutoPromotion",
                    f"{preview}: switching traffic in {format_duration((due - change.now).total_seconds())}")
        change.wake_at.append(due)


def _switch(change: Change, spec: RolloutSpec, obs: Observations, router: TrafficRouter) -> bool:
    """Promoting: switch once the new pods are all Ready; returns whether the main traffic goes to them."""
    st = change.status
    strategy = spec.strategy
    assert isinstance(strategy, BlueGreenStrategy) and st.canary_model is not None
    version = st.canary_model.version
    if st.scale_down_at is None:
        if not obs.is_version_ready(version, spec.replicas):
            change.wake_at.append(change.now + POLL)
            return False  # never switch to pods that cannot answer yet
        st.scale_down_at = change.now + timedelta(seconds=strategy.scale_down_delay_seconds)
        change.note("Switched", f"main Service {spec.service.name} now selects version {version}; "
                    f"version {st.stable_version} scales down at {st.scale_down_at.isoformat()}")
    wanted = TrafficIntent(stable=st.stable_version, canary=version, canary_weight=100)
    switched = router.is_routed(spec, wanted, obs)
    if change.now >= st.scale_down_at and switched:
        finish_promotion(change)
    else:
        change.wake_at.append(st.scale_down_at if switched else change.now + POLL)
    return True
