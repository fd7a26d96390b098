"""One reconcile tick: gather a snapshot, decide (pure core), act through the adapter.

    decision = await tick(ctx, body, now)

The kopf timer is the only caller, so this is the only writer of a rollout's progress. Blocking
Kubernetes calls go to threads; scraping is asyncio.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from kubernetes.client import ApiException

from modelrollout import blocking, opmetrics
from modelrollout.analysis.engine import assess_tick
from modelrollout.analysis.sourceconfig import PrometheusConfig, SecretKeyRef
from modelrollout.analysis.state import AnalysisState
from modelrollout.analysis.types import Tick
from modelrollout.core.commands import COMMAND_ID_ANNOTATION
from modelrollout.core.decide import decide, refuse_spec
from modelrollout.core.driftwatch import drift_watch, needs_drift_look, watched_versions
from modelrollout.core.observations import (
    AnalysisObservation,
    Decision,
    DriftObservation,
    Observations,
    RouteObservation,
    ShadowObservation,
    ValidationJobObservation,
)
from modelrollout.core.phases import Phase
from modelrollout.core.shadowstep import needs_shadow_look
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import RolloutStatus, status_patch
from modelrollout.core.strategies import strategy_for
from modelrollout.core.verdicts import needs_analysis
from modelrollout.kube import KubeAdapter, PermissionDeniedError, PodState, ready_targets
from modelrollout.kubeevents import tick_event_names
from modelrollout.notify import Notifier, notices
from modelrollout.podstates import pod_problems
from modelrollout.sources import MetricSource, PrometheusAccess, ScrapeRequest
from modelrollout.sources.driftcounts import DriftRequest, DriftWindows
from modelrollout.sources.shadowpairs import read_shadow_pairs

T = TypeVar("T")

log = logging.getLogger(__name__)
OWN_STATUS_KEYS_EXCLUDED = ("kopf",)  # kopf keeps its own bookkeeping in status
IN_FLIGHT = (Phase.PROGRESSING.value, Phase.PAUSED.value, Phase.PROMOTING.value)


@dataclass
class Context:
    kube: KubeAdapter
    source: MetricSource
    next_tick: dict[str, datetime] = field(default_factory=dict)  # by rollout uid (memory only)
    reported: dict[str, str] = field(default_factory=dict)  # last error shown in status/Event, by uid
    notifier: Notifier | None = None  # spec.notifications; None: not delivered (tests without a loop)
    drift: DriftWindows = field(default_factory=DriftWindows)  # the drift watch's recent readings per pod


def rollout_key(body: dict[str, Any]) -> str:
    return f"{body['metadata']['namespace']}/{body['metadata']['name']}"


async def gather(ctx: Context, body: dict[str, Any], spec: RolloutSpec, pods: list[PodState]) -> Observations:
    """Deployments, the selectors of the Services the strategy routes through, and why pods that are
    not Ready are not (their status and their model server's answer), read concurrently. A Service
    owned by another rollout or controller raises OwnershipConflictError here, before any write."""
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    services = strategy_for(spec).entry_services(spec)
    deployments, selectors, problems, route, (validation, retrain), mirror = await asyncio.gather(
        _adapter(ctx, KubeAdapter.observe_deployments, ns, name),
        asyncio.gather(*(_adapter(ctx, KubeAdapter.service_selector, body, service) for service in services)),
        pod_problems(pods, spec.serving.port),
        _route(ctx, ns, spec),
        _jobs(ctx, ns, body),
        _mirror_config(ctx, body, spec),
    )
    seen = {service: sel for service, sel in zip(services, selectors, strict=True) if sel is not None}
    return Observations(name=name, generation=meta.get("generation", 0), annotations=dict(meta.get("annotations")
                        or {}), deployments=deployments, selectors=seen, pod_problems=problems, route=route,
                        validation=validation, mirror=mirror, namespace=ns, retrain=retrain)


async def _adapter(ctx: Context, fn: Callable[..., T], *args: Any) -> T:
    """An adapter method the watch cache can settle: a read it answers, or a write it shows is not needed
    (nearly every tick's Deployments and Services are already as meant), runs on the event loop; only what must
    call the API takes a worker thread. (Sending those no-op checks through the 32 threads made every hand-off
    wait 0.4 s on average at 200 rollouts, make bench-operator.)"""
    return await blocking.read(ctx.kube, ctx.kube.cache_view, fn, *args)


async def _mirror_config(ctx: Context, body: dict[str, Any], spec: RolloutSpec) -> dict[str, str] | None:
    """The mirror ConfigMap's data, read only for rollouts with a shadow step, a shadow stage in status or an
    outcome goal (every other rollout has none, and its tick makes no call for it)."""
    if not (spec.strategy.has_shadow or spec.strategy.outcome_names or (body.get("status") or {}).get("shadow")):
        return None
    return await blocking.run(ctx.kube.observe_mirror_config, body)


async def _shadow_look(spec: RolloutSpec, status: RolloutStatus, pods: list[PodState]) -> ShadowObservation | None:
    """The candidate's pair counts (asked for only when core.shadowstep says a look is due)."""
    if status.shadow is None:
        return None
    return await read_shadow_pairs(ready_targets(pods), spec.serving.metrics_port, spec.serving.metrics.path,
                                   spec.model.name, status.shadow.version)


async def _drift_look(ctx: Context, body: dict[str, Any], spec: RolloutSpec, status: RolloutStatus,
                      pods: list[PodState]) -> DriftObservation | None:
    """The watched versions' live inputs over the window (asked for only when core.driftwatch says a look is due)."""
    watch = drift_watch(spec)
    if watch is None:
        return None
    request = DriftRequest(key=rollout_key(body), model=spec.model.name, versions=watched_versions(status),
                           pods=ready_targets(pods), port=spec.serving.metrics_port, path=spec.serving.metrics.path,
                           window_seconds=watch.window_seconds)
    return await ctx.drift.look(request)


async def _validation_job(ctx: Context, ns: str, body: dict[str, Any]) -> ValidationJobObservation | None:
    """The Job of a running validation gate (status.validation), None when no gate runs."""
    run = (body.get("status") or {}).get("validation") or {}
    if run.get("state") != "Running" or not run.get("job"):
        return None
    return await blocking.run(ctx.kube.observe_validation_job, ns, run["job"])


async def _jobs(ctx: Context, ns: str, body: dict[str, Any]) -> tuple[ValidationJobObservation | None,
                                                                     ValidationJobObservation | None]:
    """The Jobs that status says run: the validation gate's and the retraining one."""
    validation, retrain = await asyncio.gather(_validation_job(ctx, ns, body), _retrain_job(ctx, ns, body))
    return validation, retrain


async def _retrain_job(ctx: Context, ns: str, body: dict[str, Any]) -> ValidationJobObservation | None:
    """The running retraining Job (status.retrain), None when none runs."""
    run = (body.get("status") or {}).get("retrain") or {}
    if run.get("state") != "Running" or not run.get("job"):
        return None
    return await blocking.run(ctx.kube.observe_job, ns, run["job"])


async def _route(ctx: Context, ns: str, spec: RolloutSpec) -> RouteObservation | None:
    """The HTTPRoute that spec.trafficRouting.gatewayAPI names (None for the other routers)."""
    routing = spec.traffic_routing
    if routing is None or routing.http_route is None:
        return None
    return await blocking.run(ctx.kube.observe_route, routing.namespace or ns, routing.http_route, ns)


def _scrape_request(body: dict[str, Any], spec: RolloutSpec, status: RolloutStatus,
                    pods: list[Any]) -> ScrapeRequest | None:
    canary, stable = status.canary_version, status.stable_version
    if not canary or not stable:
        return None
    return ScrapeRequest(key=rollout_key(body), model=spec.model.name, canary_version=canary,
                         stable_version=stable, port=spec.serving.metrics_port,
                         pods=[p for p in pods if p.version in (canary, stable)],
                         namespace=body["metadata"]["namespace"], analysis=spec.analysis,
                         server=spec.serving.metrics)


async def _secret(ctx: Context, ns: str, ref: SecretKeyRef | None) -> str | None:
    return None if ref is None else await blocking.run(ctx.kube.secret_value, ns, ref.name, ref.key)


async def prometheus_access(ctx: Context, ns: str, config: PrometheusConfig) -> PrometheusAccess:
    """The Prometheus settings with their Secrets read; a Secret that cannot be read is a problem the
    tick reports (missing data, so Inconclusive), not an error of the whole reconcile."""
    try:
        ca, token = await asyncio.gather(_secret(ctx, ns, config.ca_secret),
                                         _secret(ctx, ns, config.bearer_token_secret))
    except (ApiException, KeyError, PermissionDeniedError, UnicodeDecodeError, ValueError) as exc:
        reason = f"HTTP {exc.status}: {exc.reason}" if isinstance(exc, ApiException) else str(exc)
        return PrometheusAccess(config, problem=f"cannot read a Secret of spec.analysis.prometheus ({reason})")
    return PrometheusAccess(config, ca_pem=ca, bearer_token=token)


async def _observe(ctx: Context, body: dict[str, Any], spec: RolloutSpec, status: RolloutStatus,
                   pods: list[PodState]) -> Tick | None:
    """Scrape the ready pods of both versions; None without a canary or while there is no baseline."""
    request = _scrape_request(body, spec, status, ready_targets(pods))
    if request is None:
        return None
    if spec.analysis is not None and spec.analysis.prometheus is not None:
        ns = body["metadata"]["namespace"]
        request = replace(request, prometheus=await prometheus_access(ctx, ns, spec.analysis.prometheus))
    with opmetrics.SCRAPE_SECONDS.time():
        return await ctx.source.observe(request)


async def analyse(ctx: Context, body: dict[str, Any], spec: RolloutSpec, status: RolloutStatus,
                  pods: list[PodState]) -> AnalysisObservation | None:
    """Scrape both versions and run the engine; None while there is no baseline yet."""
    config = spec.analysis
    tick = None if config is None else await _observe(ctx, body, spec, status, pods)
    if config is None or tick is None:
        return None
    engine_state = status.analysis.engine_state or None
    state = AnalysisState.from_dict(engine_state, config) if engine_state else AnalysisState.initial(config)
    outcome, new_state = assess_tick(config, state, tick)
    meta = body["metadata"]
    for result in outcome.results:
        opmetrics.VERDICTS.labels(meta["namespace"], meta["name"], result.name, result.verdict.value).inc()
    return AnalysisObservation(outcome=outcome, engine_state=new_state.to_dict(), tick=tick)


async def _prime_baseline(ctx: Context, body: dict[str, Any], spec: RolloutSpec, status: RolloutStatus,
                          pods: list[PodState]) -> None:
    """Read the pods once between analysis ticks after a (re)start, so the first due tick covers a
    whole interval instead of only recording baselines."""
    in_flight = status.phase is not None and status.phase.value in IN_FLIGHT
    if in_flight and not ctx.source.has_baseline(rollout_key(body)):
        await _observe(ctx, body, spec, status, pods)


async def act(ctx: Context, body: dict[str, Any], spec: RolloutSpec | None, decision: Decision) -> None:
    """Apply the decision; spec None (it was invalid): only the status and events are written."""
    kube = ctx.kube
    if spec is not None and decision.mirror is not None and decision.deployments is not None:
        # First: turning copies off never waits behind the scale-down of the version they went to.
        await blocking.run(kube.apply_mirror_config, body, dict(decision.mirror.data))
    if spec is not None and decision.deployments is not None:
        await asyncio.gather(*(_adapter(ctx, KubeAdapter.apply_deployment, body, spec, v, intent)
                               for v, intent in decision.deployments.items()))
    for version in decision.delete_versions:
        await _adapter(ctx, KubeAdapter.delete_version, body, version)
    if spec is not None and decision.validation_job is not None:
        await blocking.run(kube.ensure_validation_job, body, spec, decision.validation_job)
    if spec is not None and decision.retrain_job is not None:
        await blocking.run(kube.ensure_retrain_job, body, spec, decision.retrain_job)
    if decision.cancel_validation_job is not None:
        await blocking.run(kube.delete_validation_job, body["metadata"]["namespace"], decision.cancel_validation_job)
    if spec is not None:
        await _apply_services(ctx, body, spec, decision)
    if spec is not None and decision.route is not None and decision.deployments:
        # After the Services: the route may name the canary Service for the first time.
        await blocking.run(kube.apply_route, decision.route)
    # Events before the status: a restart between the two replays this tick under the same event
    # names (kubeevents.tick_event_names), so nothing is lost and nothing is shown twice.
    names = tick_event_names(body, _stored_status(body), list(decision.events))
    for event, name in zip(decision.events, names, strict=True):
        await blocking.run(kube.post_event, body, event, name)
    await _write_status(ctx, body, decision.status)
    if ctx.notifier is not None and spec is not None and spec.notifications and decision.events:
        # Queued only: delivery (with its retries) never holds the tick.
        ctx.notifier.submit(notices(body, spec.notifications, zip(decision.events, names, strict=True),
                                    decision.status, dt.datetime.now(dt.UTC)))


async def _apply_services(ctx: Context, body: dict[str, Any], spec: RolloutSpec, decision: Decision) -> None:
    """The router's Service selectors, main Service first; nothing while no version runs."""
    if not decision.deployments:
        return
    for service, selector in decision.selectors.items():
        await _adapter(ctx, KubeAdapter.ensure_service, body, service, spec.service.port, spec.serving.port,
                       dict(selector))


async def _write_status(ctx: Context, body: dict[str, Any], status: RolloutStatus) -> None:
    patch = status_patch(body.get("status"), status)
    if patch:
        meta = body["metadata"]
        await blocking.run(ctx.kube.patch_status, meta["namespace"], meta["name"], patch)


def is_due(ctx: Context, body: dict[str, Any], now: datetime) -> bool:
    """Whether this rollout should reconcile now: the decided wake-up time came, or a change waits
    (has_pending_change). (Memory only: after a restart every rollout is looked at at once.) Never
    once the rollout is being deleted: a tick then could adopt a Service again after it was released."""
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return False
    wake = ctx.next_tick.get(meta["uid"])
    return wake is None or now >= wake or has_pending_change(body)


def has_pending_change(body: dict[str, Any]) -> bool:
    """A spec the status has not caught up with, or a manual command not yet carried out."""
    meta, status = body["metadata"], body.get("status") or {}
    if meta.get("deletionTimestamp"):
        return False
    command_id = (meta.get("annotations") or {}).get(COMMAND_ID_ANNOTATION)
    return (status.get("observedGeneration") != meta.get("generation")
            or (command_id is not None and command_id != status.get("lastCommandId")))


async def _decide(ctx: Context, body: dict[str, Any], spec: RolloutSpec, status: RolloutStatus,
                  now: datetime) -> Decision:
    """Gather everything the tick needs - the analysis too when the core says one is due - and
    decide once."""
    meta, started = body["metadata"], time.monotonic()
    # One list of the rollout's pods per tick serves both the pod problems and the metric source.
    pods = await _adapter(ctx, KubeAdapter.pod_states, meta["namespace"], meta["name"])
    measure = (analyse(ctx, body, spec, status, pods) if needs_analysis(spec, status, now)
               else _prime_baseline(ctx, body, spec, status, pods))
    shadow = _shadow_look(spec, status, pods) if needs_shadow_look(spec, status, now) else _nothing()
    drift = _drift_look(ctx, body, spec, status, pods) if needs_drift_look(spec, status, now) else _nothing()
    obs, seen, shadow_seen, drift_seen = await asyncio.gather(gather(ctx, body, spec, pods), measure, shadow, drift)
    opmetrics.TICK_STAGE_SECONDS.labels("observe").observe(time.monotonic() - started)
    with opmetrics.TICK_STAGE_SECONDS.labels("decide").time():
        return decide(spec, status, replace(obs, analysis=seen, shadow=shadow_seen, drift=drift_seen), now)


async def _nothing() -> None:
    return None


def _stored_status(body: dict[str, Any]) -> dict[str, Any]:
    """The status this operator wrote (what the tick starts from)."""
    return {k: v for k, v in (body.get("status") or {}).items() if k not in OWN_STATUS_KEYS_EXCLUDED}


async def tick(ctx: Context, body: dict[str, Any], now: datetime) -> Decision:
    """Parse the spec once, then gather, decide and act; an invalid spec only updates the status."""
    status = RolloutStatus.from_dict(_stored_status(body))
    spec: RolloutSpec | None
    try:
        spec = RolloutSpec.from_dict(body.get("spec") or {})
    except ValueError as err:
        spec, decision = None, refuse_spec(status, err, body["metadata"].get("generation", 0), now)
    else:
        decision = await _decide(ctx, body, spec, status, now)
    if decision.status.phase is not None and decision.status.phase.value not in IN_FLIGHT:
        ctx.source.forget(rollout_key(body))
    if decision.status.drift is None:
        ctx.drift.forget(rollout_key(body))
    with opmetrics.TICK_STAGE_SECONDS.labels("act").time():
        await act(ctx, body, spec, decision)
    opmetrics.observe_tick_lateness(ctx.next_tick.get(body["metadata"]["uid"]), now, dt.datetime.now(dt.UTC))
    ctx.next_tick[body["metadata"]["uid"]] = decision.next_tick_at
    opmetrics.record_decision(body, decision)
    return decision
