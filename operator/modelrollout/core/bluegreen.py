"""Blue-green: the new version runs at full size behind the preview Service, then the main
Service's selector switches to it in one patch, and the old version is scaled down after
scaleDownDelaySeconds (so clients with open connections drain).

current_step_index: 0 while the preview starts, 1 once it is Ready (step_started_at = since when).
Without autoPromotionSeconds the rollout waits in Paused for `kubectl modelrollout promote`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modelrollout.core.canary import POLL, start_analysis
from modelrollout.core.change import Change, finish_promotion, roll_back
from modelrollout.core.observations import Observations, StrategyPlan, selector
from modelrollout.core.phases import Phase
from modelrollout.core.spec import BlueGreenStrategy, RolloutSpec
from modelrollout.core.status import RolloutStatus
from modelrollout.durations import format_duration


def plan(spec: RolloutSpec, status: RolloutStatus, obs: Observations, now: datetime) -> StrategyPlan:
    """Bring up the preview, wait for promotion, switch, then retire the old version."""
    assert isinstance(spec.strategy, BlueGreenStrategy)
    change = Change.of(status, now)
    st = change.status
    active = st.stable_version
    if st.canary_model is not None and st.phase in (Phase.PROGRESSING, Phase.PAUSED):
        _preview(change, spec, obs)
    if st.canary_model is not None and st.phase == Phase.PROMOTING:
        active = _switch(change, spec, obs)
    replicas = {v: spec.replicas for v in (st.stable_version, st.canary_version) if v is not None}
    preview = st.canary_version or st.stable_version
    if st.phase == Phase.HEALTHY:
        active = preview = st.stable_version
    return StrategyPlan(status=st, events=tuple(change.events), replicas=replicas, main_version=active,
                        preview_version=preview, wake_at=tuple(change.wake_at))


def _preview(change: Change, spec: RolloutSpec, obs: Observations) -> None:
    st = change.status
    strategy = spec.strategy
    assert isinstance(strategy, BlueGreenStrategy) and st.canary_model and st.step_started_at
    version = st.canary_model.version
    if not obs.is_version_ready(version, spec.replicas):
        if st.current_step_index == 1:
            st.current_step_index = 0  # a preview pod was lost: wait for it again
            st.step_started_at = change.now
        if change.now - st.step_started_at > timedelta(seconds=spec.progress_deadline_seconds):
            roll_back(change, "ProgressDeadlineExceeded",
                      f"preview pods not Ready after {format_duration(spec.progress_deadline_seconds)} "
                      f"({obs.ready_pods(version)}/{spec.replicas} ready)")
        elif st.phase == Phase.PROGRESSING:
            change.move(Phase.PROGRESSING, "WaitingForPods",
                        f"preview of version {version}: {obs.ready_pods(version)}/{spec.replicas} pods Ready")
            change.wake_at.append(change.now + POLL)
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


def _switch(change: Change, spec: RolloutSpec, obs: Observations) -> str | None:
    """Promoting: switch once the new pods are all Ready; returns the version the main Service pins."""
    st = change.status
    strategy = spec.strategy
    assert isinstance(strategy, BlueGreenStrategy) and st.canary_model is not None
    version = st.canary_model.version
    if st.scale_down_at is None:
        if not obs.is_version_ready(version, spec.replicas):
            change.wake_at.append(change.now + POLL)
            return st.stable_version  # never switch to pods that cannot answer yet
        st.scale_down_at = change.now + timedelta(seconds=strategy.scale_down_delay_seconds)
        change.note("Switched", f"main Service {spec.service.name} now selects version {version}; "
                    f"version {st.stable_version} scales down at {st.scale_down_at.isoformat()}")
    switched = obs.main_selector == selector(obs.name, version)
    if change.now >= st.scale_down_at and switched:
        finish_promotion(change)
    else:
        change.wake_at.append(st.scale_down_at if switched else change.now + POLL)
    return version
