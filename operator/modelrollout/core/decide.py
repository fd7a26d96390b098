"""decide(spec, status, observations, now) -> Decision: the whole reconcile logic, without I/O.

One tick, in order: apply a pending manual command; count the analysis outcome if a tick was
due; react to what spec asks for (first version, a new version, a version superseding the one
in flight, spec back at the stable version, a rejected version re-applied); let the strategy
module advance (it states where traffic should go); let the router turn that into desired pods
and Service selectors; then turn desired pods into Deployment intents that never reduce serving
capacity before the pods replacing it are Ready (except a rollback, which cuts the rejected
version at once). Repeating a tick with the same inputs after its actions were applied changes
nothing: commands are keyed by id, analysis by nextTickAt, and steps by stepStartedAt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from modelrollout.core import shadowstep, validation
from modelrollout.core.change import Change, clear_canary, model_record, start_canary
from modelrollout.core.commands import apply_command, pending_command
from modelrollout.core.conditions import update_conditions
from modelrollout.core.driftwatch import watch_drift
from modelrollout.core.observations import Decision, DeploymentIntent, Observations, StrategyPlan
from modelrollout.core.phases import Phase
from modelrollout.core.retrain import plan_retrain
from modelrollout.core.routers import TrafficRouter
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import RolloutStatus
from modelrollout.core.steps import POLL
from modelrollout.core.strategies import router_for, router_name, strategy_for
from modelrollout.core.verdicts import needs_analysis, record_outcome
from modelrollout.durations import format_duration

IDLE = timedelta(seconds=60)  # a settled rollout is looked at again this often
ROUTE_POLL = timedelta(seconds=1)


def decide(spec: RolloutSpec, status: RolloutStatus, obs: Observations, now: datetime) -> Decision:
    """The next status and the actions that bring the cluster towards it (see module docstring)."""
    change = Change.of(status, now)
    request = pending_command(obs.annotations, change.status)
    if request is not None:
        apply_command(change, spec, request)
    record_outcome(change, spec, obs.analysis)
    _follow_spec(change, spec)
    _settle_first_version(change, spec, obs)
    router = router_for(spec)
    if validation.run_gate(change, spec, obs):
        plan = validation.holding_plan(change)
    else:
        plan = strategy_for(spec).plan(spec, change.status, obs, now, router)
    change.status = plan.status
    change.events.extend(plan.events)
    change.wake_at.extend(plan.wake_at)
    watch_drift(change, spec, obs.drift)
    retrain_job = plan_retrain(change, spec, obs.name, obs.retrain)
    return replace(_decision(change, spec, obs, plan, router),
                   cancel_validation_job=validation.cancel_stale_run(status, change), retrain_job=retrain_job)


def decide_from_dicts(spec: Mapping[str, Any], status: Mapping[str, Any] | None, obs: Observations,
                      now: datetime) -> Decision:
    """Parse and decide, for callers holding the stored dicts (the adapter parses once itself)."""
    current = RolloutStatus.from_dict(dict(status or {}))
    try:
        parsed = RolloutSpec.from_dict(spec)
    except ValueError as err:
        return refuse_spec(current, err, obs.generation, now)
    return decide(parsed, current, obs, now)


def refuse_spec(status: RolloutStatus, error: ValueError, generation: int, now: datetime) -> Decision:
    """An invalid spec moves to Failed naming the field and leaves workloads alone."""
    change = Change.of(status, now)
    change.move(Phase.FAILED, "InvalidSpec", f"invalid spec: {error}")
    change.status.observed_generation = generation
    update_conditions(change.status, now)
    return Decision(status=change.status, deployments=None, delete_versions=(), selectors={},
                    events=tuple(change.events), next_tick_at=now + IDLE)


def _follow_spec(change: Change, spec: RolloutSpec) -> None:
    """React to the version spec asks for."""
    st = change.status
    target = spec.model.version
    if st.stable_model is None or (st.phase in (Phase.PENDING, Phase.FAILED) and not st.history):
        if st.stable_model is None or st.stable_model.version != target:
            reason = "Deploying" if st.stable_model is None else "Superseded"
            st.stable_model, st.step_started_at = model_record(spec.model), change.now
            change.move(Phase.PENDING, reason, f"deploying version {target} with {spec.replicas} replica(s)")
        return
    if target == st.rejected_version:
        if st.phase == Phase.HEALTHY:
            st.message = (f"version {st.stable_version} serves all traffic; spec names version {target}, "
                          "which was rolled back: run `kubectl modelrollout retry` to roll it out again")
        return
    if target == st.stable_version:
        if st.canary_model is not None:
            change.record(st.canary_model, "Superseded", "SpecReverted")
            clear_canary(change)
            change.move(Phase.HEALTHY, "SpecReverted", f"spec is back at stable version {target}")
        elif st.phase in (Phase.ROLLED_BACK, Phase.FAILED):
            change.move(Phase.HEALTHY, "SpecMatchesStable", f"version {target} serves all traffic")
        return
    if st.canary_model is None:
        start_canary(change, spec, "NewVersion")
    elif st.canary_version != target:
        change.record(st.canary_model, "Superseded", "NewVersion")
        start_canary(change, spec, "Superseded")
    elif st.phase == Phase.FAILED:
        change.move(Phase.PROGRESSING, "SpecValid", f"spec is valid again; continuing with version {target}")


def _settle_first_version(change: Change, spec: RolloutSpec, obs: Observations) -> None:
    """The first version: Healthy once all its pods are Ready (nothing to compare it with)."""
    st = change.status
    if st.stable_model is None or st.history or st.phase not in (Phase.PENDING, Phase.FAILED):
        return
    if st.phase == Phase.FAILED and st.reason == "InvalidSpec":
        return
    version = st.stable_model.version
    if obs.is_version_ready(version, spec.replicas):
        change.record(st.stable_model, "Deployed", "FirstVersion")
        change.move(Phase.HEALTHY, "Deployed", f"version {version} serves all traffic")
        return
    change.wake_at.append(change.now + POLL)
    assert st.step_started_at is not None
    ready = f"{obs.ready_pods(version)}/{spec.replicas} pods Ready{obs.why_not_ready(version)}"
    unloadable = obs.unhealable_problem(version)
    if unloadable is not None:
        # Nothing to roll back to: Failed at once instead of after the deadline, with the reason.
        change.move(Phase.FAILED, "ModelLoadFailed",
                    f"version {version} cannot load the model: {unloadable.describe()}; "
                    "fix spec.model and apply it again")
    elif change.now - st.step_started_at > timedelta(seconds=spec.progress_deadline_seconds):
        change.move(Phase.FAILED, "ProgressDeadlineExceeded",
                    f"version {version} not Ready after {format_duration(spec.progress_deadline_seconds)} "
                    f"({ready}); still trying: fix the spec or run `kubectl modelrollout retry`")
    elif st.phase == Phase.PENDING:
        why = obs.why_not_ready(version)
        change.move(Phase.PENDING, "PodsNotReady" if why else "Deploying", f"deploying version {version}: {ready}",
                    warning=bool(why))


def hold_capacity(replicas: Mapping[str, int], obs: Observations, cut_at_once: bool) -> dict[str, int]:
    """Desired replicas for every observed version, never reducing one while another is not Ready.

    >>> from modelrollout.core.observations import DeploymentObservation as D
    >>> obs = Observations("r", 1, deployments={"1": D(4, 4, 4, 4), "2": D(1, 0, 0, 0)})
    >>> hold_capacity({"1": 3, "2": 1}, obs, cut_at_once=False)
    {'1': 4, '2': 1}
    >>> hold_capacity({"1": 4}, obs, cut_at_once=True)
    {'1': 4, '2': 0}
    """
    wanted = dict(replicas)
    for version in obs.deployments:
        wanted.setdefault(version, 0)
    waiting = any(n > 0 and not obs.has_ready_pods(v, n) for v, n in wanted.items())
    if cut_at_once or not waiting:
        return wanted
    return {v: max(n, obs.deployments[v].replicas) if v in obs.deployments else n for v, n in wanted.items()}


def hold_until_routed(replicas: Mapping[str, int], obs: Observations, routed: bool) -> dict[str, int]:
    """A router that writes a route (gatewayAPI) may still send traffic to a version the plan scales
    down, until the gateway has accepted the new route: keep every version's pods until then.

    >>> from modelrollout.core.observations import DeploymentObservation as D
    >>> obs = Observations("r", 1, deployments={"1": D(4, 4, 4, 4), "2": D(2, 2, 2, 2)})
    >>> hold_until_routed({"1": 4, "2": 0}, obs, routed=False), hold_until_routed({"1": 4, "2": 0}, obs, routed=True)
    ({'1': 4, '2': 2}, {'1': 4, '2': 0})
    """
    if routed:
        return dict(replicas)
    return {v: max(n, obs.deployments[v].replicas) if v in obs.deployments else n for v, n in replicas.items()}


def route_settled_at(spec: RolloutSpec, st: RolloutStatus, obs: Observations, routed: bool,
                     now: datetime) -> datetime:
    """When the pods a route no longer sends traffic to may go: scaleDownDelaySeconds after the gateway
    was first seen accepting the current route (kept in status.routeAcceptedAt, so a restart keeps it).
    A gateway applies an accepted route a moment later, and until then it still sends those pods requests.

    >>> from modelrollout.core.observations import RouteObservation
    >>> spec = RolloutSpec.from_dict({"model": {"name": "m", "version": "2", "uri": "http://s/m.joblib"},
    ...     "service": {"name": "m"}, "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
    ...     "trafficRouting": {"gatewayAPI": {"httpRoute": "web", "scaleDownDelaySeconds": 10}}})
    >>> obs = Observations("m", 1, route=RouteObservation("ns", "web", (), "7", "ns"))
    >>> st, t = RolloutStatus(), datetime(2026, 1, 1)
    >>> route_settled_at(spec, st, obs, routed=False, now=t) == t, st.route_accepted_at
    (True, None)
    >>> [route_settled_at(spec, st, obs, routed=True, now=t + timedelta(seconds=s)).second for s in (1, 5)]
    [11, 11]
    """
    if obs.route is None or not routed:
        st.route_accepted_at = None
        return now
    st.route_accepted_at = st.route_accepted_at or now
    delay = spec.traffic_routing.scale_down_delay_seconds if spec.traffic_routing is not None else 0.0
    return st.route_accepted_at + timedelta(seconds=delay)


def _decision(change: Change, spec: RolloutSpec, obs: Observations, plan: StrategyPlan,
              router: TrafficRouter) -> Decision:
    st = change.status
    replicas = hold_capacity(router.pods(spec, plan.traffic), obs, cut_at_once=st.phase == Phase.ROLLED_BACK)
    routed = obs.route is None or router.is_routed(spec, plan.traffic, obs)
    settled_at = route_settled_at(spec, st, obs, routed, change.now)
    replicas = hold_until_routed(replicas, obs, routed and settled_at <= change.now)
    routable = router.routable(spec, plan.traffic, obs)
    st.traffic_router = router_name(spec)
    models = {m.version: m for m in (st.stable_model, st.canary_model) if m is not None}
    doomed = tuple(sorted(
        v for v, n in replicas.items()
        if n == 0 and v not in models and v in obs.deployments
        and obs.deployments[v].replicas == 0 and obs.deployments[v].ready_replicas == 0
    ))
    intents = {v: DeploymentIntent(replicas=n, model=models.get(v)) for v, n in replicas.items() if v not in doomed}
    st.observed_generation = obs.generation
    update_conditions(st, change.now)
    if st.analysis.next_tick_at is not None:  # a running analysis is due then, whatever woke this tick
        change.wake_at.append(st.analysis.next_tick_at)
    wake = min([t for t in change.wake_at if t > change.now] or [change.now + IDLE])
    if any(i.replicas != (obs.deployments[v].replicas if v in obs.deployments else 0) for v, i in intents.items()):
        wake = min(wake, change.now + POLL)
    if obs.analysis is None and needs_analysis(spec, st, change.now):
        wake = min(wake, change.now + POLL)  # due (or no baseline yet) but not measured: soon
    if not routed:
        wake = min(wake, change.now + ROUTE_POLL)  # a gateway takes a route in within a second or two
    elif settled_at > change.now:
        wake = min(wake, settled_at)
    return Decision(
        status=st, deployments=intents, delete_versions=doomed,
        selectors=router.selectors(spec, obs.name, routable), events=tuple(change.events), next_tick_at=wake,
        route=router.route(spec, routable, obs), validation_job=validation.job_intent(spec, change),
        # Pods name a user's arm only once the gateway routes by it: a cookie the route ignores moves the user.
        mirror=shadowstep.mirror_intent(spec, obs, plan.traffic.shadow, plan.traffic.sticky if routed else None),
    )
